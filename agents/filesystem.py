"""ocf:pyha:Filesystem -- mount a filesystem, compatible with ocf:heartbeat:Filesystem.

Same parameters, defaults and meaning as upstream.  The mount table comes
from reading ``/proc/self/mountinfo`` in-process (:mod:`ocf_lib.mounts`), so a
monitor forks nothing (upstream's forks dozens of times) and mount points with spaces or
other escaped characters work.  The device is compared by device number, so
``/dev/disk/by-*`` and ``/dev/mapper`` symlinks need no ``readlink``; where the
mount carries an anonymous number (btrfs: ``0:N``), by its source device or the
btrfs filesystem's member list.  A mount is "another filesystem" only when the
kernel proves it; otherwise the monitor fails (1) rather than guess.  The mount
point is resolved through symlinks the same way in every action.

Stop has ONE deadline for everything, submounts included: ``umount``; then
the processes found in ``/proc`` (cwd, root, exe, open files, memory maps) get
``term_signals``, then ``kill_signals``, ``signal_delay`` apart; when only the
escalation reserve is left, a network or virtual filesystem is unmounted with
``-f`` then lazily (``-l``); a block device only lazily when nothing holds it
any more.  Stop returns 0 only when the mount is gone.

The parameter types are in :mod:`ocf_lib.mounts_params`, the resolution against the
node and the mount-table status in :mod:`ocf_lib.mounts_target`, start's steps (fstype,
fsck, mount) in :mod:`ocf_lib.mounts_start`, the depth-10/20 checks in
:mod:`ocf_lib.mounts_status`, the unmount escalation in :mod:`ocf_lib.unmount`.

Upstream bugs fixed here:

* ``Filesystem_status`` leaves ``rc`` unset on the "mounted with the expected
  device" path (it inherits an earlier value), so with ``force_unmount=move``
  and a leftover ``.<name>`` directory a healthy mount reads as stopped (7):
  every path here returns an explicit code;
* the ``.<name>`` directory of ``move`` mode is never removed: removed here
  after a successful stop;
* the budget was the whole operation timeout *per submount*;
* the depth-20 status file is removed on every stop (upstream only when the
  stop happens to carry OCF_CHECK_LEVEL=20, which Pacemaker never sets);
* start mounted over a different filesystem already on the mount point;
  here it refuses (1);
* an unsupported OCF_CHECK_LEVEL returned 6; here it falls back to the next
  lower supported depth, as the OCF spec says.
"""

from __future__ import annotations

import os

from ocf_lib import codes, mounts
from ocf_lib.mounts_params import (
    DEVICE,
    FSCK,
    FSTYPE,
    KILL_SIGNALS,
    MOUNTPOINT,
    OPTIONS,
    SIGNAL_DELAY,
    STATUS_PREFIX,
    TERM_SIGNALS,
    UNMOUNT,
    hide,
)
from ocf_lib.mounts_target import (
    CIFS,
    CLUSTER_FS,
    LOCAL_FS,
    NETWORK_FS,
    OTHER,
    VIRTUAL_FS,
    Target,
    configure,
    is_bind,
    mount_point,
    moved_dir,
    our_device,
    resolve,
    started_at,
    started_name,
    state_name,
    status,
)
from ocf_lib.ocf import Context, OCFError, ResourceAgent
from ocf_lib.params import LENIENT_BOOLEAN, Param, ParamError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from ocf_lib.params import Values


class _Agent(ResourceAgent):
    def check_levels(self) -> list[int]:
        # The depths monitor implements.  Only depth 0 is advertised, as upstream does,
        # so that pcs creates no deeper recurring monitor unless asked (docs/filesystem.md).
        return [0, 10, 20]


agent = _Agent(
    "Filesystem",
    rgmanager_primary="directory",
    shortdesc="Manages filesystem mounts",
    longdesc=(
        "Mounts a block device, a network share (NFS, CIFS) or a bind source on a directory, "
        "checks it (reading the device with OCF_CHECK_LEVEL=10, writing a status file with "
        "OCF_CHECK_LEVEL=20) and unmounts it on stop, killing the processes that keep it "
        "busy. Compatible with ocf:heartbeat:Filesystem."
    ),
    params=[
        Param("device", DEVICE, required=True, identifies=True, shortdesc="block device",
              longdesc="What to mount: " + DEVICE.doc + "."),
        Param("directory", MOUNTPOINT, required=True, identifies=True, shortdesc="mount point",
              longdesc="Where to mount (created when missing): " + MOUNTPOINT.doc + "."),
        Param("fstype", FSTYPE, default="", shortdesc="filesystem type",
              longdesc="The -t value. Empty: detected by mount. 'none': a bind mount. "
                       "Allowed: " + FSTYPE.doc + "."),
        Param("options", OPTIONS, default="", shortdesc="mount options",
              longdesc="Options for mount -o: " + OPTIONS.doc + ". The values of password=, "
                       "pass= and password2= are secret: never logged, and for cifs passed "
                       "through a credentials file rather than the command line."),
        Param("statusfile_prefix", STATUS_PREFIX, default=".Filesystem_status/",
              shortdesc="status file prefix",
              longdesc="Where the OCF_CHECK_LEVEL=20 monitor writes: " + STATUS_PREFIX.doc
                       + "; symlinks in it are never followed."),
        Param("run_fsck", FSCK, default="auto", shortdesc="run_fsck",
              longdesc="auto: fsck filesystems without a journal; force: always; no: never. "
                       "Allowed: " + FSCK.doc + "."),
        Param("fast_stop", LENIENT_BOOLEAN, default="no", shortdesc="fast stop",
              longdesc="Give up signalling after 6 seconds instead of the whole timeout."),
        Param("force_clones", LENIENT_BOOLEAN, default="false",
              shortdesc="allow running as a clone",
              longdesc="Allow cloning a filesystem that is not cluster-aware (dangerous)."),
        Param("force_unmount", UNMOUNT, default="true", shortdesc="Kill processes before unmount",
              longdesc="true: kill the processes using the filesystem; safe: only those "
                       "found by path in /proc (never blocks on a dead NFS server); false: "
                       "kill nothing. Allowed: " + UNMOUNT.doc + "."),
        Param("term_signals", TERM_SIGNALS, default="TERM", shortdesc="signals sent first",
              longdesc="Sent during the first half of stop: " + TERM_SIGNALS.doc + "."),
        Param("kill_signals", KILL_SIGNALS, default="KILL",
              shortdesc="signals sent when the first ones did not help",
              longdesc="Sent during the second half of stop: " + KILL_SIGNALS.doc + "."),
        Param("signal_delay", SIGNAL_DELAY, default="1",
              shortdesc="seconds between signal rounds"),
    ],
)


@agent.validator
def _bind_source(p: Values) -> Iterator[ParamError]:
    if is_bind(p) and not p.device.text.startswith("/"):
        yield ParamError("device", p.device.text, "must be an absolute path for a bind mount")


@agent.validator
def _password_only_for_cifs(p: Values) -> Iterator[ParamError]:
    # Only mount.cifs can take a password from a file instead of its command line.
    movable = p.fstype in CIFS and all(
        w.lower().startswith(("password=", "pass=")) for w in p.options.words if hide(w) != w)
    if p.options.secrets() and not movable:
        yield ParamError("options", p.options.shown(), "holds a password that would show in "
                         "the process list (only password= or pass= with fstype cifs or smb3 "
                         "is moved to a credentials file); use credentials=<file>")


# -- actions ------------------------------------------------------------------------

@agent.action("start", timeout="60s")
def start(ctx: Context) -> int:
    from ocf_lib import mounts_start
    table = mounts.read_mountinfo()
    cfg = configure(ctx, table)
    _cluster_safety(ctx, cfg)
    inner = mounts.below(table, cfg.directory)
    if inner:
        ctx.fail(codes.ERR_CONFIGURED, f"{inner[0].mountpoint} is mounted below "
                                       f"{cfg.directory}; refusing to hide it")
    if cfg.move and mounts.at(table, moved_dir(cfg)):
        ctx.fail(codes.ERR_GENERIC, f"{moved_dir(cfg)} is still mounted from an earlier stop")
    rc, reason = status(ctx, cfg, table)
    if rc == codes.SUCCESS:
        ctx.log.info(f"{cfg.device} is already mounted on {cfg.directory}")
        _record_mount_point(ctx, cfg)
        return codes.SUCCESS
    old = started_at(ctx, cfg, table)
    if old is not None:
        ctx.fail(codes.ERR_GENERIC, f"{old.device} is still mounted on {old.directory}, "
                                    f"where {ctx.params.directory} pointed at start")
    if rc != codes.NOT_RUNNING:
        ctx.fail(codes.ERR_GENERIC, f"{reason}; not mounting over it")
    if cfg.directory != (ctx.params.directory.rstrip("/") or "/"):
        ctx.log.info(f"mount point {ctx.params.directory} resolves to {cfg.directory}")
    mounts_start.check_fstype(ctx, cfg)
    device = resolve(ctx, cfg)
    if device is None:
        ctx.fail(codes.ERR_INSTALLED, f"couldn't find device [{cfg.device}]")
    if cfg.bind and not os.path.exists(device):
        ctx.fail(codes.ERR_INSTALLED, f"bind source {device} does not exist")
    if cfg.block:
        ctx.state.write(state_name(cfg), device + "\n", 0o644)
        mounts_start.fsck(ctx, cfg, device)
    created = not os.path.isdir(cfg.directory)
    try:
        os.makedirs(cfg.directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        ctx.fail(codes.ERR_INSTALLED, f"cannot create mount point {cfg.directory}: "
                                      f"{exc.strerror}")
    try:
        mounts_start.mount(ctx, cfg, device)
    except OCFError:
        if created:  # a failed start leaves nothing behind
            try:
                os.rmdir(cfg.directory)
            except OSError:
                pass
        raise
    rc, reason = status(ctx, cfg, mounts.read_mountinfo())
    if rc != codes.SUCCESS:
        ctx.fail(codes.ERR_GENERIC, f"mount reported success but: {reason}")
    _record_mount_point(ctx, cfg)
    return codes.SUCCESS


def _record_mount_point(ctx: Context, cfg: Target) -> None:
    if cfg.directory != ctx.params.directory:  # only a path through symlinks can move
        ctx.state.write(started_name(ctx), cfg.directory + "\n", 0o644)


@agent.action("stop", timeout="60s")
def stop(ctx: Context) -> int:
    table = mounts.read_mountinfo()
    cfg = configure(ctx, table, strict=False)
    old = started_at(ctx, cfg, table)
    if old is not None:  # the symlink was re-pointed: what start mounted goes first
        ctx.log.warning(f"{ctx.params.directory} now resolves to {cfg.directory}; "
                        f"unmounting {old.directory}, where it pointed at start")
        _stop_at(ctx, old, table)
        table = mounts.read_mountinfo()
    if cfg.directory == "/":  # start never mounts there; only the record could say more
        ctx.log.warning(f"{ctx.params.directory} resolves to /, where this agent never "
                        "mounts: nothing to unmount there")
    else:
        _stop_at(ctx, cfg, table)
    ctx.state.remove(started_name(ctx))
    return codes.SUCCESS


def _stop_at(ctx: Context, cfg: Target, table: list[mounts.Mount]) -> None:
    top = mounts.at(table, cfg.directory)
    moved = moved_dir(cfg)
    if top is not None and status(ctx, cfg, table)[0] == OTHER:
        ctx.log.warning(f"{cfg.directory} holds another filesystem ({top.source}); left alone")
        top = None
    targets: list[mounts.Mount] = []
    if top is not None:
        if cfg.fstype not in NETWORK_FS:  # an unlink on a dead NFS server would hang stop
            from ocf_lib.mounts_status import remove_status_file

            remove_status_file(ctx, cfg)
        if cfg.move:
            os.makedirs(moved, mode=0o700, exist_ok=True)
            res = ctx.run(["mount", "--move", "--", cfg.directory, moved], timeout=10)
            if res.ok:
                top = mounts.at(mounts.read_mountinfo(), moved) or top
        table = mounts.read_mountinfo()
        targets = mounts.below(table, top.mountpoint)
        want = our_device(ctx, cfg) if cfg.block else None
        if cfg.block:  # other mounts of the same filesystem (binds, subvolumes) go too
            targets += [m for m in table if m.mount_id != top.mount_id and m not in targets
                        and (m.dev == top.dev or (want is not None
                                                  and mounts.same_filesystem(m, want)))]
        targets.append(top)
    elif cfg.move:
        left = mounts.at(table, moved)
        targets = [left] if left else []
    from ocf_lib.unmount import unmount_all

    p = ctx.params
    unmount_all(ctx, targets, kill=cfg.kill, delay=p.signal_delay, fast=p.fast_stop,
                term=p.term_signals, kill_sigs=p.kill_signals,
                network=cfg.fstype in NETWORK_FS, own_device=cfg.block and not cfg.bind,
                lazy_ok=cfg.fstype in VIRTUAL_FS or (cfg.bind and not cfg.block))
    if cfg.move and os.path.isdir(moved) and mounts.at(mounts.read_mountinfo(), moved) is None:
        try:
            os.rmdir(moved)  # upstream leaves it behind, and then misreads status
        except OSError as exc:
            ctx.log.warning(f"could not remove {moved}: {exc.strerror}")
    ctx.state.remove(state_name(cfg))


@agent.proves_absent
def absent(ctx: Context) -> bool:
    """For stop when ``device`` or ``directory`` is unusable: True only when the kernel
    shows that nothing this resource could have mounted is mounted."""
    p = ctx.params
    table = mounts.read_mountinfo()
    recorded = (ctx.state.read(started_name(ctx)) or "").rstrip("\n")
    if recorded and mounts.at(table, recorded) is not None:
        return False  # where start mounted it through a symlink is still occupied
    if p.directory is not None:  # the device is what is unusable: is the mount point free?
        try:
            directory = mount_point(ctx, table)
        except (OCFError, ParamError):
            return False
        moved = os.path.join(os.path.dirname(directory), "." + os.path.basename(directory))
        return mounts.at(table, directory) is None and mounts.at(table, moved) is None
    # The mount point is what is unusable: only a block device can be proven mounted
    # nowhere, every mount proven to be another filesystem.
    want = mounts.block_dev(p.device.text) if p.device is not None else None
    if want is None or p.fstype == "none" or "bind" in p.options:
        return False
    return all(mounts.same_filesystem(m, want) is False for m in table)


@agent.action("monitor", timeout="40s", interval="20s", depth=0)
def monitor(ctx: Context) -> int:
    table = mounts.read_mountinfo()
    cfg = configure(ctx, table)
    if cfg.move and mounts.at(table, moved_dir(cfg)):
        ctx.fail(codes.ERR_GENERIC, f"{cfg.device} is mounted on {moved_dir(cfg)} "
                                    "(a stop in move mode did not finish)")
    rc, reason = status(ctx, cfg, table)
    if rc in (codes.NOT_RUNNING, OTHER):
        old = started_at(ctx, cfg, table)
        if old is not None:  # never "stopped" while it is mounted where start put it
            ctx.fail(codes.ERR_GENERIC, f"{ctx.params.directory} now resolves to "
                                        f"{cfg.directory}, but {old.device} is still mounted "
                                        f"on {old.directory}, where it pointed at start")
    if rc == codes.NOT_RUNNING:
        return rc
    if rc == OTHER and ctx.is_probe:
        return codes.NOT_RUNNING  # our device is verifiably not on this mount point
    if rc != codes.SUCCESS:
        ctx.fail(codes.ERR_GENERIC, reason)
    level = ctx.check_level
    if level >= 10:
        from ocf_lib.mounts_status import io_check

        problem = io_check(ctx, cfg, level)
        if problem:
            ctx.fail(codes.ERR_GENERIC, problem)
    return codes.SUCCESS


@agent.action("validate-all", timeout="5s")
def validate_all(ctx: Context) -> int:
    cfg = configure(ctx, mounts.read_mountinfo())
    _cluster_safety(ctx, cfg)
    from ocf_lib.mounts_start import check_fstype

    check_fstype(ctx, cfg)
    return codes.SUCCESS


# -- start's steps -------------------------------------------------------------------

def _cluster_safety(ctx: Context, cfg: Target) -> None:
    clone = bool(ctx.meta("clone_max"))
    fstype = cfg.fstype
    if fstype in CLUSTER_FS and not clone:
        ctx.fail(codes.ERR_CONFIGURED, f"{fstype} is a cluster filesystem: run it as a clone "
                                       "(with its DLM/o2cb stack), not as a single resource")
    if clone and not ctx.params.force_clones and "ro" not in cfg.options and (
            fstype.startswith(LOCAL_FS) or (cfg.block and not fstype)):
        ctx.fail(codes.ERR_CONFIGURED, f"DANGER! {fstype or 'this filesystem'} is NOT "
                                       "cluster-aware: cloning it corrupts it (see force_clones)")
