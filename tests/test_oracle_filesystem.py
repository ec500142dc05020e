"""Differential oracle for Filesystem: pyha and ocf:heartbeat:Filesystem probe the
same real mounts (ext4 and btrfs on loop devices, in a private mount namespace), and
findmnt says what is true.  See tests/lib/oracle.py for the rules."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import base_env, run_ocf
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
