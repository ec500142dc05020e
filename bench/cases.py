"""The benchmark table: what ``python -m bench.run`` times, pyha against a reference.

A :class:`Case` is one action timed on two sides, ``a`` (pyha) and ``b`` (the
upstream agent of the same name, or a floor such as a bare interpreter start).
A :class:`Side` is one or more commands run back to back per timed sample
(a start/stop pair is two commands).  ``{dir}`` in an argument or an
environment value is replaced by the case's private scratch directory.

``setup(ws)`` runs once before a case's samples and ``teardown(ws)`` once after
(always, even on failure); ``ws`` is a :class:`Workspace` with the scratch
directory, a ``run(argv)`` helper and a ``data`` dict to pass things to
teardown.  To add your agent, append cases to ``CASES`` here, or put them in a
module ``bench/cases_<name>.py`` that defines its own ``CASES`` list (found
automatically, so parallel work does not edit one file); see bench/README.md.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"
FENCE = ROOT / "fence"
UPSTREAM_OCF = Path("/usr/lib/ocf/resource.d")
PYTHON_FLOOR = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]

# The environment Pacemaker's execd gives every action (lab-pacemaker.md §2),
# minus what varies per resource; a Side adds its own OCF_RESKEY_* on top.
OCF_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C",
    "OCF_ROOT": "/usr/lib/ocf",
    "OCF_RA_VERSION_MAJOR": "1",
    "OCF_RA_VERSION_MINOR": "1",
    "OCF_EXIT_REASON_PREFIX": "ocf-exit-reason:",
    "OCF_RESOURCE_INSTANCE": "bench",
    "OCF_RESKEY_CRM_meta_timeout": "20000",
    "HA_RSCTMP": "{dir}/rsctmp",
    "HA_LOGFACILITY": "none",
    "HA_logfacility": "none",
    "HA_debug": "0",
}


@dataclass
class Side:
    label: str
    commands: Sequence[Sequence[str]]
    env: Mapping[str, str] = field(default_factory=lambda: dict(OCF_ENV))
    expect_rc: Sequence[int] | None = (0,)   # per command; None: any rc is fine


@dataclass
class Workspace:
    dir: Path
    data: dict[str, object] = field(default_factory=dict)

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        full = {k: v.replace("{dir}", str(self.dir)) for k, v in (env or OCF_ENV).items()}
        argv = [a.replace("{dir}", str(self.dir)) for a in argv]
        return subprocess.run(argv, env=full, capture_output=True, text=True, check=check,
                              timeout=120, stdin=subprocess.DEVNULL)


Hook = Callable[[Workspace], None]


@dataclass
class Case:
    name: str
    a: Side
    b: Side
    setup: Hook | None = None
    teardown: Hook | None = None
    target_ratio: float | None = None   # report whether a/b stays within this
    tags: Sequence[str] = ()


def ocf_side(label: str, agent: Path | str, actions: Sequence[str],
             params: Mapping[str, str] | None = None,
             expect_rc: Sequence[int] | None = None,
             env: Mapping[str, str] | None = None) -> Side:
    """An OCF agent run like execd runs it: ``agent action`` with OCF_RESKEY_* env."""
    full = dict(OCF_ENV)
    full["OCF_RESOURCE_TYPE"] = Path(agent).name
    full.update(env or {})
    for key, value in (params or {}).items():
        full[f"OCF_RESKEY_{key}"] = value
    rcs = expect_rc if expect_rc is not None else [0] * len(actions)
    return Side(label, [[str(agent), action] for action in actions], full, rcs)


def _mkdir_rsctmp(ws: Workspace) -> None:
    (ws.dir / "rsctmp").mkdir(exist_ok=True)


def running(*agents: tuple[Path, Mapping[str, str]]) -> tuple[Hook, Hook]:
    """setup/teardown hooks that start the given (agent, params) before the
    samples and stop them after, e.g. to time a monitor of a running resource."""
    def setup(ws: Workspace) -> None:
        _mkdir_rsctmp(ws)
        for agent, params in agents:
            side = ocf_side("setup", agent, ["start"], params)
            ws.run(side.commands[0], env=side.env)

    def teardown(ws: Workspace) -> None:
        for agent, params in agents:
            side = ocf_side("teardown", agent, ["stop"], params)
            ws.run(side.commands[0], env=side.env, check=False)
    return setup, teardown


# -- Example against heartbeat's Dummy, and against the interpreter floor -------------

EXAMPLE = AGENTS / "Example"
DUMMY = UPSTREAM_OCF / "heartbeat" / "Dummy"
EX_PARAMS = {"state": "{dir}/example.state"}
DU_PARAMS = {"state": "{dir}/dummy.state"}
FLOOR = Side("python3 -I -S -c pass", [PYTHON_FLOOR], {"PATH": OCF_ENV["PATH"]})
_both_up, _both_down = running((EXAMPLE, EX_PARAMS), (DUMMY, DU_PARAMS))
_ex_up, _ex_down = running((EXAMPLE, EX_PARAMS))

CASES: list[Case] = [
    Case("Example-vs-Dummy/meta-data",
         ocf_side("pyha Example", EXAMPLE, ["meta-data"]),
         ocf_side("heartbeat Dummy", DUMMY, ["meta-data"]), setup=_mkdir_rsctmp),
    Case("Example-vs-Dummy/monitor",
         ocf_side("pyha Example", EXAMPLE, ["monitor"], EX_PARAMS),
         ocf_side("heartbeat Dummy", DUMMY, ["monitor"], DU_PARAMS),
         setup=_both_up, teardown=_both_down),
    Case("Example-vs-Dummy/probe-stopped",
         ocf_side("pyha Example", EXAMPLE, ["monitor"], EX_PARAMS, expect_rc=[7]),
         ocf_side("heartbeat Dummy", DUMMY, ["monitor"], DU_PARAMS, expect_rc=[7]),
         setup=_mkdir_rsctmp),
    Case("Example-vs-Dummy/start+stop",
         ocf_side("pyha Example", EXAMPLE, ["start", "stop"], EX_PARAMS),
         ocf_side("heartbeat Dummy", DUMMY, ["start", "stop"], DU_PARAMS),
         setup=_mkdir_rsctmp),
    Case("floor/Example-meta-data",
         ocf_side("pyha Example", EXAMPLE, ["meta-data"]), FLOOR,
         setup=_mkdir_rsctmp, target_ratio=1.5, tags=("floor",)),
    Case("floor/Example-monitor",
         ocf_side("pyha Example", EXAMPLE, ["monitor"], EX_PARAMS), FLOOR,
         setup=_ex_up, teardown=_ex_down, target_ratio=1.5, tags=("floor",)),
    # What any agent pays before its first line: -S skips site, but "import os"
    # (and _collections_abc with it) still runs; no agent can avoid it.
    Case("floor/import-os",
         Side("python3 -I -S -c 'import os'",
              [["/usr/bin/python3", "-I", "-S", "-c", "import os"]], {"PATH": OCF_ENV["PATH"]}),
         FLOOR, tags=("floor",)),
]


def all_cases() -> list[Case]:
    """CASES plus those of every bench/cases_<name>.py module."""
    found = list(CASES)
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("cases_*.py")):
        module = __import__(f"bench.{path.stem}", fromlist=["CASES"])
        found.extend(getattr(module, "CASES", []))
    return found
