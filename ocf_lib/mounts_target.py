"""A Filesystem resource resolved against this node: which mount point (through
symlinks, the same way in every action), which device (UUID=/LABEL= looked up), and
whether the mount table shows it mounted, verified by device number (:func:`status`).
"""

from __future__ import annotations

import os

from ocf_lib import codes, mounts
from ocf_lib.ocf import OCFError
from ocf_lib.params import ParamError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.mounts_params import MountOptions
    from ocf_lib.ocf import Context
    from ocf_lib.params import Values

NETWORK_FS = frozenset(("nfs", "nfs4", "aznfs", "efs", "smbfs", "cifs", "smb3", "glusterfs",
                        "ceph", "rozofs", "lustre", "cvfs"))
VIRTUAL_FS = frozenset(("none", "tmpfs", "overlay", "overlayfs", "zfs", "proc", "sysfs"))
CLUSTER_FS = frozenset(("ocfs2", "gfs2"))
CIFS = frozenset(("cifs", "smb3"))  # mount.cifs: a password can come from credentials=
LOCAL_FS = ("ext", "reiser", "xfs", "jfs", "btrfs", "vfat")
NO_FSCK = frozenset(("ext4", "ext4dev", "ext3", "reiserfs", "reiser4", "nss", "xfs", "jfs",
                     "vfat", "fat", "btrfs", *NETWORK_FS, *VIRTUAL_FS, *CLUSTER_FS))


def is_bind(p: Values) -> bool:
    return p.fstype == "none" or "bind" in p.options


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
        self.bind = is_bind(p)
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


def started_name(ctx: Context) -> str:
    return f"Filesystem-{ctx.instance}.mountpoint".replace("/", "%2F")


def started_at(ctx: Context, cfg: Target, table: list[mounts.Mount]) -> Target | None:
    """Where start mounted this resource, when the mount point now resolves elsewhere
    (a symlink re-pointed) and our filesystem is still mounted there; else None."""
    recorded = (ctx.state.read(started_name(ctx)) or "").rstrip("\n")
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
    directory = mount_point(ctx, table, strict)
    raw = p.device.text
    block = False
    if p.device.tag:
        block = not is_bind(p)
    elif not is_bind(p) and p.fstype not in NETWORK_FS and p.fstype not in VIRTUAL_FS \
            and raw.startswith("/") and "loop" not in p.options:
        if strict and os.path.isdir(raw):
            raise ParamError("device", raw, "is a directory (use fstype=none for a bind mount)")
        block = True
    return Target(p, directory, block)


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


def state_name(cfg: Target) -> str:
    # One file per mount point; the escaping keeps different paths apart.
    return "Filesystem-" + cfg.directory.replace("%", "%25").replace("/", "%2F")


OTHER = -1  # status(): verifiably another filesystem on the mount point


def our_device(ctx: Context, cfg: Target) -> tuple[int, int] | None:
    """(major, minor) of our block device: for UUID=/LABEL=, the node recorded at start."""
    device = cfg.device if not cfg.tag else (ctx.state.read(state_name(cfg)) or "").strip()
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


def moved_dir(cfg: Target) -> str:
    parent, name = os.path.split(cfg.directory)
    return os.path.join(parent, "." + name)
