"""The DRBD tools seam: ``drbdadm`` and ``drbdsetup`` (and the module tools), one argv each.

Every call goes through the caller's ``run`` (``Context.run``: bounded by the
action's deadline) and returns its :class:`ocf_lib.proc.Result`; the caller
decides what an exit code means for its action.  Resource names reach this
module already validated by the agent's parameter type (no leading ``-``, not
``all``), so they can never be read as options.

``drbdadm`` reads the configuration (``-c <drbdconf>``) and plans the kernel
calls; it is what start, promote and demote use.  ``drbdsetup`` talks to the
kernel directly: the state (``events2``) and the stop path when the
configuration is unusable, since a resource must come down even when its
drbd.conf is gone.  drbdsetup exit codes worth naming: 10 (no such resource /
configuration failure), 11 (state change refused), 17 (no access to
UpToDate data), 20 (module missing).

:class:`Resource` is what the drbd agent's actions work with: one resource's
state (from the kernel only), its configuration checks, the module and the
promotion score, each failure one ``ctx.fail`` reason.
"""

from __future__ import annotations

import os
import time

from . import codes, sysroot
from .drbd import (
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .ocf import Context
    from .proc import Result

NO_SUCH_RESOURCE = 10
NEED_UPTODATE_DATA = 17


class DrbdTools:
    def __init__(self, run: Callable[..., Result], conf: str) -> None:
        self._run = run
        self.conf = conf

    # -- drbdsetup: the kernel ---------------------------------------------------

    def events2(self, res: str | None = None, *, statistics: bool = True) -> Result:
        """One ``events2 --now`` snapshot of ``res`` (None: every resource)."""
        argv = ["drbdsetup", "events2", "--now"]
        if statistics:
            argv.append("--statistics")
        if res is not None:
            argv.append(res)
        return self._run(argv, timeout=15, quiet=True)

    def kernel_minors(self, res: str) -> Result:
        """DRBD 8.4: ``sh-status <res>``, the kernel's volumes of ``res`` (``_minor=N``)."""
        return self._run(["drbdsetup", "sh-status", res], timeout=15, quiet=True)

    def setup(self, verb: str, res: str) -> Result:
        """``drbdsetup secondary|down <res>``: no configuration needed."""
        return self._run(["drbdsetup", verb, res], timeout=30)

    # -- drbdadm: the configuration --------------------------------------------------

    def adm(self, *args: str, timeout: float = 60, quiet: bool = False) -> Result:
        return self._run(["drbdadm", "-c", self.conf, *args], timeout=timeout, quiet=quiet)

    def devices(self, res: str, *, stacked: bool = False) -> Result:
        """``sh-dev``: the resource's device paths; fails when drbd.conf lacks it."""
        return self.adm(*(["--stacked"] if stacked else []), "sh-dev", res, timeout=20)

    def minors(self, res: str) -> Result:
        return self.adm("sh-minor", res, timeout=20)

    def module_parameters(self) -> Result:
        return self.adm("sh-mod-parms", timeout=20, quiet=True)

    def dump(self, res: str) -> Result:
        return self.adm("dump", res, timeout=20)

    def adjust(self, res: str, *, skip_net: bool = False, verbose: bool = False,
               timeout: float = 60) -> Result:
        args = ["-v"] if verbose else []
        args.append("adjust")
        if skip_net:
            args.append("--skip-net")
        return self.adm(*args, res, timeout=timeout)

    def role(self, verb: str, res: str) -> Result:
        """``primary``, ``secondary``, ``down`` or ``outdate`` through the configuration."""
        return self.adm(verb, res)

    def unfence_peer(self, res: str, extra_args: str) -> Result:
        # drbdadm hands UNFENCE_EXTRA_ARGS to the handler through the environment.
        return self._run(["drbdadm", "-c", self.conf, "unfence-peer", res], timeout=10,
                         extra_env={"UNFENCE_EXTRA_ARGS": extra_args})

    # -- the module ------------------------------------------------------------------

    def installed_version(self) -> Result:
        """The version of the module ``modprobe`` would load (``modinfo``)."""
        return self._run(["modinfo", "-F", "version", "drbd"], timeout=10, quiet=True)

    def load_module(self, parameters: list[str]) -> Result:
        return self._run(["modprobe", "-s", "drbd", *parameters], timeout=30)


def why(r: Result) -> str:
    """The kernel's own words from a failed call (not drbdadm's 'Command ... terminated')."""
    for line in (r.err + r.out).splitlines():
        if "State change failed" in line or "Failure:" in line or "No such resource" in line:
            return line.strip()
    return str(r.reason())


# -- one resource on this node, as the drbd agent's actions see it --------------------


_TRANSITIONAL = ("Attaching", "Negotiating")
_SCORE_REFRESH = 60.0  # seconds a recurring monitor may trust the last score it wrote
_WAITING = ("Connecting", "StandAlone", "WFConnection", "Unknown")


class Resource:
    """The DRBD resource ``drbd_resource`` of one action: its state (from the kernel
    only), the configuration checks, the module, and the promotion score.

    Every failure goes through ``ctx.fail`` with one reason line; the kernel's
    state never comes from a guess (see :class:`ocf_lib.drbd.UnknownVersion`).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.name: str = ctx.params.drbd_resource
        self.tools = DrbdTools(ctx.run, ctx.params.drbdconf)

    # -- the kernel's view --------------------------------------------------------

    def kernel(self, refresh: bool = False) -> tuple[int, int, int] | None:
        """The loaded module's version (None: not loaded); an unreadable one fails the
        action: guessing 8.4 for a DRBD 9 kernel would report a running resource as
        stopped."""
        try:
            return kernel_version(refresh)
        except UnknownVersion as exc:
            self.ctx.fail(codes.ERR_GENERIC, f"{exc}; cannot tell DRBD 9 from 8.4, so the "
                          "resource's state is unknown")

    def nothing_configured(self) -> bool:
        """The kernel has no DRBD resource at all (or no module): what stop may take as
        proof of absence when it cannot tell which resource is its own."""
        version = self.kernel()
        if version is None:
            return True
        if version >= (9, 0, 0):
            r = self.tools.events2(statistics=False)
            return r.rc == 0 and resources_in_events2(r.out) == set()
        with open(sysroot.path(PROC), encoding="utf-8") as f:
            return configured_minors(f.read()) == []

    def status(self) -> Status:
        version = self.kernel()
        if version is None:
            return Status()
        if version >= (9, 0, 0):
            return self._status9()
        return self._status84()

    def _status9(self) -> Status:
        r = self.tools.events2(self.name)
        if r.rc == NO_SUCH_RESOURCE:
            return Status()
        if r.rc != 0:
            self.ctx.fail(codes.ERR_GENERIC, f"drbdsetup events2 failed: {why(r)}")
        return parse_events2(r.out, self.name)

    def _status84(self) -> Status:
        with open(sysroot.path(PROC), encoding="utf-8") as f:
            return parse_proc(f.read(), set(self._minors()))

    def _minors(self) -> list[int]:
        """The resource's minors (8.4): from drbd.conf once (kept in a state file); when
        drbdadm cannot say (drbd.conf missing or changed), from the kernel."""
        ctx, res = self.ctx, self.name
        memo = f"drbd-{res}.minors"
        cached = (ctx.state.read(memo) or "").split()
        if cached and all(m.isascii() and m.isdigit() for m in cached):
            return [int(m) for m in cached]
        r = self.tools.minors(res)
        if r.rc != 0:
            k = self.tools.kernel_minors(res)
            if k.rc not in (0, NO_SUCH_RESOURCE):
                ctx.fail(codes.ERR_GENERIC, f"cannot find the minors of {res}: drbdadm "
                         f"sh-minor: {why(r)}; drbdsetup sh-status: {why(k)}")
            return minors_in_sh_status(k.out, res) if k.rc == 0 else []
        minors = [int(m) for m in r.out.split() if m.isascii() and m.isdigit()]
        try:
            ctx.state.write(memo, " ".join(map(str, minors)) + "\n", 0o644)
        except OSError as exc:
            ctx.log.warning(f"cannot cache minors: {exc}")
        return minors

    # -- promotion score --------------------------------------------------------------

    def wanted_score(self, st: Status) -> int | None | bool:
        """The master score for this state: an int, None (delete) or False (leave alone)."""
        p = self.ctx.params
        if not st.configured or not st.quorum:
            return None
        only_consistent, only_remote, local_ok, as_good = p.adjust_master_score
        if (p.remove_master_score_if_peer_primary != "false" and not st.primary
                and any(q["role"] == "Primary" and st.peer_all_uptodate(q)
                        for q in st.peers.values())):
            if p.remove_master_score_if_peer_primary == "true" or not self.pcmk_knows_primary():
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

    def pcmk_knows_primary(self) -> bool:
        """Pacemaker has another node's instance promoted (unknown counts as no)."""
        from .cluster import ClusterTools

        ctx = self.ctx
        where = ClusterTools(ctx.run).locate(ctx.instance, timeout=10)
        if where is None:
            ctx.log.debug(f"crm_resource --locate {ctx.instance} did not answer")
        return any(role == "Promoted" and node != ctx.node for node, role in where or ())

    def update_score(self, st: Status | None = None, *, cached_ok: bool = False) -> None:
        """Write the score ``st`` deserves (None: no resource, no score); a recurring
        monitor (``cached_ok``) skips a write of the value it wrote under a minute ago."""
        from .cluster import AttributeToolError, PromotionScore

        ctx = self.ctx
        score = None if st is None else self.wanted_score(st)
        if score is False:
            return
        value = None if score is None or int(score) <= 0 else int(score)
        shown = "absent" if value is None else str(value)
        memo = f"drbd-{ctx.instance}.score"
        if cached_ok:
            last = (ctx.state.read(memo) or "").split()
            if len(last) == 2 and last[0] == shown and last[1].isascii() \
                    and last[1].isdigit() and time.time() - int(last[1]) < _SCORE_REFRESH:
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

    # -- configuration and module ---------------------------------------------------

    def check_config(self) -> list[str]:
        """Everything start/promote/validate need; returns the resource's device paths."""
        ctx, p, res = self.ctx, self.ctx.params, self.name
        if not os.path.isfile(p.drbdconf) or not os.access(p.drbdconf, os.R_OK):
            ctx.fail(codes.ERR_INSTALLED, f"drbdconf {p.drbdconf} is missing, not a file, or "
                     "unreadable")
        r = self.tools.devices(res)
        if r.rc != 0:
            if self.tools.devices(res, stacked=True).rc == 0:
                ctx.fail(codes.ERR_CONFIGURED, f"DRBD resource {res} is stacked "
                         "(stacked-on-top-of); pyha's drbd agent does not support stacked "
                         "resources, use ocf:linbit:drbd for it")
            ctx.fail(codes.ERR_INSTALLED, f"DRBD resource {res} not found in {p.drbdconf}: "
                     f"{why(r)}")
        if ctx.action not in ("stop", "monitor", "validate-all") and \
                not p.ignore_missing_notifications:
            from . import notify

            if not notify.configured(ctx.env):
                ctx.fail(codes.ERR_CONFIGURED, "notifications are not enabled: set "
                         "notify=true on the clone (or ignore_missing_notifications=true)")
        self._check_clone_meta()
        return [d for d in r.out.split() if d.startswith("/")]

    def _check_clone_meta(self) -> None:
        ctx = self.ctx
        clone_max = self._meta_int("clone_max", default=2)
        node_max = self._meta_int("clone_node_max", default=1)
        pmax = self._meta_int("promoted_max", "master_max", default=1)
        pnode_max = self._meta_int("promoted_node_max", "master_node_max", default=1)
        v9 = (self.kernel() or (9, 0, 0)) >= (9, 0, 0)
        if node_max != 1 or pnode_max != 1 or pmax > 2 or \
                (clone_max > 2 and (not v9 or pmax == 2)):
            ctx.fail(codes.ERR_CONFIGURED, "meta parameter misconfigured: need "
                     "clone-node-max=1, promoted-node-max=1, promoted-max<=2, and clone-max<=2 "
                     "unless DRBD 9 with promoted-max 1 (have "
                     f"{clone_max}/{node_max}/{pmax}/{pnode_max})")
        if pmax == 2 and ctx.action in ("start", "promote"):
            dump = self.tools.dump(self.name)
            if not any(line.strip() in ("allow-two-primaries;", "allow-two-primaries yes;")
                       for line in dump.out.splitlines()):
                ctx.fail(codes.ERR_CONFIGURED, f"promoted-max is 2 but DRBD resource "
                         f"{self.name} does not set allow-two-primaries")

    def _meta_int(self, *names: str, default: int) -> int:
        for name in names:
            raw = self.ctx.meta(name)
            if raw:
                value = decimal(raw.strip())
                if value is None:
                    self.ctx.fail(codes.ERR_CONFIGURED, f"meta attribute "
                                  f"{name.replace('_', '-')} '{raw}' is not an integer")
                return value
        return default

    def check_module(self, version: tuple[int, int, int] | None = None) -> None:
        """The loaded (or, before loading, the installed) module must be in the required
        range."""
        version = version or self.kernel()
        if version is None:
            return
        p = self.ctx.params
        ge, lt = p.require_drbd_module_version_ge, p.require_drbd_module_version_lt
        if version < ge or version >= lt:
            self.ctx.fail(codes.ERR_INSTALLED, f"DRBD module {'.'.join(map(str, version))} "
                          f"is outside the required range [{'.'.join(map(str, ge))}, "
                          f"{'.'.join(map(str, lt))})")

    def load_module(self) -> None:
        if self.kernel() is not None:
            return
        info = self.tools.installed_version()
        if info.rc == 0:
            self.check_module(parse_version(info.out))  # refuse before loading anything
        parms = self.tools.module_parameters()
        r = self.tools.load_module(parms.out.split() if parms.rc == 0 else [])
        if r.rc != 0:
            self.ctx.fail(codes.ERR_INSTALLED, f"cannot load the drbd module: {why(r)}")
        if self.kernel(refresh=True) is None:
            self.ctx.fail(codes.ERR_INSTALLED,
                          "modprobe drbd succeeded but /proc/drbd did not appear")

    # -- waiting ----------------------------------------------------------------

    def wait_devices(self, devices: list[str]) -> None:
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
            if self.ctx.deadline.soft_remaining() <= 0.5:
                self.ctx.fail(codes.ERR_GENERIC,
                              f"device nodes did not appear: {' '.join(missing)}")
            time.sleep(0.1)

    def wait_connected(self, wait: float) -> Status:
        """The state once every peer is connected, or after ``wait`` seconds (bounded by
        the deadline)."""
        end = time.monotonic() + min(wait, max(0.0, self.ctx.deadline.soft_remaining() - 5))
        while True:
            st = self.status()
            if (not st.configured or self.ctx.params.connect_only_after_promote
                    or (st.peers and all(p["conn"] not in _WAITING for p in st.peers.values()))
                    or time.monotonic() >= end):
                return st
            time.sleep(0.2)

    def retry(self, what: str, last: Result, *, say: bool = False) -> None:
        """After a refused state change: fail if no time is left, else wait a second."""
        if self.ctx.deadline.soft_remaining() < 2:
            self.ctx.fail(codes.ERR_GENERIC, f"cannot {what} {self.name}: {why(last)}")
        if say:
            self.ctx.log.info(f"{what} refused ({why(last)}); retrying")
        time.sleep(1)

    # -- outdating ourselves --------------------------------------------------------

    def outdate_if_peer_promoted(self, st: Status) -> None:
        """With stop_outdates_secondary: outdate our data if another node is still
        Primary according to Pacemaker's notification."""
        ctx = self.ctx
        if not ctx.params.stop_outdates_secondary:
            return
        from .notify import Notification

        n = Notification(ctx.env)
        # notify_promote_uname is ignored on purpose: in a transition that demotes
        # here and promotes elsewhere, outdating would break that promote.
        others = [u for u in n.unames("promoted") if u != ctx.node]
        if not others or others[0] in n.unames("stop"):
            return
        if st.primary:
            ctx.log.error(f"both {ctx.node} and {others[0]} are Primary for {self.name} "
                          "but not connected: not outdating")
            return
        ctx.log.warning(f"outdating {self.name}: {others[0]} is still promoted")
        self.tools.role("outdate", self.name)


def decimal(word: str) -> int | None:
    """An ASCII decimal integer with an optional sign, else None (int() takes '²', '1_0')."""
    digits = word[1:] if word[:1] in ("-", "+") else word
    if not digits.isascii() or not digits.isdigit():
        return None
    return int(word, 10)
