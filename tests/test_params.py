"""Parameter declarations: every type, defaults, required, deprecated, secrets, empty = unset."""

from __future__ import annotations

import pytest

from ocf_lib.params import (
    BOOLEAN,
    DURATION,
    INTEGER,
    IPADDR,
    PATH,
    STRING,
    Choice,
    Param,
    ParamError,
    parse,
    parse_bool,
    parse_duration,
)


def one(ptype, raw):
    values, errors = parse([Param("x", ptype)], {"x": raw})
    return values.x, errors


@pytest.mark.parametrize("word", ["yes", "YES", "true", "True", "1", "on", "On", " yes "])
def test_boolean_true_words(word: str) -> None:
    assert one(BOOLEAN, word) == (True, [])


@pytest.mark.parametrize("word", ["no", "NO", "false", "FALSE", "0", "off", "Off"])
def test_boolean_false_words(word: str) -> None:
    assert one(BOOLEAN, word) == (False, [])


@pytest.mark.parametrize("word", ["2", "y", "n", "enabled", "truee", "-1"])
def test_boolean_anything_else_is_an_error_naming_param_and_value(word: str) -> None:
    value, errors = one(BOOLEAN, word)
    assert value is None
    assert len(errors) == 1
    text = str(errors[0])
    assert "'x'" in text and f"'{word}'" in text and "boolean" in text


def test_parse_bool_helper_falls_back_to_default() -> None:
    assert parse_bool("Yes") is True
    assert parse_bool("off", True) is False
    assert parse_bool("garbage", True) is True
    assert parse_bool(None) is False


@pytest.mark.parametrize(("raw", "seconds"), [
    ("30", 30.0), ("30s", 30.0), ("30sec", 30.0), ("2min", 120.0), ("2m", 120.0),
    ("500ms", 0.5), ("500msec", 0.5), ("1h", 3600.0), ("1hr", 3600.0), ("1.5s", 1.5),
    ("250us", 0.00025), (" 10 s ", 10.0), ("0", 0.0), ("5MIN", 300.0),
])
def test_durations(raw: str, seconds: float) -> None:
    value, errors = one(DURATION, raw)
    assert errors == []
    assert value == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["abc", "10x", "-5s", "s", "nan", "inf", "1e999"])
def test_bad_durations(raw: str) -> None:
    value, errors = one(DURATION, raw)
    assert value is None and "duration" in str(errors[0]) and raw in str(errors[0])


def test_parse_duration_default_unit() -> None:
    assert parse_duration("20000", default_unit=0.001) == 20.0
    with pytest.raises(ValueError):
        parse_duration("x")


def test_integers_and_bounds() -> None:
    assert one(INTEGER, "42") == (42, [])
    assert one(INTEGER, " -3 ") == (-3, [])
    assert "not an integer" in str(one(INTEGER, "4.2")[1][0])
    assert "not an integer" in str(one(INTEGER, "0x10")[1][0])
    assert "not an integer" in str(one(INTEGER, "1_000")[1][0])
    bounded = INTEGER(1, 10)
    assert one(bounded, "1") == (1, []) and one(bounded, "10") == (10, [])
    assert "below the minimum 1" in str(one(bounded, "0")[1][0])
    assert "above the maximum 10" in str(one(bounded, "11")[1][0])
    assert INTEGER.minimum is None  # calling INTEGER(...) never mutates the shared instance


def test_choice_is_case_insensitive_by_default_and_canonicalises() -> None:
    mode = Choice("fast", "Safe")
    assert one(mode, "FAST") == ("fast", [])
    assert one(mode, "safe") == ("Safe", [])
    value, errors = one(mode, "medium")
    assert value is None and "fast, Safe" in str(errors[0]) and "'medium'" in str(errors[0])
    strict = Choice("a", "B", case_sensitive=True)
    assert one(strict, "B") == ("B", [])
    assert one(strict, "b")[0] is None
    assert strict.choices() == ("a", "B")


@pytest.mark.parametrize("raw", ["192.0.2.1", "0.0.0.0", "255.255.255.255", "::1",
                                 "2001:db8::1", "fe80::1:2:3:4", "::ffff:192.0.2.1"])
def test_ip_addresses(raw: str) -> None:
    assert one(IPADDR, raw) == (raw, [])


@pytest.mark.parametrize("raw", ["256.1.1.1", "1.2.3", "1.2.3.4.5", "a.b.c.d", "01234.1.1.1",
                                 "2001:db8:::1", "host.example", "1.2.3.4/24", "fe80::1%eth0",
                                 "192.168.001.010", "1.2.3.04", " "])
def test_bad_ip_addresses(raw: str) -> None:
    value, errors = one(IPADDR, raw)
    assert value is None and "IPv4 or IPv6" in str(errors[0])


def test_paths() -> None:
    assert one(PATH, "/var/lib/x") == ("/var/lib/x", [])
    assert "absolute path" in str(one(PATH, "relative/x")[1][0])
    assert "NUL" in str(one(PATH, "/a\0b")[1][0])


def test_string_kept_verbatim() -> None:
    assert one(STRING, "  spaced value ") == ("  spaced value ", [])


def test_defaults_are_converted_and_not_given() -> None:
    params = [Param("timeout", DURATION, default="2min"), Param("count", INTEGER, default="3"),
              Param("flag", BOOLEAN, default="no"), Param("plain", STRING)]
    values, errors = parse(params, {})
    assert errors == []
    assert values.timeout == 120.0 and values.count == 3 and values.flag is False
    assert values.plain is None
    assert not values.given("timeout")
    assert values.get("plain", "fallback") == "fallback"
    assert values["count"] == 3
    with pytest.raises(AttributeError):
        _ = values.nonexistent


def test_empty_string_is_unset() -> None:
    params = [Param("n", INTEGER, default="5"), Param("r", STRING, required=True)]
    values, errors = parse(params, {"n": "", "r": ""})
    assert values.n == 5 and not values.given("n")
    assert [str(e) for e in errors] == ["parameter 'r' is required but not set"]


def test_required_and_all_errors_collected() -> None:
    params = [Param("a", STRING, required=True), Param("b", INTEGER), Param("c", BOOLEAN)]
    values, errors = parse(params, {"b": "x", "c": "maybe"})
    assert {e.param for e in errors} == {"a", "b", "c"}
    assert values.b is None and values.c is None


def test_lookup_may_be_a_function() -> None:
    env = {"OCF_RESKEY_ip": "192.0.2.9"}
    values, errors = parse([Param("ip", IPADDR)], lambda n: env.get("OCF_RESKEY_" + n))
    assert values.ip == "192.0.2.9" and values.given("ip") and errors == []


def test_aliases_feed_the_parameter() -> None:
    p = Param("ip", STRING, aliases=("ipaddr",))
    values, _ = parse([p], {"ipaddr": "10.0.0.1"})
    assert values.ip == "10.0.0.1" and values.given("ip")
    values, _ = parse([p], {"ipaddr": "10.0.0.1", "ip": "10.0.0.2"})
    assert values.ip == "10.0.0.2"


def test_deprecated_in_favour_of() -> None:
    params = [Param("new", INTEGER, default="1"), Param("old", INTEGER, deprecated="new")]
    values, _ = parse(params, {"old": "7"})
    assert values.new == 7 and values.given("new") and values.raw["new"] == "7"
    values, _ = parse(params, {"old": "7", "new": "9"})
    assert values.new == 9  # the new name wins when both are given
    values, _ = parse(params, {})
    assert values.new == 1 and values.old is None


def test_secret_values_never_appear_in_messages() -> None:
    p = Param("password", INTEGER, secret=True)
    values, errors = parse([p], {"password": "hunter2"})
    assert "hunter2" not in str(errors[0])
    assert "[hidden]" in str(errors[0]) and "'password'" in str(errors[0])
    assert p.shown("hunter2") == "[hidden]"
    assert Param("user").shown("bob") == "bob"


def test_error_text_shape() -> None:
    err = ParamError("port", "x", "is not an integer")
    assert str(err) == "parameter 'port': value 'x' is not an integer"
    assert isinstance(err, ValueError)


def test_param_declaration_defaults() -> None:
    p = Param("power_wait", DURATION)
    assert p.longopt == "power-wait" and p.shortdesc == "power_wait" and p.longdesc == "power_wait"
    assert p.takes_value
    assert not Param("verbose", BOOLEAN).takes_value
    assert Param("lanplus", BOOLEAN, takes_value=True).takes_value


def test_declaration_bug_in_a_default_is_reported() -> None:
    values, errors = parse([Param("n", INTEGER, default="many")], {})
    assert errors and "many" in str(errors[0])
