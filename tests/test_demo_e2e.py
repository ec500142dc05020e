"""The README's demo, end to end, through the same code path (tests/demo/demo.py: Demo.run).

One run for the module (about a minute on 2 cores): three namespaced nodes,
pyha's IPaddr2, Filesystem and VirtualDomain, fence_ipmilan against ipmi_sim
BMCs.  The assertions read what the demo found out (``Result.facts``) and
check the important ones again from outside (namespaces, processes, loop
devices).  A second test interrupts the demo as Ctrl-C does and checks that
nothing is left behind.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from demo import demo
from lib.cluster import alive

DEMO = Path(demo.__file__)


class Tee(io.StringIO):
    """Keep the demo's output for assertions and show it in pytest's report."""

    def write(self, text: str) -> int:
        sys.stdout.write(text)
        return super().write(text)


@pytest.fixture(scope="module")
def run():
    out = Tee()
    started = time.monotonic()
    result = demo.Demo(out=out).run()
    return result, out.getvalue(), time.monotonic() - started


def outside_leftovers() -> list[str]:
    """What a demo could leave behind, looked up independently of demo.leftovers()."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [w for w in netns.split() if w.startswith("pyhad-")]
    if Path("/sys/class/net/pyhadbr").exists():
        found.append("pyhadbr")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not alive(int(entry)):
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(demo.BASE) in cmd or demo.VM_NAME in cmd:
            found.append(f"pid {entry}: {cmd[:80]}")
    loops = subprocess.run(["losetup", "--list", "-n", "-O", "BACK-FILE"], capture_output=True,
                           text=True).stdout
    found += [f"loop {line}" for line in loops.split() if str(demo.BASE) in line]
    if demo.BASE.exists():
        found.append(str(demo.BASE))
    return found


def test_demo_runs_the_whole_scenario(run):
    result, out, took = run
    assert demo.available_parts() == {}  # every agent and tool of the demo is here
    assert result.error is None, out[-3000:]
    assert result.ok and result.skipped == {}
    assert "SKIPPED" not in out
    assert "Demo complete in" in out
    assert took < 360


def test_timeline_has_times_since_start(run):
    result, out, _ = run
    ran = [s for s in result.steps if s.outcome != "skipped"]
    assert [s.outcome for s in ran] == ["ok"] * len(ran)
    starts = [s.start for s in ran]
    assert starts == sorted(starts) and starts[0] < 1.0
    for step in ran:
        assert step.end is not None and step.end >= step.start
        assert f"] {step.title}" in out
        assert f"{step.start:6.1f}s  " in out.split("Timeline (seconds since start):")[1]
    titles = " | ".join(s.title for s in ran)
    assert "crm_mon -1" in titles and "tear everything down" in titles
    assert "Current DC:" in out and "Online: [ n1 n2 n3 ]" in out
    assert result.facts["failed_actions"] == []  # no agent action failed, ever


def test_vm_migrated_live_to_the_target(run):
    result, _, _ = run
    mig = result.facts["migration"]
    assert mig["to"] != mig["from"]
    assert ("migrate_to", mig["from"], "0") in mig["ops"]
    assert ("migrate_from", mig["to"], "0") in mig["ops"]
    assert mig["target_state"] == "running" and mig["source_state"] == "absent"
    assert mig["target_qemu"]
    assert mig["boots"] == 1  # the guest carried on: no second boot on the target


def test_failed_node_fenced_through_fence_ipmilan(run):
    result, _, _ = run
    facts = result.facts
    victim = facts["victim"]
    assert victim == facts["migration"]["to"]  # the VM's node is the one that dies
    assert facts["qemu_alive_after_crash"]  # the guest outlived the cluster stack...
    assert not facts["qemu_alive_after_fence"]  # ...but not the BMC's power-off
    event = facts["fence_event"]
    assert event["target"] == victim and event["status"] == "success"
    assert event["delegate"] != victim
    assert any(f"targeting {victim} using fence-{victim} returned 0" in line
               for line in facts["fence_log"]), facts["fence_log"]
    assert f"reboot of {victim} successful" in facts["fence_history"]
    # The victim's own BMC cut its power after the crash (and powered it on again:
    # a reboot); nothing of the node survived.
    power = facts["bmc_power_log"]
    assert [state for _, state in power] == ["off", "on"]
    assert power[0][0] > facts["kill_time"]
    assert facts["victim_processes_after_fence"] == 0


def test_resources_recovered_on_a_survivor(run):
    result, _, _ = run
    facts = result.facts
    victim = facts["victim"]
    placed = facts["recovered"]
    assert set(placed) == {"vip", "data", "vm"}
    assert victim not in placed.values()
    assert facts["initial"]["vip"] == victim  # the service group died with the node too
    assert facts["vip_holders"] == [placed["vip"]]  # on exactly one node, not the dead one
    assert facts["fs_mounted_on"] == [placed["data"]]
    states = facts["vm_states"]
    assert states[placed["vm"]] == "running"
    assert [n for n, s in states.items() if s == "running"] == [placed["vm"]]
    assert facts["boots_after_recovery"] == 2  # a cold start after the power cut


def test_fenced_node_rejoins_and_nothing_moves_back(run):
    result, _, _ = run
    rejoin = result.facts["rejoin"]
    assert rejoin["node"] == result.facts["victim"]
    assert rejoin["online"] == ["n1", "n2", "n3"]
    assert rejoin["after"] == rejoin["before"]  # stickiness: no needless move back
    assert all(len(nodes) == 1 for nodes in rejoin["after"].values())


def test_everything_torn_down(run):
    result, _, _ = run
    assert result.leftovers == []
    assert outside_leftovers() == []


def test_a_part_left_out_is_said_and_the_rest_runs(run):
    """The demo's degraded mode (an agent not in the tree, or --without): it says which
    part it skips and why, runs the others, and exits 0 (run after the full one)."""
    out = Tee()
    result = demo.Demo(out=out, skip={"vm": "test: no guest", "fencing": "test: no BMCs"}).run()
    text = out.getvalue()
    assert result.ok, text[-3000:]
    assert "SKIPPED part 'vm': test: no guest" in text
    assert "SKIPPED live migration: test: no guest" in text
    assert "SKIPPED kill a node, fence it, recover: test: no BMCs" in text
    assert result.facts["initial"] == {"data": "n2", "vip": "n2"}
    assert "stonith-enabled=false" in text and "VirtualDomain" not in text
    assert "victim" not in result.facts
    assert result.facts["failed_actions"] == []
    assert outside_leftovers() == []


def test_ctrl_c_tears_everything_down():
    """SIGINT in the middle of the scenario: non-zero exit, nothing left behind."""
    # env execs in place (proc.pid is the demo) with SIGINT's default action restored: a
    # pytest started as a background job passes SIGINT on ignored, and Python keeps that.
    proc = subprocess.Popen(["env", "--default-signal=INT", sys.executable, str(DEMO)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "wait for every resource to start" in line:
                time.sleep(1.0)
                os.kill(proc.pid, signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + rest
    assert proc.returncode == 1, out[-3000:]
    assert "FAILED: interrupted" in out
    assert "DEMO FAILED: interrupted" in out
    assert "tear everything down" in out.split("FAILED: interrupted")[1]
    assert outside_leftovers() == []
