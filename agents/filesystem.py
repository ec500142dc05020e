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
from ocf_lib.params import BOOLEAN, DURATION, Param, ParamError, ParamType

TYPE_CHECKING = False
if TYPE_CHECKING:
    import mmap
    from collections.abc import Iterator

    from ocf_lib.params import Values


# -- parameter types: all parsing of Filesystem's values happens here ----------------

_TAGS = (("-U ", "UUID="), ("--uuid=", "UUID="), ("-L ", "LABEL="), ("--label=", "LABEL="),
         ("UUID=", "UUID="), ("LABEL=", "LABEL="))


def _control(text: str) -> bool:
    return any(ord(c) < 32 or c == "\x7f" for c in text)


class Device:
    """The ``device`` value: the text as given, and ``tag`` ("UUID=x"/"LABEL=x") when
    it names a filesystem rather than a path."""

    __slots__ = ("text", "tag")

    def __init__(self, text: str, tag: str) -> None:
        self.text = text
        self.tag = tag

    def __str__(self) -> str:
        return self.text


class _DeviceType(ParamType):
    doc = ("a device path, UUID=/LABEL= (or -U/-L/--uuid=/--label=), host:/export, "
           "//host/share, or a directory to bind; no leading or trailing blanks, no other "
           "word starting with '-'")

    def convert(self, raw: str, name: str) -> Device:
        if raw != raw.strip():
            raise ParamError(name, raw, "has leading or trailing white space")
        if _control(raw):
            raise ParamError(name, raw, "contains a control character")
        for prefix, tag in _TAGS:
            if raw.startswith(prefix):
                value = raw[len(prefix):].strip()
                if not value:
                    raise ParamError(name, raw, f"names no {tag[:-1]}")
                return Device(raw, tag + value)
        if raw.startswith("-"):  # mount would read it as an option
            raise ParamError(name, raw, "starts with '-' (only -U, -L, --uuid=, --label= "
                                        "are understood)")
        return Device(raw, "")


class _MountPointType(ParamType):
    doc = "absolute path, not /; symlinks are followed"

    def convert(self, raw: str, name: str) -> str:
        if raw != raw.strip():
            raise ParamError(name, raw, "has leading or trailing white space")
        if not raw.startswith("/"):
            raise ParamError(name, raw, "is not an absolute path")
        if "\0" in raw:
            raise ParamError(name, raw, "contains a NUL byte")
        text = "/" + "/".join(w for w in raw.split("/") if w and w != ".")
        if text == "/":
            raise ParamError(name, raw, "is the root directory")
        return text


class _FsTypeType(ParamType):
    doc = "a filesystem type name (letters, digits, '.', '_', '+', '-'), 'none' for a bind"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if text.startswith("-") or not all(c.isascii() and (c.isalnum() or c in "._+-")
                                           for c in text):
            raise ParamError(name, raw, "is not a filesystem type name")
        return text


# Values of these options are secrets: never in argv, a log or a message.
SECRET_OPTIONS = ("password=", "pass=", "password2=")
# mount(8) options that change the operation or run programs: never from a resource.
FORBIDDEN_OPTIONS = ("remount", "move", "rbind", "make-", "helper=", "uhelper=", "x-mount.")


def _hide(word: str) -> str:
    for key in SECRET_OPTIONS:
        if word.lower().startswith(key):
            return word[:len(key)] + "****"
    return word


class MountOptions:
    """The ``options`` value: the words in order, with the secret values known."""

    __slots__ = ("words",)

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words

    def __contains__(self, word: str) -> bool:
        return word in self.words

    def __bool__(self) -> bool:
        return bool(self.words)

    @property
    def text(self) -> str:
        """For mount's -o; may hold secrets."""
        return ",".join(self.words)

    def shown(self) -> str:
        return ",".join(_hide(w) for w in self.words)

    def secrets(self) -> list[str]:
        return [w.partition("=")[2] for w in self.words if _hide(w) != w and "=" in w]

    def __str__(self) -> str:
        return self.shown()


class _MountOptionsType(ParamType):
    doc = ("comma-separated mount options without blanks or quotes; remount, move, rbind, "
           "make-*, helper=, uhelper= and x-mount.* are refused")

    def convert(self, raw: str, name: str) -> MountOptions:
        text = raw.strip()
        words = tuple(text.split(",")) if text else ()
        shown = ",".join(_hide(w) for w in words)
        for word in words:
            low = word.lower()
            if not word or any(c in word for c in " \t'\"\\") or _control(word):
                raise ParamError(name, shown, "holds an empty or malformed option")
            if low.startswith("-") or any(low.startswith(f) for f in FORBIDDEN_OPTIONS):
                raise ParamError(name, shown, f"option '{_hide(word)}' is not allowed here")
        return MountOptions(words)


class StatusPrefix:
    """``statusfile_prefix`` split into the directories to walk and the file-name stem."""

    __slots__ = ("dirs", "stem")

    def __init__(self, dirs: tuple[str, ...], stem: str) -> None:
        self.dirs = dirs
        self.stem = stem

    def __str__(self) -> str:
        return "".join(d + "/" for d in self.dirs) + self.stem


class _StatusPrefixType(ParamType):
    doc = "a path relative to the mount point, without '..'"

    def convert(self, raw: str, name: str) -> StatusPrefix:
        if raw.startswith("/") or "\0" in raw or _control(raw):
            raise ParamError(name, raw, "is not a relative path")
        parts = [w for w in raw.split("/") if w != "."]
        if ".." in parts:
            raise ParamError(name, raw, "leads out of the mount point ('..')")
        *dirs, stem = parts
        return StatusPrefix(tuple(d for d in dirs if d), stem)


class Fsck:
    """``run_fsck``: ``policy`` is auto, force or no; ``unknown`` holds a word upstream
    also read as auto (with a warning)."""

    __slots__ = ("policy", "unknown")

    def __init__(self, policy: str, unknown: str = "") -> None:
        self.policy = policy
        self.unknown = unknown

    def __str__(self) -> str:
        return self.policy


class _FsckType(ParamType):
    doc = "auto, force or no (another word means auto, with a warning, as upstream)"

    def convert(self, raw: str, name: str) -> Fsck:
        word = raw.strip().lower()
        if word in ("auto", "force", "no"):
            return Fsck(word)
        return Fsck("auto", raw)


class Unmount:
    """``force_unmount``: ``kill`` is true, safe or false; ``move`` the modifier;
    ``unknown`` the words upstream also ignores (with a warning)."""

    __slots__ = ("kill", "move", "unknown")

    def __init__(self, kill: str, move: bool, unknown: tuple[str, ...]) -> None:
        self.kill = kill
        self.move = move
        self.unknown = unknown

    def __str__(self) -> str:
        return self.kill + (",move" if self.move else "")


_KILL_WORDS = {"true": "true", "yes": "true", "1": "true", "safe": "safe",
               "false": "false", "no": "false", "0": "false"}
_MODIFIERS = ("xargs", "noxargs", "ps", "nops")


class _UnmountType(ParamType):
    doc = ("true, safe or false, with the modifiers move, xargs, ps (or nomove, noxargs, nops), "
           "comma-separated; unknown words are ignored with a warning, as upstream")

    def convert(self, raw: str, name: str) -> Unmount:
        kill, move, unknown = "true", False, []
        for word in (w.strip() for w in raw.split(",")):
            low = word.lower()
            if not word:
                continue
            if low in _KILL_WORDS:
                kill = _KILL_WORDS[low]
            elif low in ("move", "nomove"):
                move = low == "move"
            elif low not in _MODIFIERS:
                unknown.append(word)
        return Unmount(kill, move, tuple(unknown))


SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
           "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
           "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
           "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
           "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31}


class _SignalsType(ParamType):
    doc = "signal names (TERM, SIGTERM) or numbers 1-64, separated by blanks or commas"

    def convert(self, raw: str, name: str) -> tuple[int, ...]:
        sigs = []
        for word in raw.replace(",", " ").split():
            upper = word.upper()
            if word.isascii() and word.isdigit() and 1 <= int(word) <= 64:
                sigs.append(int(word))
            elif (upper[3:] if upper.startswith("SIG") else upper) in SIGNALS:
                sigs.append(SIGNALS[upper[3:] if upper.startswith("SIG") else upper])
            else:
                raise ParamError(name, raw, f"'{word}' is not a signal name or number")
        if not sigs:
            raise ParamError(name, raw, "names no signal")
        return tuple(sigs)


DEVICE, MOUNTPOINT, FSTYPE = _DeviceType(), _MountPointType(), _FsTypeType()
OPTIONS, STATUS_PREFIX, FSCK = _MountOptionsType(), _StatusPrefixType(), _FsckType()
UNMOUNT, SIGNAL_LIST = _UnmountType(), _SignalsType()


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
        Param("fast_stop", BOOLEAN, default="no", shortdesc="fast stop",
              longdesc="Give up signalling after 6 seconds instead of the whole timeout."),
        Param("force_clones", BOOLEAN, default="false", shortdesc="allow running as a clone",
              longdesc="Allow cloning a filesystem that is not cluster-aware (dangerous)."),
        Param("force_unmount", UNMOUNT, default="true", shortdesc="Kill processes before unmount",
              longdesc="true: kill the processes using the filesystem; safe: only those "
                       "found by path in /proc (never blocks on a dead NFS server); false: "
                       "kill nothing. Allowed: " + UNMOUNT.doc + "."),
        Param("term_signals", SIGNAL_LIST, default="TERM", shortdesc="signals sent first",
              longdesc="Sent during the first half of stop: " + SIGNAL_LIST.doc + "."),
        Param("kill_signals", SIGNAL_LIST, default="KILL",
              shortdesc="signals sent when the first ones did not help",
              longdesc="Sent during the second half of stop: " + SIGNAL_LIST.doc + "."),
        Param("signal_delay", DURATION, default="1", shortdesc="seconds between signal rounds"),
    ],
)

NETWORK_FS = frozenset(("nfs", "nfs4", "aznfs", "efs", "smbfs", "cifs", "smb3", "glusterfs",
                        "ceph", "rozofs", "lustre", "cvfs"))
VIRTUAL_FS = frozenset(("none", "tmpfs", "overlay", "overlayfs", "zfs", "proc", "sysfs"))
CLUSTER_FS = frozenset(("ocfs2", "gfs2"))
CIFS = frozenset(("cifs", "smb3"))  # mount.cifs: a password can come from credentials=
LOCAL_FS = ("ext", "reiser", "xfs", "jfs", "btrfs", "vfat")
NO_FSCK = frozenset(("ext4", "ext4dev", "ext3", "reiserfs", "reiser4", "nss", "xfs", "jfs",
                     "vfat", "fat", "btrfs", *NETWORK_FS, *VIRTUAL_FS, *CLUSTER_FS))


def _is_bind(p: Values) -> bool:
    return p.fstype == "none" or "bind" in p.options


@agent.validator
def _bind_source(p: Values) -> Iterator[ParamError]:
    if _is_bind(p) and not p.device.text.startswith("/"):
        yield ParamError("device", p.device.text, "must be an absolute path for a bind mount")


@agent.validator
def _password_only_for_cifs(p: Values) -> Iterator[ParamError]:
    # Only mount.cifs can take a password from a file instead of its command line.
    movable = p.fstype in CIFS and all(
        w.lower().startswith(("password=", "pass=")) for w in p.options.words if _hide(w) != w)
    if p.options.secrets() and not movable:
        yield ParamError("options", p.options.shown(), "holds a password that would show in "
                         "the process list (only password= or pass= with fstype cifs or smb3 "
                         "is moved to a credentials file); use credentials=<file>")


class Target:
    """The parameters resolved against this node: what to mount, where, and how it is
    recognised in the mount table."""

    __slots__ = ("device", "tag", "directory", "fstype", "options", "bind", "block", "kill",
                 "move")

    def __init__(self, p: Values, directory: str, block: bool) -> None:
        self.device: str = p.device.text
        self.tag: str = p.device.tag  # "UUID=..." or "LABEL=...", resolved with blkid
        self.directory = directory
        self.fstype: str = p.fstype
        self.options: MountOptions = p.options
        self.bind = _is_bind(p)
        self.block = block  # a block device (possibly still to find from its tag)
        self.kill: str = p.force_unmount.kill
        self.move: bool = p.force_unmount.move


def elsewhere(cfg: Target, directory: str) -> Target:
    """The same resource on another mount point."""
    other = object.__new__(Target)
    for name in Target.__slots__:
        setattr(other, name, getattr(cfg, name))
    other.directory = directory
    return other


def _started_name(ctx: Context) -> str:
    return f"Filesystem-{ctx.instance}.mountpoint".replace("/", "%2F")


def started_at(ctx: Context, cfg: Target, table: list[mounts.Mount]) -> Target | None:
    """Where start mounted this resource, when the mount point now resolves elsewhere
    (a symlink re-pointed) and our filesystem is still mounted there; else None."""
    recorded = (ctx.state.read(_started_name(ctx)) or "").rstrip("\n")
    if not recorded or recorded == cfg.directory:
        return None
    old = elsewhere(cfg, recorded)
    return old if status(ctx, old, table)[0] == codes.SUCCESS else None


def mount_point(ctx: Context, table: list[mounts.Mount], strict: bool = True) -> str:
    """The mount point with every symlink resolved, the same way in every action;
    "/" is refused unless ``strict`` is False (stop, which never unmounts it)."""
    try:
        directory = mounts.resolve_mountpoint(ctx.params.directory, table)
    except OSError as exc:
        raise OCFError(codes.ERR_GENERIC, f"cannot resolve the mount point "
                                          f"{ctx.params.directory}: {exc.strerror}") from None
    if directory == "/" and strict:
        raise ParamError("directory", ctx.params.directory, "resolves to the root directory")
    return directory


def configure(ctx: Context, table: list[mounts.Mount], strict: bool = True) -> Target:
    """The parameters resolved against the node; ``strict=False`` (stop) skips the checks
    that only matter for mounting."""
    p = ctx.params
    for secret in p.options.secrets():
        ctx.log.add_secret(secret)
    if strict and p.force_unmount.unknown:
        ctx.log.warning(f"force_unmount: unknown word(s) {', '.join(p.force_unmount.unknown)} "
                        "ignored")
    directory = mount_point(ctx, table, strict)
    raw = p.device.text
    block = False
    if p.device.tag:
        block = not _is_bind(p)
    elif not _is_bind(p) and p.fstype not in NETWORK_FS and p.fstype not in VIRTUAL_FS \
            and raw.startswith("/") and "loop" not in p.options:
        if strict and os.path.isdir(raw):
            raise ParamError("device", raw, "is a directory (use fstype=none for a bind mount)")
        block = True
    return Target(p, directory, block)


# -- where the device is -----------------------------------------------------------

def resolve(ctx: Context, cfg: Target) -> str | None:
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


def _state_name(cfg: Target) -> str:
    # One file per mount point; the escaping keeps different paths apart.
    return "Filesystem-" + cfg.directory.replace("%", "%25").replace("/", "%2F")


OTHER = -1  # status(): verifiably another filesystem on the mount point


def our_device(ctx: Context, cfg: Target) -> tuple[int, int] | None:
    """(major, minor) of our block device: for UUID=/LABEL=, the node recorded at start."""
    device = cfg.device if not cfg.tag else (ctx.state.read(_state_name(cfg)) or "").strip()
    if not device:
        device = resolve(ctx, cfg) or ""
    return mounts.block_dev(device) if device else None


def status(ctx: Context, cfg: Target, table: list[mounts.Mount]) -> tuple[int, str]:
    """(rc, reason): 0 mounted with our device, 7 not mounted, OTHER another device is
    (verified by device number), 1 something is mounted that cannot be compared."""
    top = mounts.at(table, cfg.directory)
    if top is None:
        return codes.NOT_RUNNING, f"{cfg.directory} is not mounted"
    if cfg.block:
        want = our_device(ctx, cfg)
        if want is None:
            return codes.ERR_GENERIC, (f"{cfg.directory} has {top.source} mounted, and "
                                       f"{cfg.device} cannot be found to compare")
        same = mounts.same_filesystem(top, want)
        if same is None:
            return codes.ERR_GENERIC, (f"{cfg.directory} has {top.source} ({top.fstype}) "
                                       f"mounted, and it cannot be told whether that is "
                                       f"{cfg.device}")
        if not same:
            for m in table:  # ours may still be there, covered by a later mount
                if m.mountpoint == cfg.directory and m is not top \
                        and mounts.same_filesystem(m, want) is not False:
                    return codes.ERR_GENERIC, (f"{cfg.device} is mounted on {cfg.directory} "
                                               f"but covered by {top.source} ({top.fstype}) "
                                               "mounted over it")
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
    if source.startswith("/dev/loop") and "loop" in cfg.options:
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


def _moved_dir(cfg: Target) -> str:
    parent, name = os.path.split(cfg.directory)
    return os.path.join(parent, "." + name)


def status_name(ctx: Context) -> str:
    """The depth-20 status file's name, in its directory (upstream's naming)."""
    name = f"{ctx.params.statusfile_prefix.stem}{ctx.instance}"
    clone = ctx.meta("clone")
    if clone:
        name += f"_{clone}"
    return f"{name}_{os.uname().nodename}"


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def status_dir(ctx: Context, cfg: Target, create: bool) -> int:
    """A descriptor of the status file's directory, walked down from the mount root
    one component at a time without following a symlink: the filesystem's users own
    these paths, and root must never write through a link they planted.  Ownership
    is not checked (root_squash NFS, CIFS uid=: root's own files belong to others)."""
    fd = os.open(cfg.directory, _DIR_FLAGS)
    try:
        for name in ctx.params.statusfile_prefix.dirs:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                below = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (20, 40):  # ENOTDIR, ELOOP: a file or a symlink
                    raise OSError(exc.errno, f"{name} is not a directory (symlinks are "
                                             "never followed)") from None
                raise
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_status_file(ctx: Context, cfg: Target) -> None:
    try:
        fd = status_dir(ctx, cfg, create=False)
    except OSError:
        return
    try:
        os.unlink(status_name(ctx), dir_fd=fd)  # removes a planted link, never its target
    except OSError:
        pass
    finally:
        os.close(fd)


def write_status_file(ctx: Context, cfg: Target) -> str:
    """Write the status file and read it back; "" when that worked, else the problem.

    The data goes to a new file (O_EXCL, O_NOFOLLOW, a name nobody can predict) that
    is then renamed over the status file: a planted symlink there is replaced, and its
    target is never opened."""
    name = status_name(ctx)
    shown = os.path.join(cfg.directory, *ctx.params.statusfile_prefix.dirs, name)
    text = (ctx.instance + "\n").encode()
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    buf: bytes | mmap.mmap = text
    back: bytearray | mmap.mmap = bytearray(len(text))
    if cfg.block:  # past the page cache, to the device
        flags |= os.O_DIRECT
        buf, back = _aligned(4096), _aligned(4096)
        buf[: len(text)] = text
    dfd = status_dir(ctx, cfg, create=True)
    tmp = f".{name}.{os.getpid()}.{os.urandom(8).hex()}"
    try:
        fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
        try:
            os.write(fd, buf)
            os.fsync(fd)
            os.preadv(fd, [back], 0)
        finally:
            os.close(fd)
        if bytes(back[: len(text)]) != text:
            return f"status file {shown} did not read back what was written"
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = ""
    finally:
        if tmp:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        os.close(dfd)
    return ""


# -- actions ------------------------------------------------------------------------

@agent.action("start", timeout="60s")
def start(ctx: Context) -> int:
    table = mounts.read_mountinfo()
    cfg = configure(ctx, table)
    _cluster_safety(ctx, cfg)
    inner = mounts.below(table, cfg.directory)
    if inner:
        ctx.fail(codes.ERR_CONFIGURED, f"{inner[0].mountpoint} is mounted below "
                                       f"{cfg.directory}; refusing to hide it")
    if cfg.move and mounts.at(table, _moved_dir(cfg)):
        ctx.fail(codes.ERR_GENERIC, f"{_moved_dir(cfg)} is still mounted from an earlier stop")
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
    _check_fstype(ctx, cfg)
    device = resolve(ctx, cfg)
    if device is None:
        ctx.fail(codes.ERR_INSTALLED, f"couldn't find device [{cfg.device}]")
    if cfg.bind and not os.path.exists(device):
        ctx.fail(codes.ERR_INSTALLED, f"bind source {device} does not exist")
    if cfg.block:
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
    _record_mount_point(ctx, cfg)
    return codes.SUCCESS


def _record_mount_point(ctx: Context, cfg: Target) -> None:
    if cfg.directory != ctx.params.directory:  # only a path through symlinks can move
        ctx.state.write(_started_name(ctx), cfg.directory + "\n", 0o644)


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
    ctx.state.remove(_started_name(ctx))
    return codes.SUCCESS


def _stop_at(ctx: Context, cfg: Target, table: list[mounts.Mount]) -> None:
    top = mounts.at(table, cfg.directory)
    moved = _moved_dir(cfg)
    if top is not None and status(ctx, cfg, table)[0] == OTHER:
        ctx.log.warning(f"{cfg.directory} holds another filesystem ({top.source}); left alone")
        top = None
    targets: list[mounts.Mount] = []
    if top is not None:
        if cfg.fstype not in NETWORK_FS:  # an unlink on a dead NFS server would hang stop
            _remove_status_file(ctx, cfg)
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
    ctx.state.remove(_state_name(cfg))


@agent.proves_absent
def absent(ctx: Context) -> bool:
    """For stop when ``device`` or ``directory`` is unusable: True only when the kernel
    shows that nothing this resource could have mounted is mounted."""
    p = ctx.params
    table = mounts.read_mountinfo()
    recorded = (ctx.state.read(_started_name(ctx)) or "").rstrip("\n")
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
    if cfg.move and mounts.at(table, _moved_dir(cfg)):
        ctx.fail(codes.ERR_GENERIC, f"{cfg.device} is mounted on {_moved_dir(cfg)} "
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
        problem = io_check(ctx, cfg, level)
        if problem:
            ctx.fail(codes.ERR_GENERIC, problem)
    return codes.SUCCESS


@agent.action("validate-all", timeout="5s")
def validate_all(ctx: Context) -> int:
    cfg = configure(ctx, mounts.read_mountinfo())
    _cluster_safety(ctx, cfg)
    _check_fstype(ctx, cfg)
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


def _known_fstypes() -> set[str]:
    with open("/proc/filesystems", encoding="ascii") as handle:
        return {line.split()[-1] for line in handle if line.strip()}


def _check_fstype(ctx: Context, cfg: Target) -> None:
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


def _fsck(ctx: Context, cfg: Target, device: str) -> None:
    fsck = ctx.params.run_fsck
    if fsck.unknown:
        ctx.log.warning(f"run_fsck '{fsck.unknown}' is not auto, force or no; using auto")
    policy = fsck.policy
    if policy == "no" or (policy == "auto" and cfg.fstype in NO_FSCK):
        return
    argv = ["fsck", "-p", device] if not cfg.fstype else ["fsck", "-t", cfg.fstype, "-p", device]
    res = ctx.run(argv, timeout=ctx.deadline.limit(None, soft=True))
    if res.rc >= 4:
        ctx.fail(codes.ERR_GENERIC, f"fsck of {device} failed (exit {res.rc}): {res.reason()}")


def _credentials_file(ctx: Context, cfg: Target) -> tuple[str, str]:
    """(path, -o text): a CIFS password moved out of mount's argv into a mode-0600
    file that mount.cifs reads (credentials=); ("", options) when there is none."""
    secret = [w for w in cfg.options.words if w.lower().startswith(("password=", "pass="))]
    if not secret:
        return "", cfg.options.text
    ctx.state.ensure()
    path = ctx.state.file(f".Filesystem-credentials-{os.getpid()}-{os.urandom(8).hex()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"password={secret[-1].partition('=')[2]}\n".encode())
    finally:
        os.close(fd)
    words = [w for w in cfg.options.words if w not in secret]
    return path, ",".join([*words, f"credentials={path}"])


def _mount(ctx: Context, cfg: Target, device: str) -> None:
    argv = ["mount"]
    credentials, options = "", cfg.options.text
    if cfg.bind:
        argv += ["--bind", "--", device, cfg.directory]
    else:
        if cfg.fstype:
            argv += ["-t", cfg.fstype]
        if cfg.fstype in CIFS:
            credentials, options = _credentials_file(ctx, cfg)
        if options:
            argv += ["-o", options]
        argv += ["--", device, cfg.directory]  # nothing after "--" is read as an option
    try:
        res = ctx.run(argv, timeout=ctx.deadline.limit(None, soft=True))
    finally:
        if credentials:
            os.unlink(credentials)
    if not res.ok:
        ctx.fail(codes.ERR_GENERIC, f"couldn't mount {cfg.device} on {cfg.directory}: "
                                    f"{res.reason()}")
    extra = [o for o in cfg.options.words if o != "bind"] if cfg.bind else []
    if extra:  # bind mounts take their flags (ro, nosuid...) only through a remount
        res = ctx.run(["mount", "-o", ",".join(["remount", "bind", *extra]), "--",
                       cfg.directory],
                      timeout=ctx.deadline.limit(None, soft=True))
        if not res.ok:
            ctx.run(["umount", "--", cfg.directory], timeout=10)
            ctx.fail(codes.ERR_GENERIC, f"couldn't apply {','.join(extra)} to the bind mount "
                                        f"{cfg.directory}: {res.reason()}")


# -- deeper monitors ------------------------------------------------------------------

def io_check(ctx: Context, cfg: Target, level: int) -> str:
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


def _io(ctx: Context, cfg: Target, level: int) -> str:
    device = (ctx.state.read(_state_name(cfg)) or "").strip() or resolve(ctx, cfg) or ""
    if level >= 10 and cfg.block and device:
        fd = os.open(device, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
        try:
            if os.readv(fd, [_aligned(4096)]) <= 0:
                return f"could not read from {device}"
        finally:
            os.close(fd)
    if level >= 20:
        return write_status_file(ctx, cfg)
    return ""
