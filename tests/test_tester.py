"""pyha-tester is honest: it passes correct agents (pyha's and upstream's) and fails broken ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AGENTS, ROOT

TESTER = str(ROOT / ".venv" / "bin" / "pyha-tester")
DATA = ROOT / "tests" / "data"
DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"


def _tester(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESTER, *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    """A directory that the unprivileged meta-data run (as nobody) can reach."""
    path = Path(tempfile.mkdtemp(prefix="pyha-h1-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def rows(res: subprocess.CompletedProcess[str]) -> dict[str, str]:
    report = json.loads(res.stdout)
    return {c["name"]: c["status"] for c in report["checks"]}


def test_passes_the_example_agent() -> None:
    res = _tester("--agent", str(AGENTS / "Example"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" not in res.stdout
    for row in ("meta-data OCF 1.1 vs metadata.rng", "meta-data OCF 1.0 vs ra-api-1.dtd",
                "probe while stopped", "start", "stop again (already stopped)",
                "monitor OCF_CHECK_LEVEL=10", "migrate_from", "reload", "unknown action"):
        assert any(line.startswith(row) and " PASS " in line
                   for line in res.stdout.splitlines()), row


def test_passes_upstream_dummy() -> None:
    res = _tester("--agent", DUMMY, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    got = rows(res)
    assert got["start"] == got["stop"] == got["probe while stopped"] == "PASS"
    assert got["meta-data OCF 1.1 vs metadata.rng"] == "PASS"
    # Dummy prints no exit reason for an unknown action: a warning, not a failure.
    assert got["unknown action"] == "WARN"


def test_strict_mode_fails_dummy_for_its_missing_exit_reason() -> None:
    res = _tester("--agent", DUMMY, "--strict", "--json")
    assert res.returncode == 1
    assert rows(res)["unknown action"] == "FAIL"


def test_correct_shell_agent_passes() -> None:
    res = _tester("--agent", str(DATA / "BrokenAgent"), "-o", "bug=none", "--strict")
    assert res.returncode == 0, res.stdout


@pytest.mark.parametrize(("bug", "row"), [
    ("stop7", "stop again (already stopped)"),
    ("probe0", "probe while stopped"),
    ("noreason", "unknown action"),
    ("start1", "start"),
    ("traceback", "probe while stopped"),
    ("stop6", "stop with an invalid parameter"),
])
def test_fails_broken_agents_and_names_the_row(bug: str, row: str, tmp_path: Path) -> None:
    res = _tester("--agent", str(DATA / "BrokenAgent"), "-o", f"bug={bug}", "--strict",
                 "--rsctmp", str(tmp_path), "--json")
    assert res.returncode == 1, res.stdout
    got = rows(res)
    assert got[row] == "FAIL", got
    failed = [name for name, status in got.items() if status == "FAIL"]
    assert failed[0] == row  # the first failure is the planted bug, nothing spurious before


def test_metadata_that_breaks_the_schema_fails(agent_dir: Path) -> None:
    agent = agent_dir / "BadMeta"
    agent.write_text("#!/bin/sh\n"
                     "case $1 in meta-data) echo '<resource-agent name=\"x\"><version>1"
                     "</version></resource-agent>';; *) exit 7;; esac\n")
    agent.chmod(0o755)
    res = _tester("--agent", str(agent), "--json")
    assert res.returncode == 1
    got = rows(res)
    assert got["meta-data OCF 1.1 vs metadata.rng"] == "FAIL"
    assert got["meta-data OCF 1.0 vs ra-api-1.dtd"] == "FAIL"


def test_metadata_must_work_as_nobody(agent_dir: Path) -> None:
    """An agent that only answers meta-data as root fails the first row."""
    real = DATA / "BrokenAgent"
    agent = agent_dir / "RootOnly"
    agent.write_text(f'#!/bin/sh\n[ "$(id -u)" = 0 ] || exit 4\nexec {real} "$@"\n')
    agent.chmod(0o755)
    res = _tester("--agent", str(agent), "--json")
    assert rows(res)["meta-data as nobody, no parameters"] == "FAIL"
    assert res.returncode == 1


def test_ocf11_only_constructs_are_a_warning_not_a_failure(agent_dir: Path) -> None:
    """reloadable/unique-group are OCF 1.1 but missing from the shipped metadata.rng."""
    real = DATA / "BrokenAgent"
    agent = agent_dir / "Reloadable"
    agent.write_text(f"""#!/bin/sh
if [ "$1" = meta-data ] && [ "$OCF_RA_VERSION_MINOR" = 1 ]; then
    {real} meta-data | sed 's/name="bug" unique="0"/name="bug" reloadable="1" unique="0"/'
    exit 0
fi
exec {real} "$@"
""")
    agent.chmod(0o755)
    res = _tester("--agent", str(agent), "--json", "--rsctmp", str(agent_dir))
    got = rows(res)
    assert got["meta-data OCF 1.1 vs metadata.rng"] == "WARN"
    assert got["meta-data as nobody, no parameters"] == "PASS"
    assert res.returncode == 0, res.stdout


def test_missing_required_parameter_is_reported(agent_dir: Path) -> None:
    text = (DATA / "BrokenAgent").read_text().replace(
        '<parameter name="state" unique="1" required="0">',
        '<parameter name="state" unique="1" required="1">')
    lax = agent_dir / "NeedsStateLax"  # declares state required but never checks it
    lax.write_text(text)
    lax.chmod(0o755)
    strict = agent_dir / "NeedsState"
    strict.write_text(text.replace(
        "validate-all) exit 0 ;;",
        'validate-all) [ -n "$OCF_RESKEY_state" ] && exit 0\n'
        '    reason "state is required"; exit 6 ;;'))
    strict.chmod(0o755)
    res = _tester("--agent", str(strict))
    assert res.returncode == 1
    assert "use -o for: state" in res.stdout
    res = _tester("--agent", str(strict), "-o", f"state={agent_dir}/s", "--json")
    assert res.returncode == 0, res.stdout
    assert rows(res)["validate-all without state"] == "PASS"
    res = _tester("--agent", str(lax), "-o", f"state={agent_dir}/s", "--json")
    assert res.returncode == 1
    assert rows(res)["validate-all without state"] == "FAIL"


def test_fence_mode_passes_the_pyha_test_agent(tmp_path: Path) -> None:
    device = tmp_path / "switch.json"
    device.write_text(json.dumps({"user": "admin", "password": "pw", "lag": 1,
                                  "plugs": {"1": "off", "2": "on"}}))
    res = _tester("--fence", str(DATA / "fence_pyhatest"), "-o", f"device={device}",
                 "-o", "login=admin", "-o", "passwd=pw", "-o", "port=1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    got = rows(res)
    for row in ("metadata vs fence-agents metadata.rng", "list", "list-status", "off",
                "status after off is off",
                "on", "status after on is on", "reboot", "status after reboot is on",
                "unknown action is an error", "restore initial state (off)",
                "status via command-line options"):
        assert got[row] == "PASS", row
    assert json.loads(device.read_text())["plugs"]["1"] == "off"  # restored


def test_fence_mode_fails_a_switch_that_ignores_off(tmp_path: Path) -> None:
    device = tmp_path / "switch.json"
    device.write_text(json.dumps({"user": "admin", "password": "pw", "ignore_off": True,
                                  "plugs": {"1": "on"}}))
    res = _tester("--fence", str(DATA / "fence_pyhatest"), "-o", f"device={device}",
                 "-o", "login=admin", "-o", "passwd=pw", "-o", "port=1", "-o",
                 "power_timeout=1", "--json")
    assert res.returncode == 1
    got = rows(res)
    assert got["off"] == "FAIL"
    assert got["reboot"] == "FAIL"  # off never verified, so no reboot success either


def test_fence_mode_passes_upstream_fence_dummy(tmp_path: Path) -> None:
    res = _tester("--fence", "/usr/sbin/fence_dummy", "-o", f"status_file={tmp_path}/status",
                 "--json")
    assert res.returncode == 0, res.stdout + res.stderr


def test_fence_mode_fails_an_agent_that_accepts_unknown_actions(agent_dir: Path) -> None:
    state = agent_dir / "state"
    state.write_text("on")
    agent = agent_dir / "fence_yes"
    agent.write_text(f"""#!/bin/sh
action=$(sed -n 's/^action=//p')
case "$action" in
metadata) exec /usr/sbin/fence_dummy -o metadata ;;
status) [ "$(cat {state})" = on ] && {{ echo Status: ON; exit 0; }}; echo Status: OFF; exit 2 ;;
on|off) echo "$action" > {state}; exit 0 ;;
*) echo on > {state}; exit 0 ;;
esac
""")
    agent.chmod(0o755)
    res = _tester("--fence", str(agent), "--json")
    assert res.returncode == 1
    assert rows(res)["unknown action is an error"] == "FAIL"


def test_manpage_of_pyha_and_foreign_agents() -> None:
    res = _tester("--manpage", str(AGENTS / "Example"))
    assert res.returncode == 0
    assert res.stdout.startswith(".TH EXAMPLE 7")
    assert "ocf:pyha:Example" in res.stdout and "\\fBop_sleep\\fR" in res.stdout
    res = _tester("--manpage", DUMMY)
    assert res.returncode == 0
    assert "ocf:heartbeat:Dummy" in res.stdout and "\\fBfake\\fR" in res.stdout
    # roff renders it without complaint
    man = subprocess.run(["man", "-l", "-"], input=res.stdout, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "MANPAGER": "cat", "TERM": "dumb"})
    if man.returncode == 0:
        assert "Dummy" in man.stdout


def test_readme_main_job_exits_zero() -> None:
    """The README's main job: pyha-tester against the example agent."""
    res = _tester("--agent", "agents/Example") if Path("agents/Example").exists() else \
        _tester("--agent", str(AGENTS / "Example"))
    assert res.returncode == 0
