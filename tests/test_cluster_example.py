"""agents/Example as a real primitive in a real single-node Corosync + Pacemaker cluster.

Shows that Pacemaker drives the runtime the way ocf_lib expects: the probe,
start, recurring monitor and stop reach the agent with the environment the
runtime reads (captured by a wrapper, tests/data/ocf-capture/Example, that
records its environment and execs the unchanged agent), meta-data is fetched
by the controller as hacluster, and a failure's exit reason reaches crm_mon.
"""

from __future__ import annotations

import html
import json
import pwd
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from lib.cluster import Cluster, ocf_provider

DATA = Path(__file__).resolve().parent / "data"
CAPTURE_DIR = "/run/pyha-capture"


def primitive(rid: str, *, provider: str = "pyha", params: Mapping[str, str] | None = None,
              meta: Mapping[str, str] | None = None,
              ops: Sequence[Mapping[str, str]] = ()) -> str:
    """A <primitive> of type Example; an op's ``depth`` becomes OCF_CHECK_LEVEL."""
    prim = ET.Element("primitive", {"id": rid, "class": "ocf", "provider": provider,
                                    "type": "Example"})
    for tag, values in (("instance_attributes", params), ("meta_attributes", meta)):
        if values:
            attrs = ET.SubElement(prim, tag, {"id": f"{rid}-{tag}"})
            for name, value in values.items():
                ET.SubElement(attrs, "nvpair", {"id": f"{rid}-{tag}-{name}", "name": name,
                                                "value": value})
    if ops:
        operations = ET.SubElement(prim, "operations")
        for op in ops:
            attrs = {k: v for k, v in op.items() if k != "depth"}
            op_id = f"{rid}-{attrs['name']}-{attrs.get('interval', '0')}"
            element = ET.SubElement(operations, "op", {"id": op_id, "interval": "0", **attrs})
            if "depth" in op:
                ia = ET.SubElement(element, "instance_attributes", {"id": f"{op_id}-ia"})
                ET.SubElement(ia, "nvpair", {"id": f"{op_id}-depth", "name": "OCF_CHECK_LEVEL",
                                             "value": op["depth"]})
    return ET.tostring(prim, encoding="unicode")


def stop_and_delete(cluster: Cluster, rid: str) -> None:
    cluster.exec(1, ["crm_resource", "-r", rid, "--meta", "-p", "target-role", "-v",
                     "Stopped"], check=True)
    cluster.wait_resource_stopped(rid)
    cluster.cib_delete(f'<primitive id="{rid}"/>')
    cluster.exec(1, ["crm_resource", "--cleanup", "-r", rid])


def log_has(cluster: Cluster, text: str) -> bool:
    return text in cluster.log_path(1).read_text(errors="replace")


def state_file(cluster: Cluster, rid: str) -> Path:
    return cluster.node_path(1, f"/run/resource-agents/Example-{rid}.state")


@pytest.fixture(scope="module")
def capture_agent() -> Iterator[Path]:
    with ocf_provider("pyhatest", {"Example": DATA / "ocf-capture" / "Example"}) as path:
        yield path


def test_lifecycle_as_cluster_primitive(cluster1: Cluster) -> None:
    c = cluster1
    c.cib_create(primitive("ex-life", ops=[
        {"name": "monitor", "interval": "2s", "timeout": "15s"},
        {"name": "start", "timeout": "30s"}, {"name": "stop", "timeout": "25s"}]))
    assert c.wait_resource_started("ex-life") == "n1"
    assert state_file(c, "ex-life").read_text() == "dummy\n"
    # probe (not running), start, then the recurring monitor, all through execd
    c.wait_for(lambda: log_has(c, "Result of monitor operation for ex-life on n1: ok"),
               10, what="recurring monitor")
    assert log_has(c, "Result of probe operation for ex-life on n1: not running")
    assert log_has(c, "Result of start operation for ex-life on n1: ok")
    ops = {op["operation_key"]: op for op in c.lrm_ops("ex-life")}
    assert ops["ex-life_monitor_2000"]["rc-code"] == "0"
    assert ops["ex-life_start_0"]["rc-code"] == "0"

    stop_and_delete(c, "ex-life")
    assert log_has(c, "Result of stop operation for ex-life on n1: ok")
    assert not state_file(c, "ex-life").exists()
    # the controller (as hacluster) got usable meta-data; so does crm_resource
    assert not log_has(c, "Unable to update metadata for ex-life")
    shown = c.exec(1, ["crm_resource", "--show-metadata", "ocf:pyha:Example"], check=True)
    assert ET.fromstring(shown.stdout).get("name") == "Example"


def test_execd_calls_the_agent_with_the_expected_environment(
        cluster1: Cluster, capture_agent: Path) -> None:
    c = cluster1
    out = c.node_path(1, CAPTURE_DIR)
    out.mkdir()
    out.chmod(0o1777)  # meta-data is run as hacluster
    c.cib_create(primitive("excap", provider="pyhatest", params={"fake": "hello world"}, ops=[
        {"name": "monitor", "interval": "2s", "timeout": "15s"},
        {"name": "monitor", "interval": "3s", "timeout": "15s", "depth": "10"},
        {"name": "start", "timeout": "30s"}, {"name": "stop", "timeout": "25s"}]))
    c.wait_resource_started("excap")

    def captures() -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]

    def recurring_seen() -> bool:
        seen = {r["env"].get("OCF_RESKEY_CRM_meta_interval") for r in captures()
                if r["argv"] == ["monitor"]}
        return {"2000", "3000"} <= seen

    c.wait_for(recurring_seen, 10, what="a recurring monitor")
    stop_and_delete(c, "excap")
    calls = captures()
    by_kind: dict[str, list[dict]] = {}
    for rec in calls:
        kind = rec["argv"][0]
        if kind == "monitor":
            kind = "recurring" if "OCF_RESKEY_CRM_meta_interval" in rec["env"] else "probe"
        by_kind.setdefault(kind, []).append(rec)
    assert {"meta-data", "probe", "start", "recurring", "stop"} <= set(by_kind), by_kind.keys()

    hacluster = pwd.getpwnam("hacluster")
    for rec in by_kind["meta-data"]:
        assert (rec["uid"], rec["gid"]) == (hacluster.pw_uid, hacluster.pw_gid)
        assert rec["parent"] == "pacemaker-contr"  # comm is cut to 15 characters
        assert rec["env"]["PCMK_service"] == "pacemaker-controld"
        assert not [k for k in rec["env"] if k.startswith("OCF_RESKEY_")]

    expected_timeout = {"probe": "15000", "recurring": "15000", "start": "30000",
                        "stop": "25000"}
    for kind, timeout in expected_timeout.items():
        for rec in by_kind[kind]:
            env = rec["env"]
            assert rec["uid"] == 0 and rec["parent"] == "pacemaker-execd"
            assert env["OCF_RESKEY_CRM_meta_timeout"] == timeout, kind
            assert env["OCF_RESOURCE_INSTANCE"] == "excap"
            assert env["OCF_RESOURCE_TYPE"] == "Example"
            assert env["OCF_RA_VERSION_MAJOR"] == "1"
            assert env["OCF_RA_VERSION_MINOR"] == "1"
            assert env["HA_LOGFILE"] == "/var/log/pacemaker/pacemaker.log"
            assert env["OCF_RESKEY_fake"] == "hello world"
            assert env["OCF_RESKEY_CRM_meta_on_node"] == "n1"
            # env -i start: nothing of the test runner's environment leaks through
            assert not [k for k in env if k.startswith(("PYTEST", "VIRTUAL_ENV", "PIP_"))]
    for rec in by_kind["probe"]:
        assert "OCF_RESKEY_CRM_meta_interval" not in rec["env"]
    intervals = {rec["env"]["OCF_RESKEY_CRM_meta_interval"] for rec in by_kind["recurring"]}
    assert intervals == {"2000", "3000"}
    for rec in by_kind["recurring"]:
        # the depth of an op arrives as a plain OCF_CHECK_LEVEL, only on that op
        depth = rec["env"].get("OCF_CHECK_LEVEL")
        assert depth == ("10" if rec["env"]["OCF_RESKEY_CRM_meta_interval"] == "3000" else None)

    # And the runtime reads those environments as intended.
    from agents.example import agent
    from ocf_lib.ocf import Context

    probe = Context(agent, "monitor", ["Example", "monitor"], by_kind["probe"][0]["env"])
    assert probe.is_probe and probe.instance == "excap"
    assert 10 < probe.deadline.remaining() <= 15
    assert probe.params.fake == "hello world"
    for rec in by_kind["recurring"]:
        recurring = Context(agent, "monitor", ["Example", "monitor"], rec["env"])
        assert not recurring.is_probe
        assert recurring.check_level == (10 if "OCF_CHECK_LEVEL" in rec["env"] else 0)
    assert log_has(c, "Result of probe operation for excap on n1: not running")


def test_failure_exit_reason_reaches_crm_mon(cluster1: Cluster) -> None:
    c = cluster1
    c.cib_create(primitive("ex-fail", params={"fake": "good"},
                           meta={"migration-threshold": "1"},
                           ops=[{"name": "monitor", "interval": "1s", "timeout": "10s",
                                 "depth": "10"}]))
    c.wait_resource_started("ex-fail")
    state_file(c, "ex-fail").write_text("tampered\n")  # behind the cluster's back
    reason = "state file holds 'tampered', expected 'good'"

    def failure() -> dict | None:
        for f in c.failures():
            if f.get("op_key") == "ex-fail_monitor_1000":
                return f
        return None

    found = c.wait_for(failure, 15, what="the monitor failure")
    # crm_mon 2.1.5's XML output escapes the reason twice (&amp;apos;): undo one level
    assert html.unescape(found["exitreason"]) == reason
    assert found["exitstatus"] == "error" and found["exitcode"] == "1"
    assert reason in c.exec(1, ["crm_mon", "-1", "-r"], check=True).stdout
    recorded = {op["operation_key"]: op for op in c.lrm_ops("ex-fail")}
    assert recorded["ex-fail_monitor_1000"]["exit-reason"] == reason
    # migration-threshold=1 on the only node: the cluster stops it and leaves it stopped
    c.wait_resource_stopped("ex-fail")
    count = c.exec(1, ["crm_failcount", "--query", "-r", "ex-fail", "-N", "n1"], check=True)
    assert "value=1" in count.stdout
    stop_and_delete(c, "ex-fail")


def test_vanished_state_is_seen_and_recovered(cluster1: Cluster) -> None:
    c = cluster1
    c.cib_create(primitive("ex-gone", meta={"migration-threshold": "3"},
                           ops=[{"name": "monitor", "interval": "1s", "timeout": "10s"}]))
    c.wait_resource_started("ex-gone")
    state_file(c, "ex-gone").unlink()

    def not_running_failure() -> bool:
        return any(f.get("op_key") == "ex-gone_monitor_1000" and f.get("exitcode") == "7"
                   for f in c.failures())

    c.wait_for(not_running_failure, 15, what="the 'not running' failure")
    c.wait_for(lambda: state_file(c, "ex-gone").exists(), 15, what="the restart")
    c.wait_resource_started("ex-gone")
    stop_and_delete(c, "ex-gone")
