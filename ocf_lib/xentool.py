"""The Xen toolstack seam: ``xl`` (preferred) or legacy ``xm``, one argv per operation.

Every call goes through the caller's ``run`` (``Context.run``: bounded by the
action's deadline).  Output parsing follows xl's formats:

* ``xl list`` prints a header, then ``%-40s %5d %5lu %5d     %s  %8.1f`` rows
  (Name ID Mem VCPUs State Time): a name may hold blanks, so rows are read
  from the right, and ``xl list <name>`` (one row) is matched by prefix.
  State is six flags, ``r b p s <reason> d`` (running, blocked, paused,
  shutdown, the shutdown reason letter, dying), ``-`` when unset.
* Only two answers mean "no such domain": ``<name> is an invalid domain
  identifier (rc=-6)`` (ERROR_INVAL from the name lookup; older xl exited 2)
  and ``Error: Domain '<name>' does not exist.`` (ERROR_DOMAIN_NOTFOUND; xm's
  wording too), each as the last line xl wrote.  Any other failure, say
  ``(rc=-5)`` when the domain list itself could not be read, is an error.
* A name of digits only is a domain id to xl, so such names are refused
  by the agent.

Differences between the two tools are kept here: xl needs the ``name=``
override quoted for its config parser, xm rejects quotes (lf#2671); xm
migrates with ``--live``; memory for ``mem-set`` is passed with an explicit
``m`` suffix because xl's default unit is KiB (upstream passed bare MiB).

Also here: :func:`config_name` reads a config's ``name=`` as xl would, and
:func:`no_domains_here` says when the host cannot run any domain at all.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .deadline import Deadline


class ToolstackError(Exception):
    """A toolstack command failed; ``str()`` is a one-line reason."""


class DomInfo:
    __slots__ = ("name", "domid", "mem_mib", "vcpus", "flags")

    def __init__(self, name: str, domid: int, mem_mib: int, vcpus: int, flags: str) -> None:
        self.name = name
        self.domid = domid
        self.mem_mib = mem_mib
        self.vcpus = vcpus
        self.flags = flags

    @property
    def state(self) -> str:
        """running / blocked / paused / shutdown / crashed / dying / unknown."""
        for letter, word in (("c", "crashed"), ("d", "dying"), ("s", "shutdown"),
                             ("p", "paused"), ("r", "running"), ("b", "blocked")):
            if letter in self.flags:
                return word
        return "running"  # "------": runnable, between scheduler states


def _row(fields: list[str], name: str) -> DomInfo | None:
    """A row's five right-hand fields (ID Mem VCPUs State Time) -> DomInfo."""
    if len(fields) != 5 or not all(f.isdigit() for f in fields[:3]):
        return None
    return DomInfo(name, int(fields[0]), int(fields[1]), int(fields[2]), fields[3])


def parse_list(text: str) -> list[DomInfo]:
    """Every row of ``xl list``; names are what precedes the five numeric columns."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.rsplit(None, 5)
        if len(parts) == 6:
            info = _row(parts[1:], parts[0].rstrip())
            if info is not None:
                out.append(info)
    return out


def parse_one(text: str, name: str) -> DomInfo | None:
    """The row of ``name`` in ``xl list <name>``: the line that starts with the
    exact name and continues with just the five columns."""
    for line in text.splitlines()[1:]:
        if line.startswith(name) and line[len(name):len(name) + 1].isspace():
            info = _row(line[len(name):].split(), name)
            if info is not None:
                return info
    return None


def says_absent(err: str, name: str) -> bool:
    """True only for xl's (or xm's) own "no such domain" answers about ``name``."""
    lines = [line.rstrip() for line in err.splitlines() if line.strip()]
    return bool(lines) and lines[-1] in (f"{name} is an invalid domain identifier (rc=-6)",
                                         f"Error: Domain '{name}' does not exist.")


class Toolstack:
    """``tool`` is "xl" or "xm"; ``run(argv, **kw)`` returns a proc.Result."""

    def __init__(self, tool: str, run: Callable[..., Any]) -> None:
        self.tool = tool
        self._run = run

    @classmethod
    def find(cls, run: Callable[..., Any]) -> Toolstack | None:
        from .proc import which

        for tool in ("xl", "xm"):
            if which(tool):
                return cls(tool, run)
        return None

    def _call(self, *args: str, timeout: float | None = None, quiet: bool = False) -> Any:
        return self._run([self.tool, *args], timeout=timeout, quiet=quiet)

    def _check(self, what: str, *args: str, timeout: float | None = None) -> str:
        res = self._call(*args, timeout=timeout)
        if res.rc != 0:
            raise ToolstackError(f"{self.tool} {what} failed ({res.rc}): {_why(res)}")
        return str(res.out)

    def domain(self, name: str) -> DomInfo | None:
        """One ``list <dom>`` call: the domain's row, or None when xl says it does not exist.

        Raises ToolstackError for every other failure, and when xl answers
        with a row that is not this domain's (never read as "absent").
        """
        res = self._call("list", name, quiet=True)
        if res.rc != 0:
            if res.rc in (1, 2) and says_absent(res.err, name):
                return None
            raise ToolstackError(f"{self.tool} list {name} failed ({res.rc}): {_why(res)}")
        info = parse_one(res.out, name)
        if info is None:
            shown = " / ".join(res.out.splitlines()[:3])[:300]
            raise ToolstackError(f"{self.tool} list {name}: no row for the domain in '{shown}'")
        return info

    def domains(self) -> list[DomInfo]:
        """All guest domains (Domain-0 excluded)."""
        return [d for d in parse_list(self._check("list", "list")) if d.domid != 0]

    def total_memory_mib(self) -> int:
        for line in self._check("info", "info").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "total_memory":
                return int(value.strip())
        raise ToolstackError(f"{self.tool} info shows no total_memory")

    def create(self, config: str, name: str, memory_mib: int | None = None) -> None:
        overrides = [f'name="{name}"' if self.tool == "xl" else f"name={name}"]
        if memory_mib:
            overrides.append(f"memory={memory_mib}")
        self._check("create", "create", config, *overrides)

    def shutdown(self, name: str, acpi: bool = False) -> None:
        if acpi:
            self._check("trigger power", "trigger", name, "power")
        else:
            self._check("shutdown", "shutdown", name)

    def destroy(self, name: str) -> None:
        self._check("destroy", "destroy", name)

    def mem_set(self, name: str, mib: int) -> None:
        self._check("mem-set", "mem-set", name, f"{mib}m")

    def migrate(self, name: str, host: str, timeout: float | None = None) -> None:
        args = ["migrate", "--live", name, host] if self.tool == "xm" else ["migrate", name, host]
        self._check("migrate", *args, timeout=timeout)


def wait_gone(ts: Toolstack, name: str, deadline: Deadline) -> None:
    """Poll the domain list until ``name`` is gone (after a destroy); raises
    ToolstackError when it is still listed at the deadline."""
    while ts.domain(name) is not None:
        if deadline.expired():
            raise ToolstackError(f"domain {name} still exists after destroy")
        deadline.sleep(0.2)


def config_name(path: str) -> str | None:
    """The name= entry of an xl config (raises OSError when unreadable)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            key, eq, value = line.split("#", 1)[0].partition("=")
            if eq and key.strip() == "name":
                value = value.strip()
                if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1:
                    value = value[1:-1]  # a quoted xl string: blanks are part of the name
                elif any(c.isspace() for c in value):
                    return None  # not a value xl would parse
                if value and "%" not in value and "\n" not in value:
                    return value
    return None


def no_domains_here() -> str | None:
    """Why no Xen domain can run on this host, or None when one can."""
    from .virt import xen_present

    if xen_present() is False:
        return "no Xen hypervisor (or not its control domain) on this host"
    return None


def _why(res: Any) -> str:
    """xl explains a failure over several stderr lines (the cause first); keep them all."""
    lines = [line.strip() for line in (res.err or res.out).splitlines()
             if line.strip() and not line.startswith("Parsing config from")]
    return " / ".join(lines)[:400] or f"exit code {res.rc}"
