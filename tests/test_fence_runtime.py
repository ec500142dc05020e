"""The fence runtime, driven against a power switch model behind the real Session seam.

Most tests call ``FenceAgent.run`` in-process (fast); the ``exec`` tests run the
real executable ``tests/data/fence_pyhatest`` the way pacemaker-fenced does.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_fence

from ocf_lib import codes
from ocf_lib.fence import FenceAgent, FenceContext, FenceError, parse_argv, parse_stdin
from ocf_lib.params import Param

DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(DATA))
import fencedev  # noqa: E402

AGENT = DATA / "fence_pyhatest"


class Switch:
    """The device file plus helpers to read what the model saw."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.write(user="admin", password="pw", plugs={"1": "on", "2": "on", "3": "off"})

    def write(self, **state: Any) -> None:
        self.path.write_text(json.dumps(state))

    def update(self, **changes: Any) -> None:
        state = self.state()
        state.update(changes)
        self.path.write_text(json.dumps(state))

    def state(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def plug(self, name: str) -> str:
        state = self.state()
        pending = state.get("pending", {}).get(name)
        return str(pending[0] if pending else state["plugs"][name])

    def sets(self) -> list[str]:
        return [line for line in self.state().get("log", []) if line.startswith("SET")]


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[Switch]:
    yield Switch(tmp_path / "switch.json")


def stdin_lines(switch: Switch, **extra: str) -> str:
    base = {"device": str(switch.path), "login": "admin", "passwd": "pw"}
    base.update(extra)
    return "".join(f"{k}={v}\n" for k, v in base.items())


def fence(text: str, argv: list[str] | None = None,
          env: dict[str, str] | None = None) -> int:
    return fencedev.agent.run(["fence_pyhatest", *(argv or [])], env or {}, io.StringIO(text))


# -- input parsing -----------------------------------------------------------------------

PARAMS = fencedev.agent.params


def test_argv_short_and_long_options() -> None:
    raw = parse_argv(PARAMS, ["-l", "root", "-p", "pw", "-n", "4", "-o", "off", "-S", "/bin/pw"])
    assert raw == {"username": "root", "password": "pw", "plug": "4", "action": "off",
                   "password_script": "/bin/pw"}
    raw = parse_argv(PARAMS, ["--username=root", "--password", "pw", "--plug=4", "--action",
                              "status", "--password-script=/bin/pw", "--power-timeout", "5"])
    assert raw["username"] == "root" and raw["password"] == "pw" and raw["plug"] == "4"
    assert raw["action"] == "status" and raw["password_script"] == "/bin/pw"
    assert raw["power_timeout"] == "5"
    raw = parse_argv(PARAMS, ["-qv", "-n4", "-vv"])
    assert raw["quiet"] == "1" and raw["plug"] == "4" and raw["verbose_level"] == "3"


def test_argv_ip_option_when_declared() -> None:
    from ocf_lib.fence import opt_ip

    raw = parse_argv([opt_ip()], ["-a", "10.0.0.1"])
    assert raw == {"ip": "10.0.0.1"}
    assert parse_argv([opt_ip()], ["--ip=h"]) == {"ip": "h"}


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "--bogus is not recognised"),
    (["-Z"], "-Z is not recognised"),
    (["--plug"], "--plug requires a value"),
    (["-n"], "-n requires a value"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_argv_errors(args: list[str], message: str) -> None:
    with pytest.raises(FenceError, match=message):
        parse_argv(PARAMS, args)


def test_stdin_any_order_comments_quotes_and_legacy_names() -> None:
    text = """
# a comment
port=7
passwd="quoted pw"
login = admin
passwd_script=/bin/pw
option=off
nodename=node7
unknown_key=whatever
power-timeout=9
"""
    raw = parse_stdin(PARAMS, io.StringIO(text))
    assert raw == {"plug": "7", "password": "quoted pw", "username": "admin",
                   "password_script": "/bin/pw", "action": "off", "__nodename": "node7",
                   "power_timeout": "9"}


def test_stdin_new_names_win_over_legacy_ones_and_last_duplicate_wins() -> None:
    raw = parse_stdin(PARAMS, io.StringIO("option=off\naction=status\nport=1\nport=2\n"))
    assert raw["action"] == "status" and raw["plug"] == "2"
    raw = parse_stdin(PARAMS, io.StringIO("name=olduser\n"))
    assert raw["username"] == "olduser"  # fence_na's legacy name for login
    raw = parse_stdin(PARAMS, io.StringIO("name=olduser\nlogin=admin\n"))
    assert raw["username"] == "admin"
    raw = parse_stdin(PARAMS, io.StringIO("fm=3\n"))
    assert raw["plug"] == "3"
    raw = parse_stdin(PARAMS, io.StringIO("fm=3\nport=4\n"))
    assert raw["plug"] == "4"
    raw = parse_stdin(PARAMS, io.StringIO("fm=module1 05\n"))
    assert raw["plug"] == "05"


def test_stdin_ipaddr_alias() -> None:
    from ocf_lib.fence import opt_ip

    assert parse_stdin([opt_ip()], io.StringIO("ipaddr=192.0.2.1\n")) == {"ip": "192.0.2.1"}
    assert parse_stdin([opt_ip()], io.StringIO("hostname=h\n")) == {"ip": "h"}


def test_unknown_stdin_options_are_named_never_their_values(
        switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    text = stdin_lines(switch, action="status", port="1", agent="fence_pyhatest",
                       nodename="1", pasword="Typo$ecret", ipprot="23")
    assert fence(text) == codes.FENCE_OK
    err = capsys.readouterr().err
    assert "Ignoring unknown option 'pasword'" in err and "'ipprot'" in err
    assert "Typo$ecret" not in err
    assert "agent" not in err and "nodename" not in err  # what the callers always send
    assert fence(text + "quiet=1\n") == codes.FENCE_OK
    assert capsys.readouterr().err == ""


def test_name_is_not_a_login_for_agents_without_one() -> None:
    from ocf_lib.fence import opt_ip

    assert parse_stdin([opt_ip()], io.StringIO("name=device1\n")) == {}


# -- actions against the device model ----------------------------------------------------


def test_status_on_and_off_exit_codes(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="status", port="1")) == codes.FENCE_OK
    assert capsys.readouterr().out == "Status: ON\n"
    assert fence(stdin_lines(switch, action="status", port="3")) == codes.FENCE_STATUS_OFF
    assert capsys.readouterr().out == "Status: OFF\n"


def test_off_returns_0_only_once_off_is_verified(switch: Switch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(lag=2)  # the switch reports the change only after two more polls
    assert fence(stdin_lines(switch, action="off", port="1", power_timeout="5")) == 0
    assert switch.state()["plugs"]["1"] == "off"
    assert "Success: Powered OFF" in capsys.readouterr().out


def test_off_never_verified_is_a_failure(switch: Switch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(ignore_off=True)
    started = time.monotonic()
    rc = fence(stdin_lines(switch, action="off", port="1", power_timeout="1"))
    assert rc == codes.FENCE_FAIL
    assert time.monotonic() - started < 3
    err = capsys.readouterr().err
    assert "timed out" in err and err.startswith("Failed:")


def test_already_in_the_requested_state(switch: Switch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="off", port="3")) == 0
    assert fence(stdin_lines(switch, action="on", port="1")) == 0
    assert switch.sets() == []
    assert capsys.readouterr().out == "Success: Already OFF\nSuccess: Already ON\n"


def test_reboot_is_off_verify_on(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(lag=1)
    assert fence(stdin_lines(switch, action="reboot", port="2")) == 0
    assert switch.sets() == ["SET 2 off", "SET 2 on"]
    assert switch.plug("2") == "on"


def test_reboot_succeeds_when_off_is_verified_even_if_on_fails(
        switch: Switch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(on_fails=True)
    log = tmp_path / "debug.log"
    rc = fence(stdin_lines(switch, action="reboot", port="2", debug_file=str(log)))
    assert rc == codes.FENCE_OK
    assert switch.plug("2") == "off"
    assert "powering it on failed" in log.read_text()


def test_reboot_of_an_off_target_just_powers_it_on(switch: Switch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="reboot", port="3")) == 0
    assert switch.sets() == ["SET 3 on"]


def test_reboot_fails_when_off_fails(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(ignore_off=True)
    assert fence(stdin_lines(switch, action="reboot", port="1", power_timeout="0.5")) == 1
    assert "SET 1 on" not in switch.sets()


def test_cycle_reboot_is_one_request(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="reboot", port="1", method="cycle")) == 0
    state = switch.state()
    assert state["cycles"] == 1 and switch.sets() == []
    assert capsys.readouterr().out == "Success: Rebooted\n"


def test_cycle_refused_is_a_failure(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(no_cycle=True)
    assert fence(stdin_lines(switch, action="reboot", port="1", method="cycle")) == 1
    assert "refused the power cycle" in capsys.readouterr().err


def test_cycle_of_an_off_target_powers_it_on(switch: Switch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="reboot", port="3", method="cycle")) == 0
    assert switch.sets() == ["SET 3 on"] and "cycles" not in switch.state()


def test_on_retries_and_fails_cleanly(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(on_fails=True)
    assert fence(stdin_lines(switch, action="on", port="3", retry_on="3")) == 1
    assert switch.sets() == ["SET 3 on"] * 3
    assert "power on failed" in capsys.readouterr().err


def test_unknown_action_is_an_error_never_a_reboot(switch: Switch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for text in (stdin_lines(switch, action="frobnicate", port="1"),
                 stdin_lines(switch, option="bogus", port="1"),
                 stdin_lines(switch, action="", port="1")):
        assert fence(text) == codes.FENCE_FAIL
        assert "Unrecognised action" in capsys.readouterr().err
    assert switch.state().get("log") is None  # the device was never even contacted


def test_without_any_action_the_default_is_reboot(switch: Switch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, port="1")) == 0
    assert switch.sets() == ["SET 1 off", "SET 1 on"]


def test_help_or_version_on_stdin_never_replace_the_fence(
        switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="off", port="1", help="1", version="yes")) == 0
    assert switch.plug("1") == "off"
    assert capsys.readouterr().out == "Success: Powered OFF\n"


def test_empty_help_or_version_lines_do_not_skip_the_fence(
        switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="off", port="1", help="", version="")) == 0
    assert switch.plug("1") == "off"
    assert capsys.readouterr().out == "Success: Powered OFF\n"


def test_list_and_list_status(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="list")) == 0
    assert capsys.readouterr().out == "1,1-alias\n2,2-alias\n3,3-alias\n"
    assert fence(stdin_lines(switch, action="list-status")) == 0
    assert capsys.readouterr().out == "1,1-alias,ON\n2,2-alias,ON\n3,3-alias,OFF\n"


def test_monitor_and_unreachable_device(switch: Switch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="monitor")) == 0  # needs no plug
    switch.update(unreachable=True)
    for action in ("monitor", "status", "off"):
        assert fence(stdin_lines(switch, action=action, port="1")) == 1
        assert "Unable to connect" in capsys.readouterr().err


def test_wrong_password_fails(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="status", port="1", passwd="nope")) == 1
    assert "login denied" in capsys.readouterr().err


def test_no_such_plug(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="status", port="99")) == 1
    assert "no such plug" in capsys.readouterr().err


def test_plug_comes_from_nodename_and_port_wins(switch: Switch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    text = stdin_lines(switch, action="off", nodename="2")
    assert fence(text) == 0 and switch.plug("2") == "off"
    assert fence(stdin_lines(switch, action="off", nodename="2", port="1")) == 0
    assert switch.plug("1") == "off"


def test_missing_plug_is_a_clear_error(switch: Switch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="off")) == 1
    assert "parameter 'plug' is required" in capsys.readouterr().err


def test_validate_all_reports_every_problem(switch: Switch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="validate-all")) == 0
    rc = fence("action=validate-all\ndevice=relative\npower_timeout=soon\n")
    err = capsys.readouterr().err
    assert rc == 1
    assert "is not an absolute path" in err and "'soon'" in err
    assert "password or password script" in err


def test_booleans_by_value(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    fence(stdin_lines(switch, action="status", port="99", quiet="0"))
    assert "Failed:" in capsys.readouterr().err
    fence(stdin_lines(switch, action="status", port="99", quiet="1"))
    assert capsys.readouterr().err == ""
    assert fence(stdin_lines(switch, action="status", port="1", quiet="maybe")) == 1
    assert "'quiet': value 'maybe' is not a boolean" in capsys.readouterr().err


def test_password_script_runs_without_a_shell(switch: Switch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\necho \"$1\"\necho second line\n")
    script.chmod(0o755)
    text = stdin_lines(switch, action="status", port="1").replace("passwd=pw\n", "")
    password = f"x;touch${{IFS}}{marker}"  # what a shell would run, were there one
    switch.update(password=password)
    rc = fence(text + f"passwd_script={script} '{password}'\n")
    assert rc == 0, capsys.readouterr().err
    assert not marker.exists()


def test_password_script_failures(switch: Switch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = stdin_lines(switch, action="status", port="1").replace("passwd=pw\n", "")
    assert fence(text + "passwd_script=/bin/false\n") == 1
    assert "failed with exit code 1" in capsys.readouterr().err
    assert fence(text + "passwd_script=/bin/true\n") == 1
    assert "printed no password" in capsys.readouterr().err
    assert fence(text + "passwd_script=/no/such/script\n") == 1
    assert "/no/such/script" in capsys.readouterr().err


def test_password_script_runs_under_a_time_limit(switch: Switch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    text = stdin_lines(switch, action="status", port="1", login_timeout="0.1",
                       shell_timeout="0.1", power_timeout="0.1").replace("passwd=pw\n", "")
    started = time.monotonic()
    assert fence(text + "passwd_script=/bin/sleep 60\n") == 1
    assert time.monotonic() - started < 12
    assert "timed out" in capsys.readouterr().err


def test_secrets_never_reach_the_log(switch: Switch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    switch.update(password="Very$ecret")
    log = tmp_path / "debug.log"
    script = tmp_path / "pw"
    script.write_text("#!/bin/sh\necho 'Very$ecret'\n")
    script.chmod(0o755)
    base = stdin_lines(switch, action="status", port="1", verbose="1", debug_file=str(log))
    fence(base.replace("passwd=pw", "passwd=Very$ecret"))
    fence(base.replace("passwd=pw", f"passwd_script={script}"))
    fence(base.replace("passwd=pw", "passwd=Very$ecret").replace("port=1", "port=99"))
    out = capsys.readouterr()
    assert "Very$ecret" not in log.read_text() + out.out + out.err
    assert log.read_text()  # something was logged, so the check above means something


def test_metadata_manpage_help_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert fence("action=metadata\n") == 0
    assert capsys.readouterr().out.startswith('<?xml version="1.0" ?>\n<resource-agent '
                                              'name="fence_pyhatest"')
    assert fence("", ["-o", "manpage"]) == 0
    assert capsys.readouterr().out.startswith(".TH FENCE_PYHATEST 8")
    assert fence("", ["-h"]) == 0
    assert "--plug=[plug]" in capsys.readouterr().out
    assert fence("", ["-V"]) == 0
    assert capsys.readouterr().out == "pyha 0.1.0\n"


def budget(switch: Switch, env: dict[str, str], **opts: str) -> float:
    raw = {"action": "reboot", "device": str(switch.path), "plug": "1", **opts}
    ctx = fencedev.agent.context(raw, env)
    assert not ctx.errors, ctx.errors
    return ctx.deadline.remaining()


FENCER = {"PCMK_service": "pacemaker-fenced"}


def test_whole_action_deadline_is_the_sum_of_its_steps(switch: Switch) -> None:
    # fencedev declares power_timeout 3, login 2, shell 2; reboot has two power phases.
    assert 15 < budget(switch, {}) <= 2 + 2 * 2 + 2 * 3 + 5
    assert budget(switch, {}, power_timeout="600") > 1200  # a hand run honours what was asked
    assert budget(switch, {}, delay="60") > 60
    assert budget(switch, {}, disable_timeout="true") == float("inf")


def test_no_whole_action_cap_under_the_fencer(switch: Switch) -> None:
    """pacemaker-fenced bounds the agent itself: disable_timeout defaults to true there."""
    assert budget(switch, FENCER) == float("inf")
    assert budget(switch, FENCER, delay="60") == float("inf")
    # disable_timeout=false: the sum of the steps, with no cap below it
    assert budget(switch, FENCER, disable_timeout="false", delay="60") > 60
    assert budget(switch, FENCER, disable_timeout="0", power_timeout="600") > 1200
    # only the fencer: other Pacemaker daemons (or none) keep the sum
    assert budget(switch, {"PCMK_service": "pacemaker-controld"}) < 30


def test_disable_timeout_takes_true_or_false_only(switch: Switch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert fence(stdin_lines(switch, action="status", port="1", disable_timeout="maybe")) == 1
    assert "'disable_timeout': value 'maybe' is not a boolean" in capsys.readouterr().err


def test_steps_stay_bounded_under_the_fencer(switch: Switch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """No whole-action limit, but power_timeout still ends a wait for a switch that ignores off."""
    switch.update(ignore_off=True)
    started = time.monotonic()
    rc = fence(stdin_lines(switch, action="off", port="1", power_timeout="1"), env=FENCER)
    assert rc == codes.FENCE_FAIL and time.monotonic() - started < 4
    assert "Timed out waiting to power OFF" in capsys.readouterr().err


def test_exec_delay_under_the_fencer(switch: Switch) -> None:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", **FENCER}
    text = f"action=off\ndevice={switch.path}\nlogin=admin\npasswd=pw\nport=2\ndelay=1.5\n"
    started = time.monotonic()
    res = run_fence(AGENT, stdin=text, env=env)
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n"), res.err
    assert time.monotonic() - started >= 1.5
    assert switch.plug("2") == "off"


@pytest.mark.parametrize("module", ["fence.ilo_mp", "fence.na", "fence.pcmk", "fencedev"])
def test_every_declared_default_is_the_typed_value(module: str) -> None:
    """After parsing, a parameter that was not given holds its declared default, converted."""
    import importlib

    agent = importlib.import_module(module).agent
    ctx = agent.context({"action": "monitor"}, {})
    for p in agent.params:
        if p.default is not None and p.name != "action":
            assert ctx.options[p.name] == p.convert(p.default), p.name
            assert ctx.options[p.name] is not None


def test_a_context_is_built_the_way_the_runtime_builds_it(switch: Switch) -> None:
    """FenceAgent.context: the action by its canonical name, an alias's defaults, the
    plug from nodename, and the caller's options left as they were."""
    from fence.ipmilan import agent as ipmilan

    options = {"action": " RESET ", "device": str(switch.path), "__nodename": "2"}
    ctx = fencedev.agent.context(options, {})
    assert (ctx.action, ctx.plug, ctx.name) == ("reboot", "2", "fence_pyhatest")
    assert options == {"action": " RESET ", "device": str(switch.path), "__nodename": "2"}
    assert fencedev.agent.context({}, {}).action == "reboot"  # the declared default
    assert ipmilan.context({"ip": "192.0.2.1"}, {}, "fence_ilo3").options.lanplus is True
    assert ipmilan.context({"ip": "192.0.2.1"}, {}, "fence_ipmilan").options.lanplus is False
    assert ipmilan.context({"ip": "192.0.2.1"}, {}, "fence_unknown").name == "fence_ipmilan"
    with pytest.raises(FenceError, match="Unrecognised action 'explode'"):
        fencedev.agent.context({"action": "explode"}, {})


def test_fence_na_deadline_uses_its_declared_power_timeout() -> None:
    from fence.na import agent

    raw = {"action": "off", "ip": "192.0.2.1", "plug": "1"}
    ctx = agent.context(raw, {})
    assert ctx.options.power_timeout == 40.0
    # delay 0 + login 5 + 2 x shell 3 + power_wait 0 + power_timeout 40 + 5 s to report
    assert 55 < ctx.deadline.remaining() <= 56


@pytest.mark.parametrize("name", ["power_timeout", "login_timeout", "shell_timeout",
                                  "stonith_status_sleep"])
def test_a_zero_time_limit_is_an_error_not_a_silent_default(
        switch: Switch, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """power_timeout=0 once became 20 s without a word (fence-agents reads it as forever)."""
    assert fence(stdin_lines(switch, action="off", port="1", **{name: "0"})) == 1
    assert f"'{name}': value '0' is not above 0" in capsys.readouterr().err
    assert switch.sets() == []
    assert fence(stdin_lines(switch, action="status", port="1", power_wait="0", delay="0")) == 0


def test_fence_pcmk_shares_the_output_options() -> None:
    from fence.pcmk import agent
    from ocf_lib.fence import opt_delay, opt_output

    names = [p.name for p in agent.params]
    for p in [*opt_output(), opt_delay()]:
        assert p.name in names


@pytest.mark.parametrize("agent", ["fence_ipmilan", "fence_ilo_mp", "fence_na"])
@pytest.mark.parametrize("ip", ["a" * 64, "/var/run/bmc", "bmc..lab", "010.1.1.1",
                                "fe80::1%eth0 -oProxyCommand=x"])
def test_the_ip_option_is_a_host_name_or_an_address(agent: str, ip: str) -> None:
    """A 64-character label or a path once ended in "internal error: UnicodeError ... idna"."""
    base = "username=admin\npassword=x\nplug=1\n"
    for action in ("validate-all", "status"):
        res = run_fence(agent, stdin=f"action={action}\nip={ip}\n{base}")
        assert res.rc == 1 and "parameter 'ip'" in res.err, res.err
        assert "internal error" not in res.err and "Traceback" not in res.err
    res = run_fence(agent, args=["-a", ip, "-l", "admin", "-p", "x", "-o", "status"])
    assert res.rc == 1 and "parameter 'ip'" in res.err, res.err


def test_port_as_ip_goes_through_the_ip_type() -> None:
    res = run_fence("fence_ilo_mp", stdin="action=status\nport=" + "b" * 64 + "\nport_as_ip=1\n"
                    "username=admin\npassword=x\n")
    assert res.rc == 1 and "parameter 'ip'" in res.err and "internal error" not in res.err


def test_host_names_and_addresses_are_accepted() -> None:
    from ocf_lib.params import HOST

    for ok in ("192.0.2.1", "2001:db8::1", "fe80::1%eth0", "bmc-1.lab.example.", "a" * 63,
               "ilo_3.lab", "bücher.example"):
        assert HOST.convert(ok, "ip") == ok


def test_agent_refuses_ambiguous_declarations() -> None:
    with pytest.raises(ValueError):
        FenceAgent("fence_x", shortdesc="x", longdesc="x", params=[Param("a"), Param("a")],
                   connect=lambda ctx: fencedev.SwitchSession(ctx))


# -- through the real executable --------------------------------------------------------


def test_exec_stdin_like_pacemaker_fenced(switch: Switch) -> None:
    env = {"PATH": "/usr/bin:/bin", "PCMK_service": "pacemaker-fenced", "LC_ALL": "C"}
    text = f"nodename=2\nlogin=admin\naction=off\ndevice={switch.path}\npasswd=pw\nport=2\n"
    res = run_fence(AGENT, stdin=text, env=env)
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n")
    res = run_fence(AGENT, stdin=text.replace("action=off", "action=status"), env=env)
    assert (res.rc, res.out) == (2, "Status: OFF\n")


def test_exec_argv_ignores_stdin(switch: Switch) -> None:
    args = ["--device", str(switch.path), "-l", "admin", "-p", "pw", "-n", "1", "-o", "status"]
    res = run_fence(AGENT, args=args, stdin="action=off\n")
    assert (res.rc, res.out) == (0, "Status: ON\n")
    assert switch.sets() == []


def test_exec_unknown_action_and_bad_option(switch: Switch) -> None:
    res = run_fence(AGENT, args=["-o", "explode"])
    assert res.rc == 1 and "Unrecognised action 'explode'" in res.err
    res = run_fence(AGENT, args=["--frobnicate"])
    assert res.rc == 1 and "not recognised" in res.err
    assert "Traceback" not in res.err


def test_exec_metadata_as_nobody() -> None:
    import subprocess

    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "env", "-i", str(AGENT)], input="action=metadata\n",
                          capture_output=True, text=True, cwd="/", timeout=30)
    assert proc.returncode == 0 and "<resource-agent" in proc.stdout


def test_port_as_ip_fills_the_required_ip() -> None:
    """fence_ipmilan style: Pacemaker sends the target as ``port``; port_as_ip makes it the ip."""
    from ocf_lib.fence import opt_action, opt_common, opt_ip, opt_plug

    seen: list[FenceContext] = []

    def connect(ctx: FenceContext) -> fencedev.SwitchSession:
        seen.append(ctx)
        raise FenceError("stop here")

    agent = FenceAgent("fence_portip", shortdesc="p", longdesc="p", connect=connect,
                       params=[opt_action(), opt_ip(), *opt_plug(False, port_as_ip=True),
                               *opt_common()])
    rc = agent.run(["fence_portip"], {}, io.StringIO("action=status\nport=192.0.2.7\n"
                                                     "port_as_ip=1\n"))
    assert rc == 1 and seen and seen[0].options.ip == "192.0.2.7"
    seen.clear()
    rc = agent.run(["fence_portip"], {}, io.StringIO("action=status\nport=192.0.2.7\n"))
    assert rc == 1 and not seen  # without port_as_ip the ip is still missing


# -- debug_file: an absolute path, opened as itself -----------------------------------------


def exec_in(cwd: Path, text: str) -> Any:
    import subprocess

    return subprocess.run([str(AGENT)], input=text, capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, timeout=30)


def test_a_relative_debug_file_is_refused_and_nothing_happens(switch: Switch,
                                                              tmp_path: Path) -> None:
    """A relative debug_file once appended log lines to /etc/shadow from a deep cwd."""
    victim = tmp_path / "victim"
    victim.write_text("root:*:19000:0:99999:7:::\n")
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    proc = exec_in(cwd, stdin_lines(switch, action="off", port="1", verbose="1",
                                    debug_file="../../victim"))
    assert proc.returncode == 1, proc.stderr
    assert "debug_file" in proc.stderr and "not an absolute path" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert victim.read_text() == "root:*:19000:0:99999:7:::\n"
    assert switch.sets() == [] and switch.plug("1") == "on"


def test_a_debug_file_that_is_a_symlink_is_never_followed(switch: Switch,
                                                          tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "debug.log"
    link.symlink_to(victim)
    proc = exec_in(tmp_path, stdin_lines(switch, action="off", port="1", debug_file=str(link)))
    assert proc.returncode == 1 and "symbolic link" in proc.stderr, proc.stderr
    assert victim.read_text() == "precious\n"
    assert switch.sets() == []


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_debug_file_must_be_a_regular_file(switch: Switch, tmp_path: Path, kind: str) -> None:
    """A FIFO or a device is refused at once: a FIFO's open would hang the agent, a
    disk's would overwrite its first sectors (appending does not apply to disks)."""
    import os

    path = tmp_path / "fifo"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 3))  # /dev/null's
    proc = exec_in(tmp_path, stdin_lines(switch, action="off", port="1", debug_file=str(path)))
    assert proc.returncode == 1 and "not a regular file" in proc.stderr, proc.stderr
    assert switch.sets() == []


def test_a_debug_file_is_created_0600_and_appended_to(switch: Switch, tmp_path: Path) -> None:
    """(A plug the switch does not have: the failure is what gets logged.)"""
    import os
    import stat

    new = tmp_path / "new.log"
    proc = exec_in(tmp_path, stdin_lines(switch, action="status", port="99",
                                         debug_file=str(new)))
    assert proc.returncode == 1, proc.stderr
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600 and new.read_text()
    old = tmp_path / "old.log"
    old.write_text("first line\n")
    proc = exec_in(tmp_path, stdin_lines(switch, action="status", port="99",
                                         debug_file=str(old)))
    assert proc.returncode == 1, proc.stderr
    text = old.read_text()
    assert text.startswith("first line\n") and len(text.splitlines()) > 1


# -- actions accepted without being advertised --------------------------------------------


def test_an_unadvertised_action_runs_but_is_never_advertised(
        switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    """fence_ipmilan's list: accepted (upstream prints a notice, exits 0) and absent
    from metadata, manpage and help, where Pacemaker would take it for a capability."""
    seen: list[str] = []

    def notice(ctx: FenceContext, session: Any) -> int:
        seen.append(ctx.action)
        sys.stdout.write("NOTICE: nothing to list\n")
        return codes.FENCE_OK

    agent = FenceAgent("fence_quiet", shortdesc="q", longdesc="q",
                       connect=fencedev.SwitchSession, params=fencedev.agent.params,
                       unadvertised_actions={"list": notice, "list-status": notice})
    assert "list" not in agent.metadata() and "list" not in agent.manpage()
    assert "list" not in agent.help("fence_quiet")
    for action in ("list", "list-status"):
        text = stdin_lines(switch, action=action)
        assert agent.run(["fence_quiet"], {}, io.StringIO(text)) == codes.FENCE_OK
        assert capsys.readouterr().out == "NOTICE: nothing to list\n"
    assert seen == ["list", "list-status"]
    # Help and metadata asked for during a run list the same actions as before it.
    assert agent.run(["fence_quiet"], {}, io.StringIO("action=metadata\n")) == 0
    assert '"list' not in capsys.readouterr().out


def test_a_handler_without_an_exit_code_is_a_failure_never_0(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The shared last line of defence (ocf_lib.runtime): a handler that returns None
    would otherwise become sys.exit(None), a fence reported done."""
    from ocf_lib.fence import opt_action, opt_delay, opt_output

    agent = FenceAgent("fence_none", shortdesc="n", longdesc="n",
                       params=[opt_action(), *opt_output(), opt_delay()],
                       perform=lambda ctx: None)  # type: ignore[arg-type,return-value]
    assert agent.run(["fence_none"], {}, io.StringIO("action=off\n")) == codes.FENCE_FAIL
    err = capsys.readouterr().err
    assert err == "Failed: internal error: returned None, not an exit code\n"
