"""pyha's fence_ipmilan and fence_na fencing for real under Pacemaker.

Three namespaced nodes (tests/lib/cluster.py).  pyha's agents are made visible as
/usr/sbin/fence_ipmilan and /usr/sbin/fence_na inside the nodes only, through
an overlay mount in each node's private mount namespace (the host's /usr/sbin
is untouched).  Node n3's "BMC" is OpenIPMI's ipmi_sim and its Node Assassin
port is tests/sim/nasim.py; both run inside n1 on 127.0.0.1 and are wired to
n3: power-off SIGKILLs every process of n3 and the power state is read back
from n3's processes.  The stonith resources may run on n1 only, where the
simulators are reachable.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FENCE, ROOT
from lib.cluster import Cluster

sys.path.insert(0, str(ROOT / "tests"))
from sim.ipmisim import IpmiSim  # noqa: E402

IPMI_PORT, NA_PORT = 9640, 23840


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("pyhacfi")
    cluster = Cluster(prefix="pyhacfi", nodes=3, subnet="10.231.19", stonith=True)
    cluster.start()
    try:
        for node in cluster.nodes:
            upper, work = base / f"{node.name}-upper", base / f"{node.name}-work"
            upper.mkdir()
            work.mkdir()
            for name in ("fence_ipmilan", "fence_na"):
                (upper / name).symlink_to(FENCE / name)
            cluster.exec(node.index, ["mount", "-t", "overlay", "pyhacfi-sbin", "-o",
                                      f"lowerdir=/usr/sbin,upperdir={upper},workdir={work}",
                                      "/usr/sbin"], check=True)
        yield cluster, base
    finally:
        cluster.stop()


def enter(cluster: Cluster, i: int) -> list[str]:
    return ["nsenter", "-t", str(cluster.node(i).holder_pid), "-m", "-u", "-n", "--"]


def only_on_n1(rsc: str) -> str:
    return (f'<rsc_location id="{rsc}-n1" rsc="{rsc}" node="n1" score="INFINITY"/>'
            f'<rsc_location id="{rsc}-n2" rsc="{rsc}" node="n2" score="-INFINITY"/>'
            f'<rsc_location id="{rsc}-n3" rsc="{rsc}" node="n3" score="-INFINITY"/>')


def fence_n3_by_power_cut(cluster: Cluster) -> None:
    """Cut n3 off the cluster (its corosync dies); the cluster must fence it."""
    victim = cluster.node(3)
    assert victim.corosync is not None
    victim.corosync.kill()


def wait_fenced(cluster: Cluster, timeout: float = 60) -> str:
    def done() -> str | None:
        out = cluster.exec(1, ["stonith_admin", "--history", "n3"]).stdout
        return out if "successful" in out else None
    return cluster.wait_for(done, timeout, what="n3 fenced")


def recover_n3(cluster: Cluster) -> None:
    cluster.kill_node(3)
    cluster.start_node(3)
    cluster.exec(1, ["stonith_admin", "--cleanup", "--history", "n3"])


def test_metadata_through_the_fencer(lab):
    cluster, _ = lab
    out = cluster.exec(1, ["stonith_admin", "--metadata", "--agent", "fence_ipmilan"],
                       check=True).stdout
    assert "pyha speaks IPMI over LAN itself" in out
    assert '<parameter name="cipher"' in out
    out = cluster.exec(1, ["stonith_admin", "--metadata", "--agent", "fence_na"],
                       check=True).stdout
    assert "Node Assassin" in out and '<parameter name="tcp_port"' in out


def test_cluster_fences_through_fence_ipmilan(lab):
    cluster, _ = lab
    bmc = IpmiSim(IPMI_PORT, prefix=enter(cluster, 1), holder=cluster.node(3).holder_pid)
    bmc.start()
    try:
        cluster.cib_create(
            '<primitive id="bmc-n3" class="stonith" type="fence_ipmilan">'
            '<instance_attributes id="bmc-n3-ia">'
            '<nvpair id="bmc-n3-ip" name="ip" value="127.0.0.1"/>'
            f'<nvpair id="bmc-n3-port" name="ipport" value="{IPMI_PORT}"/>'
            '<nvpair id="bmc-n3-user" name="username" value="admin"/>'
            '<nvpair id="bmc-n3-pw" name="password" value="secret"/>'
            '<nvpair id="bmc-n3-lanplus" name="lanplus" value="1"/>'
            '<nvpair id="bmc-n3-hosts" name="pcmk_host_list" value="n3"/>'
            '<nvpair id="bmc-n3-action" name="pcmk_reboot_action" value="off"/>'
            '</instance_attributes>'
            '<operations><op id="bmc-n3-mon" name="monitor" interval="60s"/></operations>'
            '</primitive>')
        cluster.cib_create(only_on_n1("bmc-n3"), section="constraints")
        assert cluster.wait_resource_started("bmc-n3", timeout=60) == "n1"
        pids = [cluster.node(3).pacemakerd.pid]  # type: ignore[union-attr]
        fence_n3_by_power_cut(cluster)
        history = wait_fenced(cluster)
        assert "n3" in history
        assert bmc.power_log()[-1:] == ["off"]
        # The power cut really happened: n3's pacemakerd is gone.
        time.sleep(0.5)
        assert not Path(f"/proc/{pids[0]}").exists() or \
            Path(f"/proc/{pids[0]}/stat").read_text().split()[2] in "ZX"
        cluster.wait_for(lambda: cluster.online_nodes(1) == ["n1", "n2"], 30, what="n3 gone")
    finally:
        cluster.exec(1, ["cibadmin", "--delete", "--xml-text",
                         '<primitive id="bmc-n3"/>'])
        bmc.stop()
    recover_n3(cluster)


def test_cluster_fences_through_fence_na(lab):
    cluster, base = lab
    hook = base / "cut-n3.sh"
    state = Path(f"/tmp/pyha-fence-na-{NA_PORT}")
    holder = cluster.node(3).holder_pid
    hook.write_text(
        "#!/bin/sh\n# Node Assassin port 03 drops n3's feed: every n3 process dies.\n"
        f"h={holder}; ns=$(stat -L -c %i /proc/$h/ns/net) || exit 0\n"
        "for i in 1 2 3; do for d in /proc/[0-9]*; do p=${d#/proc/}; [ $p = $h ] && continue\n"
        '  [ "$(stat -L -c %i $d/ns/net 2>/dev/null)" = "$ns" ] && kill -9 $p 2>/dev/null\n'
        "done; done\nexit 0\n")
    hook.chmod(0o755)
    sim = subprocess.Popen([*enter(cluster, 1), "/usr/bin/python3",
                            str(ROOT / "tests/sim/nasim.py"), str(NA_PORT), str(state),
                            "--scale", "0.1", "--off-hook", f"03={hook}"])
    try:
        cluster.wait_for(lambda: cluster.exec(1, ["ss", "-Htln", f"sport = :{NA_PORT}"]).stdout
                         .strip(), 10, what="nasim listening")
        cluster.cib_create(
            '<primitive id="na" class="stonith" type="fence_na">'
            '<instance_attributes id="na-ia">'
            '<nvpair id="na-ip" name="ipaddr" value="127.0.0.1"/>'
            f'<nvpair id="na-port" name="tcp_port" value="{NA_PORT}"/>'
            '<nvpair id="na-login" name="login" value="motoko"/>'
            '<nvpair id="na-pw" name="passwd" value="secret"/>'
            '<nvpair id="na-aliases" name="aliases" value="1=n1,2=n2,3=n3"/>'
            '<nvpair id="na-action" name="pcmk_reboot_action" value="off"/>'
            '</instance_attributes>'
            '<operations><op id="na-mon" name="monitor" interval="60s"/></operations>'
            '</primitive>')
        cluster.cib_create(only_on_n1("na"), section="constraints")
        assert cluster.wait_resource_started("na", timeout=60) == "n1"
        # dynamic-list: the fencer learns from "list" that this device reaches n3.
        cluster.wait_for(lambda: "na" in cluster.exec(1, ["stonith_admin", "--list", "n3"])
                         .stdout, 30, what="fence_na can fence n3")
        fence_n3_by_power_cut(cluster)
        history = wait_fenced(cluster)
        assert "n3" in history
        assert state.read_text().splitlines()[2].startswith("03 P1")  # latched
        assert "03 P1 R0 F0 L1" in state.read_text()
        cluster.wait_for(lambda: cluster.online_nodes(1) == ["n1", "n2"], 30, what="n3 gone")
    finally:
        cluster.exec(1, ["cibadmin", "--delete", "--xml-text", '<primitive id="na"/>'])
        sim.terminate()
        sim.wait(5)
        for path in (state, Path(f"{state}.log")):
            path.unlink(missing_ok=True)
    recover_n3(cluster)
