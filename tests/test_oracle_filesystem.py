"""Differential oracle for Filesystem: pyha and ocf:heartbeat:Filesystem probe the
same real mounts (ext4 and btrfs on loop devices, in a private mount namespace), and
findmnt says what is true.  See tests/lib/oracle.py for the rules."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Run, base_env, run_ocf
from lib.mountlab import MountNamespace, sh
from lib.oracle import Answer

UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/Filesystem"
BASE = Path(f"/tmp/pyha-oracle-fs-{os.getpid()}")


class MountLab(MountNamespace):
    """The namespace, plus the independent view the oracle compares against."""

    def umount_all(self) -> None:
        """Back to a clean namespace: everything under BASE unmounted, innermost first."""
        for _ in range(10):
            targets = [t for t in self.ns("findmnt", "-rn", "-o", "TARGET").stdout.split("\n")
                       if t.startswith(str(BASE))]
            if not targets:
                return
            for target in sorted(targets, key=len, reverse=True):
                self.ns("umount", "-l", target.encode().decode("unicode_escape"), check=False)

    def active(self, device: str, directory: str) -> bool:
        """The independent view: is ``device``'s filesystem mounted at ``directory``
        (through any symlink), according to findmnt in the namespace?"""
        real = self.ns("realpath", "-m", directory).stdout.strip()
        want = self.ns("findmnt", "-rn", "-o", "UUID", device, check=False).stdout.split()
        uuid = sh("blkid", "-s", "UUID", "-o", "value", device, check=False).stdout.strip()
        out = self.ns("findmnt", "-rn", "-o", "SOURCE,UUID", "--mountpoint", real,
                      check=False).stdout
        for line in out.splitlines():
            source, _, found_uuid = line.partition(" ")
            if source == device or (uuid and found_uuid == uuid) or found_uuid in want:
                return True
        return False


@pytest.fixture(scope="module")
def lab() -> Iterator[MountLab]:
    BASE.mkdir(mode=0o755)
    lab = MountLab()
    try:
        for fs, size, mkfs in (("ext4", "64M", ["mkfs.ext4", "-q", "-F"]),
                               ("btrfs", "128M", ["mkfs.btrfs", "-q", "-f"])):
            img = BASE / f"{fs}.img"
            sh("truncate", "-s", size, str(img))
            sh(*mkfs, str(img))
            lab.loops[fs] = sh("losetup", "-f", "--show", str(img)).stdout.strip()
        yield lab
    finally:
        lab.close()
        for loop in lab.loops.values():
            sh("losetup", "-d", loop, check=False)
        sh("rm", "-rf", str(BASE), check=False)


def agent(lab: MountLab, path: str, action: str, params: dict[str, str], rsctmp: Path,
          *, timeout: float = 60) -> int | None:
    env = base_env(rsctmp)
    env["OCF_RESKEY_CRM_meta_timeout"] = "40000"
    if action == "monitor":
        env["OCF_RESKEY_CRM_meta_interval"] = "0"  # a probe: read-only for both agents
    try:
        res = run_ocf(path, action, params, env=env, instance="oracle", timeout=timeout,
                      wrap=("nsenter", "-t", str(lab.holder.pid), "-m"))
    except subprocess.TimeoutExpired:
        return None
    return res.rc


def mkdirs(*paths: Path) -> None:
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)


Setup = Callable[[MountLab, dict[str, str], Path], None]


def by(path: str) -> Setup:
    """The resource started by one agent (pyha's or upstream's)."""
    def start(lab: MountLab, params: dict[str, str], rsctmp: Path) -> None:
        assert agent(lab, path, "start", params, rsctmp) == 0
    return start


def nothing(lab: MountLab, params: dict[str, str], rsctmp: Path) -> None:
    pass


def other_fs_on_mountpoint(lab: MountLab, params: dict[str, str], rsctmp: Path) -> None:
    lab.ns("mount", "-t", "tmpfs", "-o", "size=1m", "intruder", params["directory"])


def device_elsewhere(lab: MountLab, params: dict[str, str], rsctmp: Path) -> None:
    lab.ns("mount", params["device"], str(BASE / "elsewhere"))


def bind_of_the_mount(lab: MountLab, params: dict[str, str], rsctmp: Path) -> None:
    lab.ns("mount", params["device"], str(BASE / "elsewhere"))
    lab.ns("mount", "--bind", str(BASE / "elsewhere"), params["directory"])


def covered_by_tmpfs(lab: MountLab, params: dict[str, str], rsctmp: Path) -> None:
    by(UPSTREAM)(lab, params, rsctmp)
    lab.ns("mount", "-t", "tmpfs", "-o", "size=1m", "cover", params["directory"])


PYHA = "Filesystem"
ROWS: list[tuple[str, str, str, Setup]] = [
    # (row, fstype, directory under BASE ("link" is a symlink to "data"), setup)
    ("absent", "ext4", "data", nothing),
    ("started-by-upstream", "ext4", "data", by(UPSTREAM)),
    ("started-by-pyha", "ext4", "data", by(PYHA)),
    ("symlink-started-by-upstream", "ext4", "link", by(UPSTREAM)),
    ("symlink-started-by-pyha", "ext4", "link", by(PYHA)),
    ("escaped-name-by-upstream", "ext4", "my data\tdir", by(UPSTREAM)),
    ("escaped-name-by-pyha", "ext4", "my data\tdir", by(PYHA)),
    ("bind-of-the-mount", "ext4", "data", bind_of_the_mount),
    ("other-fs-on-mountpoint", "ext4", "data", other_fs_on_mountpoint),
    ("device-mounted-elsewhere", "ext4", "data", device_elsewhere),
    ("covered-by-tmpfs", "ext4", "data", covered_by_tmpfs),
    ("btrfs-started-by-upstream", "btrfs", "data", by(UPSTREAM)),
    ("btrfs-started-by-pyha", "btrfs", "data", by(PYHA)),
]


@pytest.mark.parametrize(("row", "fstype", "where", "setup"), ROWS, ids=[r[0] for r in ROWS])
def test_probe_against_upstream_on_the_same_mounts(
        lab: MountLab, rsctmp: Path, row: str, fstype: str, where: str, setup: Setup) -> None:
    mkdirs(BASE / "data", BASE / "elsewhere", BASE / "my data\tdir")
    link = BASE / "link"
    if not link.is_symlink():
        link.symlink_to(BASE / "data")
    params = {"device": lab.loops[fstype], "directory": str(BASE / where), "fstype": fstype}
    lab.umount_all()
    try:
        setup(lab, params, rsctmp)
        truth = lab.active(params["device"], params["directory"])
        answer = Answer("Filesystem", row, pyha=agent(lab, PYHA, "monitor", params, rsctmp) or 0,
                        upstream=agent(lab, UPSTREAM, "monitor", params, rsctmp, timeout=30),
                        truth=truth)
        assert not answer.problems(), f"{answer}: {answer.problems()}"
        if truth:
            # and stop really stops it: pyha's stop answers 0 only once findmnt agrees
            rc = agent(lab, PYHA, "stop", params, rsctmp)
            assert rc != 0 or not lab.active(params["device"], params["directory"]), answer
    finally:
        lab.umount_all()


# -- values the upstream agent accepted (docs/filesystem.md) ------------------------------

def run(lab: MountLab, path: str, action: str, params: dict[str, str], rsctmp: Path,
        **env: str) -> Run:
    full = {**base_env(rsctmp), "OCF_RESKEY_CRM_meta_timeout": "40000", **env}
    return run_ocf(path, action, params, env=full, instance="oracle", timeout=60,
                   wrap=(*lab.wrap(), f"--wd={rsctmp}"))  # cwd outside the repo


def uuid_of(device: str) -> str:
    return sh("blkid", "-s", "UUID", "-o", "value", device).stdout.strip()


# (id, extra parameters, the parameters pyha warns about)
TOLERATED: list[tuple[str, dict[str, str], set[str]]] = [
    ("fast_stop=maybe", {"fast_stop": "maybe"}, {"fast_stop"}),
    ("fast_stop=ja", {"fast_stop": "ja"}, set()),  # ocf_is_true's own word: no warning
    ("force_clones=perhaps", {"force_clones": "perhaps"}, {"force_clones"}),
    ("run_fsck=sometimes", {"run_fsck": "sometimes"}, {"run_fsck"}),
    ("options-empty-words", {"options": "rw,,noatime,"}, {"options"}),
    ("signals-and-delay", {"term_signals": "FOO", "kill_signals": "KILL 99",
                           "signal_delay": "soon"},
     {"term_signals", "kill_signals", "signal_delay"}),
    ("device=-U<uuid>", {"device": "-U{uuid}"}, set()),
    ("device=--uuid <uuid>", {"device": "--uuid {uuid}"}, set()),
]


@pytest.mark.parametrize(("extra", "warned"), [t[1:] for t in TOLERATED],
                         ids=[t[0] for t in TOLERATED])
def test_values_upstream_accepted_keep_working(lab: MountLab, rsctmp: Path,
                                               extra: dict[str, str], warned: set[str]) -> None:
    """Both agents run the same configuration on the same ext4 and answer alike;
    findmnt says whether it was mounted; pyha says what it tolerated, and says it
    again neither on every recurring monitor nor for upstream's own syntax."""
    device = lab.loops["ext4"]
    directory = BASE / "tolerant"
    mkdirs(directory)
    params = {"device": device, "directory": str(directory), "fstype": "ext4",
              **{k: v.format(uuid=uuid_of(device)) for k, v in extra.items()}}
    lab.umount_all()
    rcs: dict[str, list[int]] = {}
    try:
        for path in (UPSTREAM, PYHA):
            seen = rcs[path] = []
            for action in ("validate-all", "start", "monitor", "stop"):
                res = run(lab, path, action, params, rsctmp)
                seen.append(res.rc)
                if action == "start":
                    assert lab.active(device, str(directory)), (path, res.err)
                    if "options" in extra:  # mount(8) skipped the empty words for both
                        opts = lab.ns("findmnt", "-rn", "-o", "OPTIONS", str(directory)).stdout
                        assert "noatime" in opts.strip().split(","), (path, opts)
                if path == PYHA and action != "monitor":
                    said = {n for n in params if f"parameter '{n}'" in res.err
                            and "WARNING" in res.err}
                    assert said == warned, (action, res.err)
            assert not lab.active(device, str(directory)), path
        assert rcs[PYHA] == rcs[UPSTREAM] == [0, 0, 0, 0], rcs
        assert run(lab, PYHA, "start", params, rsctmp).rc == 0
        recurring = run(lab, PYHA, "monitor", params, rsctmp,
                        OCF_RESKEY_CRM_meta_interval="20000")
        assert recurring.rc == 0 and "WARNING" not in recurring.err
        assert run(lab, PYHA, "stop", params, rsctmp).rc == 0
    finally:
        lab.umount_all()


def test_absolute_statusfile_prefix_is_the_same_file_below_the_mount_point(
        lab: MountLab, rsctmp: Path) -> None:
    """Upstream appends the prefix to "<directory>/", so "/st/" names <directory>/st/:
    the depth-20 monitor of both agents writes there, never to /st."""
    device = lab.loops["ext4"]
    directory = BASE / "status"
    mkdirs(directory)
    params = {"device": device, "directory": str(directory), "fstype": "ext4",
              "statusfile_prefix": "/pyha-st-oracle/", "OCF_CHECK_LEVEL": "20"}
    name = f"oracle_{os.uname().nodename}"
    lab.umount_all()
    try:
        for path in (UPSTREAM, PYHA):
            assert run(lab, path, "validate-all", params, rsctmp).rc == 0
            assert run(lab, path, "start", params, rsctmp).rc == 0
            lab.ns("rm", "-rf", str(directory / "pyha-st-oracle"))
            res = run(lab, path, "monitor", params, rsctmp)
            assert res.rc == 0, (path, res.err)
            found = lab.ns("cat", str(directory / "pyha-st-oracle" / name), check=False)
            assert found.stdout.startswith("oracle\n"), (path, found.stderr)  # dd pads
            assert not Path("/pyha-st-oracle").exists()
            if path == PYHA:
                assert "parameter 'statusfile_prefix'" in res.err and "WARNING" in res.err
            lab.ns("rm", "-rf", str(directory / "pyha-st-oracle"))
            assert run(lab, path, "stop", params, rsctmp).rc == 0
            assert not lab.active(device, str(directory))
    finally:
        lab.umount_all()


@pytest.mark.parametrize(("word", "kills"), [("maybe", False), ("ja", True)])
def test_force_unmount_words_kill_as_upstream(lab: MountLab, rsctmp: Path, word: str,
                                              kills: bool) -> None:
    """force_unmount=maybe is neither ocf_is_true nor "safe": upstream kills nobody and
    its stop fails while the filesystem is busy; pyha takes it as false the same way (it
    used to read it as true and kill).  "ja" is ocf_is_true: both kill the holder."""
    device = lab.loops["ext4"]
    directory = BASE / "busy"
    mkdirs(directory)
    params = {"device": device, "directory": str(directory), "fstype": "ext4",
              "force_unmount": word}
    lab.umount_all()
    try:
        for path in (UPSTREAM, PYHA):
            assert run(lab, path, "start", params, rsctmp).rc == 0
            holder = subprocess.Popen([*lab.wrap(), "sh", "-c",
                                       f"cd '{directory}' && exec sleep 300"], cwd="/")
            try:
                for _ in range(50):  # until the holder's cwd is on the mount
                    if os.readlink(f"/proc/{holder.pid}/cwd") == str(directory):
                        break
                    subprocess.run(["sleep", "0.1"], check=True)
                res = run(lab, path, "stop", params, rsctmp,
                          OCF_RESKEY_CRM_meta_timeout="4000")
                assert res.rc == (0 if kills else 1), (path, res.err)
                if kills:
                    holder.wait(timeout=5)
                assert (holder.poll() is not None) == kills, path
                assert lab.active(device, str(directory)) != kills, path
                if path == PYHA:
                    assert ("parameter 'force_unmount'" in res.err) != kills, res.err
            finally:
                holder.kill()
                holder.wait()
            assert run(lab, PYHA, "stop", params, rsctmp).rc == 0
            assert not lab.active(device, str(directory))
    finally:
        lab.umount_all()


@pytest.mark.parametrize(("word", "rc"), [("ja", 0), ("maybe", 6)])
def test_force_clones_in_a_clone_as_upstream(lab: MountLab, rsctmp: Path, word: str,
                                             rc: int) -> None:
    """A local filesystem in a clone starts only with force_clones true: "ja" is true for
    ocf_is_true, so both agents start it; "maybe" is false, so both refuse (6), and pyha
    mounts nothing."""
    device = lab.loops["ext4"]
    directory = BASE / "cloned"
    mkdirs(directory)
    params = {"device": device, "directory": str(directory), "fstype": "ext4",
              "force_clones": word}
    clone = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "0"}
    lab.umount_all()
    try:
        for path in (UPSTREAM, PYHA):
            res = run(lab, path, "start", params, rsctmp, **clone)
            assert res.rc == rc, (path, res.err)
            assert lab.active(device, str(directory)) == (rc == 0), path
            if path == PYHA:  # "ja" is ocf_is_true's own word: no warning; "maybe" is named
                assert ("parameter 'force_clones'" in res.err) == (word != "ja"), res.err
            assert run(lab, path, "stop", params, rsctmp, **clone).rc == 0
            assert not lab.active(device, str(directory))
    finally:
        lab.umount_all()


# (id, parameters over a valid ext4 resource, the word the reason names)
EXCEPTIONS: list[tuple[str, dict[str, str], str]] = [
    # mount(8) would read the device as an option (device=-oremount,exec)
    ("device-is-an-option", {"device": "-oremount,exec"}, "device"),
    # relative to whatever cwd the cluster manager runs the agent in: the wrong mount point
    ("relative-directory", {"directory": "pyha-oracle-relative"}, "directory"),
    # options that change the operation or run programs as root
    ("options-remount", {"options": "remount,exec"}, "remount"),
    ("options-helper", {"options": "x-mount.mkdir"}, "x-mount.mkdir"),
    # a password on mount's command line is readable by every user of the node
    ("password-on-the-command-line", {"options": "password=s3cr3t"}, "password"),
    # root writes the status file outside the mount point, wherever '..' leads
    ("statusfile-outside", {"statusfile_prefix": "../../x"}, "statusfile_prefix"),
    # upstream splits the options on blanks: its own mount failed on them
    ("options-with-blanks", {"options": "ro, noatime"}, "options"),
]


@pytest.mark.parametrize(("extra", "word"), [e[1:] for e in EXCEPTIONS],
                         ids=[e[0] for e in EXCEPTIONS])
def test_values_still_refused(lab: MountLab, rsctmp: Path, extra: dict[str, str],
                              word: str) -> None:
    """Upstream's validate-all passes these, but acting on them is unsafe (the reason is
    with each row): pyha answers 6 with a reason, mounts nothing and leaves no trace of a
    secret in its output."""
    device = lab.loops["ext4"]
    params = {"device": device, "directory": str(BASE / "refused"), "fstype": "ext4", **extra}
    lab.umount_all()
    assert run(lab, UPSTREAM, "validate-all", params, rsctmp).rc == 0
    for action in ("validate-all", "start"):
        res = run(lab, PYHA, action, params, rsctmp)
        assert res.rc == 6 and res.reason and word in res.reason, (action, res.err)
        assert "s3cr3t" not in res.out + res.err
    out = lab.ns("findmnt", "-rn", "-o", "SOURCE").stdout.split()
    assert device not in out
