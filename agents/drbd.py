"""ocf:pyha:drbd: a DRBD resource as a promotable clone (compatible with ocf:linbit:drbd).

Same parameters, defaults and promotion-score semantics as drbd-utils'
``drbd.ocf`` (the four ``adjust_master_score`` values, the attribute deleted
rather than set to 0, ``remove_master_score_if_peer_primary``...).  The real
``drbdadm`` does all configuration work; the state comes straight from the
kernel: ``drbdsetup events2 --now --statistics <res>`` with DRBD 9, the
``/proc/drbd`` table with DRBD 8.4 (the version is read once per run from the
first line of ``/proc/drbd``).

Differences from upstream, on purpose:

* monitor returns 9 (failed Primary) when this node is Primary without
  access to any UpToDate copy of the data (local disk gone and no UpToDate
  peer): the application sees I/O errors, so Pacemaker should recover.
  Upstream reports 8 there.
* a value upstream read leniently works the same, with a warning; a word
  that would silently switch off ``stop_outdates_secondary`` or
  ``remove_master_score_if_peer_primary`` is refused (rc 6); see docs/drbd.md.
* every crm_attribute call is bounded by the action's deadline (drbd-utils
  9.22 calls crm_master without a limit); scores are written with
  ``crm_attribute -N <node> -n master-<instance> -l reboot`` so Pacemaker
  1.1 to 3.x all understand them.  A recurring monitor skips the write when
  it wrote the same value less than a minute ago (probes, start, promote,
  demote and notify always write).
* stop ignores every parameter but ``drbd_resource``; without a usable
  name it answers 0 only when the kernel has no DRBD resource configured
  at all, and fails otherwise (docs/drbd.md).
* stacked resources (``stacked-on-top-of``) are refused with rc 6 and a
  clear reason, rather than run through ``drbdadm -S``.
* a failed promote that DRBD refused for good (exit 17: no UpToDate data)
  returns at once instead of sleeping until 15 s have passed.
* demote of a stopped resource returns 7 (drbd-utils HEAD), not 1.
* the ``crm_resource --locate`` parser accepts "Promoted" (Pacemaker >= 2.1)
  as well as "Master" (the 9.22 agent only knew "Master").
* monitor asks only the kernel, so a missing or broken drbd.conf cannot make
  a running Primary look stopped; with 8.4 the resource's minors come from
  ``drbdadm sh-minor`` once and are kept in ``$HA_RSCTMP``.  (upstream runs
  ``drbdadm --version`` and ``sh-dev`` on every monitor.)
"""

from __future__ import annotations

import os

from ocf_lib import codes
from ocf_lib.drbdtool import NEED_UPTODATE_DATA, Resource, decimal, why
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import (
    GUARD_BOOLEAN,
    INTEGER,
    LENIENT_BOOLEAN,
    STRING,
    Param,
    ParamError,
    ParamType,
    Tolerant,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ocf_lib.params import Values

_NAME_CHARS = frozenset("-%+./0123456789:=@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


class _DrbdName(ParamType):
    doc = "DRBD resource name"

    def convert(self, raw: str, name: str) -> str:
        if not raw or not set(raw) <= _NAME_CHARS:
            raise ParamError(name, raw, "may only contain letters, digits and -%+./:=@_")
        if raw.startswith("-"):  # drbdadm would read it as an option
            raise ParamError(name, raw, "must not begin with '-'")
        if raw == "all":  # drbdadm's word for every resource
            raise ParamError(name, raw, "is drbdadm's keyword for every resource, not a name")
        return raw


class _Scores(ParamType):
    doc = "four non-decreasing integers"

    def convert(self, raw: str, name: str) -> tuple[int, int, int, int]:
        scores = [decimal(w) for w in raw.split()]
        if len(scores) != 4 or None in scores:
            raise ParamError(name, raw, "must be four integers, e.g. '0 10 1000 10000'")
        a, b, c, d = (int(s) for s in scores if s is not None)
        if not a <= b <= c <= d:
            raise ParamError(name, raw, "must not decrease from left to right")
        return a, b, c, d


# The declared default of adjust_master_score, and what a malformed list is taken as.
_SCORES = "0 10 1000 10000"


class _PeerPrimary(ParamType):
    doc = "false, true or unexpected"

    def convert(self, raw: str, name: str) -> str:
        word = raw.strip().lower()
        if word in ("true", "yes", "1", "on", "ja"):  # ocf_is_true's words
            return "true"
        if word in ("false", "no", "0", "off"):
            return "false"
        if word == "unexpected":
            return word
        # Upstream reads any other word as false, which would let this node be promoted
        # while a peer is Primary: refused rather than guessed.
        raise ParamError(name, raw, "is not one of: false, true, unexpected (a safeguard "
                                    "against promoting beside a Primary peer is not turned "
                                    "off on a guess)")


class _Version(ParamType):
    doc = "version x.y.z"

    def convert(self, raw: str, name: str) -> tuple[int, ...]:
        parts = raw.strip().split(".")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ParamError(name, raw, "is not a version like 9.0.0")
        return tuple(int(p) for p in parts)


agent = ResourceAgent(
    "drbd",
    shortdesc="Manages a DRBD device as a promotable clone",
    longdesc=(
        "Brings a DRBD resource up (Secondary) on start, makes it Primary on promote and "
        "tells Pacemaker, through the master-<instance> node attribute, how good the local "
        "copy of the data is so that the best node is promoted. Compatible with "
        "ocf:linbit:drbd; configure it as a promotable clone with notify=true. "
        "Works with DRBD 9 and 8.4 kernel modules."
    ),
    promotable=True,
    params=[
        Param("drbd_resource", _DrbdName(), required=True, unique=True, identifies=True,
              shortdesc="drbd resource name",
              longdesc="The name of the DRBD resource from the drbd.conf file."),
        Param("drbdconf", STRING, default="/etc/drbd.conf",
              shortdesc="Path to drbd.conf",
              longdesc="Full path to the drbd.conf file (drbdadm -c)."),
        Param("adjust_master_score",
              Tolerant(_Scores(), _SCORES, "the upstream agent uses its default then"),
              default=_SCORES,
              shortdesc="master score adjustments",
              longdesc="Four promotion scores: only locally Consistent; only a peer has "
                       "UpToDate data; locally UpToDate but the peer's state is unknown; "
                       "as good as it gets. A score of 0 or less removes the attribute, "
                       "so the node is not promoted at all."),
        Param("stop_outdates_secondary", GUARD_BOOLEAN, default="false",
              shortdesc="outdate a secondary on stop",
              longdesc="On stop (and in post notifications when the peer is unreachable), "
                       "outdate the local data if another node is Primary according to "
                       "Pacemaker. Off by default: old Pacemaker passed stale notify data."),
        Param("ignore_missing_notifications", LENIENT_BOOLEAN, default="false",
              shortdesc="ignore missing notifications",
              longdesc="Run without notify=true. Not recommended: notifications let the "
                       "instances re-connect and refresh their scores after peer changes."),
        Param("wfc_timeout",
              Tolerant(INTEGER(0), "0", "the upstream agent then does not wait"),
              default="5",
              shortdesc="wait for connection timeout",
              longdesc="After start, wait up to this many seconds for the peers to "
                       "connect; 0 does not wait."),
        Param("remove_master_score_if_peer_primary", _PeerPrimary(), default="false",
              shortdesc="remove master score if peer is primary",
              longdesc="true: remove the local promotion score while connected to a Primary "
                       "peer with UpToDate data. unexpected: only when Pacemaker does not "
                       "know that peer as promoted."),
        Param("fail_promote_early_if_peer_primary", LENIENT_BOOLEAN, default="false",
              shortdesc="fail promote if peer is primary",
              longdesc="Fail promote after the first refused attempt when a Primary peer "
                       "unknown to Pacemaker is seen, instead of retrying until the timeout."),
        Param("unfence_if_all_uptodate", LENIENT_BOOLEAN, default="false",
              shortdesc="unfence peer when all disks are UpToDate",
              longdesc="When Primary and every local and peer disk is UpToDate, run "
                       "'drbdadm unfence-peer' to remove a fencing constraint."),
        Param("unfence_extra_args", STRING,
              default="--quiet --flock-required --flock-timeout 0 --unfence-only-if-owner-match",
              shortdesc="extra arguments for the unfence handler",
              longdesc="Passed to the unfence-peer handler in UNFENCE_EXTRA_ARGS."),
        Param("require_drbd_module_version_ge", _Version(), default="8.0.0",
              shortdesc="minimum DRBD module version",
              longdesc="Fail with 'not installed' if the loaded module is older."),
        Param("require_drbd_module_version_lt", _Version(), default="10.0.0",
              shortdesc="DRBD module version must be below",
              longdesc="Fail with 'not installed' if the loaded module is this version or "
                       "newer."),
        Param("connect_only_after_promote", LENIENT_BOOLEAN, default="false",
              shortdesc="connect only after promote",
              longdesc="Stay disconnected until promoted, then connect (for stacked setups "
                       "without lower-level fencing)."),
    ],
)


@agent.validator
def _version_range(values: Values) -> Iterable[ParamError]:
    ge, lt = values.require_drbd_module_version_ge, values.require_drbd_module_version_lt
    if ge is not None and lt is not None and not ge < lt:
        yield ParamError("require_drbd_module_version_lt", ".".join(map(str, lt)),
                         "must be above require_drbd_module_version_ge "
                         f"({'.'.join(map(str, ge))}): no module could satisfy both")


@agent.proves_absent
def _no_drbd_resource_at_all(ctx: Context) -> bool:
    """Without a usable resource name, only a kernel that has no DRBD resource
    configured at all proves that nothing this resource started still runs."""
    return Resource(ctx).nothing_configured()


# -- actions ------------------------------------------------------------------------


@agent.action("start", timeout="240s")
def start(ctx: Context) -> int:
    drbd = Resource(ctx)
    devices = drbd.check_config()
    drbd.load_module()
    drbd.check_module()
    st = drbd.status()
    if not st.configured:
        r = drbd.tools.adjust(drbd.name, skip_net=ctx.params.connect_only_after_promote,
                              timeout=ctx.deadline.soft_remaining())
        if r.rc != 0:
            ctx.fail(codes.ERR_GENERIC, f"drbdadm adjust {drbd.name} failed: {why(r)}")
    elif st.primary:
        ctx.log.info(f"{drbd.name} was already Primary at start; demoting it")
        drbd.tools.role("secondary", drbd.name)
    drbd.wait_devices(devices)
    st = drbd.wait_connected(float(ctx.params.wfc_timeout))
    if not st.configured:
        ctx.fail(codes.ERR_GENERIC, f"{drbd.name} is not configured in the kernel after adjust")
    drbd.update_score(st)
    ctx.log.info(f"started: {st.describe()}")
    return codes.SUCCESS


@agent.action("stop", timeout="100s")
def stop(ctx: Context) -> int:
    drbd = Resource(ctx)
    if drbd.kernel() is None:
        drbd.update_score(None)
        return codes.SUCCESS
    conf_ok = os.access(ctx.params.drbdconf, os.R_OK)
    while True:
        st = drbd.status()
        if not st.configured:
            break
        verb = "secondary" if st.primary else "down"
        r = drbd.tools.role(verb, drbd.name) if conf_ok else drbd.tools.setup(verb, drbd.name)
        if r.rc != 0 and conf_ok:
            # drbd.conf may no longer describe the resource; the kernel still knows it.
            r = drbd.tools.setup(verb, drbd.name)
        if r.rc != 0:
            drbd.retry("stop", r)
    drbd.outdate_if_peer_promoted(st)
    drbd.update_score(None)
    return codes.SUCCESS


@agent.action("promote", timeout="90s")
def promote(ctx: Context) -> int:
    drbd = Resource(ctx)
    drbd.check_config()
    first = True
    while True:
        st = drbd.status()
        if not st.configured:
            ctx.fail(codes.ERR_GENERIC, f"cannot promote {drbd.name}: it is not started")
        if st.primary:
            break
        r = drbd.tools.role("primary", drbd.name)
        if r.rc == NEED_UPTODATE_DATA:
            drbd.update_score(drbd.status())
            ctx.fail(codes.ERR_GENERIC, "Refusing to be promoted to Primary without access "
                     f"to UpToDate data ({why(r)})")
        if r.rc != 0:
            if (not first and ctx.params.fail_promote_early_if_peer_primary
                    and st.peer_primary() and not drbd.pcmk_knows_primary()):
                drbd.update_score(None)
                ctx.fail(codes.ERR_GENERIC, "Peer node already/still Primary")
            drbd.retry("promote", r, say=True)
        first = False
    if ctx.params.connect_only_after_promote:
        drbd.tools.adjust(drbd.name, verbose=True)
    drbd.update_score(drbd.status())
    return codes.SUCCESS


@agent.action("demote", timeout="90s")
def demote(ctx: Context) -> int:
    drbd = Resource(ctx)
    drbd.check_config()
    while True:
        st = drbd.status()
        if not st.configured:
            ctx.log.error(f"demote: {drbd.name} is not running")
            return codes.NOT_RUNNING
        if not st.primary:
            break
        r = drbd.tools.role("secondary", drbd.name)
        if r.rc != 0:
            drbd.retry("demote", r)
    drbd.update_score(st)
    return codes.SUCCESS


@agent.action("notify", timeout="90s")
def notify(ctx: Context) -> int:
    from ocf_lib.notify import Notification

    drbd = Resource(ctx)
    drbd.check_config()
    n = Notification(ctx.env)
    ctx.log.debug(f"notify {n.kind}-{n.operation}")
    if n.operation == "start":
        # A peer is (re)starting: make sure we try to connect to it.
        if not ctx.params.connect_only_after_promote:
            drbd.tools.adjust(drbd.name, verbose=True)
    elif n.kind == "post":
        st = drbd.status()
        drbd.update_score(st)
        if st.configured and st.peer_disk_unknown():
            drbd.outdate_if_peer_promoted(st)
    return codes.SUCCESS


@agent.action("monitor", timeout="20s", interval="20s", role="Unpromoted",
              more=[{"timeout": "20s", "interval": "10s", "role": "Promoted"}])
def monitor(ctx: Context) -> int:
    drbd = Resource(ctx)
    st = drbd.status()
    if not st.configured:
        if not ctx.is_probe:
            drbd.update_score(None, cached_ok=True)
        return codes.NOT_RUNNING
    drbd.check_module()
    drbd.update_score(st, cached_ok=not ctx.is_probe)
    if (ctx.params.unfence_if_all_uptodate and st.primary and st.local_all("UpToDate")
            and st.peers and all(st.peer_all_uptodate(q) for q in st.peers.values())):
        drbd.tools.unfence_peer(drbd.name, ctx.params.unfence_extra_args)
    if any(d is not None for p in st.peers.values() for d in p["done"]):
        ctx.log.info(f"resync: {st.describe()}")
    if st.primary:
        if not st.has_uptodate_data():
            ctx.fail(codes.FAILED_PROMOTED, f"{drbd.name} is Primary without access to "
                     f"UpToDate data: {st.describe()}")
        return codes.RUNNING_PROMOTED
    return codes.SUCCESS


@agent.action("reload", timeout="30s")
def reload(ctx: Context) -> int:
    drbd = Resource(ctx)
    drbd.check_config()
    if not drbd.status().configured:
        return codes.ERR_GENERIC
    drbd.tools.adjust(drbd.name)
    drbd.update_score(drbd.status())
    return codes.SUCCESS


@agent.action("validate-all", timeout="30s")
def validate_all(ctx: Context) -> int:
    drbd = Resource(ctx)
    drbd.check_config()
    drbd.check_module()
    return codes.SUCCESS
