"""agents/IPaddr2 on real kernels: network namespaces joined by veth pairs.

Layout (created for this module, removed afterwards):

    pyha-ip-<pid>a                       pyha-ip-<pid>b
      eth0 10.210.1.1/24 fd00:210::1/64 <-> peer0 10.210.1.2/24 fd00:210::2/64
      eth1 10.210.2.1/24                <-> peer1

The agent runs inside namespace a (``ip netns exec``); announcements are
captured by an AF_PACKET listener on peer0 in namespace b.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from conftest import ROOT, Run, base_env, run_ocf

NS_A = f"pyha-ip-{os.getpid()}a"
NS_B = f"pyha-ip-{os.getpid()}b"
UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2"
CAPTURE = ROOT / "tests" / "data" / "netcapture.py"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr}")
    return proc.stdout


def nsip(ns: str, *args: str, check: bool = True) -> str:
    return sh("ip", "-n", ns, *args, check=check)


@pytest.fixture(scope="module")
def net() -> Iterator[None]:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        nsip(ns, "link", "set", "lo", "up")
        for key in ("all", "default"):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
    try:
        for mine, peer in (("eth0", "peer0"), ("eth1", "peer1")):
            nsip(NS_A, "link", "add", mine, "type", "veth", "peer", "name", peer, "netns", NS_B)
            nsip(NS_A, "link", "set", mine, "up")
            nsip(NS_B, "link", "set", peer, "up")
        nsip(NS_A, "addr", "add", "10.210.1.1/24", "brd", "+", "dev", "eth0")
        nsip(NS_A, "addr", "add", "fd00:210::1/64", "dev", "eth0", "nodad")
        nsip(NS_A, "addr", "add", "10.210.2.1/24", "brd", "+", "dev", "eth1")
        nsip(NS_B, "addr", "add", "10.210.1.2/24", "dev", "peer0")
        nsip(NS_B, "addr", "add", "fd00:210::2/64", "dev", "peer0", "nodad")
        # The peer learns neighbours from unsolicited announcements, so that its
        # kernel's neighbour table shows that it parsed and accepted ours.
        sh("ip", "netns", "exec", NS_B, "sysctl", "-qw", "net.ipv4.conf.peer0.arp_accept=1",
           "net.ipv6.conf.peer0.accept_untracked_na=1", "net.ipv6.conf.peer0.forwarding=1")
        yield
    finally:
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "del", ns, check=False)


def agent(action: str, params: Mapping[str, str], rsctmp: Path, *,
          path: str = "IPaddr2", ns: str = NS_A, **env: str) -> Run:
    full = base_env(rsctmp)
    full["OCF_RESKEY_CRM_meta_timeout"] = "20000"
    full.update(env)
    return run_ocf(path, action, params, env=full, wrap=("ip", "netns", "exec", ns),
                   timeout=60)


def addrs(ns: str = NS_A) -> list[dict[str, object]]:
    """Every global address in the namespace: (dev, local, prefixlen, broadcast, label)."""
    out = []
    for link in json.loads(nsip(ns, "-j", "addr", "show")):
        for a in link.get("addr_info", []):
            if a.get("scope") == "global" or a["local"].startswith("127.0.0.") is False:
                out.append({"dev": link["ifname"], "local": a["local"],
                            "prefixlen": a["prefixlen"], "broadcast": a.get("broadcast", ""),
                            "label": a.get("label", ""), "scope": a.get("scope")})
    return sorted(out, key=lambda a: (str(a["dev"]), str(a["local"])))


def find(ip: str, ns: str = NS_A) -> list[dict[str, object]]:
    return [a for a in addrs(ns) if a["local"] == ip]


def mac_of(dev: str, ns: str = NS_A) -> str:
    return str(json.loads(nsip(ns, "-j", "link", "show", "dev", dev))[0]["address"])


class Capture:
    """An AF_PACKET listener on the peer side, started before the action."""

    def __init__(self, ifname: str, seconds: float) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS_B, sys.executable, str(CAPTURE),
                                      ifname, str(seconds)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def frames(self) -> list[dict[str, object]]:
        out, _ = self.proc.communicate(timeout=30)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


# -- the life cycle -------------------------------------------------------------

def test_ipv4_lifecycle_with_gratuitous_arp(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.50", "arp_count": "3", "arp_interval": "700"}
    assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 7
    cap = Capture("peer0", 2.5)
    started = time.monotonic()
    res = agent("start", params, rsctmp)
    assert res.rc == 0, res.err
    # IPv4 announces in the background by default: start does not wait the 1.4 s
    assert time.monotonic() - started < 1.2
    # nic and prefix found from the route; broadcast computed from the prefix
    assert find("10.210.1.50") == [{"dev": "eth0", "local": "10.210.1.50", "prefixlen": 24,
                                    "broadcast": "10.210.1.255", "label": "eth0",
                                    "scope": "global"}]
    frames = cap.frames()
    mac = mac_of("eth0")
    garp = [f for f in frames if f["kind"] == "arp" and f["spa"] == "10.210.1.50"]
    assert sum(1 for f in garp if f["op"] == 1) == 3 and sum(1 for f in garp if f["op"] == 2) == 3
    assert all(f["sha"] == mac and f["tpa"] == "10.210.1.50" for f in garp)
    neigh = sh("ip", "netns", "exec", NS_B, "ip", "-4", "neigh", "show", "10.210.1.50")
    assert mac in neigh
    assert agent("monitor", params, rsctmp).rc == 0
    assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 0
    assert agent("start", params, rsctmp).rc == 0  # double start
    assert len(find("10.210.1.50")) == 1
    assert agent("stop", params, rsctmp).rc == 0
    assert find("10.210.1.50") == []
    assert agent("stop", params, rsctmp).rc == 0  # double stop
    assert agent("monitor", params, rsctmp).rc == 7
    assert not any(n.startswith("send_arp-") for n in os.listdir(rsctmp))


def test_ipv6_lifecycle_with_unsolicited_na(net: None, rsctmp: Path) -> None:
    params = {"ip": "fd00:210::0050", "cidr_netmask": "64", "arp_count": "2",
              "arp_interval": "100"}
    cap = Capture("peer0", 1.5)
    res = agent("start", params, rsctmp)
    assert res.rc == 0, res.err
    assert [(a["dev"], a["prefixlen"]) for a in find("fd00:210::50")] == [("eth0", 64)]
    nas = [f for f in cap.frames() if f["kind"] == "na" and f["target"] == "fd00:210::50"]
    assert len(nas) == 2  # IPv6 announces in the foreground: all sent before start returns
    assert all(f["tlla"] == mac_of("eth0") and f["override"] and f["hlim"] == 255
               and f["src"] == "fd00:210::50" for f in nas)
    # The peer's kernel accepted them as valid neighbour advertisements.
    neigh = sh("ip", "netns", "exec", NS_B, "ip", "-6", "neigh", "show", "fd00:210::50")
    assert mac_of("eth0") in neigh
    assert agent("monitor", params, rsctmp).rc == 0
    assert agent("stop", params, rsctmp).rc == 0
    assert find("fd00:210::50") == []
    assert "fd00:210::50" not in nsip(NS_A, "addrlabel", "list")


def test_nic_is_found_from_the_routes(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.2.77", "iflabel": "vip", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    assert [(a["dev"], a["prefixlen"], a["label"]) for a in find("10.210.2.77")] == [
        ("eth1", 24, "eth1:vip")]
    assert agent("monitor", params, rsctmp).rc == 0
    assert agent("stop", params, rsctmp).rc == 0
    assert find("10.210.2.77") == []


def test_explicit_nic_and_prefix_need_no_route(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.9.9", "nic": "eth1", "cidr_netmask": "16", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    assert [(a["dev"], a["prefixlen"], a["broadcast"]) for a in find("10.210.9.9")] == [
        ("eth1", 16, "10.210.255.255")]
    assert agent("stop", params, rsctmp).rc == 0
    assert find("10.210.9.9") == []


# -- refusals: a clear reason and nothing changed ---------------------------------

BAD = [
    ({"ip": "10.0.0.300"}, 6, "not an IPv4 or IPv6"),
    ({"ip": "fe80::zz"}, 6, "not an IPv4 or IPv6"),
    ({"ip": ""}, 6, "required"),
    ({"ip": "10.210.1.51", "cidr_netmask": "33"}, 6, "prefix length 1-32"),
    ({"ip": "fd00:210::51", "cidr_netmask": "129"}, 6, "prefix length 1-128"),
    ({"ip": "10.210.1.51", "arp_count": "0"}, 6, "arp_count"),
    ({"ip": "10.210.1.51", "nic": "eth0", "iflabel": "muchtoolonglabel"}, 6, "15 characters"),
    ({"ip": "10.210.1.51", "iflabel": "muchtoolonglabel"}, 6, "15 characters"),
    ({"ip": "10.210.1.51", "nic": "nosuchnic"}, 5, "does not exist"),
    ({"ip": "10.99.0.5"}, 1, "no route"),
    ({"ip": "10.210.1.51", "cidr_netmask": "16"}, 1, "no route"),  # wider than the route
    ({"ip": "fe80::51"}, 6, "link-local"),
    ({"ip": "10.210.1.51", "unique_clone_address": "true"}, 6, "globally-unique"),
]


@pytest.mark.parametrize(("params", "rc", "reason"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_input_changes_nothing(net: None, rsctmp: Path, params: dict[str, str], rc: int,
                                   reason: str) -> None:
    before = addrs()
    res = agent("start", params, rsctmp)
    assert res.rc == rc, res.err
    assert res.reason and reason in res.reason
    assert "Traceback" not in res.err
    assert addrs() == before
    assert agent("stop", params, rsctmp).rc == 0  # nothing recorded: stop proves it absent


def test_validate_all_codes(net: None, rsctmp: Path) -> None:
    assert agent("validate-all", {"ip": "10.210.1.51"}, rsctmp).rc == 0
    assert agent("validate-all", {"ip": "10.210.1.51", "nic": "nosuchnic"}, rsctmp).rc == 6
    assert agent("validate-all", {"ip": "not_ip"}, rsctmp).rc == 6
    assert agent("validate-all", {"ip": "10.99.0.5"}, rsctmp).rc == 1


def test_stop_with_a_malformed_tunable_still_removes(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.52", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    res = agent("stop", {**params, "arp_count": "0", "preferred_lft": "soon"}, rsctmp)
    assert res.rc == 0, res.err  # upstream: 6, a failed stop, fencing
    assert find("10.210.1.52") == []


def test_address_on_another_interface(net: None, rsctmp: Path) -> None:
    nsip(NS_A, "addr", "add", "10.210.1.53/24", "dev", "eth1")
    try:
        before = addrs()
        params = {"ip": "10.210.1.53", "nic": "eth0"}
        res = agent("start", params, rsctmp)
        assert res.rc == 1 and res.reason and "eth1" in res.reason
        assert addrs() == before
        assert agent("monitor", params, rsctmp).rc == 1
        assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 1
        # stop removes only what this resource would have added, and never answers 0
        # while the node still serves the address
        res = agent("stop", params, rsctmp)
        assert res.rc == 1 and res.reason and "eth1" in res.reason
        assert addrs() == before
    finally:
        nsip(NS_A, "addr", "del", "10.210.1.53/24", "dev", "eth1")


def wait_operstate(dev: str, state: str) -> None:
    for _ in range(50):
        if json.loads(nsip(NS_A, "-j", "link", "show", "dev", dev))[0]["operstate"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"{dev} never became {state}")


def test_link_down_with_check_link_status(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.54", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    nsip(NS_B, "link", "set", "peer0", "down")  # eth0 loses its carrier
    try:
        wait_operstate("eth0", "DOWN")  # the kernel's linkwatch lags up to 1 s
        res = agent("monitor", params, rsctmp)
        assert res.rc == 1 and res.reason and "link is DOWN" in res.reason
        assert agent("monitor", {**params, "check_link_status": "false"}, rsctmp).rc == 0
    finally:
        nsip(NS_B, "link", "set", "peer0", "up")
    wait_operstate("eth0", "UP")
    assert agent("monitor", params, rsctmp).rc == 0
    assert agent("stop", params, rsctmp).rc == 0


def test_probe_when_the_nic_vanished(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.55", "nic": "ethVanished"}
    assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 7
    assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="10000").rc == 1


def test_unique_clone_address(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.60", "unique_clone_address": "true", "arp_count": "1"}
    meta = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "1",
            "OCF_RESKEY_CRM_meta_globally_unique": "true"}
    assert agent("start", params, rsctmp, **meta).rc == 0
    assert find("10.210.1.61") and not find("10.210.1.60")
    assert agent("monitor", params, rsctmp, **meta).rc == 0
    assert agent("stop", params, rsctmp, **meta).rc == 0
    assert not find("10.210.1.61")


def test_cluster_ip_clone(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.70", "arp_count": "1"}
    table = "IPaddr2_10_210_1_70"

    def meta(n: int) -> dict[str, str]:
        return {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": str(n)}

    assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0", **meta(0)).rc == 7
    for n in (0, 1):
        res = agent("start", params, rsctmp, **meta(n))
        assert res.rc == 0, res.err
    rules = sh("ip", "netns", "exec", NS_A, "nft", "list", "table", "ip", table)
    assert 'comment "cip-node-1"' in rules and 'comment "cip-node-2"' in rules
    assert "drop" in rules and "jhash" in rules
    assert len(find("10.210.1.70")) == 1
    assert agent("monitor", params, rsctmp, **meta(1)).rc == 0
    assert agent("stop", params, rsctmp, **meta(0)).rc == 0
    rules = sh("ip", "netns", "exec", NS_A, "nft", "list", "table", "ip", table)
    assert 'cip-node-1"' not in rules and 'cip-node-2"' in rules
    assert find("10.210.1.70")  # the other bucket still needs the address
    assert agent("monitor", params, rsctmp, **meta(0)).rc == 1
    assert agent("stop", params, rsctmp, **meta(1)).rc == 0
    assert not find("10.210.1.70")
    assert table not in sh("ip", "netns", "exec", NS_A, "nft", "list", "tables")


def test_network_namespace_parameter(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.80", "network_namespace": NS_A, "arp_count": "1"}
    env = base_env(rsctmp)
    assert run_ocf("IPaddr2", "start", params, env=env).rc == 0
    assert find("10.210.1.80")
    assert run_ocf("IPaddr2", "monitor", params, env=env).rc == 0
    assert run_ocf("IPaddr2", "stop", params, env=env).rc == 0
    assert not find("10.210.1.80")


# -- the same parameters give the same result as upstream ---------------------------

# Upstream copies the broadcast of another address on the interface (issue #656),
# so for a prefix narrower than the base address it gets the base's broadcast;
# pyha computes it from the prefix.  Everything else must be identical.
SAME = [
    {"ip": "10.210.1.90"},
    {"ip": "10.210.1.91", "cidr_netmask": "28", "iflabel": "v1"},
    {"ip": "10.210.1.92", "nic": "eth0", "cidr_netmask": "24", "broadcast": "10.210.1.255"},
    {"ip": "10.210.2.93", "nic": "eth1:lbl"},
    {"ip": "fd00:210::94", "nodad": "true"},
]


@pytest.mark.parametrize("params", SAME, ids=[p["ip"] for p in SAME])
def test_same_effect_as_upstream(net: None, rsctmp: Path, params: dict[str, str]) -> None:
    ip = params["ip"]
    seen = []
    for path in (UPSTREAM, "IPaddr2"):
        res = agent("start", params, rsctmp, path=path, OCF_RESKEY_arp_count="1")
        assert res.rc == 0, (path, res.err)
        seen.append(find(ip))
        assert agent("monitor", params, rsctmp, path=path).rc == 0
        # each agent recognises the other's address as its own
        other = "IPaddr2" if path == UPSTREAM else UPSTREAM
        assert agent("monitor", params, rsctmp, path=other).rc == 0
        assert agent("stop", params, rsctmp, path=path).rc == 0
        assert find(ip) == []
    assert seen[0] and len(seen[0]) == len(seen[1]) == 1
    theirs, ours = dict(seen[0][0]), dict(seen[1][0])
    if ":" not in ip:
        prefix = int(str(ours["prefixlen"]))
        host = int.from_bytes(bytes(int(o) for o in ip.split(".")), "big")
        brd = host | ((1 << (32 - prefix)) - 1)
        assert ours.pop("broadcast") == ".".join(str(b) for b in brd.to_bytes(4, "big"))
        theirs.pop("broadcast")
    assert theirs == ours


def test_pyha_tester_passes(net: None, tmp_path: Path) -> None:
    proc = subprocess.run(["ip", "netns", "exec", NS_A, str(ROOT / ".venv/bin/pyha-tester"),
                           "--agent", str(ROOT / "agents/IPaddr2"), "-o", "ip=10.210.1.99",
                           "-o", "arp_count=1", "--rsctmp", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    assert not find("10.210.1.99")


def test_lvs_support_moves_the_loopback_copy_aside(net: None, rsctmp: Path) -> None:
    nsip(NS_A, "addr", "add", "10.210.1.120/32", "dev", "lo")
    try:
        params = {"ip": "10.210.1.120", "lvs_support": "true", "arp_count": "1"}
        assert agent("start", params, rsctmp).rc == 0
        assert [a["dev"] for a in find("10.210.1.120")] == ["eth0"]
        assert agent("monitor", params, rsctmp).rc == 0
        assert agent("stop", params, rsctmp).rc == 0
        assert [(a["dev"], a["prefixlen"]) for a in find("10.210.1.120")] == [("lo", 32)]
    finally:
        nsip(NS_A, "addr", "del", "10.210.1.120/32", "dev", "lo", check=False)


def test_ipv6_flags(net: None, rsctmp: Path) -> None:
    params = {"ip": "fd00:210::121", "nodad": "true", "noprefixroute": "true",
              "preferred_lft": "0", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    info = [a for link in json.loads(nsip(NS_A, "-j", "addr", "show", "dev", "eth0"))
            for a in link["addr_info"] if a["local"] == "fd00:210::121"]
    assert len(info) == 1
    assert info[0].get("nodad") and info[0].get("noprefixroute")
    assert info[0]["preferred_life_time"] == 0 and info[0].get("deprecated")
    assert "fd00:210::121" in nsip(NS_A, "addrlabel", "list")  # lvs_ipv6_addrlabel=true
    assert agent("stop", params, rsctmp).rc == 0
    assert not find("fd00:210::121")
    assert "fd00:210::121" not in nsip(NS_A, "addrlabel", "list")


def test_external_arp_sender(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.122", "arp_sender": "iputils_arping", "arp_count": "2"}
    cap = Capture("peer0", 3)
    assert agent("start", params, rsctmp).rc == 0
    garp = [f for f in cap.frames() if f["kind"] == "arp" and f["spa"] == "10.210.1.122"]
    assert len(garp) >= 2 and all(f["sha"] == mac_of("eth0") for f in garp)
    assert agent("stop", params, rsctmp).rc == 0


def test_stop_with_a_missing_nic_leaves_other_interfaces_alone_and_fails(
        net: None, rsctmp: Path) -> None:
    nsip(NS_A, "addr", "add", "10.210.2.123/24", "dev", "eth1")
    try:
        res = agent("stop", {"ip": "10.210.2.123", "nic": "nosuchnic"}, rsctmp)
        assert res.rc == 1 and res.reason and "eth1" in res.reason  # served: never 0
        assert [a["dev"] for a in find("10.210.2.123")] == ["eth1"]
    finally:
        nsip(NS_A, "addr", "del", "10.210.2.123/24", "dev", "eth1")


@pytest.mark.parametrize("action", ["start", "stop"])
def test_without_privileges_is_err_perm(net: None, action: str) -> None:
    before = addrs()
    res = agent(action, {"ip": "10.210.1.1", "arp_count": "1"}, Path("/nonexistent"),
                path=str(ROOT / "tests" / "data" / "as-nobody"))
    assert res.rc == 4, res.err
    assert res.reason and "must run as root" in res.reason
    assert addrs() == before


@pytest.mark.parametrize("mac", ["00:11:22:33:44:55", "01:00:5e:00:00:zz", "01:00:5e:00:00",
                                 "01:00:5e:00:00:01;drop"])
def test_cluster_ip_rejects_a_bad_mac(net: None, rsctmp: Path, mac: str) -> None:
    before = addrs()
    res = agent("start", {"ip": "10.210.1.125", "mac": mac}, rsctmp,
                OCF_RESKEY_CRM_meta_clone_max="2", OCF_RESKEY_CRM_meta_clone="0")
    assert res.rc == 6 and res.reason and "multicast MAC" in res.reason
    assert addrs() == before
    assert "IPaddr2_10_210_1_125" not in sh("ip", "netns", "exec", NS_A, "nft", "list",
                                             "tables")


# -- declared types and validators (one layer of parsing) ------------------------------

def test_hash_seed_with_a_leading_zero_is_decimal(net: None, rsctmp: Path) -> None:
    # was "internal error": isdigit() accepted it, int(x, 0) refused it
    params = {"ip": "10.210.1.126", "clusterip_hash_seed": "010", "arp_count": "1"}
    meta = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "0"}
    res = agent("start", params, rsctmp, **meta)
    assert res.rc == 0, res.err
    try:
        rules = sh("ip", "netns", "exec", NS_A, "nft", "list", "table", "ip",
                   "IPaddr2_10_210_1_126")
        assert "seed 0x0000000a" in rules or "seed 0xa " in rules, rules  # 10, as nft reads it
    finally:
        assert agent("stop", params, rsctmp, **meta).rc == 0
    assert not find("10.210.1.126")


@pytest.mark.parametrize("seed", ["0x", "12a", "0x1ffffffff", "²", "-1"])
def test_bad_hash_seed_in_a_clone_is_a_configuration_error(net: None, rsctmp: Path,
                                                           seed: str) -> None:
    before = addrs()
    meta = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "0"}
    params = {"ip": "10.210.1.127", "clusterip_hash_seed": seed}
    for action in ("validate-all", "start"):
        res = agent(action, params, rsctmp, **meta)
        assert res.rc == 6 and res.reason and "clusterip_hash_seed" in res.reason, res.err
        assert "internal error" not in res.err
    assert agent("stop", params, rsctmp, **meta).rc == 0
    assert addrs() == before


def test_prefix_with_a_leading_zero_is_refused(net: None, rsctmp: Path) -> None:
    # upstream checks "024" as 24 and ip(8) then adds /20 (octal)
    before = addrs()
    res = agent("start", {"ip": "10.210.1.128", "cidr_netmask": "024"}, rsctmp)
    assert res.rc == 6 and res.reason and "leading zero" in res.reason
    assert addrs() == before


def test_dotted_netmask_is_converted_with_a_warning(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.129", "cidr_netmask": "255.255.255.128", "arp_count": "1"}
    res = agent("start", params, rsctmp)
    assert res.rc == 0, res.err
    assert "WARNING" in res.err and "/25" in res.err
    assert [(a["dev"], a["prefixlen"]) for a in find("10.210.1.129")] == [("eth0", 25)]
    assert agent("stop", params, rsctmp).rc == 0
    assert not find("10.210.1.129")


def test_missing_network_namespace(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.130", "network_namespace": f"pyha-gone-{os.getpid()}"}
    env = base_env(rsctmp)
    for action, rc in (("validate-all", 6), ("start", 5), ("monitor", 7), ("stop", 0)):
        res = run_ocf("IPaddr2", action, params, env=env)
        assert res.rc == rc, (action, res.err)
        assert "does not exist" in res.err
        if rc not in (0, 7):
            assert res.reason and "does not exist" in res.reason


@pytest.mark.parametrize("name", ["a/b", "..", ".", "x" * 256])
def test_invalid_network_namespace_name(net: None, rsctmp: Path, name: str) -> None:
    params = {"ip": "10.210.1.131", "network_namespace": name}
    env = base_env(rsctmp)
    res = run_ocf("IPaddr2", "validate-all", params, env=env)
    assert res.rc == 6 and res.reason and "network namespace name" in res.reason
    # nothing was started under this instance: stop proves it absent
    assert run_ocf("IPaddr2", "stop", params, env=env).rc == 0


def test_stop_cannot_identify_a_started_address(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.132", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    try:
        # the address changed to garbage after start: which one to remove is unknown
        res = agent("stop", {**params, "ip": "10.210.1.999"}, rsctmp)
        assert res.rc == 6 and res.reason and "cannot identify" in res.reason
        assert find("10.210.1.132")
    finally:
        assert agent("stop", params, rsctmp).rc == 0
    assert not find("10.210.1.132")
    assert agent("stop", {**params, "ip": "10.210.1.999"}, rsctmp).rc == 0  # nothing recorded


# -- values upstream accepted keep working, with a warning ----------------------------

LENIENT = [
    {"run_arping": "maybe"},
    {"nodad": "perhaps", "lvs_support": "sometimes"},
    {"arp_count_refresh": "x"},
    {"preferred_lft": "soon"},  # upstream ignores it for IPv4
    {"mac": "zz", "clusterip_hash": "round-robin", "clusterip_hash_seed": "seed"},  # no clone
    {"lvs_ipv6_addrlabel_value": "-1"},  # IPv4: upstream ignores it
]


@pytest.mark.parametrize("extra", LENIENT, ids=[",".join(e) for e in LENIENT])
def test_values_upstream_accepted_still_work(net: None, rsctmp: Path,
                                             extra: dict[str, str]) -> None:
    params = {"ip": "10.210.1.133", "arp_count": "1", **extra}
    for path in (UPSTREAM, "IPaddr2"):
        res = agent("validate-all", params, rsctmp, path=path)
        assert res.rc == 0, (path, res.err)
    res = agent("start", params, rsctmp)
    assert res.rc == 0, res.err
    warned = [line for line in res.err.splitlines() if "WARNING" in line]
    assert {name for name in extra if any(f"'{name}'" in w for w in warned)} == set(extra)
    assert find("10.210.1.133")
    monitor = agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="10000")
    assert monitor.rc == 0 and "WARNING" not in monitor.err  # not every 10 s
    assert agent("stop", params, rsctmp).rc == 0
    assert not find("10.210.1.133")


def test_tolerated_value_that_matters_is_still_refused(net: None, rsctmp: Path) -> None:
    # preferred_lft is used for IPv6: garbage there never worked upstream either (ip fails)
    res = agent("validate-all", {"ip": "fd00:210::134", "preferred_lft": "soon"}, rsctmp)
    assert res.rc == 6 and res.reason and "preferred_lft" in res.reason


# -- interrupted netlink dumps (NLM_F_DUMP_INTR) -----------------------------------------

IN_PROCESS = """
import json, os, sys
sys.path[:0] = [{root!r}, {tests!r}]
from lib.netlink_double import InterruptingSocket
from ocf_lib import netlink
from agents.ipaddr2 import agent
netlink.socket_factory = InterruptingSocket.factory({ip!r}, {times})
rc = agent.run(["IPaddr2", "monitor"], {{**os.environ, **json.loads(sys.argv[1])}})
print(json.dumps({{"rc": rc, "retaken": netlink.stats["interrupted"],
                  "flagged": InterruptingSocket.dumps_interrupted}}))
"""


def monitor_through_double(params: dict[str, str], rsctmp: Path, times: int) -> tuple[
        dict[str, int], str]:
    env = {**base_env(rsctmp), "OCF_RESOURCE_INSTANCE": "test",
           "OCF_RESKEY_CRM_meta_interval": "10000", "OCF_RESKEY_CRM_meta_timeout": "20000",
           **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}
    code = IN_PROCESS.format(root=str(ROOT), tests=str(ROOT / "tests"), ip=params["ip"],
                             times=times)
    proc = subprocess.run(["ip", "netns", "exec", NS_A, sys.executable, "-c", code,
                           json.dumps(env)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def test_an_interrupted_dump_is_taken_again(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.140", "arp_count": "1"}
    assert agent("start", params, rsctmp).rc == 0
    try:
        # two dumps flagged and missing the address; the third is complete
        seen, _err = monitor_through_double(params, rsctmp, times=2)
        assert seen == {"rc": 0, "retaken": 2, "flagged": 2}
        # every dump interrupted: no consistent view, so 1 with a reason, never 7
        seen, err = monitor_through_double(params, rsctmp, times=-1)
        assert seen["rc"] == 1 and seen["flagged"] >= 5, err
        assert "ocf-exit-reason:" in err and "interrupted" in err
        assert find("10.210.1.140")  # it was there all along
    finally:
        assert agent("stop", params, rsctmp).rc == 0


CHURN_NS = f"pyha-ip-{os.getpid()}c"


def test_monitor_never_says_stopped_under_address_churn(tmp_path: Path, rsctmp: Path) -> None:
    """Real interrupted dumps: thousands of addresses on the interface, a process
    deleting and re-adding some of them as fast as it can, and the agent monitoring
    an address that stays put."""
    sh("ip", "netns", "add", CHURN_NS)
    churn = None
    try:
        nsip(CHURN_NS, "link", "set", "lo", "up")
        nsip(CHURN_NS, "link", "add", "c0", "type", "veth", "peer", "name", "c1")
        nsip(CHURN_NS, "link", "set", "c0", "up")
        nsip(CHURN_NS, "link", "set", "c1", "up")
        many = [f"addr add 10.211.{i // 250}.{i % 250 + 1}/32 dev c0" for i in range(3000)]
        (tmp_path / "setup").write_text("\n".join(many) + "\n")
        nsip(CHURN_NS, "-batch", str(tmp_path / "setup"))
        ops = [f"addr {op} 10.211.0.{k % 50 + 1}/32 dev c0" for k in range(5000)
               for op in ("del", "add")]
        (tmp_path / "ops").write_text("\n".join(ops) + "\n")
        params = {"ip": "10.212.0.1", "nic": "c0", "cidr_netmask": "24", "arp_count": "1"}
        assert agent("start", params, rsctmp, ns=CHURN_NS).rc == 0
        churn = subprocess.Popen(
            ["sh", "-c", f"while :; do ip -n {CHURN_NS} -force -batch {tmp_path / 'ops'}; done"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.5)
        probe = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                 "from ocf_lib import netlink\n"
                 "for _ in range(100):\n"
                 "    try: netlink.addresses()\n"
                 "    except netlink.DumpInterrupted: pass\n"
                 "print(netlink.stats['interrupted'])\n")
        retaken = int(sh("ip", "netns", "exec", CHURN_NS, sys.executable, "-c", probe))
        assert retaken > 0  # the churn really interrupts dumps
        rcs = [agent("monitor", params, rsctmp, ns=CHURN_NS,
                     OCF_RESKEY_CRM_meta_interval="10000").rc for _ in range(40)]
        assert 7 not in rcs and set(rcs) <= {0, 1}, rcs
        assert [a["prefixlen"] for a in find("10.212.0.1", CHURN_NS)] == [24]
    finally:
        if churn is not None:
            os.killpg(churn.pid, 15)
            churn.wait(timeout=10)
        sh("ip", "netns", "del", CHURN_NS, check=False)


def test_stop_cannot_identify_the_namespace_it_started_in(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.135", "network_namespace": NS_A, "arp_count": "1"}
    env = base_env(rsctmp)
    assert run_ocf("IPaddr2", "start", params, env=env).rc == 0
    try:
        res = run_ocf("IPaddr2", "stop", {**params, "network_namespace": "a/b"}, env=env)
        assert res.rc == 6 and res.reason and "cannot identify" in res.reason
        assert find("10.210.1.135")
    finally:
        assert run_ocf("IPaddr2", "stop", params, env=env).rc == 0
    assert not find("10.210.1.135")


def test_a_running_address_started_by_upstream_is_recorded(net: None, rsctmp: Path) -> None:
    params = {"ip": "10.210.1.136", "arp_count": "1"}
    assert agent("start", params, rsctmp, path=UPSTREAM).rc == 0
    try:
        assert agent("monitor", params, rsctmp, OCF_RESKEY_CRM_meta_interval="0").rc == 0
        res = agent("stop", {**params, "ip": "10.210.1.999"}, rsctmp)
        assert res.rc == 6 and res.reason and "cannot identify" in res.reason
        assert find("10.210.1.136")
    finally:
        assert agent("stop", params, rsctmp).rc == 0
    assert not find("10.210.1.136")
