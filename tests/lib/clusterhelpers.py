"""Pieces the cluster test modules share: a loop-backed ext4, the drbd clone and
its roles under Pacemaker, a private libvirtd inside a test node.

``c`` is a running ``Cluster`` (tests/lib/cluster.py).  Lab paths (the DRBD kernel
stand-in, libvirt's directories) are arguments, so this module imports no lab.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def ext4_loop(image: Path, size: str = "64M") -> str:
    """A fresh ext4 in ``image`` on a new loop device; the caller detaches it."""
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    return subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()


def bind_providers(c: Any, dirs: Mapping[str, Path]) -> None:
    """In every node, ``/usr/lib/ocf/resource.d/<provider>`` shows ``dirs[provider]``."""
    for node in c.nodes:
        for provider, d in dirs.items():
            c.exec(node.index, ["mount", "--bind", str(d),
                                f"/usr/lib/ocf/resource.d/{provider}"], check=True)


# -- the drbd promotable clone ---------------------------------------------------------

# drbd.conf of resource r0 for two nodes; @NET@ is the cluster's subnet.
DRBD_CONF = """resource r0 {{
  device /dev/drbd0;
  disk {base}/{a}.img;
  meta-disk internal;
  on {a} {{ node-id 0; address @NET@.1:7789; }}
  on {b} {{ node-id 1; address @NET@.2:7789; }}
}}
"""

DRBD_CLONE = """<clone id="drbd-clone">
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


def drbd_wrapper(agent: Path, sim: Path, base: Path, **env: str) -> str:
    """A provider's ``drbd`` inside a test node: the node's simulated DRBD kernel
    (``sim``, state under ``base``), ``env`` on top, then ``agent``."""
    extra = "".join(f" \\\n       {key}={value}" for key, value in env.items())
    return ("#!/bin/sh\n"
            "# drbd inside a test node: this node's simulated DRBD kernel, then the agent.\n"
            "node=$(uname -n)\n"
            f"export PATH={sim}:$PATH PYHA_DRBDSIM_DIR={base} __DRBD_NODE__=$node \\\n"
            f"       PYHA_KERNEL_ROOT={base}/$node/root DRBD_DRIVER_VERSION_OVERRIDE=9.2.8"
            f"{extra}\n"
            f'exec {agent} "$@"\n')


def drbd_roles(c: Any) -> dict[str, str]:
    """{node: role} of the drbd clone's active instances, from crm_mon."""
    out: dict[str, str] = {}
    for rsc in c.crm_mon_xml().iter("resource"):
        if rsc.get("id") != "drbd" or rsc.get("active") != "true":
            continue
        for node in rsc.iter("node"):
            out[node.get("name")] = rsc.get("role")
    return out


def drbd_settle(c: Any, want: Callable[[dict[str, str]], bool],
                timeout: float = 60) -> dict[str, str]:
    """Wait until the clone's roles satisfy ``want``; they are returned."""
    end = time.monotonic() + timeout
    last: dict[str, str] = {}
    while time.monotonic() < end:
        last = drbd_roles(c)
        if want(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"cluster did not settle; drbd roles: {last}\n{c.log_tail(1, 40)}")


def promoted(roles: dict[str, str]) -> list[str]:
    return sorted(n for n, role in roles.items() if role in ("Promoted", "Master"))


def unpromoted(roles: dict[str, str]) -> list[str]:
    return sorted(n for n, role in roles.items() if role in ("Unpromoted", "Slave"))


def drbd_clone_removed(c: Any) -> None:
    """Delete the clone and wait for its instances to stop, while the simulated
    kernels still exist; a failure here is left to the cluster's teardown."""
    try:
        c.cib_delete('<clone id="drbd-clone"/>')
        drbd_settle(c, lambda r: not r, timeout=30)
    except Exception:  # noqa: BLE001 - the cluster is torn down anyway
        pass


# -- a private libvirtd in a test node -------------------------------------------------


def libvirt_dirs(d: Path, index: int, *, caps_cache: Path, uuid_prefix: str,
                 qemu_conf: str = "") -> None:
    """libvirt's configuration and state for node ``index`` under ``d``: a copy of
    the host's, with its own host UUID, no autostarted network, QEMU run as root
    without cgroups or a security driver (``qemu_conf`` appended)."""
    for sub in ("run", "cache", "log"):
        (d / sub).mkdir(parents=True)
    shutil.copytree("/etc/libvirt", d / "etc", symlinks=True)
    shutil.copytree("/var/lib/libvirt", d / "lib", symlinks=True)
    if caps_cache.is_dir():
        shutil.copytree(caps_cache, d / "cache", dirs_exist_ok=True)
    for auto in (d / "etc/qemu/networks/autostart").glob("*.xml"):
        auto.unlink()
    with open(d / "etc/libvirtd.conf", "a") as conf:
        conf.write(f'\nhost_uuid = "{uuid_prefix}-0000-4000-8000-0000000000{index:02d}"\n'
                   'unix_sock_group = "root"\nunix_sock_rw_perms = "0770"\n'
                   f'auth_unix_rw = "none"\nlog_outputs = "3:file:{d}/log/libvirtd.log"\n')
    with open(d / "etc/qemu.conf", "a") as conf:
        conf.write('\ncgroup_controllers = [ ]\nsecurity_driver = "none"\nuser = "root"\n'
                   'group = "root"\nstdio_handler = "logd"\n' + qemu_conf)


def libvirt_daemons(c: Any, i: int, d: Path, mounts: Mapping[str, str]) -> None:
    """virtlogd and libvirtd in node ``i`` on the directories under ``d``
    (``mounts``: subdirectory -> where the node sees it), up and answering."""
    c.node(i).path("/run/libvirt").mkdir(exist_ok=True)
    for key, inside in mounts.items():
        c.exec(i, ["mount", "--bind", str(d / key), inside], check=True)
    c.exec(i, ["virtlogd", "-d", "-p", str(d / "virtlogd.pid")], check=True)
    c.exec(i, ["libvirtd", "-d", "-p", str(d / "libvirtd.pid")], check=True)
    c.wait_for(lambda: c.exec(i, ["virsh", "-c", "qemu:///system", "version"],
                              timeout=60).returncode == 0, 30, what=f"libvirtd in n{i}")
