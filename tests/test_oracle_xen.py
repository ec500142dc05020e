"""Differential oracle for Xen on the xl simulator (Xen cannot run here): pyha and
ocf:heartbeat:Xen probe the same simulated domains, and the simulator's own
domain store (JSON files, read directly) says what is true.
See tests/lib/oracle.py for the rules."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import base_env, run_ocf
from lib.oracle import Answer

TESTS = Path(__file__).resolve().parent
UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/Xen"
PYHA = "Xen"
PATH = f"{TESTS / 'sim' / 'xlsim'}:/usr/sbin:/usr/bin:/sbin:/bin"


class Sim:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "host1").mkdir()
        (root / "rsc").mkdir()
        subprocess.run(["cibadmin", "--empty"], stdout=(root / "cib.xml").open("w"), check=True)

    def env(self) -> dict[str, str]:
        env = base_env(self.root / "rsc")
        env.update(PATH=PATH, XLSIM_ROOT=str(self.root), XLSIM_HOST="host1",
                   XLSIM_SHUTDOWN_DELAY="0.2", CIB_file=str(self.root / "cib.xml"),
                   OCF_RESKEY_CRM_meta_timeout="20000")
        return env

    def config(self, name: str) -> Path:
        path = self.root / "dom.cfg"
        path.write_text(f'name = "{name}"\nmemory = 128\nvcpus = 1\n')
        return path

    def xl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["xl", *args], env=self.env(), capture_output=True, text=True,
                              timeout=30)

    def exists(self, name: str) -> bool:
        """The simulator's store itself: a domain is a JSON file naming it."""
        for path in (self.root / "host1").glob("*.json"):
            if json.loads(path.read_text()).get("name") == name:
                return True
        return False

    def agent(self, path: str, action: str, cfg: Path, timeout: float = 60) -> int | None:
        env = self.env()
        if action == "monitor":
            env["OCF_RESKEY_CRM_meta_interval"] = "0"
        try:
            return run_ocf(path, action, {"xmfile": str(cfg)}, env=env, instance="oracle",
                           timeout=timeout).rc
        except subprocess.TimeoutExpired:
            return None


Setup = Callable[[Sim, Path, str], None]


def by(path: str) -> Setup:
    def start(sim: Sim, cfg: Path, name: str) -> None:
        assert sim.agent(path, "start", cfg) == 0
    return start


def nothing(sim: Sim, cfg: Path, name: str) -> None:
    pass


def crashed(sim: Sim, cfg: Path, name: str) -> None:
    by(UPSTREAM)(sim, cfg, name)
    (sim.root / "host1" / f"inject-{name}").write_text("crash")


def other_domain(other_name: str) -> Setup:
    def create(sim: Sim, cfg: Path, name: str) -> None:
        other = sim.root / "other.cfg"
        other.write_text(f'name = "{other_name}"\nmemory = 128\nvcpus = 1\n')
        assert sim.xl("create", str(other)).returncode == 0
    return create


ROWS: list[tuple[str, str, Setup]] = [
    ("absent", "xvm", nothing),
    ("started-by-upstream", "xvm", by(UPSTREAM)),
    ("started-by-pyha", "xvm", by(PYHA)),
    ("other-domain-only", "xvm", other_domain("somebody-else")),
    ("crashed", "xvm", crashed),
    ("name-with-space-by-pyha", "web vm", by(PYHA)),
    ("only-a-longer-name", "xvm", other_domain("xvm2")),
    ("only-the-last-word", "web vm", other_domain("vm")),
]


@pytest.mark.parametrize(("row", "name", "setup"), ROWS, ids=[r[0] for r in ROWS])
def test_probe_against_upstream_on_the_same_domains(
        tmp_path: Path, row: str, name: str, setup: Setup) -> None:
    sim = Sim(tmp_path)
    cfg = sim.config(name)
    setup(sim, cfg, name)
    answer = Answer("Xen", row, pyha=sim.agent(PYHA, "monitor", cfg) or 0,
                    upstream=sim.agent(UPSTREAM, "monitor", cfg, timeout=30),
                    truth=sim.exists(name))
    assert not answer.problems(), f"{answer}: {answer.problems()}"
    if answer.truth:
        rc = sim.agent(PYHA, "stop", cfg)
        assert rc != 0 or not sim.exists(name), f"{answer}: stop 0, domain still there"


def test_switch_then_config_lost(tmp_path: Path) -> None:
    """Upstream started the domain; pyha's probe sees it; the xmfile then goes away:
    pyha's stop still stops the domain, never 0 with it running."""
    sim = Sim(tmp_path)
    cfg = sim.config("xvm")
    assert sim.agent(UPSTREAM, "start", cfg) == 0
    assert sim.agent(PYHA, "monitor", cfg) == 0
    cfg.unlink()
    rc = sim.agent(PYHA, "stop", cfg)
    assert rc == 0 and not sim.exists("xvm")


# -- values upstream accepted: both agents run with them; pyha warns -------------------

def run(sim: Sim, path: str, action: str, cfg: Path, params: dict[str, str],
        **env: str) -> tuple[int, str]:
    full = {**sim.env(), **env}
    res = run_ocf(path, action, {"xmfile": str(cfg), **params}, env=full, instance="oracle",
                  timeout=60)
    return res.rc, res.err


def calls(sim: Sim) -> list[str]:
    """What the simulator was asked to do (its own log, not the agents')."""
    log = sim.root / "host1" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


# shutdown_acpi: what upstream's ocf_is_true reads, and so the stop command both send
TOLERATED = [
    ({"shutdown_acpi": "maybe"}, "shutdown"),
    ({"shutdown_acpi": "ja"}, "trigger"),  # ocf_is_true knows the German yes
    ({"shutdown_acpi": "YES", "allow_mem_management": "perhaps",
      "autoset_utilization_cpu": "sometimes", "autoset_utilization_hv_memory": "nein",
      "reserved_Dom0_memory": "lots"}, "trigger"),  # reserved_...: unused without mem mgmt
]


@pytest.mark.parametrize(("params", "stop_with"), TOLERATED,
                         ids=[",".join(p) for p, _ in TOLERATED])
def test_values_upstream_accepted_still_work(tmp_path: Path, params: dict[str, str],
                                             stop_with: str) -> None:
    sim = Sim(tmp_path)
    cfg = sim.config("xvm")
    for path in (UPSTREAM, PYHA):
        assert run(sim, path, "validate-all", cfg, params)[0] == 0, path
    for starter, stopper in ((UPSTREAM, PYHA), (PYHA, UPSTREAM)):
        rc, err = run(sim, starter, "start", cfg, params)
        assert rc == 0 and sim.exists("xvm"), (starter, err)
        if starter == PYHA:
            # YES and ja are ocf_is_true's own words: no warning
            lenient = {k for k, v in params.items() if v.upper() not in ("YES", "JA")}
            warned = {k for k in params if f"parameter '{k}'" in err and "WARNING" in err}
            assert warned == lenient, err
        for path in (UPSTREAM, PYHA):
            assert run(sim, path, "monitor", cfg, params,
                       OCF_RESKEY_CRM_meta_interval="0")[0] == 0, path
        before = len(calls(sim))
        rc, err = run(sim, stopper, "stop", cfg, params)
        assert rc == 0 and not sim.exists("xvm"), (stopper, err)
        sent = [c.split()[1] for c in calls(sim)[before:] if c.split()[1] in
                ("shutdown", "trigger")]
        assert sent[:1] == [stop_with], (stopper, calls(sim)[before:])


def test_recurring_monitor_does_not_repeat_the_warning(tmp_path: Path) -> None:
    sim = Sim(tmp_path)
    cfg = sim.config("xvm")
    params = {"shutdown_acpi": "maybe"}
    assert run(sim, PYHA, "start", cfg, params)[0] == 0
    rc, err = run(sim, PYHA, "monitor", cfg, params, OCF_RESKEY_CRM_meta_interval="10000")
    assert rc == 0 and "WARNING" not in err
    assert run(sim, PYHA, "stop", cfg, params)[0] == 0


REFUSED = [
    ({"allow_mem_management": "yes", "reserved_Dom0_memory": "lots"}, "reserved_Dom0_memory",
     0),
    ({"name": "123"}, "domain id", 0),
    ({"name": "Domain-0"}, "control domain", 0),
    ({"shutdown_timeout": "soon"}, "shutdown_timeout", 6),
]


@pytest.mark.parametrize(("params", "reason", "upstream_rc"), REFUSED,
                         ids=[",".join(p) for p, _, _ in REFUSED])
def test_values_still_refused(tmp_path: Path, params: dict[str, str], reason: str,
                              upstream_rc: int) -> None:
    """Still refused (6).  reserved_Dom0_memory that is not a number, with
    allow_mem_management: upstream's shell arithmetic reads "lots" as 0 and gives
    Dom0's memory away.  A numeric name is read by xl as a domain id (another domain);
    Domain-0 is the control domain itself; a shutdown_timeout that is not a number
    upstream refuses too (6, even on stop)."""
    sim = Sim(tmp_path)
    cfg = sim.config("xvm")
    assert run(sim, UPSTREAM, "validate-all", cfg, params)[0] == upstream_rc
    res = run_ocf(PYHA, "start", {"xmfile": str(cfg), **params}, env=sim.env(),
                  instance="oracle", timeout=60)
    assert res.rc == 6 and res.reason and reason in res.reason, res.err
    assert not sim.exists("xvm") and not sim.exists("123")
    assert calls(sim) == []  # refused before asking xl anything
