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
import time

from ocf_lib import codes, sysroot
from ocf_lib.drbd import (
    PROC,
    Status,
    UnknownVersion,
    configured_minors,
    kernel_version,
    minors_in_sh_status,
    parse_events2,
    parse_proc,
    parse_version,
    resources_in_events2,
)
from ocf_lib.drbdtool import NEED_UPTODATE_DATA, NO_SUCH_RESOURCE, DrbdTools, why
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


def _decimal(word: str) -> int | None:
    """An ASCII decimal integer with an optional sign, else None (int() takes '²', '1_0')."""
    digits = word[1:] if word[:1] in ("-", "+") else word
    if not digits.isascii() or not digits.isdigit():
        return None
    return int(word, 10)


class _Scores(ParamType):
    doc = "four non-decreasing integers"

    def convert(self, raw: str, name: str) -> tuple[int, int, int, int]:
        scores = [_decimal(w) for w in raw.split()]
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
    version = _kernel(ctx)
    if version is None:
        return True  # module not loaded
    if version >= (9, 0, 0):
        r = _tools(ctx).events2(statistics=False)
        return r.rc == 0 and resources_in_events2(r.out) == set()
    with open(sysroot.path(PROC), encoding="utf-8") as f:
        return configured_minors(f.read()) == []


_TRANSITIONAL = ("Attaching", "Negotiating")
_SCORE_REFRESH = 60.0  # seconds a recurring monitor may trust the last score it wrote


# -- the kernel's view ------------------------------------------------------------


def _kernel(ctx: Context, refresh: bool = False) -> tuple[int, int, int] | None:
    """The loaded module's version (None: not loaded); an unreadable one fails the action:
    guessing 8.4 for a DRBD 9 kernel would report a running resource as stopped."""
    try:
        return kernel_version(refresh)
    except UnknownVersion as exc:
        ctx.fail(codes.ERR_GENERIC, f"{exc}; cannot tell DRBD 9 from 8.4, so the "
                 "resource's state is unknown")


def _minors(ctx: Context, res: str) -> list[int]:
    """The resource's minors (8.4): from drbd.conf once (kept in a state file); when
    drbdadm cannot say (drbd.conf missing or changed), from the kernel."""
    name = f"drbd-{res}.minors"
    cached = (ctx.state.read(name) or "").split()
    if cached and all(m.isascii() and m.isdigit() for m in cached):
        return [int(m) for m in cached]
    tools = _tools(ctx)
    r = tools.minors(res)
    if r.rc != 0:
        k = tools.kernel_minors(res)
        if k.rc not in (0, NO_SUCH_RESOURCE):
            ctx.fail(codes.ERR_GENERIC, f"cannot find the minors of {res}: drbdadm sh-minor: "
                     f"{why(r)}; drbdsetup sh-status: {why(k)}")
        return minors_in_sh_status(k.out, res) if k.rc == 0 else []
    minors = [int(m) for m in r.out.split() if m.isascii() and m.isdigit()]
    try:
        ctx.state.write(name, " ".join(map(str, minors)) + "\n", 0o644)
    except OSError as exc:
        ctx.log.warning(f"cannot cache minors: {exc}")
    return minors


def status9(ctx: Context, res: str) -> Status:
    r = _tools(ctx).events2(res)
    if r.rc == NO_SUCH_RESOURCE:
        return Status()
    if r.rc != 0:
        ctx.fail(codes.ERR_GENERIC, f"drbdsetup events2 failed: {why(r)}")
    return parse_events2(r.out, res)


def status84(ctx: Context, res: str) -> Status:
    with open(sysroot.path(PROC), encoding="utf-8") as f:
        return parse_proc(f.read(), set(_minors(ctx, res)))


def get_status(ctx: Context, res: str) -> Status:
    version = _kernel(ctx)
    if version is None:
        return Status()
    if version >= (9, 0, 0):
        return status9(ctx, res)
    return status84(ctx, res)


# -- promotion score ----------------------------------------------------------------


def wanted_score(ctx: Context, st: Status) -> int | None | bool:
    """The master score for this state: an int, None (delete) or False (leave alone)."""
    p = ctx.params
    if not st.configured or not st.quorum:
        return None
    only_consistent, only_remote, local_ok, as_good = p.adjust_master_score
    if (p.remove_master_score_if_peer_primary != "false" and not st.primary
            and any(q["role"] == "Primary" and st.peer_all_uptodate(q)
                    for q in st.peers.values())):
        if p.remove_master_score_if_peer_primary == "true" or not _pcmk_knows_primary(ctx):
            return None
    if st.diskless_client():
        if (st.primary and st.some_peer_all_uptodate()) or all(
                d == "UpToDate" for q in st.peers.values() for d in q["disks"]):
            return as_good - 1
        return local_ok - 1 if st.some_peer_all_uptodate() else None
    if st.local_all("UpToDate"):
        if st.primary:
            return as_good
        return local_ok if st.peer_disk_unknown() else as_good
    if st.some_peer_all_uptodate():
        return only_remote
    if any(d in _TRANSITIONAL for d in st.disks):
        return False
    if st.local_all("Consistent"):
        return only_consistent
    return None


def _pcmk_knows_primary(ctx: Context) -> bool:
    """Pacemaker has another node's instance promoted (unknown counts as no)."""
    from ocf_lib.cluster import ClusterTools

    where = ClusterTools(ctx.run).locate(ctx.instance, timeout=10)
    if where is None:
        ctx.log.debug(f"crm_resource --locate {ctx.instance} did not answer")
    return any(role == "Promoted" and node != ctx.node for node, role in where or ())


def update_score(ctx: Context, st: Status, *, cached_ok: bool = False) -> None:
    from ocf_lib.cluster import AttributeToolError, PromotionScore

    score = wanted_score(ctx, st)
    if score is False:
        return
    value = None if score is None or int(score) <= 0 else int(score)
    shown = "absent" if value is None else str(value)
    memo = f"drbd-{ctx.instance}.score"
    if cached_ok:
        last = (ctx.state.read(memo) or "").split()
        if len(last) == 2 and last[0] == shown and last[1].isascii() and last[1].isdigit() \
                and time.time() - int(last[1]) < _SCORE_REFRESH:
            return
    seam = PromotionScore(ctx.run, ctx.node, ctx.instance,
                          timeout=min(10.0, max(1.0, ctx.deadline.soft_remaining())))
    try:
        if value is None:
            seam.delete()
        else:
            seam.set(value)
    except AttributeToolError as exc:
        ctx.log.warning(f"promotion score: {exc}")
        if os.path.isdir(ctx.state.path):
            ctx.state.remove(memo)  # unknown now: the next monitor must write again
        return
    try:
        ctx.state.write(memo, f"{shown} {time.time():.0f}\n", 0o644)
    except OSError:
        pass


# -- setup and validation ----------------------------------------------------------------


def _tools(ctx: Context) -> DrbdTools:
    return DrbdTools(ctx.run, ctx.params.drbdconf)


def _meta_int(ctx: Context, *names: str, default: int) -> int:
    for name in names:
        raw = ctx.meta(name)
        if raw:
            value = _decimal(raw.strip())
            if value is None:
                ctx.fail(codes.ERR_CONFIGURED, f"meta attribute {name.replace('_', '-')} "
                         f"'{raw}' is not an integer")
            return value
    return default


def check_config(ctx: Context) -> list[str]:
    """Everything start/promote/validate need; returns the resource's device paths."""
    p, res = ctx.params, ctx.params.drbd_resource
    if not os.path.isfile(p.drbdconf) or not os.access(p.drbdconf, os.R_OK):
        ctx.fail(codes.ERR_INSTALLED, f"drbdconf {p.drbdconf} is missing, not a file, or "
                 "unreadable")
    tools = _tools(ctx)
    r = tools.devices(res)
    if r.rc != 0:
        stacked = tools.devices(res, stacked=True)
        if stacked.rc == 0:
            ctx.fail(codes.ERR_CONFIGURED, f"DRBD resource {res} is stacked "
                     "(stacked-on-top-of); pyha's drbd agent does not support stacked "
                     "resources, use ocf:linbit:drbd for it")
        ctx.fail(codes.ERR_INSTALLED, f"DRBD resource {res} not found in {p.drbdconf}: "
                 f"{why(r)}")
    if ctx.action not in ("stop", "monitor", "validate-all") and \
            not p.ignore_missing_notifications:
        from ocf_lib import notify

        if not notify.configured(ctx.env):
            ctx.fail(codes.ERR_CONFIGURED, "notifications are not enabled: set notify=true on "
                     "the clone (or ignore_missing_notifications=true)")
    clone_max = _meta_int(ctx, "clone_max", default=2)
    node_max = _meta_int(ctx, "clone_node_max", default=1)
    pmax = _meta_int(ctx, "promoted_max", "master_max", default=1)
    pnode_max = _meta_int(ctx, "promoted_node_max", "master_node_max", default=1)
    v9 = (_kernel(ctx) or (9, 0, 0)) >= (9, 0, 0)
    if node_max != 1 or pnode_max != 1 or pmax > 2 or (clone_max > 2 and (not v9 or pmax == 2)):
        ctx.fail(codes.ERR_CONFIGURED, "meta parameter misconfigured: need clone-node-max=1, "
                 "promoted-node-max=1, promoted-max<=2, and clone-max<=2 unless DRBD 9 with "
                 f"promoted-max 1 (have {clone_max}/{node_max}/{pmax}/{pnode_max})")
    if pmax == 2 and ctx.action in ("start", "promote"):
        dump = tools.dump(res)
        if not any(line.strip() in ("allow-two-primaries;", "allow-two-primaries yes;")
                   for line in dump.out.splitlines()):
            ctx.fail(codes.ERR_CONFIGURED, f"promoted-max is 2 but DRBD resource {res} does "
                     "not set allow-two-primaries")
    return [d for d in r.out.split() if d.startswith("/")]


def check_module(ctx: Context, version: tuple[int, int, int] | None = None) -> None:
    """The loaded (or, before loading, the installed) module must be in the required range."""
    version = version or _kernel(ctx)
    if version is None:
        return
    ge, lt = ctx.params.require_drbd_module_version_ge, ctx.params.require_drbd_module_version_lt
    shown = ".".join(map(str, version))
    if version < ge or version >= lt:
        ctx.fail(codes.ERR_INSTALLED, f"DRBD module {shown} is outside the required range "
                 f"[{'.'.join(map(str, ge))}, {'.'.join(map(str, lt))})")


def load_module(ctx: Context) -> None:
    if _kernel(ctx) is not None:
        return
    tools = _tools(ctx)
    info = tools.installed_version()
    if info.rc == 0:
        check_module(ctx, parse_version(info.out))  # refuse before loading anything
    parms = tools.module_parameters()
    r = tools.load_module(parms.out.split() if parms.rc == 0 else [])
    if r.rc != 0:
        ctx.fail(codes.ERR_INSTALLED, f"cannot load the drbd module: {why(r)}")
    if _kernel(ctx, refresh=True) is None:
        ctx.fail(codes.ERR_INSTALLED, "modprobe drbd succeeded but /proc/drbd did not appear")


# -- actions ------------------------------------------------------------------------


@agent.action("start", timeout="240s")
def start(ctx: Context) -> int:
    res = ctx.params.drbd_resource
    devices = check_config(ctx)
    load_module(ctx)
    check_module(ctx)
    st = get_status(ctx, res)
    if not st.configured:
        r = _tools(ctx).adjust(res, skip_net=ctx.params.connect_only_after_promote,
                               timeout=ctx.deadline.soft_remaining())
        if r.rc != 0:
            ctx.fail(codes.ERR_GENERIC, f"drbdadm adjust {res} failed: {why(r)}")
    elif st.primary:
        ctx.log.info(f"{res} was already Primary at start; demoting it")
        _tools(ctx).role("secondary", res)
    _wait_devices(ctx, devices)
    st = _wait_connected(ctx, res, float(ctx.params.wfc_timeout))
    if not st.configured:
        ctx.fail(codes.ERR_GENERIC, f"{res} is not configured in the kernel after adjust")
    update_score(ctx, st)
    ctx.log.info(f"started: {st.describe()}")
    return codes.SUCCESS


def _wait_devices(ctx: Context, devices: list[str]) -> None:
    """udev creates /dev/drbdN asynchronously; users of the device need it."""
    import stat

    while True:
        missing = []
        for dev in devices:
            try:
                if not stat.S_ISBLK(os.stat(sysroot.path(dev)).st_mode):
                    missing.append(dev)
            except FileNotFoundError:
                missing.append(dev)
        if not missing:
            return
        if ctx.deadline.soft_remaining() <= 0.5:
            ctx.fail(codes.ERR_GENERIC, f"device nodes did not appear: {' '.join(missing)}")
        time.sleep(0.1)


def _wait_connected(ctx: Context, res: str, wait: float) -> Status:
    end = time.monotonic() + min(wait, max(0.0, ctx.deadline.soft_remaining() - 5))
    while True:
        st = get_status(ctx, res)
        if (not st.configured or ctx.params.connect_only_after_promote
                or (st.peers and all(p["conn"] not in ("Connecting", "StandAlone",
                                                       "WFConnection", "Unknown")
                                     for p in st.peers.values()))
                or time.monotonic() >= end):
            return st
        time.sleep(0.2)


@agent.action("stop", timeout="100s")
def stop(ctx: Context) -> int:
    res = ctx.params.drbd_resource
    if _kernel(ctx) is None:
        update_score(ctx, Status())
        return codes.SUCCESS
    tools = _tools(ctx)
    conf_ok = os.access(ctx.params.drbdconf, os.R_OK)
    last = ""
    while True:
        st = get_status(ctx, res)
        if not st.configured:
            break
        verb = "secondary" if st.primary else "down"
        r = tools.role(verb, res) if conf_ok else tools.setup(verb, res)
        if r.rc != 0 and conf_ok:
            # drbd.conf may no longer describe the resource; the kernel still knows it.
            r = tools.setup(verb, res)
        if r.rc != 0:
            last = why(r)
            if ctx.deadline.soft_remaining() < 2:
                ctx.fail(codes.ERR_GENERIC, f"cannot stop {res}: {last}")
            time.sleep(1)
    _maybe_outdate_self(ctx, st)
    update_score(ctx, Status())
    return codes.SUCCESS


def _maybe_outdate_self(ctx: Context, st: Status) -> None:
    """With stop_outdates_secondary: outdate our data if another node is still Primary."""
    if not ctx.params.stop_outdates_secondary:
        return
    from ocf_lib.notify import Notification

    n = Notification(ctx.env)
    # notify_promote_uname is ignored on purpose: in a transition that demotes
    # here and promotes elsewhere, outdating would break that promote.
    others = [u for u in n.unames("promoted") if u != ctx.node]
    if not others or others[0] in n.unames("stop"):
        return
    if st.primary:
        ctx.log.error(f"both {ctx.node} and {others[0]} are Primary for "
                     f"{ctx.params.drbd_resource} but not connected: not outdating")
        return
    ctx.log.warning(f"outdating {ctx.params.drbd_resource}: {others[0]} is still promoted")
    _tools(ctx).role("outdate", ctx.params.drbd_resource)


@agent.action("promote", timeout="90s")
def promote(ctx: Context) -> int:
    res = ctx.params.drbd_resource
    check_config(ctx)
    first = True
    while True:
        st = get_status(ctx, res)
        if not st.configured:
            ctx.fail(codes.ERR_GENERIC, f"cannot promote {res}: it is not started")
        if st.primary:
            break
        r = _tools(ctx).role("primary", res)
        if r.rc == NEED_UPTODATE_DATA:
            update_score(ctx, get_status(ctx, res))
            ctx.fail(codes.ERR_GENERIC, "Refusing to be promoted to Primary without access "
                     f"to UpToDate data ({why(r)})")
        if r.rc != 0:
            if (not first and ctx.params.fail_promote_early_if_peer_primary
                    and st.peer_primary() and not _pcmk_knows_primary(ctx)):
                update_score(ctx, Status())
                ctx.fail(codes.ERR_GENERIC, "Peer node already/still Primary")
            if ctx.deadline.soft_remaining() < 2:
                ctx.fail(codes.ERR_GENERIC, f"cannot promote {res}: {why(r)}")
            ctx.log.info(f"promote refused ({why(r)}); retrying")
            time.sleep(1)
        first = False
    if ctx.params.connect_only_after_promote:
        _tools(ctx).adjust(res, verbose=True)
    update_score(ctx, get_status(ctx, res))
    return codes.SUCCESS


@agent.action("demote", timeout="90s")
def demote(ctx: Context) -> int:
    res = ctx.params.drbd_resource
    check_config(ctx)
    while True:
        st = get_status(ctx, res)
        if not st.configured:
            ctx.log.error(f"demote: {res} is not running")
            return codes.NOT_RUNNING
        if not st.primary:
            break
        r = _tools(ctx).role("secondary", res)
        if r.rc != 0:
            if ctx.deadline.soft_remaining() < 2:
                ctx.fail(codes.ERR_GENERIC, f"cannot demote {res}: {why(r)}")
            time.sleep(1)
    update_score(ctx, st)
    return codes.SUCCESS


@agent.action("notify", timeout="90s")
def notify(ctx: Context) -> int:
    from ocf_lib.notify import Notification

    res = ctx.params.drbd_resource
    check_config(ctx)
    n = Notification(ctx.env)
    ctx.log.debug(f"notify {n.kind}-{n.operation}")
    if n.operation == "start":
        # A peer is (re)starting: make sure we try to connect to it.
        if not ctx.params.connect_only_after_promote:
            _tools(ctx).adjust(res, verbose=True)
    elif n.kind == "post":
        st = get_status(ctx, res)
        update_score(ctx, st)
        if st.configured and st.peer_disk_unknown():
            _maybe_outdate_self(ctx, st)
    return codes.SUCCESS


@agent.action("monitor", timeout="20s", interval="20s", role="Unpromoted",
              more=[{"timeout": "20s", "interval": "10s", "role": "Promoted"}])
def monitor(ctx: Context) -> int:
    res = ctx.params.drbd_resource
    st = get_status(ctx, res)
    if not st.configured:
        if not ctx.is_probe:
            update_score(ctx, st, cached_ok=True)
        return codes.NOT_RUNNING
    check_module(ctx)
    update_score(ctx, st, cached_ok=not ctx.is_probe)
    if (ctx.params.unfence_if_all_uptodate and st.primary and st.local_all("UpToDate")
            and st.peers and all(st.peer_all_uptodate(q) for q in st.peers.values())):
        _tools(ctx).unfence_peer(res, ctx.params.unfence_extra_args)
    if any(d is not None for p in st.peers.values() for d in p["done"]):
        ctx.log.info(f"resync: {st.describe()}")
    if st.primary:
        if not st.has_uptodate_data():
            ctx.fail(codes.FAILED_PROMOTED, f"{res} is Primary without access to UpToDate "
                     f"data: {st.describe()}")
        return codes.RUNNING_PROMOTED
    return codes.SUCCESS


@agent.action("reload", timeout="30s")
def reload(ctx: Context) -> int:
    res = ctx.params.drbd_resource
    check_config(ctx)
    st = get_status(ctx, res)
    if not st.configured:
        return codes.ERR_GENERIC
    _tools(ctx).adjust(res)
    update_score(ctx, get_status(ctx, res))
    return codes.SUCCESS


@agent.action("validate-all", timeout="30s")
def validate_all(ctx: Context) -> int:
    check_config(ctx)
    check_module(ctx)
    return codes.SUCCESS
