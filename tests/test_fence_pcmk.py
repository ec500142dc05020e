"""fence_pcmk against a real Pacemaker cluster whose fence device really fences.

Three namespaced nodes (tests/lib/cluster.py).  The stonith resource uses
``fence_pyhakill`` (tests/data/killdev.py): a pyha fence agent whose switch
cuts a node's power by SIGKILLing every process of that node, and whose
status is read back from the node's processes.  It is made visible as
/usr/sbin/fence_pyhakill inside the nodes only, through an overlay mount in
each node's private mount namespace (the host's /usr/sbin is untouched).

fence_pcmk runs inside node n1 exactly as CMAN's fenced runs it: no argv,
``name=value`` lines on stdin in libfence's order, a clean environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import FENCE, ROOT
from lib.cluster import Cluster

FENCE_PCMK = str(FENCE / "fence_pcmk")
KILL_AGENT = ROOT / "tests" / "data" / "fence_pyhakill"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("pyhacf-fence")
    switch = base / "switch"
    switch.mkdir()
    cluster = Cluster(prefix="pyhacf", nodes=3, subnet="10.231.8", stonith=True)
    cluster.start()
    try:
        plugs = {n.name: n.holder_pid for n in cluster.nodes}
        (switch / "plugs.json").write_text(json.dumps(plugs))
        for node in cluster.nodes:
            upper, work = base / f"{node.name}-upper", base / f"{node.name}-work"
            upper.mkdir()
            work.mkdir()
            (upper / "fence_pyhakill").symlink_to(KILL_AGENT)
            cluster.exec(node.index, ["mount", "-t", "overlay", "pyhacf-sbin", "-o",
                                      f"lowerdir=/usr/sbin,upperdir={upper},workdir={work}",
                                      "/usr/sbin"], check=True)
        cluster.cib_create(
            '<primitive id="switch" class="stonith" type="fence_pyhakill">'
            '<instance_attributes id="switch-ia">'
            f'<nvpair id="switch-device" name="device" value="{switch}"/>'
            '<nvpair id="switch-hosts" name="pcmk_host_list" value="n1 n2 n3"/>'
            '<nvpair id="switch-check" name="pcmk_host_check" value="static-list"/>'
            '</instance_attributes>'
            '<operations><op id="switch-mon" name="monitor" interval="60s"/></operations>'
            '</primitive>')
        cluster.wait_resource_started("switch", timeout=60)
        # Registered with the fencer of every node (fence_pcmk runs on n1).
        cluster.wait_for(lambda: "switch" in cluster.exec(
            1, ["stonith_admin", "--list", "n3"]).stdout, 30, what="switch registered")
        yield cluster, switch
    finally:
        cluster.stop()


def fenced_stdin(port: str | None, nodename: str, **device: str) -> str:
    """What libfence writes: the <device> attributes but name, nodename, then the
    <fencedevice> attributes but name (agent included)."""
    lines = [f"{k}={v}" for k, v in device.items()]
    if port is not None:
        lines.insert(0, f"port={port}")
    lines += [f"nodename={nodename}", "agent=fence_pcmk"]
    return "\n".join(lines) + "\n"


def fence_pcmk(cluster: Cluster, node: int, stdin: str, timeout: float = 90):
    started = time.monotonic()
    proc = cluster.exec(node, [FENCE_PCMK], input=stdin, timeout=timeout)
    return proc, time.monotonic() - started


def switch_log(switch: Path) -> list[str]:
    try:
        return [line.split(" ", 1)[1] for line in (switch / "log").read_text().splitlines()]
    except FileNotFoundError:
        return []


def test_unknown_target_fails_with_the_fencers_reason(lab):
    cluster, switch = lab
    before = switch_log(switch)
    proc, took = fence_pcmk(cluster, 1, fenced_stdin("n9", "n9"))
    assert proc.returncode == 1, proc
    assert "failed: n9 105" in proc.stdout
    assert "No such device" in proc.stderr
    assert took < 10
    assert switch_log(switch) == before


def test_status_monitor_and_list_ask_the_fencer(lab):
    cluster, _ = lab
    proc = cluster.exec(1, [FENCE_PCMK], input="action=status\nport=n2\n")
    assert proc.returncode == 0, proc
    assert "switch" in proc.stdout
    proc = cluster.exec(1, [FENCE_PCMK], input="action=status\nnodename=n9\n")
    assert proc.returncode == 1
    assert "no fence device" in proc.stderr
    assert cluster.exec(1, [FENCE_PCMK], input="action=monitor\n").returncode == 0
    proc = cluster.exec(1, [FENCE_PCMK, "-o", "list"])
    assert proc.returncode == 0, proc
    assert sorted(proc.stdout.split()) == ["n1,", "n2,", "n3,"]


def test_a_fence_that_times_out_fails(lab):
    cluster, switch = lab
    (switch / "hang").write_text("60")
    try:
        proc, took = fence_pcmk(cluster, 1, fenced_stdin("n2", "n2", action="off",
                                                          timeout="3"))
    finally:
        (switch / "hang").unlink()
    assert proc.returncode == 1, proc
    assert "failed: n2 124" in proc.stdout
    assert "timed out" in proc.stderr.lower() or "timer expired" in proc.stderr.lower()
    assert 2.5 < took < 15
    assert cluster.online_nodes(1) == ["n1", "n2", "n3"]


def test_success_really_fences_and_a_repeat_is_absorbed(lab):
    cluster, switch = lab
    victim = cluster.node(3)
    pids = [victim.pacemakerd.pid, victim.corosync.pid]
    # port wins; nodename is only the fallback (here it is all fenced gives).
    proc, took = fence_pcmk(cluster, 1, fenced_stdin(None, "n3", passwd="not-exported"))
    assert proc.returncode == 0, (proc.stdout, proc.stderr, cluster.log_tail(1))
    assert "success: n3 0" in proc.stdout
    assert switch_log(switch)[-2:] == ["off n3", "on n3"]
    # Really fenced: n3's cluster processes are gone and the others saw it go.
    assert not any(os.path.exists(f"/proc/{p}") and _state(p) not in ("Z", "X") for p in pids)
    cluster.wait_for(lambda: cluster.online_nodes(1) == ["n1", "n2"], 20, what="n3 lost")
    history = cluster.exec(1, ["stonith_admin", "--history", "n3"]).stdout
    assert "reboot of n3 successful" in history and "cman" in history, history
    # Within the 5 s tolerance: success without running the device again.
    count = len(switch_log(switch))
    proc, took2 = fence_pcmk(cluster, 1, fenced_stdin("n3", "n3"))
    assert proc.returncode == 0, proc
    assert len(switch_log(switch)) == count
    assert took2 < 2


def test_cluster_down_fails_at_once(lab):
    cluster, _ = lab
    # n3 was fenced above: no cluster daemons run in its namespaces any more.
    if cluster.node(3).pacemakerd is not None and cluster.node(3).pacemakerd.poll() is None:
        cluster.kill_node(3)
    proc, took = fence_pcmk(cluster, 3, fenced_stdin("n2", "n2"))
    assert proc.returncode == 1, proc
    assert "failed: n2 102" in proc.stdout
    assert "not connected" in proc.stderr
    assert took < 5
    assert cluster.online_nodes(1) == ["n1", "n2"]


def test_pyha_fence_node_runs_the_seeds_pcmk_redirect(lab, tmp_path):
    """The magma seed's cluster.conf (fence_pcmk redirect), node names made ours."""
    cluster, switch = lab
    cluster.kill_node(3)  # clean up after the power cut, then boot n3 again
    cluster.start_node(3)
    seed = (ROOT / "tests" / "data" / "cluster-conf" / "magma-pcmk.conf").read_text()
    conf = tmp_path / "cluster.conf"
    conf.write_text(seed.replace("magma1-hb", "n1").replace("magma2-hb", "n2"))
    victim = cluster.node(2)
    pids = [victim.pacemakerd.pid, victim.corosync.pid]
    proc = cluster.exec(1, ["/usr/bin/python3", "-m", "ocf_lib.fencenode", "-c", str(conf),
                            "n2"], env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout == "fence n2 success\n"
    assert switch_log(switch)[-2:] == ["off n2", "on n2"]
    assert all(_state(p) in ("Z", "X") for p in pids)
    cluster.wait_for(lambda: cluster.online_nodes(1) == ["n1", "n3"], 20, what="n2 lost")


def test_stdin_keys_never_reach_stonith_admins_environment():
    """Upstream exported every unknown stdin key (passwd included) to stonith_admin.
    strace shows the environment each exec really gets."""
    stdin = "port=n2\nnodename=n2\nagent=fence_pcmk\npasswd=hunter2\nipaddr=10.0.0.9\n"
    proc = subprocess.run(["strace", "-f", "-v", "-s", "512", "-e", "trace=execve", FENCE_PCMK],
                          input=stdin, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          capture_output=True, text=True, timeout=60)
    execs = [line for line in proc.stderr.splitlines()
             if "execve(" in line and "stonith_admin" in line]
    assert execs, proc.stderr[-2000:]
    for line in execs:
        assert "hunter2" not in line and "ipaddr" not in line and "nodename" not in line


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "X"


def test_bad_input_is_refused_without_calling_the_cluster(tmp_path):
    # No cluster here on purpose: these must fail before any stonith_admin call.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run([FENCE_PCMK], input="action=bogus\nport=n1\n", env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "Unrecognised action" in proc.stderr
    proc = subprocess.run([FENCE_PCMK], input="action=off\n", env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "plug" in proc.stderr
    proc = subprocess.run([FENCE_PCMK], input="action=metadata\n", env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and '<resource-agent name="fence_pcmk"' in proc.stdout
    # Inside Pacemaker it would ask the fencer to run itself: refused, monitor included.
    fenced_env = {**env, "PCMK_service": "pacemaker-fenced"}
    for stdin in ("action=monitor\n", "action=reboot\nport=n1\n"):
        proc = subprocess.run([FENCE_PCMK], input=stdin, env=fenced_env,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and "must not be a Pacemaker fence device" in proc.stderr
