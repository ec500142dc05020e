"""The deeper Filesystem monitors: depth 10 reads the device, depth 20 writes a status
file on the filesystem and reads it back.  The status file's directories belong to the
filesystem's users, so nothing here ever follows a symlink they planted."""

from __future__ import annotations

import os

from ocf_lib.mounts_target import resolve, state_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    import mmap

    from ocf_lib.mounts_target import Target
    from ocf_lib.ocf import Context

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


def remove_status_file(ctx: Context, cfg: Target) -> None:
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
    device = (ctx.state.read(state_name(cfg)) or "").strip() or resolve(ctx, cfg) or ""
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
