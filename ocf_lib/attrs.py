"""Node attributes through Pacemaker's ``crm_attribute``: promotion scores and friends.

A promotable clone tells the scheduler where it would like to be promoted
with the transient node attribute ``master-<instance>`` (lifetime
``reboot``).  The scheduler's reading of it (pcmk_sched_promotable.c):

* no attribute at all: this node is not a candidate;
* 0 or more: a candidate, the highest wins;
* negative: never promoted here.

So "not promotable here" is expressed by *deleting* the attribute, and an
agent should never write 0 for it (0 still means "eligible").

The raw form ``crm_attribute -N <node> -n master-<rsc> -l reboot`` is used
rather than ``crm_master`` (a deprecated shell wrapper: one more fork) or
``--promotion`` (Pacemaker >= 2.1 only): it works from Pacemaker 1.1 to 3.x,
and against a ``CIB_file`` in tests.  Every call is bounded by the caller's
deadline (drbd-utils 9.22's agent called ``crm_master`` without any limit).

The class takes a ``run`` callable with :func:`ocf_lib.proc.run`'s signature
(an agent passes ``ctx.run``); that is the seam a test may replace.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~5 ms to import; not on hot paths
if TYPE_CHECKING:
    from collections.abc import Callable

    from .proc import Result

    Runner = Callable[..., Result]

TOOL = "crm_attribute"
# crm_attribute exit code when the attribute (or node) does not exist.
CRM_EX_NOSUCH = 105


class AttributeError_(Exception):
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
        return [TOOL, "-N", self.node, "-n", name, "-l", self.lifetime]

    def get(self, name: str) -> str | None:
        """The value, or None when the attribute is not set."""
        res = self._run([*self._argv(name), "-G", "-q"], timeout=self.timeout, quiet=True)
        if res.rc == CRM_EX_NOSUCH:
            return None
        if res.rc != 0:
            raise AttributeError_(f"reading {name}: {res.reason()}")
        return res.out.strip()

    def set(self, name: str, value: str) -> None:
        # --update=VALUE rather than "-v VALUE": a value like -INFINITY is not an option.
        res = self._run([*self._argv(name), f"--update={value}"], timeout=self.timeout)
        if res.rc != 0:
            raise AttributeError_(f"setting {name}={value}: {res.reason()}")

    def delete(self, name: str) -> None:
        """Remove the attribute; removing an absent one is fine."""
        res = self._run([*self._argv(name), "-D"], timeout=self.timeout, quiet=True)
        if res.rc not in (0, CRM_EX_NOSUCH):
            raise AttributeError_(f"deleting {name}: {res.reason()}")


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
