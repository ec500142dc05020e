"""What the hot paths may import: the monitors of IPaddr2, Filesystem and drbd run
thousands of times a day on every node, so each import there is paid for ever.

Measured from outside with ``python3 -X importtime`` on the real agent executable,
on a real probe: every module the interpreter loaded is listed, whatever the code
says it imports.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AGENTS, base_env

# Each of these costs milliseconds on every run, or is third-party (loaded through
# ocf_lib.lazy only where a slow path needs it).
FORBIDDEN = {"re", "subprocess", "typing", "logging", "enum", "dataclasses", "asyncio",
             "lxml", "psutil", "pyroute2", "libvirt", "pexpect", "pyghmi", "cryptography"}


def loaded_modules(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines ("import time: self | cumul | name")."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    return names


def wrapper(tmp_path: Path, agent: str) -> Path:
    """An executable that runs the agent as its shebang does, plus -X importtime."""
    path = tmp_path / f"timed-{agent}"
    path.write_text(f'#!/bin/sh\nexec /usr/bin/python3 -X importtime -IS {AGENTS / agent} "$@"\n')
    path.chmod(0o755)
    return path


def probe(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "OCF_RESKEY_CRM_meta_interval": "0", "OCF_RESKEY_CRM_meta_timeout": "20000"}
    return subprocess.run([*argv, "monitor"], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def check(proc: subprocess.CompletedProcess[str], expected_rc: int) -> None:
    assert proc.returncode == expected_rc, proc.stderr[-2000:]
    names = loaded_modules(proc.stderr)
    assert "ocf_lib" in names  # the measurement itself worked
    assert not names & FORBIDDEN, sorted(names & FORBIDDEN)


def test_ipaddr2_probe(tmp_path: Path, rsctmp: Path) -> None:
    ns = f"pyha-imp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                        "eth9"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "10.212.0.1/24", "dev", "eth0"],
                       check=True)
        for dev in ("eth0", "eth9"):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        env = {**base_env(rsctmp), "OCF_RESOURCE_INSTANCE": "imp"}
        for address, rc in (("10.212.0.1", 0), ("10.212.0.9", 7)):
            env["OCF_RESKEY_ip"] = address
            check(probe(["ip", "netns", "exec", ns, str(wrapper(tmp_path, "IPaddr2"))], env), rc)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_filesystem_probe(tmp_path: Path, rsctmp: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**base_env(rsctmp), "OCF_RESOURCE_INSTANCE": "imp",
           "OCF_RESKEY_device": "/dev/pyha-no-such-disk", "OCF_RESKEY_directory": str(mnt),
           "OCF_RESKEY_fstype": "ext4"}
    check(probe([str(wrapper(tmp_path, "Filesystem"))], env), 7)
    # mounted: a tmpfs in a private mount namespace
    env.update({"OCF_RESKEY_device": "imptmp", "OCF_RESKEY_fstype": "tmpfs"})
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs imptmp "{mnt}" && exec "$0" "$@"',
            str(wrapper(tmp_path, "Filesystem"))]
    check(probe(argv, env), 0)


@pytest.fixture
def drbd_lab() -> Iterator[object]:
    from lib.drbdlab import DrbdLab

    lab = DrbdLab()
    try:
        yield lab
    finally:
        lab.close()


def test_drbd_probe(tmp_path: Path, drbd_lab: object) -> None:
    lab = drbd_lab
    node = lab.nodes[0]  # type: ignore[attr-defined]
    res = lab.agent(node, "monitor", agent=wrapper(tmp_path, "drbd"))  # type: ignore[attr-defined]
    check(subprocess.CompletedProcess([], res.rc, res.out, res.err), 7)
    assert lab.agent(node, "start").rc == 0  # type: ignore[attr-defined]
    res = lab.agent(node, "monitor", agent=wrapper(tmp_path, "drbd"))  # type: ignore[attr-defined]
    check(subprocess.CompletedProcess([], res.rc, res.out, res.err), 0)
