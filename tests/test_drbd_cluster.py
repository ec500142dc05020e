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
from lib.drbdlab import SIM, DrbdLab

CONF = """resource r0 {{
  device /dev/drbd0;
  disk {base}/{a}.img;
  meta-disk internal;
  on {a} {{ node-id 0; address @NET@.1:7789; }}
  on {b} {{ node-id 1; address @NET@.2:7789; }}
}}
"""

CLONE = """<clone id="drbd-clone">
  <meta_attributes id="drbd-clone-meta">
    <nvpair id="drbd-clone-promotable" name="promotable" value="true"/>
    <nvpair id="drbd-clone-pmax" name="promoted-max" value="1"/>
    <nvpair id="drbd-clone-max" name="clone-max" value="2"/>
    <nvpair id="drbd-clone-notify" name="notify" value="true"/>
  </meta_attributes>
  <primitive id="drbd" class="ocf" provider="pyha" type="drbd">
    <instance_attributes id="drbd-ia">
      <nvpair id="drbd-res" name="drbd_resource" value="r0"/>
      <nvpair id="drbd-conf" name="drbdconf" value="{conf}"/>
      <nvpair id="drbd-wfc" name="wfc_timeout" value="2"/>
    </instance_attributes>
    <operations>
      <op id="drbd-mon-p" name="monitor" interval="3s" role="Promoted" timeout="20s"/>
      <op id="drbd-mon-u" name="monitor" interval="4s" role="Unpromoted" timeout="20s"/>
    </operations>
  </primitive>
</clone>"""

WRAPPER = """#!/bin/sh
# ocf:pyha:drbd inside a test node: this node's simulated DRBD kernel, then the agent.
node=$(uname -n)
export PATH={sim}:$PATH PYHA_DRBDSIM_DIR={base} __DRBD_NODE__=$node \\
       PYHA_KERNEL_ROOT={base}/$node/root DRBD_DRIVER_VERSION_OVERRIDE=9.2.8
exec {agent} "$@"
"""


@pytest.fixture
def drbd_cluster(cluster_factory: Callable[..., Any]) -> Iterator[tuple[Any, DrbdLab]]:
    c = cluster_factory(nodes=2)
    lab = DrbdLab(nodes=("n1", "n2"), conf=CONF.replace("@NET@", c.subnet))
    try:
        lab.base.chmod(0o755)
        provider = lab.base / "provider"
        provider.mkdir(mode=0o755)
        (provider / "drbd").write_text(WRAPPER.format(sim=SIM, base=lab.base,
                                                      agent=AGENTS / "drbd"))
        (provider / "drbd").chmod(0o755)
        for i in (1, 2):
            c.exec(i, ["mount", "--bind", str(provider), "/usr/lib/ocf/resource.d/pyha"],
                   check=True)
        yield c, lab
    finally:
        # Let Pacemaker stop the instances while their simulated kernels still exist.
        try:
            c.cib_delete('<clone id="drbd-clone"/>')
            settle(c, lambda r: not r, timeout=30)
        except Exception:  # noqa: BLE001 - the cluster is torn down anyway
            pass
        lab.close()


def roles(c: Any) -> dict[str, str]:
    """{node: role} of the drbd clone's active instances, from crm_mon."""
    out: dict[str, str] = {}
    for rsc in c.crm_mon_xml().iter("resource"):
        if rsc.get("id") != "drbd" or rsc.get("active") != "true":
            continue
        for node in rsc.iter("node"):
            out[node.get("name")] = rsc.get("role")
    return out


def settle(c: Any, want: Callable[[dict[str, str]], bool], timeout: float = 60) -> dict[str, str]:
    end = time.monotonic() + timeout
    last: dict[str, str] = {}
    while time.monotonic() < end:
        last = roles(c)
        if want(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"cluster did not settle; drbd roles: {last}\n{c.log_tail(1, 40)}")


def promoted(r: dict[str, str]) -> list[str]:
    return sorted(n for n, role in r.items() if role in ("Promoted", "Master"))


def unpromoted(r: dict[str, str]) -> list[str]:
    return sorted(n for n, role in r.items() if role in ("Unpromoted", "Slave"))


def standby(c: Any, node: str, on: bool) -> None:
    c.exec(c.live_node(), ["crm_attribute", "-N", node, "-n", "standby", "-v",
                           "on" if on else "off"], check=True)


def test_promotable_clone_under_pacemaker(drbd_cluster: tuple[Any, DrbdLab]) -> None:
    c, lab = drbd_cluster
    c.cib_create(CLONE.format(conf=lab.conf))
    # Exactly one Primary, the other Secondary, and the kernel agrees.
    r = settle(c, lambda r: len(promoted(r)) == 1 and len(unpromoted(r)) == 1)
    first = promoted(r)[0]
    other = "n2" if first == "n1" else "n1"
    assert lab.role(first) == "Primary" and lab.role(other) == "Secondary"
    # Standby moves the Primary.
    standby(c, first, True)
    r = settle(c, lambda r: promoted(r) == [other] and first not in r)
    assert lab.role(other) == "Primary" and lab.role(first) is None
    standby(c, first, False)
    r = settle(c, lambda r: promoted(r) == [other] and unpromoted(r) == [first])
    assert lab.role(first) == "Secondary"
    # The replication link breaks and the Secondary's data is Outdated: when the
    # Primary's node goes away, Pacemaker must not promote the Outdated side.
    lab.fault("cut", ["r0"])
    lab.set_disk(first, "Outdated")
    standby(c, other, True)
    r = settle(c, lambda r: list(r) == [first] and unpromoted(r) == [first], timeout=60)
    time.sleep(8)  # two more monitors: still nobody promoted
    r = roles(c)
    assert promoted(r) == [] and list(r) == [first]
    assert lab.role(first) == "Secondary"
    # An Inconsistent side is refused alike.
    lab.set_disk(first, "Inconsistent")
    time.sleep(5)
    assert promoted(roles(c)) == [] and lab.role(first) == "Secondary"
    # The link comes back and the UpToDate node returns: it is promoted, and the
    # Outdated/Inconsistent node resyncs from it.
    lab.fault("cut", [])
    standby(c, other, False)
    settle(c, lambda r: promoted(r) == [other] and unpromoted(r) == [first])
