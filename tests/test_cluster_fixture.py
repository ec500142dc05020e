"""tests/lib/cluster.py itself: a 2-node cluster forms, loses a killed node, takes it back,
and leaves nothing behind (processes, namespaces, bridge, directories, locks held)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from lib.cluster import LOCK_DIR, Cluster, pids_in_netns


def test_two_nodes_kill_rejoin_and_clean_teardown(
        cluster_factory: Callable[..., Cluster]) -> None:
    c = cluster_factory(nodes=2, subnet="10.231.7")
    assert c.online_nodes(1) == ["n1", "n2"] == c.online_nodes(2)
    assert [c.exec(i, ["uname", "-n"], check=True).stdout.strip() for i in (1, 2)] == \
        ["n1", "n2"]
    assert c.exec(1, ["crm_node", "-n"], check=True).stdout.strip() == "n1"
    # the nodes talk over the bridge (they see each other online); the host has no
    # address in the subnet
    assert "10.231.7.2/24" in c.exec(2, ["ip", "-br", "addr", "show", "eth0"]).stdout
    assert "10.231.7." not in Path("/proc/net/fib_trie").read_text()
    # each node has its own /var/lib/pacemaker and /run, the host's are untouched
    assert c.node_path(1, "/var/lib/pacemaker/cib/cib.xml").exists()
    assert os.stat(c.node_path(2, "/run")).st_dev != os.stat("/run").st_dev

    netns = [f"/run/netns/{n.netns}" for n in c.nodes]
    daemons = [pid for ns in netns for pid in pids_in_netns(ns)]
    assert len(daemons) >= 2 * 8  # holder, corosync, pacemakerd and its 6 children

    c.kill_node(2)
    c.wait_for(lambda: c.online_nodes(1) == ["n1"], 30, what="n2 seen lost")
    c.start_node(2)
    assert c.online_nodes(1) == ["n1", "n2"]

    prefix, base, bridge = c.prefix, c.base, c.bridge
    c.stop()
    assert not any(os.path.exists(ns) for ns in netns)
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert not base.exists()
    # every daemon is gone (zombies waiting for PID 1 count as gone)
    assert not [p for p in daemons if _alive(p)]
    # and the name is free again
    with open(LOCK_DIR / f"{prefix}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _alive(pid: int) -> bool:
    from lib.cluster import alive

    return alive(pid)
