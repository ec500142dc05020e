"""The lenient-value mechanism and the network parameter types (ocf_lib/params.py,
block "IPaddr2 / network").  Pure functions: no root, no kernel."""

from __future__ import annotations

import pytest

from ocf_lib.params import (
    BROADCAST,
    FOREVER,
    HASH_SEED,
    INTEGER,
    INTERFACE,
    LENIENT_BOOLEAN,
    LIFETIME,
    MULTICAST_MAC,
    NETNS_NAME,
    PREFIX,
    ROUTE_PROTOCOL,
    Param,
    ParamType,
    Tolerant,
    parse,
)


def one(ptype: ParamType, raw: str) -> tuple[object, list[str], list[str]]:
    values, errors = parse([Param("x", ptype)], {"x": raw})
    return values.x, [e.problem for e in errors], values.warnings


def test_lenient_boolean_is_ocf_is_true_with_a_warning() -> None:
    assert one(LENIENT_BOOLEAN, "yes") == (True, [], [])
    assert one(LENIENT_BOOLEAN, "off") == (False, [], [])
    value, errors, warnings = one(LENIENT_BOOLEAN, "maybe")
    assert (value, errors) == (False, [])
    assert len(warnings) == 1 and "'x'" in warnings[0] and "'maybe'" in warnings[0]


def test_tolerant_falls_back_and_marks_the_value() -> None:
    ptype = Tolerant(INTEGER(0), "0", "upstream ignores it")
    values, errors = parse([Param("x", ptype)], {"x": "many"})
    assert errors == [] and values.x == 0 and values.tolerated("x")
    assert "upstream ignores it" in values.warnings[0]
    values, errors = parse([Param("x", ptype)], {"x": "7"})
    assert values.x == 7 and not values.tolerated("x") and values.warnings == []


def test_tolerant_secret_is_masked_in_the_warning() -> None:
    values, _ = parse([Param("pw", Tolerant(INTEGER(0), None, "why"), secret=True)],
                      {"pw": "hunter2"})
    assert "hunter2" not in values.warnings[0] and "[hidden]" in values.warnings[0]


@pytest.mark.parametrize(("raw", "want"), [("24", 24), ("1", 1), ("128", 128), (" 64 ", 64)])
def test_prefix(raw: str, want: int) -> None:
    assert one(PREFIX, raw) == (want, [], [])


def test_prefix_dotted_netmask_is_converted_with_a_warning() -> None:
    value, errors, warnings = one(PREFIX, "255.255.240.0")
    assert (value, errors) == (20, []) and "x=20" in warnings[0]
    assert "/20" in warnings[0]


@pytest.mark.parametrize("raw", ["0", "129", "024", "²", "0x18", "255.0.255.0", "0.0.0.0", "-1",
                                 "NaN", "24/"])
def test_prefix_refused(raw: str) -> None:
    assert one(PREFIX, raw)[1]


@pytest.mark.parametrize(("raw", "ok"), [("+", True), ("-", True), ("10.0.0.255", True),
                                         ("010.0.0.255", False), ("fd00::1", False),
                                         ("x", False)])
def test_broadcast(raw: str, ok: bool) -> None:
    assert (not one(BROADCAST, raw)[1]) == ok


@pytest.mark.parametrize(("raw", "want"), [("forever", FOREVER), ("Forever", FOREVER),
                                           ("0", 0), ("3600", 3600)])
def test_lifetime(raw: str, want: int) -> None:
    assert one(LIFETIME, raw)[0] == want


@pytest.mark.parametrize("raw", ["soon", "-1", "4294967295", "1.5", "²"])
def test_lifetime_refused(raw: str) -> None:
    assert one(LIFETIME, raw)[1]


@pytest.mark.parametrize(("raw", "want"), [("010", 10), ("0x10", 16), ("0XfF", 255),
                                           ("4294967295", 2**32 - 1), ("0", 0)])
def test_hash_seed(raw: str, want: int) -> None:
    assert one(HASH_SEED, raw) == (want, [], [])


@pytest.mark.parametrize("raw", ["0x", "4294967296", "0x1ffffffff", "²", "-1", "1_0", "0x１"])
def test_hash_seed_refused(raw: str) -> None:
    assert one(HASH_SEED, raw)[1]


def test_multicast_mac() -> None:
    assert one(MULTICAST_MAC, "01-00-5E-AA-bb-0c")[0] == "01:00:5e:aa:bb:0c"
    for bad in ("00:11:22:33:44:55", "01:00:5e:00:00", "01:00:5e:00:00:zz", "01:00:5e:00:00:01;x"):
        assert one(MULTICAST_MAC, bad)[1], bad


def test_interface_and_legacy_label() -> None:
    assert one(INTERFACE, "eth0")[0] == ("eth0", "")
    assert one(INTERFACE, "eth0:vip")[0] == ("eth0", "vip")
    for bad in ("a/b", "..", "eth 0", "x" * 128, ":vip"):
        assert one(INTERFACE, bad)[1], bad


def test_netns_name() -> None:
    assert one(NETNS_NAME, "blue")[0] == "blue"
    for bad in ("a/b", ".", "..", "x" * 256, " "):
        assert one(NETNS_NAME, bad)[1], bad


def test_route_protocol() -> None:
    assert one(ROUTE_PROTOCOL, "kernel")[0] == 2
    assert one(ROUTE_PROTOCOL, "static")[0] == 4
    assert one(ROUTE_PROTOCOL, "42")[0] == 42
    for bad in ("256", "²", "nosuchproto", "-1"):
        assert one(ROUTE_PROTOCOL, bad)[1], bad
