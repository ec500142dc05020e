"""ocf_lib/netlink.py checked against an independent oracle: pyroute2.

The agents never import pyroute2 (its import costs more than a whole
monitor); here it is the second opinion.  A private network namespace gets
links (veth pairs, one with an altname, one left down), IPv4 and IPv6 addresses
(labels, broadcast, secondary, finite lifetimes, nodad) and routes (main
table with gateway, metric and preferred source; another table; IPv6).  In
that namespace one child process dumps the same state through both
libraries; every field pyha reads must agree.  Changes made through
ocf_lib.netlink (add/del address, link up) are read back through pyroute2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT

NS = f"pyha-nlo-{os.getpid()}"
TABLE = 100
FOREVER = 0xFFFFFFFF


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc.stdout


def nsip(*args: str) -> str:
    return sh("ip", "-n", NS, *args)


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
           "net.ipv6.conf.default.accept_dad=0")
        nsip("link", "set", "lo", "up")
        nsip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        nsip("link", "set", "eth0", "address", "02:00:00:00:10:01")
        nsip("link", "set", "eth0", "up")
        nsip("link", "set", "peer0", "up")
        nsip("link", "add", "dum0", "type", "veth", "peer", "name", "dum0p")
        nsip("link", "property", "add", "dev", "dum0", "altname", "pyha-oracle-alt")
        nsip("link", "set", "dum0", "up")
        nsip("link", "add", "down0", "type", "veth", "peer", "name", "down0p")  # stays down
        nsip("addr", "add", "10.220.1.1/24", "brd", "+", "dev", "eth0", "label", "eth0:web")
        nsip("addr", "add", "10.220.1.7/24", "dev", "eth0")  # secondary
        nsip("addr", "add", "10.220.2.1/28", "dev", "dum0", "valid_lft", "3600",
             "preferred_lft", "1800")
        nsip("addr", "add", "fd00:220::1/64", "dev", "eth0", "nodad")
        nsip("addr", "add", "fd00:221::1/64", "dev", "dum0", "nodad", "noprefixroute")
        nsip("route", "add", "192.0.2.0/24", "via", "10.220.1.254", "dev", "eth0",
             "metric", "7", "src", "10.220.1.7")
        nsip("route", "add", "default", "via", "10.220.1.254", "dev", "eth0")
        nsip("route", "add", "198.51.100.0/25", "dev", "dum0", "table", str(TABLE))
        nsip("-6", "route", "add", "2001:db8:5::/48", "via", "fd00:220::fe", "dev", "eth0",
             "metric", "42")
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


# -- runs inside the namespace (a child process) -------------------------------


def _ours() -> dict[str, Any]:
    from ocf_lib import netlink as nl

    return {
        "addresses": [
            {"family": a.family, "ip": a.ip, "peer": a.address, "prefixlen": a.prefixlen,
             "index": a.index, "scope": a.scope, "flags": a.flags, "label": a.label,
             "broadcast": a.broadcast, "preferred": a.preferred, "valid": a.valid}
            for a in nl.addresses()],
        "links": [
            {"index": li.index, "name": li.name, "flags": li.flags, "type": li.type,
             "operstate": li.operstate, "mac": li.mac.hex(":"), "altnames": li.altnames}
            for li in nl.links()],
        "routes": [
            {"family": r.family, "table": r.table, "dst": r.dst, "dst_len": r.dst_len,
             "oif": r.oif, "gateway": r.gateway, "metric": r.metric, "prefsrc": r.prefsrc,
             "protocol": r.protocol, "scope": r.scope, "type": r.type}
            for fam in (nl.AF_INET, nl.AF_INET6) for table in (nl.RT_TABLE_MAIN, TABLE, 255)
            for r in nl.routes(fam, table)],
    }


def _theirs() -> dict[str, Any]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        addresses = []
        for msg in ipr.get_addr():
            cache = msg.get_attr("IFA_CACHEINFO") or {}
            local, address = msg.get_attr("IFA_LOCAL"), msg.get_attr("IFA_ADDRESS") or ""
            addresses.append({
                "family": msg["family"], "ip": local or address, "peer": address,
                "prefixlen": msg["prefixlen"], "index": msg["index"], "scope": msg["scope"],
                "flags": msg.get_attr("IFA_FLAGS") or msg["flags"],
                "label": msg.get_attr("IFA_LABEL") or "",
                "broadcast": msg.get_attr("IFA_BROADCAST") or "",
                "preferred": cache.get("ifa_preferred", FOREVER),
                "valid": cache.get("ifa_valid", FOREVER)})
        links = []
        for msg in ipr.get_links():
            props = msg.get_attr("IFLA_PROP_LIST")
            links.append({
                "index": msg["index"], "name": msg.get_attr("IFLA_IFNAME"),
                "flags": msg["flags"], "type": msg["ifi_type"],
                "operstate": msg.get_attr("IFLA_OPERSTATE").lower(),
                "mac": msg.get_attr("IFLA_ADDRESS") or "",
                "altnames": props.get_attrs("IFLA_ALT_IFNAME") if props else []})
        routes = []
        for fam, want in ((fam, want) for fam in (2, 10) for want in (254, TABLE, 255)):
            for msg in ipr.get_routes(family=fam, table=want):
                table = msg.get_attr("RTA_TABLE") or msg["table"]
                routes.append({
                    "family": msg["family"], "table": table,
                    "dst": msg.get_attr("RTA_DST") or "", "dst_len": msg["dst_len"],
                    "oif": msg.get_attr("RTA_OIF") or 0,
                    "gateway": msg.get_attr("RTA_GATEWAY") or "",
                    "metric": msg.get_attr("RTA_PRIORITY") or 0,
                    "prefsrc": msg.get_attr("RTA_PREFSRC") or "",
                    "protocol": msg["proto"], "scope": msg["scope"], "type": msg["type"]})
    return {"addresses": addresses, "links": links, "routes": routes}


def _both() -> dict[str, Any]:
    """Both views back to back (pyroute2 imported first), and the seconds between."""
    import time

    import pyroute2  # noqa: F401

    start = time.monotonic()
    ours = _ours()
    theirs = _theirs()
    return {"ours": ours, "theirs": theirs, "elapsed": time.monotonic() - start}


def _change() -> dict[str, Any]:
    """Changes through ocf_lib.netlink, each read back through pyroute2."""
    from pyroute2 import IPRoute

    from ocf_lib import netlink as nl

    eth0 = nl.link_by_name("eth0")
    down0 = nl.link_by_name("down0")
    assert eth0 is not None and down0 is not None
    seen: dict[str, Any] = {}
    with IPRoute() as ipr:
        def find(ip: str) -> list[dict[str, Any]]:
            return [{"index": m["index"], "prefixlen": m["prefixlen"],
                     "label": m.get_attr("IFA_LABEL") or "",
                     "broadcast": m.get_attr("IFA_BROADCAST") or ""}
                    for m in ipr.get_addr() if (m.get_attr("IFA_LOCAL")
                                                or m.get_attr("IFA_ADDRESS")) == ip]

        nl.add_address(eth0.index, "10.220.1.50", 24, broadcast="10.220.1.255",
                       label="eth0:vip")
        nl.add_address(eth0.index, "fd00:220::50", 64, flags=nl.IFA_F_NODAD)
        seen["added4"] = find("10.220.1.50")
        seen["added6"] = find("fd00:220::50")
        nl.del_address(eth0.index, "10.220.1.50", 24)
        nl.del_address(eth0.index, "fd00:220::50", 64)
        seen["deleted4"] = find("10.220.1.50")
        seen["deleted6"] = find("fd00:220::50")
        seen["down_before"] = ipr.get_links(down0.index)[0]["flags"] & 1
        nl.set_link_up(down0.index)
        seen["down_after"] = ipr.get_links(down0.index)[0]["flags"] & 1
        # down0 is the module's down link: leave it so for tests that run after
        ipr.link("set", index=down0.index, state="down")
        seen["eth0"] = eth0.index
    return seen


def in_namespace(function: str) -> dict[str, Any]:
    code = (f"import json, sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]; "
            f"import test_netlink_oracle as t; print(json.dumps(t.{function}()))")
    proc = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def both(ns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    views = in_namespace("_both")
    views["theirs"]["elapsed"] = views["elapsed"]
    return views["ours"], views["theirs"]


def keyed(records: list[dict[str, Any]], *key: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in key): r for r in records}


# -- the comparisons --------------------------------------------------------------


def test_links_agree(ns: str) -> None:
    ours, theirs = both(ns)
    assert keyed(ours["links"], "index") == keyed(theirs["links"], "index")
    by_name = keyed(theirs["links"], "name")
    assert {"lo", "eth0", "peer0", "dum0", "down0"} <= {n for (n,) in by_name}
    assert by_name[("dum0",)]["altnames"] == ["pyha-oracle-alt"]
    assert by_name[("eth0",)]["mac"] == "02:00:00:00:10:01"
    assert not by_name[("down0",)]["flags"] & 1


def test_addresses_agree(ns: str) -> None:
    ours, theirs = both(ns)
    labels = {r["label"] for r in theirs["addresses"]}
    assert "eth0:web" in labels
    assert any(r["ip"] == "10.220.1.7" and r["flags"] & 0x01 for r in theirs["addresses"])
    assert any(r["ip"] == "10.220.2.1" and r["valid"] <= 3600 for r in theirs["addresses"])
    assert any(r["ip"] == "fd00:221::1" and r["flags"] & 0x200 for r in theirs["addresses"])
    mine = keyed(ours["addresses"], "family", "ip", "prefixlen", "index")
    other = keyed(theirs["addresses"], "family", "ip", "prefixlen", "index")
    assert mine.keys() == other.keys()
    slack = int(theirs["elapsed"]) + 1  # finite lifetimes count down between the dumps
    for key, rec in other.items():
        for field in ("preferred", "valid"):
            a, b = mine[key].pop(field), rec.pop(field)
            assert a == b or (FOREVER not in (a, b) and 0 <= a - b <= slack), (key, field, a, b)
        assert mine[key] == rec, key


def test_routes_agree(ns: str) -> None:
    ours, theirs = both(ns)
    key = ("family", "table", "dst", "dst_len", "oif", "gateway", "metric")
    mine, other = keyed(ours["routes"], *key), keyed(theirs["routes"], *key)
    assert mine == other
    dsts = {(r["table"], r["dst"], r["dst_len"]) for r in theirs["routes"]}
    assert {(254, "192.0.2.0", 24), (254, "", 0), (TABLE, "198.51.100.0", 25),
            (254, "2001:db8:5::", 48)} <= dsts
    assert any(r["prefsrc"] == "10.220.1.7" and r["metric"] == 7 for r in theirs["routes"])


def test_changes_through_our_seam_are_seen_by_the_oracle(ns: str) -> None:
    seen = in_namespace("_change")
    assert seen["added4"] == [{"index": seen["eth0"], "prefixlen": 24, "label": "eth0:vip",
                               "broadcast": "10.220.1.255"}]
    assert [(r["index"], r["prefixlen"]) for r in seen["added6"]] == [(seen["eth0"], 64)]
    assert seen["deleted4"] == [] and seen["deleted6"] == []
    assert (seen["down_before"], seen["down_after"]) == (0, 1)
