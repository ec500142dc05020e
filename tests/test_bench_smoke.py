"""The bench runner works end to end (N=2); the timings themselves are not tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.run import count_processes

ROOT = Path(__file__).resolve().parent.parent


def test_runner_reports_a_case_as_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "-n", "2", "-w", "0",
                           "-k", "floor/Example-monitor", "-k", "Example-vs-Dummy/probe",
                           "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "floor/Example-monitor" in proc.stdout
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"floor/Example-monitor", "Example-vs-Dummy/probe-stopped"}
    floor = results["floor/Example-monitor"]
    assert floor["target_ratio"] == 1.5 and floor["ratio"] > 0
    pyha = floor["sides"]["a"]
    assert len(pyha["samples_ms"]) == 2 and pyha["median_ms"] > 0
    assert (pyha["forks"], pyha["execs"]) == (0, 1)  # one python process, no helpers
    assert 1024 < pyha["peak_rss_kib"] < 64 * 1024
    assert results["Example-vs-Dummy/probe-stopped"]["sides"]["b"]["unexpected_rc"] == 0


def test_a_wrong_exit_code_is_an_error() -> None:
    from bench.cases import Case, Side
    from bench.run import run_case

    side = Side("false", [["/bin/false"]], {"PATH": "/usr/bin:/bin"})
    res = run_case(Case("x", side, side), runs=1, warmup=0, strace=False, rss=False)
    assert "rc 1, expected 0" in str(res["error"])


def test_process_counting_sees_forks_not_threads(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    assert count_processes([["/bin/sh", "-c", "/bin/true; /bin/true; :"]], env,
                           tmp_path) == (2, 3)
    threads = "import threading; t = threading.Thread(target=int); t.start(); t.join()"
    assert count_processes([["/usr/bin/python3", "-I", "-c", threads]], env, tmp_path) == (0, 1)
