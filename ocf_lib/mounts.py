"""The mount-table seam: what is mounted where, and who holds it.

* :func:`read_mountinfo` reads ``/proc/self/mountinfo`` to its end, through
  one open file: the kernel hands out about a page per ``read()``, and its
  cursor in the namespace's mount list (Linux 5.8 and later) makes every mount
  that exists for the whole read appear exactly once, however long the table
  (upstream re-reads ``/proc/mounts`` until two reads agree, issue #1337).  It
  decodes the octal escapes (``\\040`` space,
  ``\\011`` tab, ``\\012`` newline, ``\\134`` backslash), so mount points with
  spaces work.  It also gives device numbers and the bind root, which
  ``/proc/mounts`` does not.
* :func:`holders` finds the processes that keep a mount busy, from ``/proc``
  alone: cwd, root, exe, open files and memory maps.  ``by_device`` adds a
  ``stat()`` of each link to catch paths reached through another bind mount
  of the same filesystem (that stat may block on a dead NFS server, which is
  why ``force_unmount=safe`` does paths only).  Paths are compared only for
  processes in our own mount namespace: "/data" in a container is another
  directory; there only the device number can tell.
"""

from __future__ import annotations

import os

MOUNTINFO = "/proc/self/mountinfo"


class Mount:
    __slots__ = ("mount_id", "parent_id", "major", "minor", "root", "mountpoint", "options",
                 "fstype", "source", "super_options")

    def __init__(self, fields: list[str], tail: list[str]) -> None:
        self.mount_id = int(fields[0])
        self.parent_id = int(fields[1])
        major, _, minor = fields[2].partition(":")
        self.major = int(major)
        self.minor = int(minor)
        self.root = unescape(fields[3])
        self.mountpoint = unescape(fields[4])
        self.options = fields[5]
        self.fstype = tail[0] if tail else ""
        self.source = unescape(tail[1]) if len(tail) > 1 else ""
        self.super_options = tail[2] if len(tail) > 2 else ""

    @property
    def dev(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def read_only(self) -> bool:
        return "ro" in self.options.split(",")

    def __repr__(self) -> str:
        return f"Mount({self.source!r} on {self.mountpoint!r} type {self.fstype})"


def unescape(text: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` -> space); other text is untouched."""
    if "\\" not in text:
        return text
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 3 < n and all(ch in "01234567" for ch in text[i + 1:i + 4]):
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    """The kernel's escaping of a path in mountinfo (for messages and tests)."""
    return (text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
            .replace("\n", "\\012"))


def _read_whole(path: str) -> bytes:
    # A short read is not the end: a seq_file returns about a page per read().
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while True:
            data = os.read(fd, 1 << 16)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        os.close(fd)


def parse(data: str) -> list[Mount]:
    mounts = []
    for line in data.split("\n"):
        if not line:
            continue
        words = line.split(" ")
        try:
            sep = words.index("-", 6)
        except ValueError:
            continue
        mounts.append(Mount(words[:6], words[sep + 1:]))
    return mounts


def read_mountinfo(path: str = MOUNTINFO) -> list[Mount]:
    return parse(_read_whole(path).decode("utf-8", "surrogateescape"))


def at(mounts: list[Mount], mountpoint: str) -> Mount | None:
    """The mount visible at ``mountpoint`` (the last one stacked there), or None."""
    found = None
    for m in mounts:
        if m.mountpoint == mountpoint:
            found = m
    return found


def resolve_mountpoint(path: str, table: list[Mount]) -> str:
    """``path`` with every symlink resolved, as the kernel will see the mount point.

    The last component is never stat()ed while it is a mount point in ``table``
    (that stat would be answered by the mounted filesystem, and hangs on a dead
    NFS server); a symlink cannot be a mount point, so readlink() is asked only
    about paths that are not.  Raises OSError (ELOOP) on a symlink loop.
    """
    points = {m.mountpoint for m in table}
    for _ in range(40):  # the kernel's own limit on symlinks in one lookup
        parent, name = os.path.split(path)
        if name in ("", ".", ".."):
            return os.path.realpath(path)  # a directory above: not this mount point
        path = os.path.join(os.path.realpath(parent), name)
        if path in points:
            return path
        try:
            target = os.readlink(path)
        except OSError:
            return path  # not a symlink (or not there yet: start creates it)
        path = os.path.join(os.path.dirname(path), target)
    raise OSError(40, "Too many levels of symbolic links", path)


def below(mounts: list[Mount], mountpoint: str) -> list[Mount]:
    """Mounts strictly below ``mountpoint``, deepest first (the unmount order)."""
    prefix = mountpoint.rstrip("/") + "/"
    inner = [m for m in mounts if m.mountpoint.startswith(prefix)]
    return sorted(inner, key=lambda m: (m.mountpoint.count("/"), m.mount_id), reverse=True)


def block_dev(path: str) -> tuple[int, int] | None:
    """(major, minor) of a block device node, or None when ``path`` is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if (st.st_mode & 0o170000) != 0o060000:
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev))


# -- is this mount that device's filesystem? ------------------------------------

def _kernel_name(dev: tuple[int, int]) -> str:
    """The kernel's name of a block device ("loop3", "dm-0"), or "" when unknown."""
    try:
        return os.path.basename(os.readlink(f"/sys/dev/block/{dev[0]}:{dev[1]}"))
    except OSError:
        return ""


def btrfs_members(dev: tuple[int, int]) -> frozenset[str] | None:
    """Kernel names of every device of the btrfs filesystem that ``dev`` belongs to
    (from /sys/fs/btrfs/<UUID>/devices), or None when the kernel knows none."""
    name = _kernel_name(dev)
    try:
        fsids = os.listdir("/sys/fs/btrfs") if name else []
    except OSError:
        return None
    for fsid in fsids:
        try:
            members = os.listdir(f"/sys/fs/btrfs/{fsid}/devices")
        except OSError:
            continue
        if name in members:
            return frozenset(members)
    return None


_block_types: list[frozenset[str]] = []


def block_types() -> frozenset[str]:
    """Filesystem types that live on a block device (those /proc/filesystems lists
    without "nodev"); anything else (tmpfs, nfs, nsfs...) has none behind it."""
    if not _block_types:
        try:
            with open("/proc/filesystems", encoding="ascii", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return frozenset()
        _block_types.append(frozenset(line.split()[-1] for line in lines
                                      if line.strip() and not line.startswith("nodev")))
    return _block_types[0]


def same_filesystem(m: Mount, dev: tuple[int, int]) -> bool | None:
    """Is ``m`` a mount of the filesystem on block device ``dev``?  True or False only
    when the kernel proves it; None when it cannot tell.

    A block-backed superblock carries its device's number, but btrfs (and anything
    else with an anonymous ``0:N``) never does: there the mount's source, or the
    btrfs filesystem's member list (its UUID directory in sysfs), decides.
    """
    if m.major != 0:
        return m.dev == dev
    types = block_types()
    if types and m.fstype not in types and not m.fstype.startswith("fuse"):
        return False  # no block device behind it at all, whatever its source says
    source = block_dev(m.source) if m.source.startswith("/") else None
    if source == dev:
        return True
    if m.fstype == "btrfs":
        members = btrfs_members(source) if source is not None else None
        return None if members is None else _kernel_name(dev) in members
    return None


# -- who holds a mount -----------------------------------------------------------

def _inside(target: str, mountpoint: str) -> bool:
    if target.endswith(" (deleted)"):
        target = target[: -len(" (deleted)")]
    return target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")


def holders(mountpoint: str, dev: tuple[int, int] | None = None,
            by_device: bool = False) -> dict[int, str]:
    """{pid: how} of every process using ``mountpoint``; never includes this process."""
    me = os.getpid()
    found: dict[int, str] = {}
    want = os.makedev(*dev) if (by_device and dev is not None) else None
    if want is not None and want in (os.stat("/").st_dev, os.stat("/proc/self/exe").st_dev):
        want = None  # the root or system filesystem: matching by device would hit everyone
    my_ns = _mount_ns("self")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in (me, 1):
            continue
        base = f"/proc/{pid}"
        ns = _mount_ns(entry.name)
        if not ns:
            continue  # a kernel thread, or gone
        # Paths mean something only in our own mount namespace: "/data" in a
        # container is another directory.  Elsewhere only the device can tell.
        if ns != my_ns and want is None:
            continue
        how = _holds(base, mountpoint if ns == my_ns else None, want)
        if how:
            found[pid] = how
    return found


def _mount_ns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _link_hit(link: str, mountpoint: str | None, want: int | None) -> bool:
    try:
        target = os.readlink(link)
    except OSError:
        return False
    if mountpoint is not None and _inside(target, mountpoint):
        return True
    if want is not None and target.startswith("/"):
        try:
            return os.stat(link).st_dev == want
        except OSError:
            return False
    return False


def _holds(base: str, mountpoint: str | None, want: int | None) -> str:
    for name in ("cwd", "root", "exe"):
        if _link_hit(f"{base}/{name}", mountpoint, want):
            return name
    try:
        fds = os.listdir(f"{base}/fd")
    except OSError:
        fds = []
    for fd in fds:
        if _link_hit(f"{base}/fd/{fd}", mountpoint, want):
            return f"fd {fd}"
    try:
        with open(f"{base}/maps", "rb") as handle:
            maps = handle.read().decode("utf-8", "surrogateescape")
    except OSError:
        return ""
    for line in maps.split("\n"):
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            if mountpoint is not None and _inside(parts[5].replace("\\012", "\n"), mountpoint):
                return "mmap " + parts[5]
            if want is not None:
                major, _, minor = parts[3].partition(":")
                try:
                    if os.makedev(int(major, 16), int(minor, 16)) == want:
                        return "mmap " + parts[5]
                except ValueError:
                    pass
    return ""


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return "?"
