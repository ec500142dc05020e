"""Time pyha agents against upstream ones: ``.venv/bin/python -m bench.run [-n 20] [--json F]``.

For every case in bench/cases.py (plus bench/cases_*.py) the two sides are run
alternately, A B A B ..., so drift (CPU frequency, other load) hits both
alike.  Each sample spawns the side's commands with ``posix_spawn`` and waits
with ``wait4``; the wall time of the whole sample is recorded.

Two untimed passes follow, so measuring never skews the timings:

* processes: under ``strace -f``, the processes forked (threads excluded) and
  the successful ``execve`` calls;
* peak RSS: under GNU ``/usr/bin/time -f %M``, the largest resident set of any
  process in the tree.  ``ru_maxrss`` from our own ``wait4`` would be wrong:
  Linux folds the parent's memory into the child's peak when the child execs,
  so every command would show at least this Python process's own peak.  GNU
  time is a small C parent, whose own floor is far below any agent's.

Results: a table on stdout and, with ``--json FILE``, every sample as JSON.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.cases import Case, Side, Workspace, all_cases

_DEVNULL_ACTIONS = [
    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
    (os.POSIX_SPAWN_DUP2, 1, 2),
]


def _expand(side: Side, ws: Path) -> tuple[list[list[str]], dict[str, str]]:
    d = str(ws)
    commands = [[arg.replace("{dir}", d) for arg in cmd] for cmd in side.commands]
    env = {k: v.replace("{dir}", d) for k, v in side.env.items()}
    return commands, env


def sample(commands: Sequence[Sequence[str]], env: Mapping[str, str]) -> tuple[float, list[int]]:
    """One timed run of a side: (seconds, exit codes)."""
    rcs = []
    start = time.perf_counter()
    for argv in commands:
        pid = os.posix_spawnp(argv[0], list(argv), dict(env), file_actions=_DEVNULL_ACTIONS)
        _, status = os.waitpid(pid, 0)
        rcs.append(os.waitstatus_to_exitcode(status))
    return time.perf_counter() - start, rcs


GNU_TIME = "/usr/bin/time"


def peak_rss(commands: Sequence[Sequence[str]], env: Mapping[str, str], tmp: Path,
             repeat: int = 3) -> int | None:
    """Peak RSS in KiB of the largest process of a side (median of ``repeat`` runs)."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    out = tmp / "rss.out"
    peaks = []
    for _ in range(repeat):
        peak = 0
        for argv in commands:
            subprocess.run([GNU_TIME, "-f", "%M", "-o", str(out), "--", *argv], env=dict(env),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, check=False)
            text = out.read_text().strip().splitlines()
            if not text or not text[-1].isdigit():
                return None
            peak = max(peak, int(text[-1]))
        peaks.append(peak)
    return int(statistics.median(peaks))


def verify(side: Side, ws: Path) -> str | None:
    """Run the side once with output captured; a problem description or None."""
    commands, env = _expand(side, ws)
    for i, argv in enumerate(commands):
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
        except OSError as exc:
            return f"{argv[0]}: {exc}"
        want = side.expect_rc
        if want is not None and proc.returncode != want[i]:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
            return f"{' '.join(argv)}: rc {proc.returncode}, expected {want[i]}: {tail}"
    return None


_SPAWN = ("clone", "clone3", "fork", "vfork")
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RESULT = re.compile(r"\)\s*=\s*(-?\d+)")


def count_processes(commands: Sequence[Sequence[str]], env: Mapping[str, str],
                    tmp: Path) -> tuple[int, int]:
    """(processes forked, successful execve calls) over the side's commands.

    Threads (clone with CLONE_THREAD) are not processes and are not counted.
    Every command's own start counts one execve and no fork.
    """
    forks = execs = 0
    out = tmp / "strace.out"
    for argv in commands:
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,clone,clone3,fork,vfork",
                        "-e", "signal=none", "-o", str(out), "--", *argv],
                       env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=False)
        pending: dict[str, str] = {}
        for raw in out.read_text(errors="replace").splitlines():
            m = _LINE.match(raw)
            pid, rest = (m.group(1), m.group(2)) if m else ("0", raw)
            if rest.endswith("<unfinished ...>"):
                pending[pid] = rest[: -len("<unfinished ...>")]
                continue
            resumed = _RESUMED.match(rest)
            if resumed:
                rest = pending.pop(pid, resumed.group(1) + "(") + resumed.group(2)
            name = rest.split("(", 1)[0]
            results = _RESULT.findall(rest)
            result = results[-1] if results else "-1"
            if not result.isdigit():
                continue  # failed call (-1 ENOENT ...) or not a syscall line
            if name in _SPAWN and int(result) > 0 and "CLONE_THREAD" not in rest:
                forks += 1
            elif name == "execve" and result == "0":
                execs += 1
    return forks, execs


def _stats(times: list[float]) -> dict[str, object]:
    ms = [t * 1000 for t in times]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
            "mean_ms": statistics.fmean(ms), "samples_ms": [round(x, 3) for x in ms]}


def run_case(case: Case, runs: int, warmup: int, strace: bool = True,
             rss: bool = True) -> dict[str, object]:
    ws_dir = Path(tempfile.mkdtemp(prefix="pyha-bench-"))
    ws = Workspace(ws_dir)
    result: dict[str, object] = {"name": case.name, "target_ratio": case.target_ratio,
                                 "tags": list(case.tags)}
    try:
        if case.setup is not None:
            case.setup(ws)
        sides = {"a": case.a, "b": case.b}
        for key, side in sides.items():
            problem = verify(side, ws_dir)
            if problem:
                result["error"] = f"{key} ({side.label}): {problem}"
                return result
        expanded = {k: _expand(s, ws_dir) for k, s in sides.items()}
        times: dict[str, list[float]] = {"a": [], "b": []}
        bad: dict[str, int] = {"a": 0, "b": 0}
        for i in range(warmup + runs):
            for key in ("a", "b"):      # alternate A B A B
                commands, env = expanded[key]
                secs, rcs = sample(commands, env)
                want = sides[key].expect_rc
                if want is not None and list(rcs) != list(want):
                    bad[key] += 1
                if i >= warmup:
                    times[key].append(secs)
        out: dict[str, dict[str, object]] = {}
        for key, side in sides.items():
            stats = _stats(times[key])
            stats["label"] = side.label
            stats["unexpected_rc"] = bad[key]
            if strace and shutil.which("strace"):
                stats["forks"], stats["execs"] = count_processes(*expanded[key], ws_dir)
            if rss:
                stats["peak_rss_kib"] = peak_rss(*expanded[key], ws_dir)
            out[key] = stats
        result["sides"] = out
        ratio = float(out["a"]["median_ms"]) / float(out["b"]["median_ms"])  # type: ignore[arg-type]
        result["ratio"] = ratio
        if case.target_ratio is not None:
            result["within_target"] = ratio <= case.target_ratio
        return result
    finally:
        if case.teardown is not None:
            try:
                case.teardown(ws)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                result["teardown_error"] = str(exc)
        shutil.rmtree(ws_dir, ignore_errors=True)


def format_table(results: list[dict[str, object]]) -> str:
    head = (f"{'case':<34} {'side':<24} {'median':>8} {'min':>8} {'ratio':>6} "
            f"{'forks':>5} {'execs':>5} {'RSS MiB':>7}  note")
    lines = [head, "-" * len(head)]
    for res in results:
        name = str(res["name"])
        if "error" in res:
            lines.append(f"{name:<34} ERROR {res['error']}")
            continue
        sides = res["sides"]
        assert isinstance(sides, dict)
        for key in ("a", "b"):
            s = sides[key]
            ratio = f"{res['ratio']:.2f}" if key == "a" else ""
            note = ""
            if key == "a" and res.get("target_ratio") is not None:
                verdict = "ok" if res.get("within_target") else "OVER"
                note = f"target <= {res['target_ratio']}x: {verdict}"
            if s.get("unexpected_rc"):
                note += f" ({s['unexpected_rc']} samples with unexpected rc)"
            kib = s.get("peak_rss_kib")
            mib = f"{kib / 1024:.1f}" if isinstance(kib, int) else "-"
            lines.append(
                f"{name if key == 'a' else '':<34} {str(s['label'])[:24]:<24} "
                f"{s['median_ms']:>8.2f} {s['min_ms']:>8.2f} {ratio:>6} "
                f"{s.get('forks', '-'):>5} {s.get('execs', '-'):>5} "
                f"{mib:>7}  {note}".rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=20, help="samples per side (20)")
    parser.add_argument("-w", "--warmup", type=int, default=2, help="unrecorded runs (2)")
    parser.add_argument("-k", "--filter", action="append", default=[],
                        help="only cases whose name contains this (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="write all results as JSON")
    parser.add_argument("--no-strace", action="store_true", help="skip fork/exec counting")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS pass")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    cases = [c for c in all_cases()
             if not args.filter or any(f in c.name for f in args.filter)]
    if args.list:
        for c in cases:
            print(f"{c.name:<40} a={c.a.label}  b={c.b.label}")
        return 0
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2
    results = []
    for case in cases:
        results.append(run_case(case, args.runs, args.warmup, not args.no_strace,
                                not args.no_rss))
    print(format_table(results))
    if args.json:
        doc = {"host": platform.node(), "kernel": platform.release(),
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "runs": args.runs, "warmup": args.warmup, "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    def failed(res: dict[str, object]) -> bool:
        sides = res.get("sides")
        return "error" in res or (isinstance(sides, dict) and any(
            s.get("unexpected_rc") for s in sides.values()))
    return 1 if any(failed(r) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
