"""The Xen toolstack seam: ``xl`` (preferred) or legacy ``xm``, one argv per operation.

Every call goes through the caller's ``run`` (``Context.run``: bounded by the
action's deadline).  Output parsing follows xl's documented formats:
``xl list`` prints ``Name ID Mem VCPUs State Time(s)`` rows whose State is six
flag letters, ``r b p s c d`` (running, blocked, paused, shutdown, crashed,
dying) or ``-``.  A domain that does not exist makes ``xl list <dom>`` fail.

Differences between the two tools are kept here: xl needs the ``name=``
override quoted for its config parser, xm rejects quotes (lf#2671); xm
migrates with ``--live``; memory for ``mem-set`` is passed with an explicit
``m`` suffix because xl's default unit is KiB (upstream passed bare MiB).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


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


def parse_list(text: str) -> list[DomInfo]:
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 5 or words[0] == "Name" or not words[1].isdigit():
            continue
        # The name may contain spaces only in theory; the numeric columns are fixed.
        try:
            out.append(DomInfo(" ".join(words[:-5]), int(words[-5]), int(words[-4]),
                               int(words[-3]), words[-2]))
        except ValueError:
            continue
    return out


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
        """One ``list <dom>`` call: the domain's row, or None when it does not exist."""
        res = self._call("list", name, quiet=True)
        if res.rc != 0:
            text = (res.err + res.out).lower()
            if "invalid domain identifier" in text or "does not exist" in text:
                return None
            raise ToolstackError(f"{self.tool} list {name} failed ({res.rc}): {_why(res)}")
        for info in parse_list(res.out):
            if info.name == name:
                return info
        return None

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


def _why(res: Any) -> str:
    """xl explains a failure over several stderr lines (the cause first); keep them all."""
    lines = [line.strip() for line in (res.err or res.out).splitlines()
             if line.strip() and not line.startswith("Parsing config from")]
    return " / ".join(lines)[:400] or f"exit code {res.rc}"
