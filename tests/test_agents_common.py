"""Rules every shipped executable keeps, whoever wrote it: metadata and usage need no
environment and no privileges, the shipped metadata is what the executable prints, and an
unknown action is refused with a reason and without a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import AGENTS, FENCE, METADATA

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i"]


def executables(directory: Path, pattern: str) -> list[Path]:
    return sorted(p for p in directory.glob(pattern) if p.is_file() and p.stat().st_mode & 0o111)


RESOURCE_AGENTS = executables(AGENTS, "[A-Za-z]*")
FENCE_AGENTS = executables(FENCE, "fence_*")


def as_nobody(argv: list[str], stdin: str = "",
              env: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *env, *argv], input=stdin, capture_output=True, text=True,
                          cwd="/", timeout=60)


@pytest.mark.parametrize("agent", RESOURCE_AGENTS, ids=lambda p: p.name)
def test_resource_agent_meta_data_and_usage_as_nobody(agent: Path) -> None:
    for minor, suffix in (("1", ".xml"), ("0", ".ocf-1.0.xml")):
        proc = as_nobody([str(agent), "meta-data"], env=(f"OCF_RA_VERSION_MINOR={minor}",))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (METADATA / (agent.name + suffix)).read_text()
    proc = as_nobody([str(agent), "usage"])
    assert proc.returncode == 0 and proc.stdout.startswith("usage:"), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("agent", RESOURCE_AGENTS, ids=lambda p: p.name)
def test_resource_agent_unknown_action(agent: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(agent), "pyha-no-such-action"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HA_RSCTMP": str(tmp_path)}, timeout=60)
    assert proc.returncode == 3
    assert "ocf-exit-reason:" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("agent", FENCE_AGENTS, ids=lambda p: p.name)
def test_fence_agent_metadata_as_nobody_both_ways(agent: Path) -> None:
    by_stdin = as_nobody([str(agent)], stdin="action=metadata\n")
    assert by_stdin.returncode == 0, by_stdin.stderr
    by_argv = as_nobody([str(agent), "-o", "metadata"])
    assert by_argv.returncode == 0, by_argv.stderr
    assert by_stdin.stdout == by_argv.stdout == (METADATA / (agent.name + ".xml")).read_text()


@pytest.mark.parametrize("agent", FENCE_AGENTS, ids=lambda p: p.name)
def test_fence_agent_unknown_action_is_refused(agent: Path) -> None:
    proc = subprocess.run([str(agent)], input="action=pyha-no-such-action\nnodename=n1\n",
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PCMK_service": "pacemaker-fenced"})
    assert proc.returncode == 1
    assert "Unrecognised action" in proc.stderr and "Traceback" not in proc.stderr
