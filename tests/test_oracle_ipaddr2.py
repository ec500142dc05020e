"""Differential oracle for IPaddr2: pyha and ocf:heartbeat:IPaddr2 probe the same
addresses in a private network namespace, and ``ip -j addr`` says what is true.

"Active" means the address is configured anywhere on the node: wherever it is, a
second copy started on another node would be a duplicate address on the network.
See tests/lib/oracle.py for the rules."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import base_env, run_ocf
from lib.oracle import Answer

NS = f"pyha-orc-{os.getpid()}"
PEER = f"pyha-orc-{os.getpid()}p"
UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"
PYHA = "IPaddr2"


def ip(*args: str, ns: str = NS, check: bool = True) -> str:
    proc = subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="module")
def net() -> Iterator[None]:
    for ns in (NS, PEER):
        subprocess.run(["ip", "netns", "add", ns], check=True)
        ip("link", "set", "lo", "up", ns=ns)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"],
                       check=True)
    try:
        for mine, peer in (("eth0", "peer0"), ("eth1", "peer1")):
            ip("link", "add", mine, "type", "veth", "peer", "name", peer, "netns", PEER)
            ip("link", "set", mine, "up")
            ip("link", "set", peer, "up", ns=PEER)
        ip("addr", "add", "10.211.1.1/24", "brd", "+", "dev", "eth0")
        ip("addr", "add", "10.211.2.1/24", "brd", "+", "dev", "eth1")
        ip("addr", "add", "fd00:211::1/64", "dev", "eth0", "nodad")
        yield
    finally:
        for ns in (NS, PEER):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def present(address: str) -> bool:
    """The independent view: is the address configured on any interface?"""
    for link in json.loads(ip("-j", "addr", "show")):
        for a in link.get("addr_info", []):
            if a.get("local") == address:
                return True
    return False


def agent(path: str, action: str, params: dict[str, str], rsctmp: Path,
          timeout: float = 60) -> int | None:
    env = base_env(rsctmp)
    env["OCF_RESKEY_CRM_meta_timeout"] = "20000"
    env["OCF_RESKEY_arp_count"] = "1"
    if action == "monitor":
        env["OCF_RESKEY_CRM_meta_interval"] = "0"
    try:
        res = run_ocf(path, action, params, env=env, instance="oracle", timeout=timeout,
                      wrap=("ip", "netns", "exec", NS))
    except subprocess.TimeoutExpired:
        return None
    return res.rc


Setup = Callable[[dict[str, str], Path], None]


def by(path: str) -> Setup:
    def start(params: dict[str, str], rsctmp: Path) -> None:
        assert agent(path, "start", params, rsctmp) == 0
    return start


def by_hand(*args: str) -> Setup:
    def add(params: dict[str, str], rsctmp: Path) -> None:
        ip("addr", "add", *args)
    return add


def nothing(params: dict[str, str], rsctmp: Path) -> None:
    pass


def both(*steps: Setup) -> Setup:
    def run(params: dict[str, str], rsctmp: Path) -> None:
        for step in steps:
            step(params, rsctmp)
    return run


def link_down(params: dict[str, str], rsctmp: Path) -> None:
    by(UPSTREAM)(params, rsctmp)
    ip("link", "set", "eth0", "down")


V4 = {"ip": "10.211.1.50", "cidr_netmask": "24"}
V4NIC = {"ip": "10.211.1.50", "cidr_netmask": "24", "nic": "eth0"}
V6 = {"ip": "fd00:211::50", "cidr_netmask": "64", "nic": "eth0"}
ROWS: list[tuple[str, dict[str, str], Setup]] = [
    ("absent", V4, nothing),
    ("started-by-upstream", V4, by(UPSTREAM)),
    ("started-by-pyha", V4, by(PYHA)),
    ("v6-started-by-upstream", V6, by(UPSTREAM)),
    ("v6-started-by-pyha", V6, by(PYHA)),
    ("labelled-by-upstream", {**V4NIC, "iflabel": "vip"}, by(UPSTREAM)),
    ("labelled-by-pyha", {**V4NIC, "iflabel": "vip"}, by(PYHA)),
    ("other-address-only", V4, by_hand("10.211.1.51/24", "dev", "eth0")),
    ("second-address-beside-ours", V4,
     both(by(UPSTREAM), by_hand("10.211.1.51/24", "dev", "eth0"))),
    ("another-prefix", V4, by_hand("10.211.1.50/16", "dev", "eth0")),
    ("another-interface", V4NIC, by_hand("10.211.1.50/24", "dev", "eth1")),
    ("link-down", V4NIC, link_down),
]


@pytest.mark.parametrize(("row", "params", "setup"), ROWS, ids=[r[0] for r in ROWS])
def test_probe_against_upstream_on_the_same_addresses(
        net: None, rsctmp: Path, row: str, params: dict[str, str], setup: Setup) -> None:
    address = params["ip"]
    try:
        setup(params, rsctmp)
        answer = Answer("IPaddr2", row, pyha=agent(PYHA, "monitor", params, rsctmp) or 0,
                        upstream=agent(UPSTREAM, "monitor", params, rsctmp, timeout=30),
                        truth=present(address))
        assert not answer.problems(), f"{answer}: {answer.problems()}"
        if answer.truth:
            rc = agent(PYHA, "stop", params, rsctmp)
            assert rc != 0 or not present(address), f"{answer}: stop 0, {address} still there"
    finally:
        ip("link", "set", "eth0", "up")
        for dev in ("eth0", "eth1"):
            for extra in ("10.211.1.50/24", "10.211.1.50/16", "10.211.1.51/24",
                          "fd00:211::50/64"):
                ip("addr", "del", extra, "dev", dev, check=False)
