"""drbd monitor: pyha against linbit's agent, both on the DRBD kernel stand-in (tests/sim/drbdsim).

Two simulated nodes (this host and ``beta``) run ``r0`` connected, UpToDate,
Secondary.  Both sides see the same simulated kernel and write the
promotion score into the same CIB file with the real ``crm_attribute``.
linbit's agent gets its two hard-coded kernel paths redirected by a wrapper
ocf-shellfuncs (as in tests/lib/drbdlab.py); nothing else of it is changed.

The simulated ``drbdsetup`` is a Python script (an interpreter start per call),
so absolute times are higher than on a real kernel, for both sides alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.cases import AGENTS, OCF_ENV, ROOT, UPSTREAM_OCF, Case, Side, Workspace

SIM = ROOT / "tests" / "sim" / "drbdsim"
HOST = os.uname().nodename
CONF = """resource r0 {{
  device /dev/drbd0;
  disk {dir}/disk0;
  meta-disk internal;
  on {host} {{ node-id 0; address 127.0.0.1:7889; }}
  on beta {{ node-id 1; address 127.0.0.1:7890; }}
}}
"""
CIB = """<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0"
 admin_epoch="0"><configuration><crm_config/><nodes><node id="1" uname="{host}"/>
<node id="2" uname="beta"/></nodes><resources/><constraints/></configuration><status>
<node_state id="1" uname="{host}" in_ccm="true" crmd="online" join="member" expected="member">
<transient_attributes id="1"><instance_attributes id="status-1"/></transient_attributes>
</node_state><node_state id="2" uname="beta" in_ccm="true" crmd="online" join="member"
 expected="member"><transient_attributes id="2"><instance_attributes id="status-2"/>
</transient_attributes></node_state></status></cib>
"""
WRAPPER = """. /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs
test() {
  case "$1 $2" in
    "-f /proc/drbd") builtin test -f "$PYHA_KERNEL_ROOT/proc/drbd" ;;
    "-b /dev/"*) builtin test -b "$PYHA_KERNEL_ROOT$2" ;;
    *) builtin test "$@" ;;
  esac
}
"""


def env_for(node: str, upstream: bool = False, interval: str = "20000") -> dict[str, str]:
    env = dict(OCF_ENV)
    env.update({
        "PATH": f"{SIM}:{OCF_ENV['PATH']}",
        "PYHA_DRBDSIM_DIR": "{dir}/sim",
        "__DRBD_NODE__": node,
        "PYHA_KERNEL_ROOT": "{dir}/sim/" + node + "/root",
        "DRBD_DRIVER_VERSION_OVERRIDE": "9.2.8",
        "CIB_file": "{dir}/cib.xml",
        "HA_RSCTMP": "{dir}/rsctmp-" + node,
        "OCF_RESOURCE_INSTANCE": "drbd",
        "OCF_RESKEY_drbd_resource": "r0",
        "OCF_RESKEY_drbdconf": "{dir}/drbd.conf",
        "OCF_RESKEY_CRM_meta_notify": "true",
        "OCF_RESKEY_CRM_meta_clone_max": "2",
        "OCF_RESKEY_CRM_meta_on_node": node,
        "OCF_RESKEY_CRM_meta_interval": interval,
        "OCF_RESKEY_wfc_timeout": "1",
    })
    if upstream:
        env["OCF_FUNCTIONS_DIR"] = "{dir}/ocf-functions"
    return env


def setup(ws: Workspace) -> None:
    (ws.dir / "drbd.conf").write_text(CONF.format(dir=ws.dir, host=HOST))
    (ws.dir / "cib.xml").write_text(CIB.format(host=HOST))
    funcs = ws.dir / "ocf-functions"
    funcs.mkdir()
    real = Path("/usr/lib/ocf/lib/heartbeat")
    for item in real.iterdir():
        if item.name != "ocf-shellfuncs":
            (funcs / item.name).symlink_to(item)
    (funcs / "ocf-shellfuncs").write_text(WRAPPER)
    for node in (HOST, "beta"):
        (ws.dir / "sim" / node).mkdir(parents=True)
        (ws.dir / f"rsctmp-{node}").mkdir()
    for node in (HOST, "beta"):
        ws.run([str(AGENTS / "drbd"), "start"], env=env_for(node))


def teardown(ws: Workspace) -> None:
    for node in (HOST, "beta"):
        ws.run([str(AGENTS / "drbd"), "stop"], env=env_for(node), check=False)


def side(label: str, agent: Path, upstream: bool, interval: str) -> Side:
    return Side(label, [[str(agent), "monitor"]], env_for(HOST, upstream, interval), [0])


PYHA = AGENTS / "drbd"
LINBIT = UPSTREAM_OCF / "linbit" / "drbd"

CASES = [
    Case("drbd/monitor (Secondary, recurring)",
         side("pyha drbd", PYHA, False, "20000"), side("linbit drbd", LINBIT, True, "20000"),
         setup=setup, teardown=teardown, target_ratio=0.5, tags=("drbd",)),
    Case("drbd/probe (Secondary, score always written)",
         side("pyha drbd", PYHA, False, "0"), side("linbit drbd", LINBIT, True, "0"),
         setup=setup, teardown=teardown, target_ratio=0.5, tags=("drbd",)),
]
