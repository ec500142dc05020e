"""``crm resource trace``: trace_ra/trace_dir give one trace file per action, secrets masked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import run_ocf

from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import STRING, Param


def traces(base: Path, agent: str) -> list[Path]:
    return sorted((base / agent).glob("*")) if (base / agent).exists() else []


def test_trace_ra_writes_one_private_file_per_action(tmp_path: Path, rsctmp: Path) -> None:
    state = tmp_path / "state"
    params = {"state": str(state), "trace_ra": "1", "trace_dir": str(tmp_path / "tr"),
              "HA_RSCTMP": str(rsctmp)}
    assert run_ocf("Example", "start", params, instance="web").rc == 0
    assert run_ocf("Example", "stop", params, instance="web").rc == 0
    files = traces(tmp_path / "tr", "Example")
    assert [f.name.split(".")[:2] for f in files] == [["web", "start"], ["web", "stop"]]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        text = f.read_text()
        assert f"* state={state}" in text and "OCF_RESKEY_trace_ra=1" in text
        assert "DEBUG:" in text and "exit code 0" in text
    # trace_ra/trace_dir are nobody's parameters, and never a validation error
    assert run_ocf("Example", "validate-all", params, instance="web").rc == 0


def test_no_trace_without_trace_ra(tmp_path: Path, rsctmp: Path) -> None:
    params = {"state": str(tmp_path / "s"), "trace_dir": str(tmp_path / "tr"),
              "trace_ra": "0", "HA_RSCTMP": str(rsctmp)}
    assert run_ocf("Example", "start", params).rc == 0
    assert not (tmp_path / "tr").exists()


def test_trace_file_override_by_path_and_descriptor(tmp_path: Path, rsctmp: Path) -> None:
    path = tmp_path / "one-file"
    params = {"state": str(tmp_path / "s"), "trace_ra": "yes", "OCF_TRACE_FILE": str(path),
              "trace_dir": str(tmp_path / "tr"), "HA_RSCTMP": str(rsctmp)}
    assert run_ocf("Example", "start", params).rc == 0
    assert "Example start" in path.read_text() and not (tmp_path / "tr").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secrets_never_reach_the_trace(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    agent = ResourceAgent("Sec", shortdesc="s", longdesc="s", params=[
        Param("password", STRING, secret=True), Param("user", STRING)])

    @agent.action("start")
    def start(ctx: Context) -> int:
        ctx.log.info(f"logging in as {ctx.params.user} with {ctx.params.password}")
        return 0

    env = {"OCF_RESOURCE_INSTANCE": "s1", "OCF_RESKEY_password": "hunter2-secret",
           "OCF_RESKEY_user": "admin", "OCF_RESKEY_trace_ra": "1",
           "OCF_RESKEY_trace_dir": str(tmp_path), "HA_LOGFILE": str(tmp_path / "log")}
    assert agent.run(["Sec", "start"], env) == 0
    (trace,) = traces(tmp_path, "Sec")
    text = trace.read_text()
    assert "hunter2-secret" not in text and "password=****" in text
    assert "OCF_RESKEY_password=****" in text and "logging in as admin with ****" in text
    assert os.stat(trace).st_uid == os.geteuid()


def test_trace_never_follows_a_planted_link(tmp_path: Path, rsctmp: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "trace-link"
    link.symlink_to(victim)
    params = {"state": str(tmp_path / "s"), "trace_ra": "1", "OCF_TRACE_FILE": str(link),
              "HA_RSCTMP": str(rsctmp)}
    r = run_ocf("Example", "start", params)
    assert r.rc == 0 and victim.read_text() == "keep\n"  # a trace never fails an action
