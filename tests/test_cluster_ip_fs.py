"""A group of ocf:pyha:IPaddr2 and ocf:pyha:Filesystem under a real Pacemaker.

The single-node cluster of tests/lib/cluster.py runs in its own network and
mount namespaces: the address goes onto the node's eth0 (10.210.50.1/24), the
ext4 image on a loop device is mounted in the node's private mount namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from lib.clusterhelpers import ext4_loop

from ocf_lib.mounts import read_mountinfo

BASE = Path(f"/tmp/pyha-fs-{os.getpid()}-pcmk")
VIP = "10.210.50.100"


def group_xml(loop: str, mnt: Path) -> str:
    def prim(rid: str, kind: str, params: dict[str, str], ops: str) -> str:
        nv = "".join(f'<nvpair id="{rid}-{k}" name="{k}" value="{v}"/>' for k, v in params.items())
        return (f'<primitive id="{rid}" class="ocf" provider="pyha" type="{kind}">'
                f'<instance_attributes id="{rid}-ia">{nv}</instance_attributes>'
                f"<operations>{ops}</operations></primitive>")

    fs_ops = ('<op id="fs-m0" name="monitor" interval="2s"/>'
              '<op id="fs-m20" name="monitor" interval="3s">'
              '<instance_attributes id="fs-m20-ia"><nvpair id="fs-m20-d" '
              'name="OCF_CHECK_LEVEL" value="20"/></instance_attributes></op>')
    return ('<group id="ipfs">'
            + prim("ipfs-ip", "IPaddr2", {"ip": VIP, "cidr_netmask": "24"},
                   '<op id="ip-m" name="monitor" interval="2s"/>')
            + prim("ipfs-fs", "Filesystem", {"device": loop, "directory": str(mnt),
                                             "fstype": "ext4"}, fs_ops)
            + "</group>")


def vip_present(netns: str) -> bool:
    for link in json.loads(subprocess.run(["ip", "-n", netns, "-j", "addr", "show"],
                                          capture_output=True, text=True, check=True).stdout):
        if any(a["local"] == VIP for a in link.get("addr_info", [])):
            return link["ifname"] == "eth0"
    return False


def test_group_starts_is_monitored_and_stops(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, subnet="10.210.50")
    BASE.mkdir()
    mnt = BASE / "mnt"
    loop = ext4_loop(BASE / "ext4.img")
    node = c.node(1)
    mountinfo = f"/proc/{node.holder_pid}/mountinfo"
    try:
        c.cib_create(group_xml(loop, mnt))
        assert c.wait_resource_started("ipfs-ip") == "n1"
        assert c.wait_resource_started("ipfs-fs") == "n1"
        assert vip_present(node.netns)
        assert any(m.mountpoint == str(mnt) and m.source == loop
                   for m in read_mountinfo(mountinfo))
        assert not any(m.mountpoint == str(mnt) for m in read_mountinfo())  # not on the host
        time.sleep(7)  # a few rounds of every recurring monitor, depth 20 included
        status = c.exec(1, ["crm_mon", "-1", "--output-as=xml"], check=True).stdout
        assert "<failure " not in status, status
        assert (mnt / ".Filesystem_status").exists() is False  # only inside the node
        c.exec(1, ["crm_resource", "-r", "ipfs", "--meta", "-p", "target-role", "-v",
                   "Stopped"], check=True)
        c.wait_resource_stopped("ipfs-fs")
        c.wait_resource_stopped("ipfs-ip")
        assert not vip_present(node.netns)
        assert not any(m.mountpoint == str(mnt) for m in read_mountinfo(mountinfo))
        c.cib_delete('<group id="ipfs"/>')
    finally:
        subprocess.run([*["nsenter", "-t", str(node.holder_pid), "-m"], "umount", str(mnt)],
                       capture_output=True)
        subprocess.run(["losetup", "-d", loop], check=False)
        subprocess.run(["rm", "-rf", str(BASE)], check=False)
