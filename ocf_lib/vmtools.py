"""What the VM agents (VirtualDomain, Xen) share: start waits, monitor scripts, utilization.

* :func:`run_monitor_scripts`: the ``monitor_scripts`` parameter, each command
  run directly (no shell) under the action's deadline; a failure fails the
  monitor with the command's output in the exit reason.
* :func:`sync_utilization`: keep the resource's utilization attributes equal
  to the guest's size, calling the cluster tools only when a value changed
  since the last successful write (cached in ``$HA_RSCTMP``).  Upstream
  queried the CIB two to three times on every monitor.
"""

from __future__ import annotations

import time

from . import codes
from .params import ParamError, ParamType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from .ocf import Context


def wait_until_up(ctx: Context, monitor: Callable[[Context], int], name: str) -> int:
    """After a start: the agent's monitor until it succeeds, within the deadline."""
    while monitor(ctx) != codes.SUCCESS:
        if ctx.deadline.soft_expired():
            ctx.fail(codes.ERR_GENERIC, f"domain {name} did not come up in time")
        ctx.deadline.sleep(0.5)
    return codes.SUCCESS


class _Commands(ParamType):
    """Space-separated words, each a command (or directory) to use as it is."""

    doc = "space-separated list"

    def convert(self, raw: str, name: str) -> tuple[str, ...]:
        words = tuple(raw.split())
        for word in words:
            if not word.isprintable():
                raise ParamError(name, raw, "contains control characters")
        return words


WORDS: ParamType = _Commands()


def run_monitor_scripts(ctx: Context, scripts: Iterable[str] | None) -> None:
    for script in scripts or ():
        res = ctx.run([script], timeout=ctx.deadline.limit(soft=True))
        if not res.ok:
            out = " ".join((res.out + res.err).split())[:300]
            ctx.fail(codes.ERR_GENERIC, f"monitor script {script} failed ({res.rc}): {out}")


def sync_utilization(ctx: Context, prefix: str, wanted: Mapping[str, str],
                     unset: Iterable[str] = ()) -> None:
    """Write ``wanted`` (attribute -> value), delete ``unset``; retry failures once a minute."""
    unset = list(unset)
    summary = " ".join(f"{a}={v}" for a, v in sorted(wanted.items())) + " -" + " -".join(unset)
    cache = f"{prefix}-{ctx.instance}.util"
    cached = (ctx.state.read(cache) or "").split("\n")
    if cached[0] == summary:
        if len(cached) < 2 or not cached[1] or time.time() - float(cached[1]) < 60:
            return
    from .cluster import ClusterTools

    tools = ClusterTools(ctx.run)
    ok = True
    for attr, value in wanted.items():
        if tools.utilization_get(ctx.instance, attr) != value:
            ok = tools.utilization_set(ctx.instance, attr, value) and ok
    for attr in unset:
        if tools.utilization_get(ctx.instance, attr) is not None:
            ok = tools.utilization_delete(ctx.instance, attr) and ok
    if not ok:
        ctx.log.debug("utilization not updated (CIB unreachable?); will retry")
    ctx.state.write(cache, summary if ok else f"{summary}\n{time.time():.0f}")


def forget_utilization(ctx: Context, prefix: str) -> None:
    ctx.state.remove(f"{prefix}-{ctx.instance}.util")
