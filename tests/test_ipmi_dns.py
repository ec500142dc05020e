"""Host-name lookups in the IPMI transport have a deadline (a dead DNS server).

The agent runs inside a private network namespace whose resolv.conf names
a server on a veth link where nobody answers ARP: queries leave and are
never answered, as
with a DNS server that is down.  ``ip netns exec`` bind-mounts
/etc/netns/NAME/resolv.conf and hosts over /etc for the agent only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import FENCE, base_env
from sim.ipmisim import IpmiSim, free_udp_ports

NS = f"pyha-fipmi-dns-{os.getpid()}"
ETC = Path("/etc/netns") / NS
AGENT_PYTHON = os.environ.get("PYHA_TEST_AGENT_PYTHON")
PORT = free_udp_ports(1)[0]  # never another run's simulator


def agent(host: str, *extra: str,
          wrap: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[str], float]:
    cmd = [AGENT_PYTHON, "-I", str(FENCE / "fence_ipmilan")] if AGENT_PYTHON else \
        [str(FENCE / "fence_ipmilan")]
    start = time.monotonic()
    res = subprocess.run([*wrap, *cmd, "-a", host, "-u", str(PORT), "-l", "admin", "-p", "secret",
                          "-P", "-o", "status", *extra], env=base_env(), capture_output=True,
                         text=True, timeout=60)
    return res, time.monotonic() - start


@pytest.fixture(scope="module")
def dead_dns():
    ETC.mkdir(parents=True)
    (ETC / "resolv.conf").write_text("nameserver 10.213.0.2\noptions timeout:5 attempts:2\n")
    (ETC / "hosts").write_text("127.0.0.1 localhost\n")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["ip", "addr", "add", "10.213.0.1/24", "dev", "d0"],
                    ["ip", "link", "set", "d0", "up"], ["ip", "link", "set", "d1", "up"]):
            subprocess.run(["ip", "netns", "exec", NS, *cmd], check=True)
        yield ("ip", "netns", "exec", NS)
    finally:
        subprocess.run(["ip", "netns", "delete", NS], check=False)
        shutil.rmtree(ETC, ignore_errors=True)


def test_the_blackhole_really_stalls_the_resolver(dead_dns):
    """The set-up's premise, seen from outside the agent: getent hangs for seconds."""
    start = time.monotonic()
    res = subprocess.run([*dead_dns, "timeout", "3", "getent", "ahosts", "bmc.pyha.example"],
                         capture_output=True)
    assert res.returncode == 124 and time.monotonic() - start >= 2.9


@pytest.mark.parametrize("ipmitool", [False, True])
def test_a_dead_dns_server_costs_at_most_login_timeout(dead_dns, ipmitool):
    extra = ["--login-timeout=2"] + (["--ipmitool-path=/usr/bin/ipmitool"] if ipmitool else [])
    res, took = agent("bmc.pyha.example", *extra, wrap=dead_dns)
    assert res.returncode == 1 and res.stdout == ""
    assert "resolving 'bmc.pyha.example' timed out" in res.stderr, res.stderr
    assert res.stderr.count("Failed:") == 1 and "Traceback" not in res.stderr
    assert took < 3.5


def test_numeric_and_resolvable_names_work():
    sim = IpmiSim(PORT).start()
    try:
        for host in ("127.0.0.1", "localhost"):
            res, _ = agent(host)
            assert (res.returncode, res.stdout) == (0, "Status: ON\n"), res.stderr
        res, _ = agent("no-such-host.invalid")
        assert res.returncode == 1 and "cannot resolve 'no-such-host.invalid'" in res.stderr
        assert sim.power_log() == []
    finally:
        sim.stop()
