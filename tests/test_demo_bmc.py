"""The demo BMC's chassis (tests/demo/demo_bmc.py) on a real namespaced "server".

The server is a network namespace with an ``eth0`` (one end of a veth pair) and a holder process
in a private mount namespace, plus a workload process and a tmpfs mounted
inside it, as the demo's cluster nodes have.  The hook is run exactly as
ipmi_sim runs it (``DIR 0x20 get power`` / ``DIR 0x20 set power 0``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lib.cluster import alive

HOOK = Path(__file__).resolve().parent / "demo" / "demo_bmc.py"
NETNS = "pyhad-bmctest"
ADDR = "10.231.9.77/24"


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True)


@pytest.fixture
def server(tmp_path: Path):
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    sh("ip", "netns", "add", NETNS)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sh("ip", "-n", NETNS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        sh("ip", "-n", NETNS, "addr", "add", ADDR, "dev", "eth0")
        sh("ip", "-n", NETNS, "link", "set", "eth0", "up")
        holder = subprocess.Popen(["ip", "netns", "exec", NETNS, "unshare", "--mount",
                                   "--propagation", "private", "--", "sleep", "infinity"])
        procs.append(holder)
        end = time.monotonic() + 5
        while Path(f"/proc/{holder.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < end
            time.sleep(0.01)
        volatile = tmp_path / "volatile"
        (volatile / "mnt").mkdir(parents=True)
        sh("nsenter", "-t", str(holder.pid), "-m", "--", "mount", "-t", "tmpfs", "pyhad-bmct",
           str(volatile / "mnt"))
        run = tmp_path / "run"  # stands for a tmpfs of the server (/run, /dev/shm)
        (run / "resource-agents").mkdir(parents=True)
        (run / "resource-agents" / "VirtualDomain-vm.identity").write_text("x\n")
        (run / "qb-123-456").write_text("")
        workload = subprocess.Popen(["ip", "netns", "exec", NETNS, "sleep", "1000"])
        procs.append(workload)
        bmc = tmp_path / "bmc"
        bmc.mkdir()
        (bmc / "power").write_text("on\n")
        (bmc / "node.json").write_text(json.dumps({
            "name": "n9", "netns": NETNS, "holder": holder.pid, "address": ADDR,
            "volatile_mounts": str(volatile) + "/", "volatile_dirs": [str(run)]}))
        yield bmc, holder, workload, volatile / "mnt"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def hook(bmc: Path, *args: str) -> str:
    return sh(sys.executable, "-I", str(HOOK), str(bmc), "0x20", *args).stdout


def addresses() -> str:
    return sh("ip", "-n", NETNS, "-o", "-4", "addr", "show", "dev", "eth0").stdout


def mounted(holder: subprocess.Popen[bytes], point: Path) -> bool:
    return f" {point} " in Path(f"/proc/{holder.pid}/mountinfo").read_text()


def test_power_off_kills_the_server_and_power_on_boots_it_without_the_cluster(server):
    bmc, holder, workload, mnt = server
    assert hook(bmc, "get", "power") == "power:1\n"
    assert mounted(holder, mnt) and ADDR.split("/")[0] in addresses()
    hook(bmc, "set", "power", "0")
    # Everything the server ran is dead, its mounts and addresses are gone, its link
    # is down; its namespaces (the "hardware") remain.
    assert not alive(workload.pid) and alive(holder.pid)
    assert not mounted(holder, mnt)
    assert addresses() == ""
    assert "state DOWN" in sh("ip", "-n", NETNS, "link", "show", "eth0").stdout
    assert list((bmc.parent / "run").iterdir()) == []  # tmpfs contents die with the power
    assert hook(bmc, "get", "power") == "power:0\n"
    hook(bmc, "set", "power", "0")  # already off: nothing happens, nothing logged
    hook(bmc, "set", "power", "1")
    assert hook(bmc, "get", "power") == "power:1\n"
    assert ADDR.split("/")[0] in addresses()
    log = [line.split()[1] for line in (bmc / "power.log").read_text().splitlines()]
    assert log == ["off", "on"]


def test_hard_reset_is_off_and_on_at_once(server):
    bmc, holder, workload, mnt = server
    hook(bmc, "set", "reset", "1")
    assert not alive(workload.pid) and alive(holder.pid)
    assert not mounted(holder, mnt)
    assert ADDR.split("/")[0] in addresses()
    assert hook(bmc, "get", "power", "boot") == "power:1\nboot:0\n"
    log = [line.split()[1] for line in (bmc / "power.log").read_text().splitlines()]
    assert log == ["reset"]
