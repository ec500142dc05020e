"""The OCF runtime: dispatch, probes, check levels, deadlines, exit reasons, the stop rule."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import AGENTS, METADATA, run_ocf

from ocf_lib import codes
from ocf_lib.deadline import Deadline
from ocf_lib.ocf import Context, OCFError, ResourceAgent
from ocf_lib.params import BOOLEAN, INTEGER, STRING, Param, ParamError
from ocf_lib.proc import CommandNotFound, CommandTimeout

ENV = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "r1"}


def make_agent(seen: list[Context]) -> ResourceAgent:
    agent = ResourceAgent("T", shortdesc="t", longdesc="t", params=[
        Param("count", INTEGER(0, 5), default="1"),
        Param("password", STRING, secret=True),
        Param("mode", STRING),
        Param("flag", BOOLEAN, default="no"),
    ])

    def record(ctx: Context) -> int:
        seen.append(ctx)
        behaviour = ctx.params.mode
        if behaviour == "fail":
            ctx.fail(codes.ERR_PERM, "cannot do it\nat all")
        if behaviour == "leak":
            ctx.fail(codes.ERR_GENERIC, f"bad password {ctx.params.password}")
        if behaviour == "crash":
            raise RuntimeError("boom")
        if behaviour == "missing":
            raise CommandNotFound("command not found: frob")
        if behaviour == "slow":
            raise CommandTimeout("frob did not finish within 1.0s")
        if behaviour == "param":
            raise ParamError("count", "9", "is too big")
        if behaviour == "config":
            ctx.fail(codes.ERR_CONFIGURED, "configuration is wrong")
        if behaviour == "seven":
            return codes.NOT_RUNNING
        return codes.SUCCESS

    for name in ("start", "stop", "validate-all", "migrate_to", "migrate_from"):
        agent.action(name)(record)
    agent.action("monitor", interval="10s", depth=0,
                 more=[{"interval": "30s", "depth": "10", "timeout": "20s"},
                       {"interval": "60s", "depth": "20", "timeout": "20s"}])(record)
    return agent


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, list[Context]]:
    seen: list[Context] = []
    rc = make_agent(seen).run(["T", *argv], {**ENV, **(env or {})})
    return rc, seen


def reason_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]


def test_dispatch_from_argv1(capsys: pytest.CaptureFixture[str]) -> None:
    rc, seen = run(["start"])
    assert rc == 0 and seen[0].action == "start"
    rc, seen = run(["validate-all"])
    assert rc == 0 and seen[0].action == "validate-all"


def test_unknown_action_is_3_with_reason(capsys: pytest.CaptureFixture[str]) -> None:
    rc, seen = run(["frobnicate"])
    assert rc == codes.ERR_UNIMPLEMENTED and seen == []
    assert reason_lines(capsys.readouterr().err) == [
        "ocf-exit-reason:action 'frobnicate' is not supported by T"]


def test_no_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Context] = []
    assert make_agent(seen).run(["T"], ENV) == codes.ERR_ARGS
    assert "usage: T {" in capsys.readouterr().err


def test_usage_help_methods(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("usage", "help"):
        assert run([action], {})[0] == 0
        assert "start" in capsys.readouterr().out
    assert run(["methods"])[0] == 0
    assert "meta-data\nmigrate_from" in capsys.readouterr().out


def test_rgmanager_action_names(capsys: pytest.CaptureFixture[str]) -> None:
    rc, seen = run(["status"])
    assert rc == 0 and seen[0].action == "monitor"
    rc, seen = run(["verify-all"])
    assert seen[0].action == "validate-all"
    rc, seen = run(["migrate", "node2"])
    assert seen[0].action == "migrate_to" and seen[0].migrate_target == "node2"


def test_migration_peers_from_pacemaker(capsys: pytest.CaptureFixture[str]) -> None:
    _, seen = run(["migrate_from"], {"OCF_RESKEY_CRM_meta_migrate_source": "a",
                                     "OCF_RESKEY_CRM_meta_migrate_target": "b",
                                     "OCF_RESKEY_CRM_meta_on_node": "b"})
    assert seen[0].migrate_source == "a" and seen[0].migrate_target == "b"
    assert seen[0].node == "b"
    assert seen[0].meta("on-node") == "b"


def test_meta_data_variant_follows_ocf_ra_version_minor(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["meta-data"], {"OCF_RA_VERSION_MINOR": "1"})[0] == 0
    out = capsys.readouterr().out
    assert "<version>1.1</version>" in out and "DOCTYPE" not in out
    for minor in (None, "0", ""):
        env = {} if minor is None else {"OCF_RA_VERSION_MINOR": minor}
        assert run(["meta-data"], env)[0] == 0
        out = capsys.readouterr().out
        assert '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">' in out
        assert "<version>1.0</version>" in out


@pytest.mark.parametrize(("env", "probe"), [
    ({}, True),
    ({"OCF_RESKEY_CRM_meta_interval": "0"}, True),
    ({"OCF_RESKEY_CRM_meta_interval": ""}, True),
    ({"OCF_RESKEY_CRM_meta_interval": "10000"}, False),
])
def test_probe_is_a_monitor_without_interval(env: dict[str, str], probe: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, seen = run(["monitor"], env)
    assert seen[0].is_probe is probe
    _, seen = run(["start"], env)
    assert seen[0].is_probe is False


@pytest.mark.parametrize(("raw", "level"), [
    ("0", 0), ("10", 10), ("15", 10), ("20", 20), ("99", 20), ("5", 0), ("-1", 0),
])
def test_check_level_rounds_down_to_a_supported_depth(raw: str, level: int,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, seen = run(["monitor"], {"OCF_CHECK_LEVEL": raw})
    assert seen[0].check_level == level
    _, seen = run(["monitor"], {"OCF_RESKEY_OCF_CHECK_LEVEL": raw})
    assert seen[0].check_level == level


def test_check_level_default_and_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    _, seen = run(["monitor"])
    assert seen[0].check_level == 0
    _, seen = run(["monitor"], {"OCF_CHECK_LEVEL": "deep"})
    assert seen[0].check_level == 0
    assert "OCF_CHECK_LEVEL 'deep'" in capsys.readouterr().err


def test_deadline_from_crm_meta_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    _, seen = run(["start"], {"OCF_RESKEY_CRM_meta_timeout": "40000"})
    d = seen[0].deadline
    assert d.total == 40.0
    assert 37.5 < d.remaining() <= 38.0  # 5 % margin kept for reporting
    assert 33.5 < d.soft_remaining() <= 34.0  # and 10 % reserved for escalation
    assert d.limit(5.0) == 5.0 and 37.5 < (d.limit(500.0) or 0) <= 38.0
    _, seen = run(["start"])
    assert seen[0].deadline.total == 20.0  # a hand run without a timeout
    _, seen = run(["start"], {"OCF_RESKEY_RGMANAGER_meta_timeout": "30"})
    assert seen[0].deadline.total == 30.0  # rgmanager gives seconds


def test_deadline_object() -> None:
    d = Deadline.from_timeout_ms("1000")
    assert d.reserve == 1.0 and d.total == 1.0
    assert d.remaining() <= 0.5 and not d.expired()
    started = time.monotonic()
    d.sleep(5.0)  # never past the end
    assert time.monotonic() - started < 1.5 and d.expired()
    assert d.limit(3.0) == 0.0 and d.soft_expired()
    for junk in (None, "", "abc", "-5", "0"):
        assert Deadline.from_timeout_ms(junk).total == 20.0
    big = Deadline.from_timeout_ms("600000")
    assert big.reserve == 10.0 and big.end - big.start == pytest.approx(595.0)
    free = Deadline(None)
    assert free.limit(7.0) == 7.0 and free.limit() is None and not free.expired()


def test_exit_reason_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = run(["start"], {"OCF_RESKEY_mode": "fail"})
    assert rc == codes.ERR_PERM
    assert reason_lines(capsys.readouterr().err) == ["ocf-exit-reason:cannot do it at all"]


def test_exit_reason_prefix_from_environment(capsys: pytest.CaptureFixture[str]) -> None:
    run(["start"], {"OCF_RESKEY_mode": "fail", "OCF_EXIT_REASON_PREFIX": "XR:"})
    assert "XR:cannot do it at all" in capsys.readouterr().err.splitlines()


def test_secrets_masked_in_exit_reason(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = run(["start"], {"OCF_RESKEY_mode": "leak", "OCF_RESKEY_password": "s3cr3t!"})
    err = capsys.readouterr().err
    assert rc == 1 and "s3cr3t!" not in err and "bad password ****" in err


def test_crash_is_rc1_with_reason_and_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = run(["start"], {"OCF_RESKEY_mode": "crash"})
    err = capsys.readouterr().err
    assert rc == 1
    assert reason_lines(err) == ["ocf-exit-reason:internal error in start: RuntimeError: boom"]
    assert "Traceback" not in err


def test_crash_traceback_only_in_debug_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    run(["start"], {"OCF_RESKEY_mode": "crash", "HA_debug": "1"})
    err = capsys.readouterr().err
    assert "Traceback (most recent call last): |" in err
    assert not any(line.startswith("  File") for line in err.splitlines())


@pytest.mark.parametrize(("mode", "rc"), [("missing", 5), ("slow", 1), ("seven", 7)])
def test_command_errors_map_to_codes(mode: str, rc: int,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["start"], {"OCF_RESKEY_mode": mode})[0] == rc


def test_invalid_parameter_fails_start_and_validate_with_6(
        capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("start", "validate-all", "monitor"):
        rc, seen = run([action], {"OCF_RESKEY_count": "9"})
        assert rc == codes.ERR_CONFIGURED and seen == []
        assert reason_lines(capsys.readouterr().err) == [
            "ocf-exit-reason:parameter 'count': value '9' is above the maximum 5"]


def test_stop_ignores_parameters_it_does_not_need(capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid parameter that does not identify the resource takes its declared
    default in stop, so the handler never sees None for it."""
    rc, seen = run(["stop"], {"OCF_RESKEY_count": "9"})
    assert rc == 0 and len(seen) == 1 and seen[0].params.count == 1
    rc, seen = run(["stop"], {"OCF_RESKEY_flag": "perhaps"})
    assert rc == 0 and seen[0].params.flag is False
    assert reason_lines(capsys.readouterr().err) == []


def test_stop_failures_raised_late_are_failures(capsys: pytest.CaptureFixture[str]) -> None:
    """A stop that finds its configuration unusable mid-way has not stopped anything."""
    rc, _ = run(["stop"], {"OCF_RESKEY_count": "9", "OCF_RESKEY_mode": "config"})
    assert rc == codes.ERR_CONFIGURED
    rc, _ = run(["stop"], {"OCF_RESKEY_mode": "param"})
    assert rc == codes.ERR_CONFIGURED
    rc, _ = run(["start"], {"OCF_RESKEY_mode": "param"})
    assert rc == codes.ERR_CONFIGURED
    assert len(reason_lines(capsys.readouterr().err)) == 3


def identified_agent(seen: list[Context], proof: object) -> ResourceAgent:
    agent = ResourceAgent("I", shortdesc="i", longdesc="i", params=[
        Param("slot", INTEGER(0, 9), identifies=True, required=True),
        Param("count", INTEGER(0, 5), default="1"),
    ])
    agent.action("stop")(lambda ctx: seen.append(ctx) or codes.SUCCESS)  # type: ignore[func-returns-value]
    agent.action("start")(lambda ctx: seen.append(ctx) or codes.SUCCESS)  # type: ignore[func-returns-value]
    if proof is not None:
        def prove(ctx: Context) -> bool:
            if isinstance(proof, Exception):
                raise proof
            return bool(proof)
        agent.proves_absent(prove)
    return agent


@pytest.mark.parametrize(("proof", "rc"), [
    (None, codes.ERR_CONFIGURED),  # no way to prove: fail
    (False, codes.ERR_CONFIGURED),  # something may run: fail
    (OSError("state unreadable"), codes.ERR_CONFIGURED),  # a broken proof proves nothing
    (True, codes.SUCCESS),  # proven absent
])
def test_stop_without_its_identity_proves_absence_or_fails(
        proof: object, rc: int, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ({"OCF_RESKEY_slot": "x"}, {}):  # unusable, or missing
        seen: list[Context] = []
        got = identified_agent(seen, proof).run(["I", "stop"], {**ENV, **bad})
        assert got == rc and seen == []  # the handler never runs without its identity
        lines = reason_lines(capsys.readouterr().err)
        if rc:
            assert len(lines) == 1 and "stop cannot identify the resource" in lines[0]
            assert "'slot'" in lines[0]
        else:
            assert lines == []


def test_cross_field_validators_run_after_the_types(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Context] = []
    agent = identified_agent(seen, None)

    @agent.validator
    def slot_below_count(values: object) -> list[ParamError]:
        v = values  # Values
        if v.slot >= v.count:  # type: ignore[attr-defined]
            return [ParamError("count", str(v.count), "must be above slot")]  # type: ignore[attr-defined]
        return []

    assert agent.run(["I", "start"], {**ENV, "OCF_RESKEY_slot": "3"}) == codes.ERR_CONFIGURED
    assert reason_lines(capsys.readouterr().err) == [
        "ocf-exit-reason:parameter 'count': value '1' must be above slot"]
    # count does not identify the resource: stop runs with it as declared
    assert agent.run(["I", "stop"], {**ENV, "OCF_RESKEY_slot": "3"}) == codes.SUCCESS
    assert agent.run(["I", "start"], {**ENV, "OCF_RESKEY_slot": "0"}) == codes.SUCCESS
    # a type error masks the cross-field check: one message, not two
    assert agent.run(["I", "start"], {**ENV, "OCF_RESKEY_slot": "q"}) == codes.ERR_CONFIGURED
    assert len(reason_lines(capsys.readouterr().err)) == 1


def test_stop_of_a_stopped_resource_is_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["stop"], {"OCF_RESKEY_mode": "seven"})[0] == 0
    assert run(["monitor"], {"OCF_RESKEY_mode": "seven"})[0] == 7


def test_real_stop_failures_still_fail(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["stop"], {"OCF_RESKEY_mode": "fail"})[0] == codes.ERR_PERM
    assert run(["stop"], {"OCF_RESKEY_mode": "crash"})[0] == codes.ERR_GENERIC


def test_handler_returning_nothing_is_reported_not_a_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    agent = ResourceAgent("N", shortdesc="n", longdesc="n", params=[])
    agent.action("start")(lambda ctx: None)  # type: ignore[arg-type, return-value]
    rc = agent.run(["N", "start"], ENV)
    err = capsys.readouterr().err
    assert rc == codes.ERR_GENERIC and "ocf-exit-reason:" in err and "Traceback" not in err


def test_duplicate_parameter_declaration_is_refused() -> None:
    with pytest.raises(ValueError):
        ResourceAgent("D", shortdesc="d", longdesc="d", params=[Param("a"), Param("a")])


def test_ocf_error_carries_code_and_reason() -> None:
    exc = OCFError(6, "bad")
    assert exc.rc == 6 and exc.reason == "bad" and str(exc) == "bad"


def test_exit_codes_are_the_ocf_numbers() -> None:
    assert (codes.SUCCESS, codes.ERR_GENERIC, codes.ERR_ARGS, codes.ERR_UNIMPLEMENTED,
            codes.ERR_PERM, codes.ERR_INSTALLED, codes.ERR_CONFIGURED, codes.NOT_RUNNING,
            codes.RUNNING_PROMOTED, codes.FAILED_PROMOTED) == tuple(range(10))
    assert (codes.DEGRADED, codes.DEGRADED_PROMOTED) == (190, 191)
    assert (codes.FENCE_OK, codes.FENCE_FAIL, codes.FENCE_STATUS_OFF) == (0, 1, 2)


# -- through the real executable ---------------------------------------------------------

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def test_meta_data_and_usage_need_no_environment_and_no_privileges() -> None:
    import subprocess

    for action in ("meta-data", "usage"):
        proc = subprocess.run([*NOBODY, "env", "-i", str(AGENTS / "Example"), action],
                              capture_output=True, text=True, cwd="/", timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    proc = subprocess.run([*NOBODY, "env", "-i", str(AGENTS / "Example"), "meta-data"],
                          capture_output=True, text=True, cwd="/", timeout=30)
    assert proc.stdout == (METADATA / "Example.ocf-1.0.xml").read_text()
    proc = subprocess.run([*NOBODY, "env", "-i", "OCF_RA_VERSION_MINOR=1",
                           str(AGENTS / "Example"), "meta-data"],
                          capture_output=True, text=True, cwd="/", timeout=30)
    assert proc.stdout == (METADATA / "Example.xml").read_text()


def test_meta_data_without_shipped_file_still_works_as_nobody(tmp_path: Path) -> None:
    """The fallback (agent module generates it) needs no privileges either."""
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(AGENTS.parent)!r}); "
            "from agents.example import agent; agent.main(['Example', 'meta-data'])")
    proc = subprocess.run([*NOBODY, "env", "-i", "/usr/bin/python3", "-IS", "-c", code],
                          capture_output=True, text=True, cwd="/", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (METADATA / "Example.ocf-1.0.xml").read_text()


def test_deadline_bounds_a_slow_action_through_the_executable(ocf_env: dict[str, str]) -> None:
    started = time.monotonic()
    res = run_ocf("Example", "start", {"op_sleep": "30s", "CRM_meta_timeout": "2000"},
                  env=ocf_env)
    took = time.monotonic() - started
    assert res.rc == 0
    assert 1.0 < took < 4.0  # slept until its deadline (2 s minus the margin), not 30 s


def test_invalid_parameter_through_the_executable(ocf_env: dict[str, str]) -> None:
    res = run_ocf("Example", "start", {"op_sleep": "soon"}, env=ocf_env)
    assert res.rc == 6
    assert res.reason == "parameter 'op_sleep': value 'soon' is not a duration such as 30s, " \
                         "2min or 500ms"
    assert run_ocf("Example", "stop", {"op_sleep": "soon"}, env=ocf_env).rc == 0
    assert "Traceback" not in res.err


def test_probe_and_check_level_through_the_executable(ocf_env: dict[str, str],
                                                      rsctmp: Path) -> None:
    assert run_ocf("Example", "start", {"fake": "abc"}, env=ocf_env).rc == 0
    state = rsctmp / "Example-test.state"
    state.write_text("tampered\n")
    assert run_ocf("Example", "monitor", {"fake": "abc"}, env=ocf_env).rc == 0  # depth 0
    deep = run_ocf("Example", "monitor", {"fake": "abc", "OCF_CHECK_LEVEL": "15"}, env=ocf_env)
    assert deep.rc == 1 and "tampered" in (deep.reason or "")  # 15 -> 10
    deep = run_ocf("Example", "monitor", {"fake": "abc", "OCF_RESKEY_OCF_CHECK_LEVEL": "10"},
                   env=ocf_env)
    assert deep.rc == 1
    assert run_ocf("Example", "stop", env=ocf_env).rc == 0
    assert not os.path.exists(state)


def test_every_bad_value_is_logged_exactly_once(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = run(["start"], {"OCF_RESKEY_count": "9", "OCF_RESKEY_flag": "perhaps"})
    err = capsys.readouterr().err
    assert rc == codes.ERR_CONFIGURED
    logged = [line for line in err.splitlines() if ": ERROR: " in line]
    assert len(logged) == 2
    assert sum("'count'" in line for line in logged) == 1
    assert sum("'flag'" in line for line in logged) == 1
    assert reason_lines(err) == [
        "ocf-exit-reason:parameter 'count': value '9' is above the maximum 5"]


# -- one runtime core, no import cycle --------------------------------------------------

CORE = ("runtime", "ocf", "fence", "metadata")


def _imports(module: str) -> set[str]:
    """Every ocf_lib module ``module`` names in an import, wherever it stands
    (type-checking blocks and functions included)."""
    import ast

    from conftest import ROOT

    tree = ast.parse((ROOT / "ocf_lib" / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ocf_lib."):
            out.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ocf_lib."))
    return out


def test_the_runtime_modules_form_no_import_cycle() -> None:
    """metadata reads agents through a protocol; the shared core imports neither runtime."""
    graph = {m: _imports(m) & set(CORE) for m in CORE}
    assert graph["runtime"] == set()
    assert graph["metadata"] == set()
    assert "fence" not in graph["ocf"] and "ocf" not in graph["fence"]


@pytest.mark.parametrize("module", CORE)
def test_each_runtime_module_imports_alone(module: str) -> None:
    """In a fresh interpreter, importing one of them loads none of the others it
    does not depend on (seen from outside, with -X importtime)."""
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import ocf_lib.{module}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
              if line.startswith("import time:") and "|" in line}
    assert f"ocf_lib.{module}" in loaded
    allowed = {"runtime": set(), "metadata": set(), "ocf": {"runtime"},
               "fence": {"runtime"}}[module]
    others = {m for m in CORE if m != module} - allowed
    assert not {f"ocf_lib.{m}" for m in others} & loaded, sorted(loaded)
