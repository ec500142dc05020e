"""A promotable drbd clone under the real Pacemaker, two nodes in namespaces (tests/lib/cluster.py).

Each node (n1, n2: own network, mount and UTS namespaces) has its own simulated
DRBD kernel (tests/sim/drbdsim); the real drbdadm runs inside the node, so the
``on n1``/``on n2`` sections and the nodes' real addresses are matched as on a
real cluster, and the promotion scores go through the node's real attrd.
Inside each node's private mount namespace, ``/usr/lib/ocf/resource.d/pyha``
is replaced by a directory whose ``drbd`` points the agent at that node's
simulated kernel (PATH, PYHA_KERNEL_ROOT) and then execs agents/drbd.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import AGENTS
from lib.clusterhelpers import (
    DRBD_CLONE,
    DRBD_CONF,
    bind_providers,
    drbd_clone_removed,
    drbd_roles,
    drbd_settle,
    drbd_wrapper,
    promoted,
    unpromoted,
)
from lib.drbdlab import SIM, DrbdLab


@pytest.fixture
def drbd_cluster(cluster_factory: Callable[..., Any]) -> Iterator[tuple[Any, DrbdLab]]:
    c = cluster_factory(nodes=2)
    lab = DrbdLab(nodes=("n1", "n2"), conf=DRBD_CONF.replace("@NET@", c.subnet))
    try:
        lab.base.chmod(0o755)
        provider = lab.base / "provider"
        provider.mkdir(mode=0o755)
        (provider / "drbd").write_text(drbd_wrapper(AGENTS / "drbd", SIM, lab.base))
        (provider / "drbd").chmod(0o755)
        bind_providers(c, {"pyha": provider})
        yield c, lab
    finally:
        drbd_clone_removed(c)
        lab.close()


def standby(c: Any, node: str, on: bool) -> None:
    c.exec(c.live_node(), ["crm_attribute", "-N", node, "-n", "standby", "-v",
                           "on" if on else "off"], check=True)


def test_promotable_clone_under_pacemaker(drbd_cluster: tuple[Any, DrbdLab]) -> None:
    c, lab = drbd_cluster
    c.cib_create(DRBD_CLONE.format(conf=lab.conf))
    # Exactly one Primary, the other Secondary, and the kernel agrees.
    r = drbd_settle(c, lambda r: len(promoted(r)) == 1 and len(unpromoted(r)) == 1)
    first = promoted(r)[0]
    other = "n2" if first == "n1" else "n1"
    assert lab.role(first) == "Primary" and lab.role(other) == "Secondary"
    # Standby moves the Primary.
    standby(c, first, True)
    r = drbd_settle(c, lambda r: promoted(r) == [other] and first not in r)
    assert lab.role(other) == "Primary" and lab.role(first) is None
    standby(c, first, False)
    r = drbd_settle(c, lambda r: promoted(r) == [other] and unpromoted(r) == [first])
    assert lab.role(first) == "Secondary"
    # The replication link breaks and the Secondary's data is Outdated: when the
    # Primary's node goes away, Pacemaker must not promote the Outdated side.
    lab.fault("cut", ["r0"])
    lab.set_disk(first, "Outdated")
    standby(c, other, True)
    r = drbd_settle(c, lambda r: list(r) == [first] and unpromoted(r) == [first], timeout=60)
    time.sleep(8)  # two more monitors: still nobody promoted
    r = drbd_roles(c)
    assert promoted(r) == [] and list(r) == [first]
    assert lab.role(first) == "Secondary"
    # An Inconsistent side is refused alike.
    lab.set_disk(first, "Inconsistent")
    time.sleep(5)
    assert promoted(drbd_roles(c)) == [] and lab.role(first) == "Secondary"
    # The link comes back and the UpToDate node returns: it is promoted, and the
    # Outdated/Inconsistent node resyncs from it.
    lab.fault("cut", [])
    standby(c, other, False)
    drbd_settle(c, lambda r: promoted(r) == [other] and unpromoted(r) == [first])
