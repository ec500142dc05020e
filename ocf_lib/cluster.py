"""The cluster-tools seam: Pacemaker's command-line tools, called one way.

Agents that talk to the cluster (fence_pcmk asking the fencer, resource
agents setting node attributes) go through the small classes here, so that
the command lines, the time limits and the meaning of the tools' exit codes
live in one place.  Each class takes a ``run`` callable with the signature of
:func:`ocf_lib.proc.run` (an agent passes its context's ``run``, which is
bounded by the action's deadline); the commands themselves are the real
Pacemaker tools.

Keep additions here generic and additive: other agents share this module.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .proc import Result

    Runner = Callable[..., Result]

# stonith_admin exit codes (Pacemaker's crm_exit_t), as observed on 2.1.5.
CRM_EX_OK = 0
CRM_EX_ERROR = 1
CRM_EX_DISCONNECT = 102
CRM_EX_NOSUCH = 105
CRM_EX_TIMEOUT = 124
LEGACY_TIMEOUT = 194  # Pacemaker 1.1 returned -ETIME modulo 256

# Fence actions and the stonith_admin verb that requests each.
FENCE_VERBS = {"reboot": "--reboot", "off": "--fence", "on": "--unfence"}


def seconds_arg(seconds: float) -> str:
    """stonith_admin takes whole seconds: round up, and never down to 0."""
    whole = int(seconds)
    return str(whole + 1 if whole < seconds or whole < 1 else whole)


class FenceResult:
    """What the fencer answered to one request."""

    __slots__ = ("rc", "out", "err", "timed_out")

    def __init__(self, rc: int, out: str, err: str, timed_out: bool = False) -> None:
        self.rc = rc
        self.out = out
        self.err = err
        self.timed_out = timed_out

    @property
    def ok(self) -> bool:
        return self.rc == CRM_EX_OK and not self.timed_out

    def reason(self) -> str:
        """stonith_admin's own error text (its last line), else a description of rc."""
        for text in (self.err, self.out):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return describe_rc(self.rc)


def describe_rc(rc: int) -> str:
    return {
        CRM_EX_OK: "OK",
        CRM_EX_ERROR: "fencing failed",
        CRM_EX_DISCONNECT: "the fencer is not reachable (is the cluster running?)",
        CRM_EX_NOSUCH: "no fence device can fence that node",
        CRM_EX_TIMEOUT: "fencing timed out",
        LEGACY_TIMEOUT: "fencing timed out",
    }.get(rc, f"stonith_admin exit code {rc}")


class Fencer:
    """``timeout`` values are seconds.  stonith_admin enforces ``--timeout``
    itself (the fencer adds its own margin); our process limit is a little
    beyond that, so that its answer, not our kill, is what gets reported."""

    def __init__(self, run: Runner, *, tag: str | None = None,
                 tool: str = "stonith_admin") -> None:
        self._run = run
        self.tag = tag
        self.tool = tool

    def _call(self, args: Sequence[str], timeout: float, **kwargs: Any) -> FenceResult:
        from .proc import CommandTimeout

        argv = [self.tool, *args, "--timeout", seconds_arg(timeout)]
        if self.tag:
            argv += ["--tag", self.tag]
        try:
            res = self._run(argv, timeout=timeout * 1.2 + 5.0, quiet=True, **kwargs)
        except CommandTimeout as exc:
            return FenceResult(CRM_EX_TIMEOUT, "", f"{exc} (timed out)", timed_out=True)
        err = res.err
        if res.rc != CRM_EX_OK and "--output-as=xml" in args and not err.strip():
            err = "\n".join(_xml_texts(res.out, "error"))
        return FenceResult(res.rc, res.out, err, res.rc in (CRM_EX_TIMEOUT, LEGACY_TIMEOUT))

    def reachable(self, *, timeout: float = 10.0) -> FenceResult:
        """Is the fencer there?  A fencing request to a stopped cluster retries
        its connection for many seconds before failing; this asks once, briefly."""
        return self._call(["--list-registered", "--output-as=xml"], timeout)

    def fence(self, target: str, action: str, *, timeout: float,
              tolerance: float | None = None, delay: float | None = None) -> FenceResult:
        """Ask the cluster to ``reboot``, ``off`` (fence) or ``on`` (unfence) ``target``.

        ``tolerance``: succeed without acting when an equivalent request
        succeeded that many seconds ago (so a node is not shot twice).
        """
        args = [FENCE_VERBS[action], target]
        if tolerance:
            args += ["--tolerance", f"{seconds_arg(tolerance)}s"]
        if delay:
            args += ["--delay", seconds_arg(delay)]
        return self._call(args, timeout)

    def devices_for(self, target: str, *, timeout: float) -> tuple[FenceResult, list[str]]:
        """The registered devices able to fence ``target`` (``--list``)."""
        return self._items(["--list", target, "--output-as=xml"], timeout)

    def registered(self, *, timeout: float) -> tuple[FenceResult, list[str]]:
        """Every registered fence device (``--list-registered``)."""
        return self._items(["--list-registered", "--output-as=xml"], timeout)

    def targets(self, device: str, *, timeout: float) -> tuple[FenceResult, list[str]]:
        """The nodes ``device`` can fence (``--list-targets``)."""
        return self._items(["--list-targets", device, "--output-as=xml"], timeout)

    def _items(self, args: list[str], timeout: float) -> tuple[FenceResult, list[str]]:
        res = self._call(args, timeout)
        return res, _xml_texts(res.out, "item") if res.ok else []


def _xml_texts(text: str, tag: str) -> list[str]:
    """The texts of ``<tag>`` elements in stonith_admin's ``--output-as=xml`` output."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    return [(el.text or "").strip() for el in root.iter(tag) if (el.text or "").strip()]


class ClusterTools:
    """Resource utilization attributes through ``crm_resource`` (argv only).

    (Node attributes: :class:`NodeAttributes`.)  A value that cannot be read is
    None (absent, or the CIB unreachable); a write that fails returns False.
    Utilization is bookkeeping: the caller decides whether a failure matters.
    Tests point the tools at a file with ``CIB_file=`` instead of a live cluster.
    """

    def __init__(self, run: Runner) -> None:
        self._run = run

    def _value(self, argv: list[str]) -> str | None:
        try:
            res = self._run(argv, quiet=True)
        except Exception:  # noqa: BLE001 - tool missing or no time left: unknown
            return None
        return str(res.out).strip() if res.rc == 0 else None

    def _ok(self, argv: list[str]) -> bool:
        try:
            return bool(self._run(argv, quiet=True).rc == 0)
        except Exception:  # noqa: BLE001
            return False

    def utilization_get(self, resource: str, name: str) -> str | None:
        return self._value(["crm_resource", "--quiet", "--resource", resource,
                            "--utilization", "--get-parameter", name])

    def utilization_set(self, resource: str, name: str, value: str) -> bool:
        return self._ok(["crm_resource", "--resource", resource, "--utilization",
                         "--set-parameter", name, "--parameter-value", value])

    def utilization_delete(self, resource: str, name: str) -> bool:
        return self._ok(["crm_resource", "--resource", resource, "--utilization",
                         "--delete-parameter", name])

    def locate(self, resource: str, *, timeout: float = 10.0) -> list[tuple[str, str]] | None:
        """Where Pacemaker runs ``resource``: (node, role) pairs, the role "" for a started
        instance and "Promoted" for a promoted one (Pacemaker < 2.1 prints "Master").
        [] when it runs nowhere; None when crm_resource could not say."""
        try:
            res = self._run(["crm_resource", "--resource", resource, "--locate"],
                            timeout=timeout, quiet=True)
        except Exception:  # noqa: BLE001 - tool missing or no time left: unknown
            return None
        if res.rc != 0:
            return None
        return parse_locate(res.out)


def parse_locate(text: str) -> list[tuple[str, str]]:
    """``resource d is running on: n2 Promoted`` lines -> [("n2", "Promoted")]."""
    found = []
    for line in text.splitlines():
        words = line.partition("is running on:")[2].split()
        if not words:
            continue
        role = words[1] if len(words) > 1 else ""
        found.append((words[0], "Promoted" if role in ("Promoted", "Master") else role))
    return found

# -- promotion scores (promotable clones) ---------------------------------------------
#
# A promotable clone tells the scheduler where it would like to be promoted with
# the transient node attribute ``master-<instance>`` (lifetime ``reboot``).  The
# scheduler's reading of it (pcmk_sched_promotable.c): no attribute at all, this
# node is not a candidate; 0 or more, a candidate, the highest wins; negative,
# never promoted here.  So "not promotable here" is expressed by DELETING the
# attribute; an agent should never write 0 for it (0 still means "eligible").
#
# The raw form ``crm_attribute -N <node> -n master-<rsc> -l reboot`` is used rather
# than ``crm_master`` (a deprecated shell wrapper: one more fork) or ``--promotion``
# (Pacemaker >= 2.1 only): it works from Pacemaker 1.1 to 3.x, and against a
# ``CIB_file`` in tests.  Unlike ClusterTools, failures raise with crm_attribute's
# own reason: an agent may want to say why its score could not be set.

class AttributeToolError(Exception):
    """crm_attribute failed; ``str()`` is its own one-line reason."""


class NodeAttributes:
    """Transient (``reboot``) or permanent (``forever``) attributes of one node."""

    def __init__(self, run: Runner, node: str, *, lifetime: str = "reboot",
                 timeout: float = 10.0) -> None:
        self._run = run
        self.node = node
        self.lifetime = lifetime
        self.timeout = timeout

    def _argv(self, name: str) -> list[str]:
        return ["crm_attribute", "-N", self.node, "-n", name, "-l", self.lifetime]

    def get(self, name: str) -> str | None:
        """The value, or None when the attribute is not set."""
        res = self._run([*self._argv(name), "-G", "-q"], timeout=self.timeout, quiet=True)
        if res.rc == CRM_EX_NOSUCH:
            return None
        if res.rc != 0:
            raise AttributeToolError(f"reading {name}: {res.reason()}")
        return res.out.strip()

    def set(self, name: str, value: str) -> None:
        # --update=VALUE rather than "-v VALUE": a value like -INFINITY is not an option.
        res = self._run([*self._argv(name), f"--update={value}"], timeout=self.timeout)
        if res.rc != 0:
            raise AttributeToolError(f"setting {name}={value}: {res.reason()}")

    def delete(self, name: str) -> None:
        """Remove the attribute; removing an absent one is fine."""
        res = self._run([*self._argv(name), "-D"], timeout=self.timeout, quiet=True)
        if res.rc not in (0, CRM_EX_NOSUCH):
            raise AttributeToolError(f"deleting {name}: {res.reason()}")


def promotion_name(instance: str) -> str:
    """The attribute Pacemaker reads for ``instance`` (OCF_RESOURCE_INSTANCE).

    Pacemaker passes anonymous clone instances without the ``:N`` suffix;
    globally unique ones keep it, and so does the attribute name.
    """
    return f"master-{instance}"


class PromotionScore:
    """``master-<instance>`` on this node: ``set(score)`` or ``delete()``."""

    def __init__(self, run: Runner, node: str, instance: str, *, timeout: float = 10.0) -> None:
        self.attrs = NodeAttributes(run, node, lifetime="reboot", timeout=timeout)
        self.name = promotion_name(instance)

    def get(self) -> int | None:
        value = self.attrs.get(self.name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            # INFINITY / -INFINITY as the scheduler writes them
            return 1000000 if value.lstrip("+").upper() == "INFINITY" else -1000000

    def set(self, score: int) -> None:
        self.attrs.set(self.name, str(score))

    def delete(self) -> None:
        self.attrs.delete(self.name)
