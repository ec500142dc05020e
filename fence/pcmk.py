"""fence_pcmk: CMAN's fenced hands fencing over to Pacemaker.

Configured in cluster.conf as the one fence device of every node::

    <fencedevice name="pcmk" agent="fence_pcmk"/>
    <clusternode name="n1" ...><fence><method name="pcmk-redirect">
        <device name="pcmk" port="n1"/></method></fence></clusternode>

fenced runs it with no arguments and ``name=value`` lines on stdin; it asks
Pacemaker's fencer with ``stonith_admin`` and succeeds only when
stonith_admin reports that the fencing was done.  Never configure it inside
Pacemaker itself (it would ask Pacemaker to ask itself).

Differences from Pacemaker 1.1's Perl agent, on purpose:

* the target is ``port``, falling back to ``nodename`` (upstream ignored
  ``nodename`` and failed with "no plug number" when only it was given);
* ``--timeout`` is passed, from the ``timeout`` input (upstream parsed it and
  never used it, so stonith_admin's 120 s applied), and the agent itself has
  a deadline: fenced waits for it with no time limit of its own;
* stdin keys are never exported as environment variables (upstream exported
  every unknown key, ``passwd`` included, to stonith_admin);
* stonith_admin's own error text is printed (``Failed: ...`` on stderr) next
  to the classic ``failed: <node> <rc>`` line; a timeout says ``timed out``;
* ``status`` asks which registered devices can fence the node and succeeds
  only if at least one can (upstream's ``stonith_admin --list`` answered 0
  even with no device); it never answers 2, because Pacemaker does not report
  a node's power state.  ``monitor`` fails when no device is registered;
  ``list`` prints the nodes the registered devices can fence;
* it refuses to run as a Pacemaker fence device (PCMK_service set by the
  fencer), where it would ask the fencer to wait on itself;
* the metadata advertises the real actions (on, off, reboot, status, list,
  monitor), with reboot the default; the old names (reset, stat, enable,
  disable, poweron, poweroff) are still accepted.
"""

from __future__ import annotations

import sys

from ocf_lib import codes
from ocf_lib.fence import (
    FenceAgent,
    FenceContext,
    FenceError,
    opt_action,
    opt_delay,
    opt_output,
)
from ocf_lib.params import DURATION, STRING, Param

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from ocf_lib.cluster import Fencer, FenceResult


def _notice(ctx: FenceContext, message: str) -> None:
    """Upstream logs to syslog as daemon.notice; so do we (and ``ctx.log`` writes it
    to debug_file, which it opened safely, when one is set)."""
    from ocf_lib.log import Logger

    log = Logger(f"fence_pcmk[{ctx.action}]", {"HA_LOGFACILITY": "daemon"})
    log.info(message)
    ctx.log.debug(message)


def perform(ctx: FenceContext) -> int:
    from ocf_lib.cluster import Fencer
    from ocf_lib.deadline import Deadline

    if ctx.env.get("PCMK_service") in ("pacemaker-fenced", "stonith-ng"):
        # Configured as a Pacemaker fence device: the fencer would ask itself and
        # wait on itself.  Fail every action, so the device never looks usable.
        raise FenceError("fence_pcmk is for CMAN's cluster.conf; it must not be a "
                         "Pacemaker fence device")
    timeout: float = ctx.options.timeout
    # The Session flow's budget does not fit a redirect: ours is stonith_admin's
    # timeout plus the fencer's own margin, so its answer arrives before our limit.
    ctx.deadline = Deadline(timeout * 1.2 + 10.0)
    fencer = Fencer(ctx.run, tag=ctx.options.tag)
    if ctx.action in ("reboot", "off", "on"):
        return _fence(ctx, fencer, timeout)
    if ctx.action == "status":
        return _status(ctx, fencer, timeout)
    return _monitor_or_list(ctx, fencer, timeout)


def _failed(res: FenceResult) -> FenceError:
    reason = res.reason()
    if res.timed_out and "timed out" not in reason.lower():
        reason += " (timed out)"
    return FenceError(reason)


def _fence(ctx: FenceContext, fencer: Fencer, timeout: float) -> int:
    target, action = ctx.plug or "", ctx.action
    _notice(ctx, f"Requesting Pacemaker fence {target} ({action})")
    res = fencer.reachable(timeout=min(timeout, 10.0))  # fail at once if it is down
    if res.ok:
        res = fencer.fence(target, action, timeout=ctx.deadline.limit(timeout) or timeout,
                           tolerance=ctx.options.tolerance)
    if res.ok:
        if not ctx.quiet:
            sys.stdout.write(f"success: {target} 0\n")
        return codes.FENCE_OK
    _notice(ctx, f"Call to fence {target} ({action}) failed with rc={res.rc}")
    if not ctx.quiet:
        sys.stdout.write(f"failed: {target} {res.rc}\n")
    raise _failed(res)


def _status(ctx: FenceContext, fencer: Fencer, timeout: float) -> int:
    """0 when some registered device can fence the node; never 2 (no power state)."""
    target = ctx.plug or ""
    res, devices = fencer.devices_for(target, timeout=timeout)
    if not res.ok:
        raise _failed(res)
    if not devices:
        raise FenceError(f"no fence device registered in Pacemaker can fence {target}")
    if not ctx.quiet:
        sys.stdout.write(f"{target} can be fenced by: {', '.join(devices)}\n")
    return codes.FENCE_OK


def _monitor_or_list(ctx: FenceContext, fencer: Fencer, timeout: float) -> int:
    res, devices = fencer.registered(timeout=timeout)
    if not res.ok:
        raise _failed(res)
    if not devices:
        raise FenceError("Pacemaker has no fence device registered")
    if ctx.action == "monitor":
        return codes.FENCE_OK
    nodes: set[str] = set()
    for device in devices:
        res, found = fencer.targets(device, timeout=ctx.deadline.limit(timeout) or timeout)
        if not res.ok:
            raise FenceError(f"listing the targets of {device}: {res.reason()}")
        nodes.update(found)
    for node in sorted(nodes):
        sys.stdout.write(f"{node},\n" if ctx.action == "list" else f"{node},,UNKNOWN\n")
    return codes.FENCE_OK


agent = FenceAgent(
    "fence_pcmk",
    shortdesc="Helper that lets CMAN's fenced fence nodes through Pacemaker",
    longdesc=(
        "fence_pcmk passes CMAN's fencing requests to Pacemaker's fencer with stonith_admin, "
        "so that fenced, dlm_controld and gfs_controld rely on the fence devices configured "
        "in Pacemaker. Configure it in cluster.conf only (one fencedevice with "
        'agent="fence_pcmk" and, per node, a device with port set to the node name), never '
        "as a Pacemaker fence device. It succeeds only when stonith_admin reports that the "
        "node was fenced."
    ),
    vendor_url="https://www.clusterlabs.org",
    params=[
        opt_action("reboot"),
        Param("plug", STRING, getopt="n", aliases=("port",), order=1,
              shortdesc="Name of the node to fence, as Pacemaker knows it "
                        "(when not set: the node fenced asks for, nodename)"),
        Param("timeout", DURATION, default="120", getopt="t", order=1,
              shortdesc="Seconds Pacemaker may take to fence the node "
                        "(stonith_admin --timeout)"),
        Param("tolerance", DURATION, default="5", order=1,
              shortdesc="Succeed without fencing again when the node was fenced this "
                        "recently (stonith_admin --tolerance)"),
        Param("tag", STRING, default="cman", order=1,
              shortdesc="Client name shown in Pacemaker's logs and fencing history"),
        *opt_output(),
        opt_delay(),
    ],
    perform=perform,
    multi_port=True,
    has_list=True,
)
