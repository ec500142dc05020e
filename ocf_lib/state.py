"""Per-node state: a directory of small files, written atomically, with locks.

The directory is ``$HA_RSCTMP`` (default ``/run/resource-agents``), a tmpfs
that is empty after a reboot, exactly like the node's resources.
Writes go to a temporary file in the same directory and are renamed into
place, so a reader (or a SIGKILL from Pacemaker half-way) never sees a
partial file.  Locks are ``fcntl.flock`` on an open descriptor: the kernel
drops them when the process dies, so a killed agent never leaves one behind.

Root writes here, so nothing in the directory is trusted blindly: the
directory must belong to the agent's own user and be writable by no one
else, temporary files get unpredictable names and ``O_EXCL``, and no path
component the agent opens for writing may be a symbolic link.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_DIR = "/run/resource-agents"


class UnsafePath(OSError):
    """A file or directory root would write that someone else controls."""


class StateDir:
    def __init__(self, path: str | None = None, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.path = path or env.get("HA_RSCTMP") or DEFAULT_DIR

    def file(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"bad state file name: {name!r}")
        return os.path.join(self.path, name)

    def ensure(self) -> None:
        """Create the directory if needed, and refuse one that others control."""
        os.makedirs(self.path, mode=0o755, exist_ok=True)
        check_private_dir(self.path)

    def read(self, name: str) -> str | None:
        try:
            with open(self.file(name), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return os.path.exists(self.file(name))

    def write(self, name: str, text: str, mode: int = 0o600) -> None:
        self.ensure()
        write_atomic(self.file(name), text, mode)

    def write_once(self, name: str, text: str, mode: int = 0o600) -> bool:
        """Write ``name`` unless it exists (one stat on the usual path); True if written.
        For records a monitor leaves the first time it finds a resource running."""
        if self.exists(name):
            return False
        self.write(name, text, mode)
        return True

    def remove(self, name: str) -> None:
        try:
            os.unlink(self.file(name))
        except FileNotFoundError:
            pass

    def lock(self, name: str, timeout: float | None = None) -> Lock:
        self.ensure()
        return Lock(self.file(name + ".lock"), timeout)


def check_private_dir(path: str) -> None:
    """Raise :class:`UnsafePath` unless ``path`` is a real directory of ours that
    no other user can write (a planted file there would be read as our state)."""
    import stat

    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"state directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise UnsafePath(f"state directory {path} belongs to uid {st.st_uid}, not to "
                         f"uid {os.geteuid()}")
    if st.st_mode & 0o022:
        raise UnsafePath(f"state directory {path} is writable by other users "
                         f"(mode {st.st_mode & 0o7777:o})")


def write_atomic(path: str, text: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` in one rename; the mode is set before any byte lands.

    The temporary file has a random name and is created with ``O_EXCL``, so a
    file or link planted beside ``path`` is never opened, truncated or renamed
    into place.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    for _attempt in range(8):
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, flags, mode)
            break
        except FileExistsError:
            continue
    else:
        raise UnsafePath(f"could not create a fresh temporary file in {directory}")
    try:
        os.fchmod(fd, mode)  # umask may have narrowed it; may also be wider than wanted
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:  # e.g. path is a directory: leave no temporary file behind
        os.unlink(tmp)
        raise


class LockTimeout(OSError):
    pass


class Lock:
    """``with StateDir().lock("name"):`` an exclusive flock, released by close or by death."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> Lock:
        import fcntl
        import stat
        import time

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                              0o600)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: the lock file is a symbolic link
                raise UnsafePath(f"lock file {self.path} is a symbolic link") from None
            raise
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):  # a FIFO or a device is no lock
            os.close(self.fd)
            self.fd = -1
            raise UnsafePath(f"lock file {self.path} is not a regular file")
        end = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if end is not None else 0))
                return self
            except BlockingIOError:
                if end is not None and time.monotonic() >= end:
                    os.close(self.fd)
                    self.fd = -1
                    msg = f"could not lock {self.path} within {self.timeout}s"
                    raise LockTimeout(msg) from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
