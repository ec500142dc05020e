"""pyha's resource agents as rgmanager runs them (tests/lib/rgmanager.py emulates it).

The agents are linked into a private "cluster directory" as ``<Type>.sh``,
as the packages link them into /usr/share/cluster.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path

import pytest
from conftest import AGENTS
from lib.rgmanager import RgManager

import agents
from ocf_lib.ocf import Context


def rgmanager_agents() -> list[tuple[str, str]]:
    """(Type, primary) of every agent module that declares an rgmanager primary."""
    out = []
    for info in pkgutil.iter_modules(agents.__path__):
        module = importlib.import_module(f"agents.{info.name}")
        ra = getattr(module, "agent", None)
        if ra is not None and getattr(ra, "rgmanager_primary", None):
            out.append((ra.name, ra.rgmanager_primary))
    return sorted(out)


@pytest.fixture
def rg(tmp_path: Path) -> RgManager:
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    for type_, _ in rgmanager_agents():
        (cluster / f"{type_}.sh").symlink_to(AGENTS / type_)
    (cluster / "Example.sh~").symlink_to(AGENTS / "Example")  # editor backups are skipped
    rsctmp = tmp_path / "rsctmp"
    rsctmp.mkdir()
    return RgManager(cluster, rsctmp)


def test_example_declares_a_primary():
    assert ("Example", "state") in rgmanager_agents()


@pytest.mark.parametrize(("type_", "primary"), rgmanager_agents())
def test_rgmanager_loads_the_rule(rg, type_, primary):
    rule = rg.rules[type_]
    assert rule.primary == primary
    assert rule.special
    # Only actions named "status" get scheduled: one per advertised monitor depth.
    ocf = load_rule_ocf(type_)
    assert rule.depths["status"] == ocf["monitor"], rule.depths
    for name in ("start", "stop", "recover", "validate-all", "meta-data"):
        assert rule.advertises(name), name
    assert all(a.get("timeout") for a in rule.actions)


def load_rule_ocf(type_: str) -> dict[str, set[int]]:
    """The monitor depths the Pacemaker (OCF 1.1) metadata advertises."""
    import xml.etree.ElementTree as ET

    root = ET.parse(Path(AGENTS).parent / "metadata" / f"{type_}.xml").getroot()
    depths: dict[str, set[int]] = {}
    for a in root.iterfind("actions/action"):
        depths.setdefault(a.get("name", ""), set()).add(int(a.get("depth", "0")))
    return depths


def test_pacemaker_never_sees_the_rgmanager_extensions(ocf_env):
    from conftest import run_ocf

    for minor in ("0", "1"):
        out = run_ocf("Example", "meta-data", env={**ocf_env, "OCF_RA_VERSION_MINOR": minor}).out
        assert "primary=" not in out and "rgmanager" not in out


def test_example_life_cycle_as_rg_test_runs_it(rg, tmp_path):
    attrs = {"state": str(tmp_path / "ex.state"), "fake": "rg"}
    assert rg.call("Example", attrs, "status").rc == 7
    assert rg.call("Example", attrs, "start").rc == 0
    assert (tmp_path / "ex.state").read_text() == "rg\n"
    assert rg.call("Example", attrs, "status", depth=0).rc == 0
    assert rg.call("Example", attrs, "status", depth=10).rc == 0
    assert rg.call("Example", attrs, "status", depth=20).ran is False  # not advertised
    (tmp_path / "ex.state").write_text("corrupt\n")
    bad = rg.call("Example", attrs, "status", depth=10)
    assert bad.rc == 1 and "corrupt" in bad.err
    assert rg.call("Example", attrs, "verify-all").rc == 0
    assert rg.call("Example", attrs, "stop").rc == 0
    assert rg.call("Example", attrs, "stop").rc == 0
    assert rg.call("Example", attrs, "status").rc == 7


def test_recover_is_stop_then_start(rg, tmp_path):
    attrs = {"state": str(tmp_path / "ex.state"), "fake": "again"}
    # recover after a failed status: the resource is restarted in place.
    res = rg.call("Example", attrs, "recover")
    assert res.rc == 0, res.err
    assert (tmp_path / "ex.state").read_text() == "again\n"
    (tmp_path / "ex.state").write_text("stale\n")
    assert rg.call("Example", attrs, "status", depth=10).rc == 1
    assert rg.call("Example", attrs, "recover").rc == 0
    assert rg.call("Example", attrs, "status", depth=10).rc == 0


def test_migrate_takes_the_target_from_argv(rg, tmp_path):
    attrs = {"state": str(tmp_path / "ex.state")}
    assert rg.call("Example", attrs, "start").rc == 0
    res = rg.call("Example", attrs, "migrate", "n2")
    assert res.rc == 0, res.err
    assert "migrating to n2" in res.err
    assert rg.call("Example", attrs, "status").rc == 7


def test_rgmanager_timeout_is_seconds(rg, tmp_path):
    attrs = {"state": str(tmp_path / "ex.state"), "op_sleep": "30s"}
    env = rg.env(rg.rules["Example"], attrs, "start")
    assert env["OCF_RESKEY_RGMANAGER_meta_timeout"] == "20"  # from the metadata
    started = time.monotonic()
    res = rg.call("Example", attrs, "start", action_timeout=2)
    took = time.monotonic() - started
    # 2 s, read as seconds: the 30 s nap is cut short by the action's deadline
    # (read as milliseconds it would have no time at all; ignored, 20 s default).
    assert res.rc == 0 and 1.0 < took < 3.0, took


def test_unknown_action_is_refused(rg, tmp_path):
    rule = rg.rules["Example"]
    import subprocess

    env = rg.env(rule, {"state": str(tmp_path / "x")}, "reconfig")
    proc = subprocess.run([str(rule.path), "reconfig"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 3 and "reconfig" in proc.stderr


def test_instance_type_prefix_is_stripped_for_rgmanager_only():
    from agents.example import agent

    rg_env = {"OCF_RESOURCE_INSTANCE": "Example:/srv/a.state", "OCF_ROOT": "/usr/share/cluster"}
    ctx = Context(agent, "monitor", ["/usr/share/cluster/Example.sh", "status"], rg_env)
    assert ctx.instance == "_srv_a.state"
    # A Pacemaker clone instance keeps its name, even when it starts with the type.
    pcmk_env = {"OCF_RESOURCE_INSTANCE": "Example:1", "OCF_ROOT": "/usr/lib/ocf"}
    ctx = Context(agent, "monitor", ["/usr/lib/ocf/resource.d/pyha/Example", "monitor"], pcmk_env)
    assert ctx.instance == "Example:1"
