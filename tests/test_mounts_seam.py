"""The mount-table seam (ocf_lib/mounts.py) against the real kernel, not through an agent.

Real ext4, xfs and two-device btrfs filesystems on loop devices are mounted in a
private mount namespace (tests/lib/mountlab.py), next to bind mounts, a btrfs
subvolume, a stack, a tmpfs that names a block device as its source, and mount
points whose names need the kernel's escapes.  The oracles are outside the seam:
``findmnt -J`` (libmount's own parser) run in the namespace, stat(2) and
``findmnt -T`` for path lookups, blkid for btrfs members, fuser for holders.
Seam calls that depend on the caller's mount namespace run inside it, in the
agents' interpreter (``python3 -IS``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, base_env, run_ocf
from lib.mountlab import MountNamespace, sh

from ocf_lib import mounts

BASE = Path(f"/tmp/pyha-mseam-{os.getpid()}")
EXT4, XFS, BTRFS, SUBVOL = BASE / "ext4", BASE / "xfs", BASE / "btrfs", BASE / "btrfs-sv"
# Every byte the kernel escapes in a mount point (space, tab, backslash, newline),
# and one that is not UTF-8.
ODD = BASE / os.fsdecode(b"odd name\t\\\nx\xff")
FAKE = BASE / "fake"  # tmpfs whose source text is the ext4 loop device's path
STACK = BASE / "stack"  # tmpfs with xfs bound on top of it
LINK = BASE / "link"  # -> ext4 (a symlink on the host's /tmp)
ON_EXT4 = EXT4 / "lnk"  # -> ../xfs (a symlink that exists only on the mounted ext4)
COLUMNS = "ID,PARENT,MAJ:MIN,FSROOT,TARGET,FSTYPE,SOURCE,VFS-OPTIONS,FS-OPTIONS"

SEAM = "import json, sys\nsys.path.insert(0, {root!r})\nfrom ocf_lib import mounts\n"


class Lab(MountNamespace):
    def run_bytes(self, *argv: str) -> str:
        """A command in the namespace; its output decoded the way the seam decodes."""
        res = subprocess.run([*self.wrap(), *argv], capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout.decode("utf-8", "surrogateescape")

    def findmnt(self, *args: str) -> list[dict[str, Any]]:
        out = self.run_bytes("findmnt", "-J", "-l", "-v", "-o", COLUMNS, *args)
        return list(json.loads(out)["filesystems"]) if out.strip() else []

    def seam(self, code: str, *args: str) -> Any:
        """``code`` (which prints JSON) in the namespace, with ocf_lib.mounts imported."""
        res = subprocess.run([*self.wrap(), "/usr/bin/python3", "-IS", "-c",
                              SEAM.format(root=str(ROOT)) + code, *args],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def table(self) -> list[mounts.Mount]:
        """The namespace's table through the seam, read from outside (the holder's)."""
        return mounts.read_mountinfo(f"/proc/{self.holder.pid}/mountinfo")

    def dev_of(self, path: Path) -> tuple[int, int]:
        """st_dev of ``path`` as the namespace sees it (coreutils stat)."""
        major, minor = self.ns("stat", "-c", "%Hd %Ld", str(path)).stdout.split()
        return (int(major), int(minor))


def backing(loop: str) -> str:
    try:
        return Path(f"/sys/block/{os.path.basename(loop)}/loop/backing_file").read_text().strip()
    except OSError:
        return ""


def rdev(device: str) -> tuple[int, int]:
    st = os.stat(device)
    return (os.major(st.st_rdev), os.minor(st.st_rdev))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    BASE.mkdir(mode=0o755)
    lab = Lab()
    try:
        for name, size in (("ext4", "64M"), ("xfs", "320M"), ("btrfs-a", "128M"),
                           ("btrfs-b", "128M")):
            img = BASE / f"{name}.img"
            sh("truncate", "-s", size, str(img))
            lab.loops[name] = sh("losetup", "-f", "--show", str(img)).stdout.strip()
        sh("mkfs.ext4", "-q", "-F", lab.loops["ext4"])
        sh("mkfs.xfs", "-q", "-f", lab.loops["xfs"])
        sh("mkfs.btrfs", "-q", "-f", "-d", "single", "-m", "raid1",
           lab.loops["btrfs-a"], lab.loops["btrfs-b"])
        for d in (EXT4, XFS, BTRFS, SUBVOL, ODD, FAKE, STACK):
            d.mkdir()
        LINK.symlink_to("ext4")
        (BASE / "loop-a").symlink_to("loop-b")
        (BASE / "loop-b").symlink_to("loop-a")
        lab.ns("mount", lab.loops["ext4"], str(EXT4))
        lab.ns("mount", "--make-shared", str(EXT4))  # optional fields before the "-"
        lab.ns("mkdir", str(EXT4 / "sub dir"))
        lab.ns("ln", "-s", "../xfs", str(ON_EXT4))
        lab.ns("mount", "-o", "ro", lab.loops["xfs"], str(XFS))
        lab.ns("mount", "-o", f"device={lab.loops['btrfs-b']}", lab.loops["btrfs-a"],
               str(BTRFS))
        lab.ns("btrfs", "-q", "subvolume", "create", str(BTRFS / "sv"))
        lab.ns("mount", "-o", "subvol=sv", lab.loops["btrfs-a"], str(SUBVOL))
        lab.ns("mount", "--bind", str(EXT4 / "sub dir"), str(ODD))
        lab.ns("mount", "-t", "tmpfs", lab.loops["ext4"], str(FAKE))
        lab.ns("mount", "-t", "tmpfs", "stack-bottom", str(STACK))
        lab.ns("mount", "--bind", str(XFS), str(STACK))
        yield lab
    finally:
        lab.close()  # the namespace and its mounts die with the holder
        left = set(lab.loops.values())
        for _ in range(50):  # btrfs lets its devices go shortly after the last mount
            # only while it still holds our image: the number may be another run's by now
            left = {loop for loop in left if backing(loop).startswith(str(BASE) + "/")
                    and sh("losetup", "-d", loop, check=False).returncode != 0}
            if not left:
                break
            time.sleep(0.1)
        shutil.rmtree(BASE, ignore_errors=True)


def row(m: mounts.Mount) -> dict[str, Any]:
    return {"id": m.mount_id, "parent": m.parent_id, "maj:min": f"{m.major}:{m.minor}",
            "fsroot": m.root, "target": m.mountpoint, "fstype": m.fstype, "source": m.source,
            "vfs-options": m.options, "fs-options": m.super_options}


# -- parsing: the whole table, field by field --------------------------------------------


def test_every_mount_and_field_agrees_with_findmnt(lab: Lab) -> None:
    ours = [row(m) for m in lab.table()]
    assert ours == lab.findmnt()
    # read from inside the namespace (/proc/self/mountinfo, the default) too
    inside = lab.seam("print(json.dumps([[m.mount_id, m.mountpoint] "
                      "for m in mounts.read_mountinfo()]))")
    assert inside == [[r["id"], r["target"]] for r in ours]


def test_the_labs_mounts_are_what_was_mounted(lab: Lab) -> None:
    """The table's facts, checked against what the test did and what the kernel says."""
    table = lab.table()
    by_point = {m.mountpoint: m for m in table}
    assert by_point[str(EXT4)].source == lab.loops["ext4"]
    assert by_point[str(EXT4)].dev == rdev(lab.loops["ext4"]) == lab.dev_of(EXT4)
    assert by_point[str(XFS)].read_only and not by_point[str(EXT4)].read_only
    assert (by_point[str(XFS)].fstype, by_point[str(FAKE)].fstype) == ("xfs", "tmpfs")
    # the escapes, undone: the mount point is the directory the test created
    odd = by_point[str(ODD)]
    assert odd.root == "/sub dir" and odd.dev == by_point[str(EXT4)].dev
    raw = Path(f"/proc/{lab.holder.pid}/mountinfo").read_bytes()
    assert os.fsencode(mounts.escape(str(ODD))) in raw  # what the kernel wrote
    assert b"\\040" in raw and b"\\011" in raw and b"\\012" in raw and b"\\134" in raw


def test_mount_ids_link_each_mount_to_its_parent(lab: Lab) -> None:
    table = lab.table()
    ids = {m.mount_id: m for m in table}
    assert len(ids) == len(table)
    for m in table:
        if m.mountpoint.startswith(str(BASE) + "/"):
            parent = ids[m.parent_id]
            # stacked mounts sit on the mount below them, at the same point
            assert m.mountpoint.startswith(parent.mountpoint.rstrip("/") + "/") \
                or m.mountpoint == parent.mountpoint
    top = mounts.at(table, str(STACK))
    assert top is not None and ids[top.parent_id].mountpoint == str(STACK)
    assert ids[top.parent_id].source == "stack-bottom"


def test_btrfs_mounts_carry_an_anonymous_device_number(lab: Lab) -> None:
    by_point = {m.mountpoint: m for m in lab.table()}
    vol, sub = by_point[str(BTRFS)], by_point[str(SUBVOL)]
    assert vol.major == 0 and vol.dev == sub.dev  # one superblock, one 0:N
    assert sub.root == "/sv" and vol.root == "/"
    assert vol.dev not in (rdev(lab.loops["btrfs-a"]), rdev(lab.loops["btrfs-b"]))


@pytest.fixture
def long_table(lab: Lab) -> Iterator[list[str]]:
    """80 more mounts with 4 KiB mount points: a table far beyond one read()'s page
    and beyond the 256 KiB a single read was once given."""
    deep = BASE / "deep" / "/".join(["d" * 250] * 16)
    points = [f"{deep}/m{i}" for i in range(1, 81)]
    lab.ns("mkdir", "-p", *points)
    script = 'for p in "$@"; do mount -t tmpfs "many${p##*/m}" "$p" || exit 1; done'
    try:
        lab.ns("sh", "-c", script, "sh", *points)
        assert len(Path(f"/proc/{lab.holder.pid}/mountinfo").read_bytes()) > 1 << 18
        yield points
    finally:
        lab.ns("sh", "-c", 'for p in "$@"; do umount "$p"; done', "sh", *points, check=False)
        shutil.rmtree(BASE / "deep", ignore_errors=True)


def test_a_table_larger_than_one_read_is_read_whole(lab: Lab, long_table: list[str]) -> None:
    ours = [row(m) for m in lab.table()]
    assert ours == lab.findmnt()
    assert [r["source"] for r in ours if r["source"].startswith("many")] == \
        [f"many{i}" for i in range(1, 81)]
    inside = lab.seam("print(json.dumps(len(mounts.read_mountinfo())))")
    assert inside == len(ours)


def test_the_filesystem_probe_sees_a_mount_at_the_end_of_a_long_table(
        lab: Lab, long_table: list[str], rsctmp: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The consequence for an agent: a mount past the first page of the table was
    reported as not running (7) while it was mounted."""
    late = BASE / "late"
    late.mkdir()
    monkeypatch.chdir(tmp_path)
    params = {"device": lab.loops["ext4"], "directory": str(late), "fstype": "ext4"}
    env = {**base_env(rsctmp), "OCF_RESKEY_CRM_meta_timeout": "20000"}
    try:
        lab.ns("mount", lab.loops["ext4"], str(late))
        assert lab.findmnt("--mountpoint", str(late))[-1]["source"] == lab.loops["ext4"]
        res = run_ocf("Filesystem", "monitor", params, env=env, wrap=lab.wrap())
        assert res.rc == 0, res.err
        lab.ns("umount", str(late))
        res = run_ocf("Filesystem", "monitor", params, env=env, wrap=lab.wrap())
        assert res.rc == 7, res.err
    finally:
        lab.ns("umount", str(late), check=False)
        late.rmdir()


def test_parse_skips_what_is_not_a_mountinfo_line() -> None:
    line = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
    (m,) = mounts.parse(f"garbage\n\n{line}\n")
    assert (m.mount_id, m.parent_id, m.dev, m.root, m.mountpoint) == \
        (36, 35, (98, 0), "/mnt1", "/mnt/a b")
    assert (m.fstype, m.source, m.super_options) == ("ext3", "/dev/root", "rw,errors=continue")
    assert mounts.unescape("a\\040b\\0") == "a b\\0"  # a short escape stays as it is


# -- lookups by mount point -----------------------------------------------------------------


@pytest.mark.parametrize("point", [EXT4, STACK, ODD, SUBVOL])
def test_at_is_the_mount_the_kernel_answers_for(lab: Lab, point: Path) -> None:
    m = mounts.at(lab.table(), str(point))
    assert m is not None
    assert m.mount_id == lab.findmnt("--mountpoint", str(point))[-1]["id"]
    if point != SUBVOL:  # a btrfs subvolume's st_dev is its own, not the superblock's 0:N
        assert m.dev == lab.dev_of(point)


def test_at_on_a_directory_that_is_no_mount_point(lab: Lab) -> None:
    plain = EXT4 / "sub dir"
    assert mounts.at(lab.table(), str(plain)) is None
    assert lab.dev_of(plain) == lab.dev_of(EXT4)
    assert lab.ns("findmnt", "--mountpoint", str(plain), check=False).returncode == 1


@pytest.mark.parametrize(("given", "want"), [
    (LINK, EXT4),  # a symlink on the host's filesystem
    (ON_EXT4, XFS),  # a symlink that only exists on the mounted ext4
    (f"{BASE}/./ext4", EXT4),
    (f"{BASE}/ext4/../xfs", XFS),
    (f"{BASE}/link/lnk", XFS),  # two symlinks, on two filesystems
    (ODD, ODD),
])
def test_a_symlinked_mount_point_resolves_as_the_kernel_resolves_it(
        lab: Lab, given: Path | str, want: Path) -> None:
    got = lab.seam("print(json.dumps(mounts.resolve_mountpoint(sys.argv[1], "
                   "mounts.read_mountinfo())))", str(given))
    assert got == str(want)
    assert [r["target"] for r in lab.findmnt("-T", str(given))] == [str(want)]


def test_a_symlink_loop_is_an_error_not_a_hang(lab: Lab) -> None:
    got = lab.seam("import errno\ntry:\n    mounts.resolve_mountpoint(sys.argv[1], "
                   "mounts.read_mountinfo())\nexcept OSError as exc:\n"
                   "    print(json.dumps(exc.errno == errno.ELOOP))", str(BASE / "loop-a"))
    assert got is True
    assert b"Too many levels" in subprocess.run(["stat", "-L", str(BASE / "loop-a")],
                                                capture_output=True).stderr


def test_below_gives_an_order_that_unmounts_everything(lab: Lab) -> None:
    nest = BASE / "nest"
    for d in ("", "a", "a/b", "a/b/c", "z"):
        lab.ns("mkdir", "-p", str(nest / d))
    try:
        lab.ns("mount", "-t", "tmpfs", "nest", str(nest))
        for d in ("a", "a/b", "a/b/c", "z"):
            lab.ns("mkdir", "-p", str(nest / d))
            lab.ns("mount", "-t", "tmpfs", f"nest-{d}", str(nest / d))
        inner = mounts.below(lab.table(), str(nest))
        below = [r["target"] for r in lab.findmnt("-R", "--mountpoint", str(nest))]
        assert sorted(m.mountpoint for m in inner) == sorted(below[1:]) and len(inner) == 4
        # one at a time in the seam's order (no -R, no -l): each unmount must succeed
        for m in inner:
            assert lab.ns("umount", m.mountpoint, check=False).returncode == 0, m
        assert [r["target"] for r in lab.findmnt("-R", "--mountpoint", str(nest))] == \
            [str(nest)]
    finally:
        lab.ns("umount", "-R", str(nest), check=False)
        shutil.rmtree(nest, ignore_errors=True)


# -- lookups by device and by UUID ----------------------------------------------------------


def test_block_dev(lab: Lab) -> None:
    assert mounts.block_dev(lab.loops["ext4"]) == rdev(lab.loops["ext4"])
    assert mounts.block_dev(str(BASE / "ext4.img")) is None  # a file, not a device
    assert mounts.block_dev("/dev/null") is None  # a character device
    assert mounts.block_dev(str(BASE / "absent")) is None


def test_same_filesystem_by_device(lab: Lab) -> None:
    by_point = {m.mountpoint: m for m in lab.table()}
    ext4, xfs = rdev(lab.loops["ext4"]), rdev(lab.loops["xfs"])
    assert mounts.same_filesystem(by_point[str(EXT4)], ext4) is True
    assert mounts.same_filesystem(by_point[str(ODD)], ext4) is True  # a bind of it
    assert mounts.same_filesystem(by_point[str(EXT4)], xfs) is False
    assert mounts.same_filesystem(by_point[str(XFS)], xfs) is True
    # tmpfs has no device behind it, whatever its source says
    assert by_point[str(FAKE)].source == lab.loops["ext4"]
    assert mounts.same_filesystem(by_point[str(FAKE)], ext4) is False


def test_btrfs_members_come_from_the_filesystems_uuid(lab: Lab) -> None:
    uuid = sh("blkid", "-s", "UUID", "-o", "value", lab.loops["btrfs-a"]).stdout.strip()
    assert uuid and lab.findmnt("--mountpoint", str(BTRFS))  # mounted, so the kernel knows it
    assert lab.run_bytes("findmnt", "-n", "-o", "UUID", "--mountpoint", str(BTRFS)).strip() \
        == uuid
    devices = sh("blkid", "-t", f"UUID={uuid}", "-o", "device").stdout.split()
    want = frozenset(os.path.basename(os.path.realpath(d)) for d in devices)
    assert want == {os.path.basename(lab.loops["btrfs-a"]),
                    os.path.basename(lab.loops["btrfs-b"])}
    assert mounts.btrfs_members(rdev(lab.loops["btrfs-b"])) == want
    assert mounts.btrfs_members(rdev(lab.loops["ext4"])) is None


def test_same_filesystem_for_btrfs_through_any_member(lab: Lab) -> None:
    by_point = {m.mountpoint: m for m in lab.table()}
    for point in (BTRFS, SUBVOL):
        m = by_point[str(point)]
        assert mounts.same_filesystem(m, rdev(lab.loops["btrfs-a"])) is True
        assert mounts.same_filesystem(m, rdev(lab.loops["btrfs-b"])) is True
        assert mounts.same_filesystem(m, rdev(lab.loops["ext4"])) is False


# -- who holds a mount ----------------------------------------------------------------------


@pytest.fixture
def users(lab: Lab) -> Iterator[dict[str, int]]:
    """Processes in the namespace, each using a mounted filesystem in one way."""
    ext4_file, lib, exe = EXT4 / "sub dir" / "data", EXT4 / "sub dir" / "libz.so", EXT4 / "sleep"
    lab.ns("sh", "-c", f'head -c 8192 /dev/zero > "{ext4_file}"')
    lab.ns("cp", os.path.realpath("/usr/lib/x86_64-linux-gnu/libz.so.1"), str(lib))
    lab.ns("cp", "/bin/sleep", str(exe))
    python = "/usr/bin/python3"
    scripts = {
        "cwd": f"import os, time\nos.chdir({str(EXT4)!r})\ntime.sleep(600)",
        "fd": f"import time\nf = open({str(ext4_file)!r})\ntime.sleep(600)",
        # dlopen maps the library and closes its file: only the mapping is left
        "mmap": f"import ctypes, time\nctypes.CDLL({str(lib)!r})\ntime.sleep(600)",
        # the same filesystem reached through the bind mount, never through EXT4
        "bind": f"import os, time\nos.chdir({str(ODD)!r})\ntime.sleep(600)",
    }
    procs = {how: subprocess.Popen([*lab.wrap(), python, "-IS", "-c", code])
             for how, code in scripts.items()}
    procs["exe"] = subprocess.Popen([*lab.wrap(), str(exe), "600"])
    try:
        for how, proc in procs.items():
            for _ in range(200):  # until its use shows in /proc
                if proc.poll() is not None:
                    raise AssertionError(f"{how} user exited with {proc.returncode}")
                fds = os.listdir(f"/proc/{proc.pid}/fd")
                cwd = os.readlink(f"/proc/{proc.pid}/cwd")
                maps = Path(f"/proc/{proc.pid}/maps").read_text()
                exe_ok = how == "exe" and os.readlink(f"/proc/{proc.pid}/exe") == str(exe)
                if exe_ok or {"cwd": cwd == str(EXT4), "bind": cwd == str(ODD),
                              "fd": len(fds) > 3, "mmap": "libz.so" in maps}.get(how):
                    break
                time.sleep(0.02)
        yield {how: proc.pid for how, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
        lab.ns("rm", "-f", str(ext4_file), str(lib), str(exe))


def fuser(lab: Lab, path: Path) -> set[int]:
    res = subprocess.run([*lab.wrap(), "fuser", "-m", str(path)], capture_output=True,
                         text=True, timeout=60)
    return {int(word) for word in res.stdout.split()}


def test_holders_by_path_in_the_namespace(lab: Lab, users: dict[str, int]) -> None:
    found = lab.seam("print(json.dumps(mounts.holders(sys.argv[1])))", str(EXT4))
    found = {int(pid): how for pid, how in found.items()}
    assert set(found) == {users[how] for how in ("cwd", "fd", "mmap", "exe")}
    assert found[users["cwd"]] == "cwd" and found[users["fd"]].startswith("fd ")
    assert found[users["mmap"]] == f"mmap {EXT4 / 'sub dir' / 'libz.so'}"
    assert found[users["exe"]] == "exe"
    # by path, the bind mount's user is not one of EXT4's: only the device can tell
    assert users["bind"] not in found


def test_holders_by_device_agree_with_fuser(lab: Lab, users: dict[str, int]) -> None:
    dev = list(rdev(lab.loops["ext4"]))
    found = lab.seam("print(json.dumps(mounts.holders(sys.argv[1], tuple(json.loads("
                     "sys.argv[2])), by_device=True)))", str(EXT4), json.dumps(dev))
    assert {int(pid) for pid in found} == set(users.values()) == fuser(lab, EXT4)


def test_holders_in_another_namespace_only_by_device(lab: Lab, users: dict[str, int]) -> None:
    """From the host's namespace, where nothing is mounted at EXT4: a path means
    another directory there, so only the device finds the namespace's users."""
    assert mounts.holders(str(EXT4)) == {}
    found = mounts.holders(str(EXT4), rdev(lab.loops["ext4"]), by_device=True)
    assert set(found) == set(users.values())
    assert sorted(mounts.comm(pid) for pid in found) == ["python3"] * 4 + ["sleep"]
