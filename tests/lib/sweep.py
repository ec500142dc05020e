"""The bad-input sweep: every parameter of an agent, hostile values, every action
that must survive them.

Each call runs in fresh network, mount and PID namespaces (``unshare``), with a
private HA_RSCTMP, under a hard timeout.  A call passes when it

* exits within the protocol (OCF 0-9),
* prints no traceback and no "internal error",
* when it fails (anything but 0, and 7 from a monitor), gives exactly one
  ``ocf-exit-reason:`` line,
* and does not hang.

Use it for another agent by giving its path, a base configuration and its
parameter names; what "fails" means per action is in :func:`check`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HOSTILE = (
    "", " ", "\t \t", "x" * 4096, "../../../../etc/passwd", "/", "0", "-1", "010", "0x10",
    "NaN", "inf", "1e3", "$(touch /tmp/pyha-sweep-pwned)", "`id`", "; rm -rf / ;", "a|b&c>d",
    "'\"", "ünïcødé²", "\u202e", "a\nb", "%s%n", "-o", "--help",
)

# (action name, extra environment): Pacemaker's probe, a recurring monitor, stop.
ACTIONS: tuple[tuple[str, Mapping[str, str]], ...] = (
    ("validate-all", {}),
    ("monitor", {"OCF_RESKEY_CRM_meta_interval": "0"}),
    ("monitor", {"OCF_RESKEY_CRM_meta_interval": "10000"}),
    ("stop", {}),
)

UNSHARE = ("unshare", "--net", "--mount", "--pid", "--fork", "--kill-child")


@dataclass
class Call:
    param: str
    value: str
    action: str
    probe: bool
    rc: int
    err: str

    def label(self) -> str:
        kind = "probe" if self.probe else self.action
        return f"{self.param}={self.value[:40]!r} {kind}"


def run_one(agent: str, params: Mapping[str, str], action: str, env_extra: Mapping[str, str],
            timeout: float) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="pyha-sweep-") as tmp:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "OCF_ROOT": "/usr/lib/ocf", "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "1", "OCF_RESOURCE_INSTANCE": "sweep",
            "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000) // 2),
            "HA_RSCTMP": tmp, **env_extra,
        }
        env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
        try:
            proc = subprocess.run([*UNSHARE, agent, action], env=env, capture_output=True,
                                  text=True, errors="replace", timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return -1, f"hung for more than {timeout} s"
        return proc.returncode, proc.stderr


def check(call: Call) -> str | None:
    """Why ``call`` breaks the rules, or None."""
    if call.rc == -1:
        return call.err
    if not 0 <= call.rc <= 9:
        return f"exit code {call.rc} is outside OCF 0-9"
    if "Traceback" in call.err:
        return "printed a traceback"
    if "internal error" in call.err:
        return "internal error"
    reasons = [line for line in call.err.splitlines() if line.startswith("ocf-exit-reason:")]
    failed = call.rc != 0 and not (call.action == "monitor" and call.rc == 7)
    if failed and len(reasons) != 1:
        return f"rc {call.rc} with {len(reasons)} reason lines"
    return None


def sweep(agent: str, base: Mapping[str, str], params: Iterable[str],
          values: Sequence[str] = HOSTILE,
          actions: Sequence[tuple[str, Mapping[str, str]]] = ACTIONS,
          timeout: float = 30.0, workers: int = 2) -> tuple[list[str], int]:
    """Run the sweep; returns (one line per broken call, number of calls)."""
    jobs = []
    for name in params:
        for value in values:
            for action, extra in actions:
                jobs.append((name, value, action, extra))

    def one(job: tuple[str, str, str, Mapping[str, str]]) -> Call:
        name, value, action, extra = job
        rc, err = run_one(agent, {**base, name: value}, action, extra, timeout)
        probe = action == "monitor" and extra.get("OCF_RESKEY_CRM_meta_interval") == "0"
        return Call(name, value, action, probe, rc, err)

    problems = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for call in pool.map(one, jobs):
            why = check(call)
            if why is not None:
                last = call.err.strip().splitlines()[-1:] or [""]
                problems.append(f"{call.label()}: {why} (rc {call.rc}; {last[0][:160]})")
    return problems, len(jobs)


def never_ran(marker: str = "/tmp/pyha-sweep-pwned") -> bool:
    """The shell-injection values create this file if anything ran them."""
    return not os.path.exists(marker)
