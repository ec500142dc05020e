"""agents/Filesystem on real kernels: ext4 and xfs images on loop devices.

Every mount happens inside a private mount namespace held open by a
``sleep`` process for the module (agents are run in it with ``nsenter``), so
nothing is ever mounted in the host's namespace.  Images and mount points
live under /tmp/pyha-fs-<pid>; every loop device is detached at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from conftest import ROOT, Run, base_env, run_ocf
from lib.mountlab import MountNamespace, sh

BASE = Path(f"/tmp/pyha-fs-{os.getpid()}")
UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/Filesystem"


class Lab(MountNamespace):
    def mountinfo(self) -> list[list[str]]:
        """(source, mountpoint, fstype, options) of the namespace's mounts, unescaped."""
        from ocf_lib.mounts import read_mountinfo

        return [[m.source, m.mountpoint, m.fstype, m.options]
                for m in read_mountinfo(f"/proc/{self.holder.pid}/mountinfo")]

    def mounted(self, directory: str | Path) -> list[str] | None:
        found = [m for m in self.mountinfo() if m[1] == str(directory)]
        return found[-1] if found else None


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    BASE.mkdir(mode=0o755)
    lab = Lab()
    try:
        for fs, size, mkfs in (("ext4", "64M", ["mkfs.ext4", "-q", "-F", "-L", "pyhafs4"]),
                               ("xfs", "320M", ["mkfs.xfs", "-q", "-f"])):
            img = BASE / f"{fs}.img"
            sh("truncate", "-s", size, str(img))
            sh(*mkfs, str(img))
            lab.loops[fs] = sh("losetup", "-f", "--show", str(img)).stdout.strip()
        yield lab
    finally:
        lab.close()  # the namespace and its mounts die with the holder
        for loop in lab.loops.values():
            sh("losetup", "-d", loop, check=False)
        shutil.rmtree(BASE, ignore_errors=True)


def agent(lab: Lab, action: str, params: Mapping[str, str], rsctmp: Path, *,
          path: str = "Filesystem", timeout_ms: str = "20000", **env: str) -> Run:
    full = base_env(rsctmp)
    full["OCF_RESKEY_CRM_meta_timeout"] = timeout_ms
    full.update(env)
    return run_ocf(path, action, params, env=full, wrap=lab.wrap(), timeout=90)


def holder(lab: Lab, script: str) -> subprocess.Popen[bytes]:
    """A real process in the namespace that keeps the mount busy."""
    proc = subprocess.Popen([*lab.wrap(), "sh", "-c", script])
    time.sleep(0.3)
    assert proc.poll() is None
    return proc


def test_advertised_monitors_are_upstreams() -> None:
    """pcs creates one default operation per advertised monitor: the same as upstream,
    so no depth-20 monitor writes a status file unless the administrator asks."""
    def monitors(path: str) -> list[dict[str, str]]:
        env = {**base_env(), "OCF_ROOT": "/usr/lib/ocf"}
        out = subprocess.run([path, "meta-data"], capture_output=True, text=True, env=env,
                             timeout=30, check=True).stdout
        import xml.etree.ElementTree as ET

        return [dict(a.attrib) for a in ET.fromstring(out).iter("action")
                if a.get("name") == "monitor"]

    ours = monitors(str(ROOT / "agents/Filesystem"))
    assert ours == [{"name": "monitor", "timeout": "40s", "interval": "20s", "depth": "0"}]
    assert [sorted(m.items()) for m in ours] == [sorted(m.items()) for m in monitors(UPSTREAM)]
    for path in ("Filesystem.xml", "Filesystem.ocf-1.0.xml"):
        assert 'depth="10"' not in (ROOT / "metadata" / path).read_text()


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_lifecycle_and_depths(lab: Lab, rsctmp: Path, fs: str) -> None:
    mnt = BASE / f"mnt {fs}"  # a space: mountinfo escapes it as \040
    params = {"device": lab.loops[fs], "directory": str(mnt), "fstype": fs}
    assert agent(lab, "monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 7
    res = agent(lab, "start", params, rsctmp)
    assert res.rc == 0, res.err
    assert lab.mounted(mnt)[:3] == [lab.loops[fs], str(mnt), fs]  # type: ignore[index]
    for level in ("0", "10", "20", "15"):  # 15 falls back to 10, as the OCF spec says
        res = agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL=level)
        assert res.rc == 0, (level, res.err)
    status = lab.ns("ls", "-A", str(mnt / ".Filesystem_status")).stdout.split()
    assert status == [f"test_{os.uname().nodename}"]
    assert agent(lab, "start", params, rsctmp).rc == 0  # double start
    assert len([m for m in lab.mountinfo() if m[1] == str(mnt)]) == 1
    res = agent(lab, "stop", params, rsctmp)
    assert res.rc == 0, res.err
    assert lab.mounted(mnt) is None
    assert agent(lab, "stop", params, rsctmp).rc == 0  # double stop
    assert agent(lab, "monitor", params, rsctmp).rc == 7
    # The status file went with the stop (upstream leaves it on the filesystem).
    lab.ns("mount", lab.loops[fs], str(mnt))
    try:
        assert lab.ns("ls", "-A", str(mnt / ".Filesystem_status")).stdout.split() == []
    finally:
        lab.ns("umount", str(mnt))


def test_busy_mount_is_freed_by_killing_its_holders(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "busy"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4",
              "signal_delay": "0.3"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    in_cwd = holder(lab, f"cd '{mnt}' && exec sleep 300")
    # ignores TERM (dispositions survive exec): only the KILL phase frees it
    stubborn = holder(lab, f"trap '' TERM; exec sleep 300 3>'{mnt}/held'")
    # Same path, other mount namespace (the bare directory under the mount): not a holder.
    outsider = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                 f"cd '{mnt}' && exec sleep 300"])
    try:
        time.sleep(0.3)
        started = time.monotonic()
        res = agent(lab, "stop", params, rsctmp, timeout_ms="10000")
        took = time.monotonic() - started
        assert res.rc == 0, res.err
        assert took < 10
        assert lab.mounted(mnt) is None
        assert in_cwd.wait(5) == -signal.SIGTERM
        assert stubborn.wait(5) == -signal.SIGKILL
        assert outsider.poll() is None
    finally:
        outsider.kill()
        outsider.wait()


def test_force_unmount_false_fails_within_the_deadline(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "busy-nokill"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4",
              "force_unmount": "false"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    proc = holder(lab, f"cd '{mnt}' && exec sleep 300")
    try:
        started = time.monotonic()
        res = agent(lab, "stop", params, rsctmp, timeout_ms="4000")
        assert res.rc == 1 and res.reason and "couldn't unmount" in res.reason
        assert str(proc.pid) in res.reason or "sleep" in res.reason
        assert time.monotonic() - started < 4
        assert lab.mounted(mnt) is not None and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is None


def test_read_only_remount_fails_depth_20(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "ro"
    params = {"device": lab.loops["xfs"], "directory": str(mnt), "fstype": "xfs"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    lab.ns("mount", "-o", "remount,ro", str(mnt))
    assert agent(lab, "monitor", params, rsctmp).rc == 0
    assert agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="10").rc == 0
    res = agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="20")
    assert res.rc == 1 and res.reason and "Read-only" in res.reason
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is None


def test_uuid_label_and_probe_of_another_device(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "bylabel"
    params = {"device": "LABEL=pyhafs4", "directory": str(mnt), "fstype": "ext4"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    assert lab.mounted(mnt)[0] == lab.loops["ext4"]  # type: ignore[index]
    assert agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="10").rc == 0
    # A different device on the mount point: ours is verifiably not there.
    other = {"device": lab.loops["xfs"], "directory": str(mnt), "fstype": "xfs"}
    assert agent(lab, "monitor", other, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 7
    assert agent(lab, "monitor", other, rsctmp, OCF_RESKEY_CRM_meta_interval="20000").rc == 1
    res = agent(lab, "start", other, rsctmp)  # never stack a mount over another filesystem
    assert res.rc == 1 and res.reason and "another device" in res.reason
    assert agent(lab, "stop", other, rsctmp).rc == 0  # not ours: left alone
    assert lab.mounted(mnt) is not None
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is None


def test_bind_mount(lab: Lab, rsctmp: Path) -> None:
    src, mnt = BASE / "bind src", BASE / "bind dst"
    src.mkdir()
    (src / "marker").write_text("x")
    params = {"device": str(src), "directory": str(mnt), "fstype": "none", "options": "bind,ro"}
    res = agent(lab, "start", params, rsctmp)
    assert res.rc == 0, res.err
    found = lab.mounted(mnt)
    assert found is not None and "ro" in found[3].split(",")
    assert lab.ns("cat", str(mnt / "marker")).stdout == "x"
    assert agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="10").rc == 0
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is None


def test_move_mode_with_a_leftover_directory(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "moving"
    leftover = BASE / ".moving"
    leftover.mkdir()
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4",
              "force_unmount": "safe,move"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    assert agent(lab, "monitor", params, rsctmp).rc == 0  # upstream: 7 (unset rc)
    proc = holder(lab, f"cd '{mnt}' && exec sleep 300")
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert proc.wait(5) == -signal.SIGTERM
    assert lab.mounted(mnt) is None and lab.mounted(leftover) is None
    assert not leftover.exists()  # upstream never removes it


def test_submounts_share_one_deadline(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "outer"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    lab.ns("mkdir", "-p", str(mnt / "inner"))
    lab.ns("mount", "-t", "tmpfs", "none", str(mnt / "inner"))
    proc = holder(lab, f"cd '{mnt}/inner' && exec sleep 300")
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert proc.wait(5) == -signal.SIGTERM
    assert lab.mounted(mnt) is None and lab.mounted(mnt / "inner") is None


# -- refusals: a clear reason and nothing changed -------------------------------------

def bad_cases(lab: Lab) -> list[tuple[dict[str, str], int, str]]:
    loop = lab.loops["ext4"]
    return [
        ({"device": "/dev/pyha-no-such", "directory": str(BASE / "b1"), "fstype": "ext4"},
         5, "couldn't find device"),
        ({"directory": str(BASE / "b2"), "fstype": "ext4"}, 6, "device"),
        ({"device": loop, "directory": "relative/dir", "fstype": "ext4"}, 6, "absolute"),
        ({"device": str(BASE), "directory": str(BASE / "b3"), "fstype": "ext4"}, 6,
         "is a directory"),
        ({"device": loop, "directory": str(BASE / "b4"), "fstype": "pyhafs"}, 5,
         "not supported"),
        ({"device": loop, "directory": str(BASE / "b5"), "fstype": "ext4",
          "options": "rw,helper=evil"}, 6, "not allowed"),
        ({"device": loop, "directory": str(BASE / "b6"), "fstype": "ext4",
          "options": "ro,remount"}, 6, "not allowed"),
        ({"device": loop, "directory": str(BASE / "b7"), "fstype": "ext4",
          "options": "ro, exec"}, 6, "malformed"),
        ({"device": loop, "directory": str(BASE / "b8"), "fstype": "ocfs2"}, 6,
         "cluster filesystem"),
        ({"device": loop, "directory": str(BASE / "b9"), "fstype": "gfs2"}, 6,
         "cluster filesystem"),
        ({"device": loop, "directory": "/", "fstype": "ext4"}, 6, "root directory"),
        ({"device": loop, "directory": str(BASE / "b10"), "fstype": "xfs"}, 1,
         "couldn't mount"),  # the mount itself fails: the new mount point goes again
        ({"device": "-oremount,exec", "directory": str(BASE / "b11"), "fstype": "ext4"}, 6,
         "starts with '-'"),  # would be an option to mount
        ({"device": "--bind", "directory": str(BASE / "b12"), "fstype": "none"}, 6,
         "starts with '-'"),
    ]


def test_bad_input_changes_nothing(lab: Lab, rsctmp: Path) -> None:
    for params, rc, reason in bad_cases(lab):
        before = lab.mountinfo()
        res = agent(lab, "start", params, rsctmp)
        assert res.rc == rc, (params, res.err)
        assert res.reason and reason in res.reason, (params, res.reason)
        assert "Traceback" not in res.err
        assert lab.mountinfo() == before
        directory = params.get("directory", "")
        if directory.startswith(str(BASE)):
            assert not Path(directory).exists(), params
        assert agent(lab, "stop", params, rsctmp).rc == 0, params


def test_cluster_filesystems_and_clones(lab: Lab, rsctmp: Path) -> None:
    loop = lab.loops["ext4"]
    clone = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "0"}
    res = agent(lab, "validate-all", {"device": loop, "directory": str(BASE / "c1"),
                                      "fstype": "ext4"}, rsctmp, **clone)
    assert res.rc == 6 and res.reason and "NOT cluster-aware" in res.reason
    res = agent(lab, "start", {"device": loop, "directory": str(BASE / "c2"),
                               "fstype": "gfs2"}, rsctmp, **clone)
    assert res.rc == 5 and res.reason and "not supported" in res.reason  # no gfs2 here


# -- parity with upstream ------------------------------------------------------------

def test_same_mount_as_upstream_and_mutual_monitor(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "parity"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4",
              "options": "noatime,nodev"}
    seen = []
    for path, other in ((UPSTREAM, "Filesystem"), ("Filesystem", UPSTREAM)):
        assert agent(lab, "start", params, rsctmp, path=path).rc == 0
        seen.append(lab.mounted(mnt))
        assert agent(lab, "monitor", params, rsctmp, path=other).rc == 0
        assert agent(lab, "monitor", params, rsctmp, path=other, OCF_CHECK_LEVEL="20").rc == 0
        assert agent(lab, "stop", params, rsctmp, path=other).rc == 0
        assert lab.mounted(mnt) is None
        assert agent(lab, "monitor", params, rsctmp, path=path).rc == 7
    assert seen[0] == seen[1] and seen[0] is not None


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_pyha_tester_passes(lab: Lab, tmp_path: Path, fs: str) -> None:
    mnt = BASE / f"tester {fs}"
    proc = subprocess.run([*lab.wrap(), str(ROOT / ".venv/bin/pyha-tester"),
                           "--agent", str(ROOT / "agents/Filesystem"),
                           "-o", f"device={lab.loops[fs]}", "-o", f"directory={mnt}",
                           "-o", f"fstype={fs}", "--rsctmp", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only depth 0 is advertised (as upstream), so the tester runs no deeper level.
    assert "FAIL" not in proc.stdout and "OCF_CHECK_LEVEL=0" in proc.stdout
    assert "OCF_CHECK_LEVEL=20" not in proc.stdout
    assert lab.mounted(mnt) is None


def test_vanished_device_is_never_reported_stopped(lab: Lab, rsctmp: Path) -> None:
    link, mnt = BASE / "dev-link", BASE / "vanish"
    link.symlink_to(lab.loops["xfs"])
    params = {"device": str(link), "directory": str(mnt)}  # no fstype: mount detects xfs
    assert agent(lab, "start", params, rsctmp).rc == 0
    assert lab.mounted(mnt)[2] == "xfs"  # type: ignore[index]
    link.unlink()  # the device path is gone (a renamed or lost disk), the mount is not
    res = agent(lab, "monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0")
    assert res.rc == 1 and res.reason and "cannot be found" in res.reason
    assert agent(lab, "stop", params, rsctmp).rc == 0  # still ours: unmounted
    assert lab.mounted(mnt) is None


def test_stop_with_broken_tunables_still_unmounts(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "broken-stop"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    broken = {**params, "options": "rw,helper=x", "term_signals": "NOPE",
              "signal_delay": "soon"}
    res = agent(lab, "stop", broken, rsctmp)
    assert res.rc == 0, res.err
    assert lab.mounted(mnt) is None


def test_escaped_mount_point_names(lab: Lab, rsctmp: Path) -> None:
    src = BASE / "esc-src"
    src.mkdir()
    mnt = BASE / "tab\there back\\slash nl\nend"  # every character mountinfo escapes
    params = {"device": str(src), "directory": str(mnt), "fstype": "none"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is not None
    assert agent(lab, "monitor", params, rsctmp).rc == 0
    proc = holder(lab, f"cd '{mnt}' && exec sleep 300")
    # A bystander on the same (root) filesystem, outside the mount: a bind mount's
    # stop must never match processes by device (upstream #1304 killed everyone).
    bystander = holder(lab, f"cd '{BASE}' && exec sleep 300 3<'{src}'")
    try:
        assert agent(lab, "stop", params, rsctmp).rc == 0
        assert proc.wait(5) == -signal.SIGTERM
        assert lab.mounted(mnt) is None
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_memory_map_holder_is_found(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "mapped"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4",
              "force_unmount": "safe"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    lab.ns("dd", "if=/dev/zero", f"of={mnt}/blob", "bs=4096", "count=1", "status=none")
    # Only a memory map keeps the filesystem busy: no open fd, cwd is /.
    script = (f"import mmap, os, time; f = open({str(mnt / 'blob')!r}, 'r+b'); "
              "m = mmap.mmap(f.fileno(), 0); f.close(); os.chdir('/'); time.sleep(300)")
    proc = subprocess.Popen([*lab.wrap(), "/usr/bin/python3", "-c", script])
    time.sleep(0.5)
    assert lab.ns("umount", str(mnt), check=False).returncode != 0  # really busy
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert proc.wait(5) == -signal.SIGTERM
    assert lab.mounted(mnt) is None


def test_deadline_escalates_to_lazy_unmount_of_a_virtual_fs(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "lazy"
    params = {"device": "pyha-lazy", "directory": str(mnt), "fstype": "tmpfs",
              "force_unmount": "false"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    proc = holder(lab, f"cd '{mnt}' && exec sleep 300")
    try:
        started = time.monotonic()
        res = agent(lab, "stop", params, rsctmp, timeout_ms="4000")
        assert res.rc == 0, res.err
        assert time.monotonic() - started < 4
        assert lab.mounted(mnt) is None
        assert proc.poll() is None  # force_unmount=false: nobody was killed
    finally:
        proc.kill()
        proc.wait()


def test_image_file_with_loop_option(lab: Lab, rsctmp: Path) -> None:
    image, mnt = BASE / "loop-opt.img", BASE / "loop opt"
    sh("truncate", "-s", "16M", str(image))
    sh("mkfs.ext4", "-q", "-F", str(image))
    params = {"device": str(image), "directory": str(mnt), "fstype": "ext4",
              "options": "loop"}
    res = agent(lab, "start", params, rsctmp)
    assert res.rc == 0, res.err
    assert lab.mounted(mnt)[0].startswith("/dev/loop")  # type: ignore[index]
    assert agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="20").rc == 0
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is None
    assert str(image) not in sh("losetup", "-l").stdout  # mount's autoclear detached it


# -- declared types, validators and the stop rule --------------------------------------

def test_parameter_types_refuse_what_mount_would_misread() -> None:
    from agents.filesystem import agent
    from ocf_lib.params import parse

    def errors(**given: str) -> list[str]:
        values = {"device": "/dev/sdz1", "directory": "/srv/x", **given}
        _, errs = parse(agent.params, values)
        return [str(e) for e in errs]

    assert errors() == []
    assert errors(device="-U 1234-ABCD", fstype="vfat") == []
    for device in ("-oremount,exec", "--bind", " /dev/sdz1", "/dev/sd\nz"):
        assert errors(device=device) and "device" in errors(device=device)[0], device
    for directory in ("/", "//.", "relative", "/srv/x "):
        assert errors(directory=directory), directory
    assert errors(fstype="ext4 -o exec") and errors(fstype="-oexec")
    for options in ("ro, exec", "remount", "x-mount.mkdir", "'a'", "--bind", ",,",
                    "ro,,password=x"):
        assert errors(options=options), options
    assert errors(term_signals="SIGHUP, 15 usr1") == []
    for prefix in ("../x", "a/../../b"):
        assert errors(statusfile_prefix=prefix), prefix
    # What upstream ran with stays accepted (tests/test_oracle_filesystem.py: with a warning).
    assert errors(run_fsck="maybe", force_unmount="safe,move,bogus", options="ro,,exec",
                  term_signals="TERM x", kill_signals="0", statusfile_prefix="/etc/") == []
    secret = errors(options="username=u,password=s3cr3t,helper=x")
    assert secret and "s3cr3t" not in secret[0] and "password=****" in secret[0]


def test_cross_field_check_is_declared(lab: Lab, rsctmp: Path) -> None:
    res = agent(lab, "validate-all", {"device": "LABEL=x", "directory": str(BASE / "v1"),
                                      "fstype": "none"}, rsctmp)
    assert res.rc == 6 and res.reason and "absolute path for a bind mount" in res.reason
    res = agent(lab, "validate-all", {"device": lab.loops["ext4"], "directory": str(BASE / "v2"),
                                      "statusfile_prefix": "../x"}, rsctmp)
    assert res.rc == 6 and res.reason and "leads out of the mount point" in res.reason


def test_stop_without_its_identity_proves_absence_or_fails(lab: Lab, rsctmp: Path) -> None:
    mnt = BASE / "identity"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    # The configuration changed after start: stop cannot tell what to unmount.
    for broken in ({**params, "device": " " + lab.loops["ext4"]},
                   {**params, "directory": "/"}):
        res = agent(lab, "stop", broken, rsctmp)
        assert res.rc != 0 and res.reason, broken
        assert lab.mounted(mnt) is not None, broken
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mounted(mnt) is None
    # Now the kernel proves it: the mount point is free, the device mounted nowhere.
    for broken in ({**params, "device": " " + lab.loops["ext4"]}, {**params, "directory": "/"}):
        res = agent(lab, "stop", broken, rsctmp)
        assert res.rc == 0, (broken, res.err)


# -- a mount point given through symlinks ----------------------------------------------

def test_mount_point_through_a_symlink(lab: Lab, rsctmp: Path) -> None:
    real, link, hop = BASE / "sym-real", BASE / "sym-link", BASE / "sym-hop"
    real.mkdir()
    hop.symlink_to(real.name)  # relative, two hops: link -> hop -> real
    link.symlink_to(hop)
    params = {"device": lab.loops["ext4"], "directory": str(link), "fstype": "ext4"}

    def findmnt() -> str:
        out = lab.ns("findmnt", "-n", "-o", "SOURCE,TARGET", "--source", lab.loops["ext4"],
                     check=False).stdout
        return " ".join(out.split())

    for starter in ("Filesystem", UPSTREAM):
        assert agent(lab, "start", params, rsctmp, path=starter).rc == 0
        assert findmnt() == f"{lab.loops['ext4']} {real}"
        for prober in ("Filesystem", UPSTREAM):
            res = agent(lab, "monitor", params, rsctmp, path=prober)
            assert res.rc == 0, (starter, prober, res.err)
            res = agent(lab, "monitor", params, rsctmp, path=prober,
                        OCF_RESKEY_CRM_meta_interval="0")
            assert res.rc == 0, (starter, prober, res.err)
        assert agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="20").rc == 0
        res = agent(lab, "stop", params, rsctmp)
        assert res.rc == 0, res.err
        assert findmnt() == ""
        assert agent(lab, "monitor", params, rsctmp).rc == 7
        assert agent(lab, "monitor", params, rsctmp, path=UPSTREAM).rc == 7
    assert link.is_symlink() and hop.is_symlink()  # the links are left as they were


def test_symlink_re_pointed_while_mounted(lab: Lab, rsctmp: Path) -> None:
    first, second, link = BASE / "repoint-1", BASE / "repoint-2", BASE / "repoint"
    first.mkdir()
    second.mkdir()
    link.symlink_to(first)
    params = {"device": lab.loops["ext4"], "directory": str(link), "fstype": "ext4"}
    assert agent(lab, "start", params, rsctmp).rc == 0
    assert lab.mounted(first) is not None
    link.unlink()
    link.symlink_to(second)  # the administrator moves the link under a running resource
    for interval in ("0", "20000"):  # never "not running" while mounted where start put it
        res = agent(lab, "monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval=interval)
        assert res.rc == 1 and res.reason and "still mounted" in res.reason, res.err
    res = agent(lab, "start", params, rsctmp)  # and never mounted a second time
    assert res.rc == 1 and lab.mounted(second) is None
    res = agent(lab, "stop", {**params, "device": "-bad"}, rsctmp)  # no false proof
    assert res.rc == 6 and lab.mounted(first) is not None
    res = agent(lab, "stop", params, rsctmp)
    assert res.rc == 0, res.err
    assert lab.mounted(first) is None and lab.mounted(second) is None
    assert agent(lab, "monitor", params, rsctmp).rc == 7
    # A link to /: never mounted there, and stop never tries to unmount it.
    link.unlink()
    link.symlink_to("/")
    res = agent(lab, "start", params, rsctmp)
    assert res.rc == 6 and res.reason and "resolves to the root directory" in res.reason
    before = lab.mountinfo()
    assert agent(lab, "stop", params, rsctmp).rc == 0
    assert lab.mountinfo() == before


# -- btrfs: the mount's device number is anonymous (0:N), never the block device's -----

@pytest.fixture(scope="module")
def btrfs(lab: Lab) -> Iterator[tuple[str, str]]:
    """A two-device btrfs (data single, metadata raid1) on two loop devices; mkfs.btrfs
    comes from btrfs-progs (packaging/debian-packages.txt)."""
    assert shutil.which("mkfs.btrfs"), "install btrfs-progs"
    loops = []
    try:
        for name in ("btrfs-a.img", "btrfs-b.img"):
            sh("truncate", "-s", "128M", str(BASE / name))
            loops.append(sh("losetup", "-f", "--show", str(BASE / name)).stdout.strip())
        sh("mkfs.btrfs", "-q", "-f", "-d", "single", "-m", "raid1", *loops)
        yield loops[0], loops[1]
    finally:
        for loop in loops:
            sh("losetup", "-d", loop, check=False)


# Since 2024 (ClusterLabs/resource-agents#1935: in Debian 13's 4.16, not in
# Debian 12's 4.12) upstream compares the device parameter with mountinfo's
# source by path: a btrfs mounted through another member is "another device"
# to it, and its probe answers 7 while the filesystem is mounted -- a false
# "not running" that pyha does not share (docs/platforms.md).
UPSTREAM_COMPARES_SOURCE = "Another device" in Path(UPSTREAM).read_text()


def test_btrfs_is_recognised_by_source_and_members(lab: Lab, rsctmp: Path,
                                                   btrfs: tuple[str, str]) -> None:
    first, second = btrfs
    mnt, sub = BASE / "btrfs", BASE / "btrfs-sub"

    def findmnt(target: Path) -> list[str]:
        out = lab.ns("findmnt", "-n", "-o", "SOURCE,FSTYPE", "--mountpoint", str(target),
                     check=False).stdout
        return out.split()

    for device in (first, second):  # the second: mountinfo names the first member
        params = {"device": device, "directory": str(mnt), "fstype": "btrfs"}
        res = agent(lab, "start", params, rsctmp)
        assert res.rc == 0, res.err
        source, fstype = findmnt(mnt)
        assert fstype == "btrfs"
        named = os.path.realpath(source) == os.path.realpath(device)
        assert named == (device == first), source
        assert lab.ns("stat", "-c", "%d", str(mnt)).stdout.strip() != "0"
        assert agent(lab, "monitor", params, rsctmp,
                     OCF_RESKEY_CRM_meta_interval="0").rc == 0
        upstream = 7 if UPSTREAM_COMPARES_SOURCE and not named else 0
        assert agent(lab, "monitor", params, rsctmp, path=UPSTREAM,
                     OCF_RESKEY_CRM_meta_interval="0").rc == upstream
        assert agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="20").rc == 0
        assert agent(lab, "start", params, rsctmp).rc == 0  # already ours: no second mount
        assert len(lab.ns("findmnt", "-n", "--mountpoint", str(mnt)).stdout.splitlines()) == 1
        # Another mount of the same filesystem keeps the device busy: stop takes it too.
        lab.ns("mkdir", "-p", str(sub))
        lab.ns("btrfs", "subvolume", "create", str(mnt / "vol"))
        lab.ns("mount", "-o", "subvol=vol", first, str(sub))
        res = agent(lab, "stop", params, rsctmp)
        assert res.rc == 0, res.err
        assert findmnt(mnt) == [] and findmnt(sub) == []
        assert agent(lab, "monitor", params, rsctmp).rc == 7
        lab.ns("mount", first, str(mnt))
        lab.ns("btrfs", "subvolume", "delete", str(mnt / "vol"))
        lab.ns("umount", str(mnt))


def test_btrfs_other_filesystems_only_when_proven(lab: Lab, rsctmp: Path,
                                                  btrfs: tuple[str, str]) -> None:
    first, _ = btrfs
    mnt = BASE / "btrfs-other"
    ours = {"device": first, "directory": str(mnt), "fstype": "btrfs"}
    ext4 = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4"}
    probe = {"OCF_RESKEY_CRM_meta_interval": "0"}
    assert agent(lab, "start", ours, rsctmp).rc == 0
    # An ext4 resource probing a mount point that holds the btrfs: proven not there.
    assert agent(lab, "monitor", ext4, rsctmp, **probe).rc == 7
    res = agent(lab, "start", ext4, rsctmp)
    assert res.rc == 1 and res.reason and "another device" in res.reason
    assert agent(lab, "stop", ext4, rsctmp).rc == 0  # not ours: left alone
    assert lab.mounted(mnt)[2] == "btrfs"  # type: ignore[index]
    assert agent(lab, "stop", ours, rsctmp).rc == 0
    assert lab.mounted(mnt) is None
    # A tmpfs on the mount point has no block device at all: not our btrfs.
    lab.ns("mount", "-t", "tmpfs", first, str(mnt))  # even named like our device
    try:
        assert agent(lab, "monitor", ours, rsctmp, **probe).rc == 7
        assert agent(lab, "stop", ours, rsctmp).rc == 0
        assert lab.mounted(mnt)[2] == "tmpfs"  # type: ignore[index]
    finally:
        lab.ns("umount", str(mnt))


# -- the depth-20 status file: written as root into a filesystem its users own ---------

def test_status_file_never_follows_planted_symlinks(lab: Lab, rsctmp: Path) -> None:
    mnt, outside = BASE / "planted", BASE / "planted-victims"
    params = {"device": lab.loops["ext4"], "directory": str(mnt), "fstype": "ext4"}
    name = f"test_{os.uname().nodename}"
    outside.mkdir()
    victim = outside / "shadow"
    victim.write_text("precious\n")
    (outside / name).write_text("precious too\n")
    assert agent(lab, "start", params, rsctmp).rc == 0
    status = mnt / ".Filesystem_status"
    try:
        # The status directory is a user's symlink to a directory of root's.
        lab.ns("rm", "-rf", str(status))  # the ext4 is shared with earlier tests
        lab.ns("ln", "-s", str(outside), str(status))
        res = agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="20")
        assert res.rc == 1 and res.reason and "symlinks are never followed" in res.reason
        assert agent(lab, "stop", params, rsctmp).rc == 0
        assert sorted(p.name for p in outside.iterdir()) == sorted([name, "shadow"])
        assert (outside / name).read_text() == "precious too\n"
        assert agent(lab, "start", params, rsctmp).rc == 0
        lab.ns("rm", str(status))
        # The status file is a user's symlink to a file of root's (/etc/shadow).  The
        # directory belongs to a user as on root_squash NFS: that must not matter.
        lab.ns("mkdir", str(status))
        lab.ns("chown", "65534:65534", str(status))
        lab.ns("ln", "-s", str(victim), str(status / name))
        for _ in range(2):
            res = agent(lab, "monitor", params, rsctmp, OCF_CHECK_LEVEL="20")
            assert res.rc == 0, res.err
        assert victim.read_text() == "precious\n"
        listing = lab.ns("ls", "-lA", str(status)).stdout
        assert lab.ns("cat", str(status / name)).stdout == "test\n" + "\0" * 4091
        assert "->" not in listing and len(listing.splitlines()) == 2, listing  # no leftovers
        lab.ns("ln", "-sf", str(victim), str(status / name))
    finally:
        assert agent(lab, "stop", params, rsctmp).rc == 0
    assert victim.read_text() == "precious\n"
    lab.ns("mount", lab.loops["ext4"], str(mnt))
    try:
        assert lab.ns("ls", "-A", str(status)).stdout.split() == []  # stop removed the link
        lab.ns("rmdir", str(status))
    finally:
        lab.ns("umount", str(mnt))


# -- CIFS passwords: never in argv, never in a log ---------------------------------------

HELPER = """#!/bin/sh
# mount.cifs stand-in: no cifs module and no server here.  It records what a real
# helper would receive, then mounts a tmpfs named like the share (or fails).
rec={work}/record
opts=""; prev=""
for arg in "$@"; do [ "$prev" = "-o" ] && opts="$arg"; prev="$arg"; done
creds=$(printf '%s' "$opts" | tr ',' '\\n' | sed -n 's/^credentials=//p')
{{
  echo "helper: $*"
  echo "mount: $(tr '\\0' ' ' < /proc/$PPID/cmdline)"
  echo "creds: $(stat -c '%a %U' "$creds") $(cat "$creds")"
}} > "$rec"
grep -F -l -f {work}/pw /proc/[0-9]*/cmdline > {work}/leaks 2>/dev/null
if [ -e {work}/fail ]; then echo "mount error(13): Permission denied" >&2; exit 32; fi
exec mount -i -t tmpfs -o size=1m "$1" "$2"
"""


def test_cifs_password_is_in_no_argv_and_no_log(lab: Lab, rsctmp: Path) -> None:
    work = BASE / "cifs"
    (work / "helpers").mkdir(parents=True)
    helper = work / "helpers" / "mount.cifs"
    helper.write_text(HELPER.format(work=work))
    helper.chmod(0o755)
    password = "Pw-s3cr3t-42"
    (work / "pw").write_text(password + "\n")
    mnt = work / "mnt"
    # A namespace of its own, where mount finds the stand-in in /sbin (= /usr/sbin).
    ns = Lab()
    try:
        ns.ns("mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={work / 'helpers'}:/usr/sbin", "/usr/sbin")
        params = {"device": "//srv/share", "directory": str(mnt), "fstype": "cifs",
                  "options": f"username=u,password={password},vers=3.0"}
        res = agent(ns, "start", params, rsctmp, HA_debug="1")
        assert res.rc == 0, res.err
        assert ns.mounted(mnt)[:2] == ["//srv/share", str(mnt)]  # type: ignore[index]
        record = (work / "record").read_text()
        assert password not in record.replace(f"creds: 600 root password={password}", ""), record
        assert f"creds: 600 root password={password}\n" in record
        assert "credentials=" in record and "username=u" in record
        assert f" -- //srv/share {mnt} " in record  # mount reads no option after "--"
        assert (work / "leaks").read_text() == ""  # no /proc/PID/cmdline held it
        assert "running: mount" in res.err and password not in res.err
        assert list(rsctmp.glob(".Filesystem-credentials*")) == []  # removed after mount
        assert agent(ns, "monitor", params, rsctmp).rc == 0
        assert agent(ns, "stop", params, rsctmp).rc == 0
        assert ns.mounted(mnt) is None
        # A failed mount: the reason, the warning and the debug lines hide it too.
        (work / "fail").touch()
        res = agent(ns, "start", params, rsctmp, HA_debug="1")
        assert res.rc == 1 and res.reason and "Permission denied" in res.reason
        assert "WARNING" in res.err and password not in res.err
        assert list(rsctmp.glob(".Filesystem-credentials*")) == []
        assert ns.mounted(mnt) is None
        # Where no credentials file exists, a password is refused, and not shown.
        nfs = {**params, "device": "srv:/export", "fstype": "nfs"}
        res = agent(ns, "validate-all", nfs, rsctmp)
        assert res.rc == 6 and password not in res.err and "password=****" in res.err
    finally:
        ns.close()
