"""ocf:pyha:Filesystem -- mount a filesystem, compatible with ocf:heartbeat:Filesystem.

Same parameters, defaults and meaning as upstream.  The mount table comes
from one read of ``/proc/self/mountinfo`` (:mod:`ocf_lib.mounts`), so a
monitor forks nothing (upstream: ~34 execs) and mount points with spaces or
other escaped characters work.  The device is compared by device number, so
``/dev/disk/by-*`` and ``/dev/mapper`` symlinks need no ``readlink``.

Stop has ONE deadline for everything, submounts included: ``umount``; then
the processes found in ``/proc`` (cwd, root, exe, open files, memory maps) get
``term_signals``, then ``kill_signals``, ``signal_delay`` apart; when only the
escalation reserve is left, a network or virtual filesystem is unmounted with
``-f`` then lazily (``-l``); a block device only lazily when nothing holds it
any more.  Stop returns 0 only when the mount is gone.

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
from ocf_lib.ocf import Context, OCFError, ResourceAgent
from ocf_lib.params import BOOLEAN, DURATION, PATH, STRING, Param, ParamError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import mmap

agent = ResourceAgent(
    "Filesystem",
    rgmanager_primary="directory",
    shortdesc="Manages filesystem mounts",
    longdesc=(
        "Mounts a block device, a network share (NFS, CIFS) or a bind source on a directory, "
        "checks it (reading the device at depth 10, writing a status file at depth 20) and "
        "unmounts it on stop, killing the processes that keep it busy. Compatible with "
        "ocf:heartbeat:Filesystem."
    ),
    params=[
        Param("device", STRING, required=True, shortdesc="block device",
              longdesc="A device path, UUID=/LABEL= (or -U/-L), host:/export for NFS, "
                       "//host/share for CIFS, or a directory for a bind mount."),
        Param("directory", PATH, required=True, shortdesc="mount point",
              longdesc="Where to mount; created when missing."),
        Param("fstype", STRING, shortdesc="filesystem type",
              longdesc="The -t value. Empty: detected by mount. 'none': a bind mount."),
        Param("options", STRING, shortdesc="mount options",
              longdesc="Comma-separated options for mount -o."),
        Param("statusfile_prefix", STRING, default=".Filesystem_status/",
              shortdesc="status file prefix",
              longdesc="Relative to the mount point: where the depth-20 monitor writes."),
        Param("run_fsck", STRING, default="auto", shortdesc="run_fsck",
              longdesc="auto: fsck filesystems without a journal; force: always; no: never."),
        Param("fast_stop", BOOLEAN, default="no", shortdesc="fast stop",
              longdesc="Give up signalling after 6 seconds instead of the whole timeout."),
        Param("force_clones", BOOLEAN, default="false", shortdesc="allow running as a clone",
              longdesc="Allow cloning a filesystem that is not cluster-aware (dangerous)."),
        Param("force_unmount", STRING, default="true", shortdesc="Kill processes before unmount",
              longdesc="true: kill the processes using the filesystem; safe: only those "
                       "found by path in /proc (never blocks on a dead NFS server); false: "
                       "kill nothing. Modifiers: move, xargs, ps (comma-separated)."),
        Param("term_signals", STRING, default="TERM", shortdesc="signals sent first"),
        Param("kill_signals", STRING, default="KILL",
              shortdesc="signals sent when the first ones did not help"),
        Param("signal_delay", DURATION, default="1", shortdesc="seconds between signal rounds"),
    ],
)

NETWORK_FS = frozenset(("nfs", "nfs4", "aznfs", "efs", "smbfs", "cifs", "glusterfs", "ceph",
                        "rozofs", "lustre", "cvfs"))
VIRTUAL_FS = frozenset(("none", "tmpfs", "overlay", "overlayfs", "zfs", "proc", "sysfs"))
CLUSTER_FS = frozenset(("ocfs2", "gfs2"))
LOCAL_FS = ("ext", "reiser", "xfs", "jfs", "btrfs", "vfat")
NO_FSCK = frozenset(("ext4", "ext4dev", "ext3", "reiserfs", "reiser4", "nss", "xfs", "jfs",
                     "vfat", "fat", "btrfs", *NETWORK_FS, *VIRTUAL_FS, *CLUSTER_FS))
# mount(8) options that change the operation or run programs: never from a resource.
FORBIDDEN_OPTIONS = ("remount", "move", "rbind", "make-", "helper=", "uhelper=", "x-mount.")
SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ABRT": 6, "KILL": 9, "USR1": 10, "USR2": 12,
           "PIPE": 13, "ALRM": 14, "TERM": 15, "CONT": 18, "STOP": 19}


class Config:
    def __init__(self) -> None:
        self.device = ""
        self.directory = ""
        self.fstype = ""
        self.options = ""
        self.bind = False
        self.block = False  # a block device (possibly still to resolve from UUID=/LABEL=)
        self.tag = ""  # "UUID=..." or "LABEL=..."
        self.kill = "true"
        self.move = False


def configure(ctx: Context, strict: bool = True) -> Config:
    """The parameters, checked; ``strict=False`` (stop) checks only what unmounting needs."""
    p = ctx.params
    cfg = Config()
    raw = p.device or ""
    if raw != raw.strip() and strict:
        raise ParamError("device", raw, "has leading or trailing white space")
    directory = p.directory.rstrip("/") or "/"
    if directory == "/":
        raise ParamError("directory", p.directory, "is the root directory")
    # Resolve symlinks in the parent only: a stat of the mount point itself would be
    # answered by the mounted filesystem, and hangs on a dead NFS server.
    parent, name = os.path.split(directory)
    directory = os.path.join(os.path.realpath(parent), name)
    if ctx.action == "start" and os.path.islink(directory):
        directory = os.path.realpath(directory)
    cfg.directory = directory
    cfg.fstype = (p.fstype or "").strip()
    cfg.options = (p.options or "").strip()
    for word in cfg.options.split(",") if cfg.options and strict else []:
        low = word.strip().lower()
        if not word or word != word.strip() or any(c in word for c in " \t\n\0'\"\\"):
            raise ParamError("options", cfg.options, "holds an empty or malformed option")
        if low.startswith("-") or any(low.startswith(f) for f in FORBIDDEN_OPTIONS):
            raise ParamError("options", cfg.options, f"option '{word}' is not allowed here")
    opts = cfg.options.split(",")
    cfg.bind = cfg.fstype == "none" or "bind" in opts
    for prefix, tag in (("-U ", "UUID="), ("--uuid=", "UUID="), ("-L ", "LABEL="),
                        ("--label=", "LABEL="), ("UUID=", "UUID="), ("LABEL=", "LABEL=")):
        if raw.startswith(prefix):
            cfg.tag = tag + raw[len(prefix):].strip()
            break
    cfg.device = raw
    if cfg.bind:
        if not raw.startswith("/"):
            raise ParamError("device", raw, "must be an absolute path for a bind mount")
    elif cfg.tag:
        cfg.block = True
    elif cfg.fstype not in NETWORK_FS and cfg.fstype not in VIRTUAL_FS and raw.startswith("/") \
            and "loop" not in opts:
        if os.path.isdir(raw) and strict:
            raise ParamError("device", raw, "is a directory (use fstype=none for a bind mount)")
        cfg.block = True
    mode = [w.strip() for w in (p.force_unmount or "true").split(",") if w.strip()]
    cfg.kill = "true"
    for word in mode:
        if word in ("true", "safe", "false", "yes", "no", "1", "0"):
            cfg.kill = {"yes": "true", "1": "true", "no": "false", "0": "false"}.get(word, word)
        elif word in ("move", "nomove"):
            cfg.move = word == "move"
        elif word not in ("xargs", "noxargs", "ps", "nops"):
            ctx.log.warning(f"force_unmount: unknown word '{word}' ignored")
    for name in ("term_signals", "kill_signals") if strict else ():
        for sig in _signal_words(ctx.params.get(name, "")):
            if _signal(sig) is None:
                raise ParamError(name, sig, "is not a signal name or number")
    return cfg


def _signal_words(text: str) -> list[str]:
    return [w for w in text.replace(",", " ").split() if w]


def _signal(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    name = word.upper()
    return SIGNALS.get(name[3:] if name.startswith("SIG") else name)


# -- where the device is -----------------------------------------------------------

def resolve(ctx: Context, cfg: Config) -> str | None:
    """The device node to mount (UUID=/LABEL= looked up with blkid); None if absent."""
    if not cfg.block:
        return cfg.device
    if cfg.tag:
        kind, _, value = cfg.tag.partition("=")
        for path in (f"/dev/disk/by-{kind.lower()}/{value}",):
            if mounts.block_dev(path):
                return path
        res = ctx.run(["blkid", "-U" if kind == "UUID" else "-L", value], timeout=10, quiet=True)
        found = res.out.strip()
        return found if res.rc == 0 and mounts.block_dev(found) else None
    return cfg.device if mounts.block_dev(cfg.device) else None


def _state_name(cfg: Config) -> str:
    # One file per mount point; the escaping keeps different paths apart.
    return "Filesystem-" + cfg.directory.replace("%", "%25").replace("/", "%2F")


OTHER = -1  # status(): verifiably another filesystem on the mount point


def status(ctx: Context, cfg: Config, table: list[mounts.Mount]) -> tuple[int, str]:
    """(rc, reason): 0 mounted with our device, 7 not mounted, OTHER another device is
    (verified by device number), 1 something is mounted that cannot be compared."""
    top = mounts.at(table, cfg.directory)
    if top is None:
        return codes.NOT_RUNNING, f"{cfg.directory} is not mounted"
    want = None
    if cfg.block:
        device = cfg.device if not cfg.tag else (ctx.state.read(_state_name(cfg)) or "").strip()
        if not device:
            device = resolve(ctx, cfg) or ""
        want = mounts.block_dev(device) if device else None
        if want is None:
            return codes.ERR_GENERIC, (f"{cfg.directory} has {top.source} mounted, and "
                                       f"{cfg.device} cannot be found to compare")
        if top.dev != want:
            return OTHER, (f"{cfg.directory} has another device mounted "
                                       f"({top.source}), not {cfg.device}")
        return codes.SUCCESS, ""
    if cfg.bind:
        try:
            src, dst = os.stat(cfg.device), os.stat(cfg.directory)
        except OSError as exc:
            return codes.ERR_GENERIC, f"cannot compare bind mount: {exc}"
        if (src.st_dev, src.st_ino) != (dst.st_dev, dst.st_ino):
            return codes.ERR_GENERIC, f"{cfg.directory} is not a bind mount of {cfg.device}"
        return codes.SUCCESS, ""
    source = top.source
    if source.startswith("/dev/loop") and "loop" in cfg.options.split(","):
        source = _loop_backing_file(source) or source  # options=loop: an image file
        if source != top.source and source != os.path.realpath(cfg.device):
            return OTHER, f"{cfg.directory} has {source} mounted, not {cfg.device}"
        return codes.SUCCESS, ""
    if source.rstrip("/") != cfg.device.rstrip("/") and cfg.fstype not in VIRTUAL_FS:
        return codes.ERR_GENERIC, (f"{cfg.directory} has {top.source} mounted, "
                                   f"not {cfg.device}")
    return codes.SUCCESS, ""


def _loop_backing_file(loopdev: str) -> str:
    try:
        with open(f"/sys/block/{os.path.basename(loopdev)}/loop/backing_file") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _moved_dir(cfg: Config) -> str:
    parent, name = os.path.split(cfg.directory)
    return os.path.join(parent, "." + name)


def status_file(ctx: Context, cfg: Config) -> str:
    name = f"{ctx.params.statusfile_prefix}{ctx.instance}"
    clone = ctx.meta("clone")
    if clone:
        name += f"_{clone}"
    return os.path.join(cfg.directory, f"{name}_{os.uname().nodename}")


# -- actions ------------------------------------------------------------------------

@agent.action("start", timeout="60s")
def start(ctx: Context) -> int:
    cfg = configure(ctx)
    _cluster_safety(ctx, cfg)
    table = mounts.read_mountinfo()
    inner = mounts.below(table, cfg.directory)
    if inner:
        ctx.fail(codes.ERR_CONFIGURED, f"{inner[0].mountpoint} is mounted below "
                                       f"{cfg.directory}; refusing to hide it")
    if cfg.move and mounts.at(table, _moved_dir(cfg)):
        ctx.fail(codes.ERR_GENERIC, f"{_moved_dir(cfg)} is still mounted from an earlier stop")
    rc, reason = status(ctx, cfg, table)
    if rc == codes.SUCCESS:
        ctx.log.info(f"{cfg.device} is already mounted on {cfg.directory}")
        return codes.SUCCESS
    if rc != codes.NOT_RUNNING:
        ctx.fail(codes.ERR_GENERIC, f"{reason}; not mounting over it")
    if cfg.directory != (ctx.params.directory.rstrip("/") or "/"):
        ctx.log.info(f"mount point {ctx.params.directory} resolves to {cfg.directory}")
    _check_fstype(ctx, cfg)
    device = resolve(ctx, cfg)
    if device is None:
        ctx.fail(codes.ERR_INSTALLED, f"couldn't find device [{cfg.device}]")
    if cfg.bind and not os.path.exists(device):
        ctx.fail(codes.ERR_INSTALLED, f"bind source {device} does not exist")
    if cfg.block:
        ctx.state.ensure()
        ctx.state.write(_state_name(cfg), device + "\n", 0o644)
        _fsck(ctx, cfg, device)
    created = not os.path.isdir(cfg.directory)
    try:
        os.makedirs(cfg.directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        ctx.fail(codes.ERR_INSTALLED, f"cannot create mount point {cfg.directory}: "
                                      f"{exc.strerror}")
    try:
        _mount(ctx, cfg, device)
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
    return codes.SUCCESS


@agent.action("stop", timeout="60s")
def stop(ctx: Context) -> int:
    if ctx.params.directory is None or ctx.params.device is None:
        return codes.SUCCESS  # nothing this configuration could have mounted
    cfg = configure(ctx, strict=False)
    table = mounts.read_mountinfo()
    top = mounts.at(table, cfg.directory)
    moved = _moved_dir(cfg)
    if top is not None and status(ctx, cfg, table)[0] == OTHER:
        ctx.log.warning(f"{cfg.directory} holds another filesystem ({top.source}); left alone")
        top = None
    targets: list[mounts.Mount] = []
    if top is not None:
        if cfg.fstype not in NETWORK_FS:  # an unlink on a dead NFS server would hang stop
            try:
                os.unlink(status_file(ctx, cfg))
            except OSError:
                pass
        if cfg.move:
            os.makedirs(moved, mode=0o700, exist_ok=True)
            res = ctx.run(["mount", "--move", cfg.directory, moved], timeout=10)
            if res.ok:
                top = mounts.at(mounts.read_mountinfo(), moved) or top
        table = mounts.read_mountinfo()
        targets = mounts.below(table, top.mountpoint)
        if cfg.block:  # other mounts of the same device (binds elsewhere) go too
            targets += [m for m in table if m.dev == top.dev and m.mount_id != top.mount_id
                        and m not in targets]
        targets.append(top)
    elif cfg.move:
        left = mounts.at(table, moved)
        targets = [left] if left else []
    from ocf_lib.unmount import unmount_all

    p = ctx.params
    unmount_all(ctx, targets, kill=cfg.kill, delay=p.signal_delay or 0.0, fast=bool(p.fast_stop),
                term=[_signal(w) or 15 for w in _signal_words(p.term_signals or "TERM")],
                kill_sigs=[_signal(w) or 9 for w in _signal_words(p.kill_signals or "KILL")],
                network=cfg.fstype in NETWORK_FS, own_device=cfg.block and not cfg.bind,
                lazy_ok=cfg.fstype in VIRTUAL_FS or (cfg.bind and not cfg.block))
    if cfg.move and os.path.isdir(moved) and mounts.at(mounts.read_mountinfo(), moved) is None:
        try:
            os.rmdir(moved)  # upstream leaves it behind, and then misreads status
        except OSError as exc:
            ctx.log.warning(f"could not remove {moved}: {exc.strerror}")
    ctx.state.remove(_state_name(cfg))
    return codes.SUCCESS


@agent.action("monitor", timeout="40s", interval="20s", depth=0,
              more=[{"timeout": "40s", "interval": "61s", "depth": "10"},
                    {"timeout": "40s", "interval": "62s", "depth": "20"}])
def monitor(ctx: Context) -> int:
    cfg = configure(ctx)
    table = mounts.read_mountinfo()
    if cfg.move and mounts.at(table, _moved_dir(cfg)):
        ctx.fail(codes.ERR_GENERIC, f"{cfg.device} is mounted on {_moved_dir(cfg)} "
                                    "(a stop in move mode did not finish)")
    rc, reason = status(ctx, cfg, table)
    if rc == codes.NOT_RUNNING:
        return rc
    if rc == OTHER and ctx.is_probe:
        return codes.NOT_RUNNING  # our device is verifiably not on this mount point
    if rc != codes.SUCCESS:
        ctx.fail(codes.ERR_GENERIC, reason)
    level = ctx.check_level
    if level >= 10:
        problem = io_check(ctx, cfg, level)
        if problem:
            ctx.fail(codes.ERR_GENERIC, problem)
    return codes.SUCCESS


@agent.action("validate-all", timeout="5s")
def validate_all(ctx: Context) -> int:
    cfg = configure(ctx)
    _cluster_safety(ctx, cfg)
    _check_fstype(ctx, cfg)
    return codes.SUCCESS


# -- start's steps -------------------------------------------------------------------

def _cluster_safety(ctx: Context, cfg: Config) -> None:
    clone = bool(ctx.meta("clone_max"))
    fstype = cfg.fstype
    if fstype in CLUSTER_FS and not clone:
        ctx.fail(codes.ERR_CONFIGURED, f"{fstype} is a cluster filesystem: run it as a clone "
                                       "(with its DLM/o2cb stack), not as a single resource")
    if clone and not ctx.params.force_clones and "ro" not in cfg.options.split(",") and (
            fstype.startswith(LOCAL_FS) or (cfg.block and not fstype)):
        ctx.fail(codes.ERR_CONFIGURED, f"DANGER! {fstype or 'this filesystem'} is NOT "
                                       "cluster-aware: cloning it corrupts it (see force_clones)")


def _known_fstypes() -> set[str]:
    with open("/proc/filesystems", encoding="ascii") as handle:
        return {line.split()[-1] for line in handle if line.strip()}


def _check_fstype(ctx: Context, cfg: Config) -> None:
    fstype = cfg.fstype
    if not fstype or fstype == "none":
        return
    if fstype.startswith("fuse.") or fstype in ("glusterfs", "rozofs"):
        fstype = "fuse"
    from ocf_lib.proc import which

    helper = any(which(f"{d}/mount.{cfg.fstype}") for d in ("/sbin", "/usr/sbin"))
    if fstype in _known_fstypes() or helper:
        return
    if which("modprobe"):
        ctx.run(["modprobe", "-q", fstype], timeout=10, quiet=True)
        if fstype in _known_fstypes():
            return
    ctx.fail(codes.ERR_INSTALLED, f"filesystem type '{cfg.fstype}' is not supported by this "
                                  "kernel (not in /proc/filesystems, no mount helper)")


def _fsck(ctx: Context, cfg: Config, device: str) -> None:
    policy = (ctx.params.run_fsck or "auto").strip().lower()
    if policy not in ("auto", "force", "no"):
        ctx.log.warning(f"run_fsck '{policy}' is not auto, force or no; using auto")
        policy = "auto"
    if policy == "no" or (policy == "auto" and cfg.fstype in NO_FSCK):
        return
    argv = ["fsck", "-p", device] if not cfg.fstype else ["fsck", "-t", cfg.fstype, "-p", device]
    res = ctx.run(argv, timeout=ctx.deadline.limit(None, soft=True))
    if res.rc >= 4:
        ctx.fail(codes.ERR_GENERIC, f"fsck of {device} failed (exit {res.rc}): {res.reason()}")


def _mount(ctx: Context, cfg: Config, device: str) -> None:
    argv = ["mount"]
    if cfg.bind:
        argv += ["--bind", device, cfg.directory]
    else:
        if cfg.fstype:
            argv += ["-t", cfg.fstype]
        if cfg.options:
            argv += ["-o", cfg.options]
        argv += [device, cfg.directory]
    res = ctx.run(argv, timeout=ctx.deadline.limit(None, soft=True))
    if not res.ok:
        ctx.fail(codes.ERR_GENERIC, f"couldn't mount {cfg.device} on {cfg.directory}: "
                                    f"{res.reason()}")
    extra = [o for o in cfg.options.split(",") if o and o != "bind"] if cfg.bind else []
    if extra:  # bind mounts take their flags (ro, nosuid...) only through a remount
        res = ctx.run(["mount", "-o", ",".join(["remount", "bind", *extra]), cfg.directory],
                      timeout=ctx.deadline.limit(None, soft=True))
        if not res.ok:
            ctx.run(["umount", cfg.directory], timeout=10)
            ctx.fail(codes.ERR_GENERIC, f"couldn't apply {','.join(extra)} to the bind mount "
                                        f"{cfg.directory}: {res.reason()}")


# -- deeper monitors ------------------------------------------------------------------

def io_check(ctx: Context, cfg: Config, level: int) -> str:
    """Depth 10: read the device's first block; 20: write and read back a status file.

    Runs in a thread so that I/O stuck on a dead device answers 1 before the
    deadline instead of getting the agent killed.
    """
    import threading

    problem: list[str] = ["the I/O check did not finish in time (device hung?)"]

    def work() -> None:
        try:
            problem[0] = _io(ctx, cfg, level)
        except OSError as exc:
            problem[0] = f"I/O check on {cfg.directory} failed: {exc}"

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(ctx.deadline.limit(30.0, soft=True))
    return problem[0]


def _aligned(size: int) -> mmap.mmap:
    import mmap

    return mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants


def _io(ctx: Context, cfg: Config, level: int) -> str:
    device = (ctx.state.read(_state_name(cfg)) or "").strip() or resolve(ctx, cfg) or ""
    if level >= 10 and cfg.block and device:
        fd = os.open(device, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
        try:
            if os.readv(fd, [_aligned(4096)]) <= 0:
                return f"could not read from {device}"
        finally:
            os.close(fd)
    if level >= 20:
        path = status_file(ctx, cfg)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        text = (ctx.instance + "\n").encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_SYNC | os.O_CLOEXEC
        buf: bytes | mmap.mmap = text
        if cfg.block:
            flags |= os.O_DIRECT
            buf = _aligned(4096)
            buf[: len(text)] = text
        fd = os.open(path, flags, 0o644)
        try:
            os.write(fd, buf)
            os.fsync(fd)
        finally:
            os.close(fd)
        with open(path, "rb") as handle:
            if not handle.read().startswith(text):
                return f"status file {path} did not read back what was written"
    return ""
