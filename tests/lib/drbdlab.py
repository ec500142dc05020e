"""Two DRBD "nodes" on one machine: the real drbdadm over the kernel stand-in in tests/sim/drbdsim.

Each node has its own simulated kernel (``<base>/<node>/``); the agent sees it
through ``PYHA_KERNEL_ROOT`` and drbdadm/drbdsetup through ``__DRBD_NODE__``.
Promotion scores land in a real CIB file through the real ``crm_attribute``
(``CIB_file``).  Everything lives under ``/tmp/pyha-drbd-*`` and is removed
by :meth:`DrbdLab.close`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from conftest import AGENTS, Run, base_env

SIM = Path(__file__).resolve().parent.parent / "sim" / "drbdsim"
UPSTREAM = Path("/usr/lib/ocf/resource.d/linbit/drbd")
sys.path.insert(0, str(SIM))
import drbdsim  # noqa: E402

CONF9 = """resource r0 {{
  device /dev/drbd0;
  disk {base}/alpha.img;
  meta-disk internal;
  on {a} {{ node-id 0; address 127.0.0.1:7789; }}
  on {b}  {{ node-id 1; address 127.0.0.1:7790; }}
}}
resource r1 {{
  device /dev/drbd1;
  disk {base}/alpha1.img;
  meta-disk internal;
  on {a} {{ node-id 0; address 127.0.0.1:7791; }}
  on {b}  {{ node-id 1; address 127.0.0.1:7792; }}
}}
"""

CONF84 = """resource r0 {{
  device /dev/drbd0;
  disk {base}/alpha.img;
  meta-disk internal;
  on {a} {{ address 127.0.0.1:7789; }}
  on {b}  {{ address 127.0.0.1:7790; }}
}}
resource low {{
  device /dev/drbd5;
  disk {base}/low.img;
  meta-disk internal;
  on alpha {{ address 127.0.0.1:7795; }}
  on beta  {{ address 127.0.0.1:7796; }}
}}
resource up {{
  stacked-on-top-of low {{ device /dev/drbd10; address 127.0.0.1:7797; }}
  on gamma {{ device /dev/drbd10; disk /dev/sdx; address 127.0.0.2:7798; meta-disk internal; }}
}}
"""

CIB = """<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0"
 admin_epoch="0"><configuration><crm_config/><nodes>{nodes}</nodes><resources/><constraints/>
</configuration><status>{states}</status></cib>
"""


class DrbdLab:
    def __init__(self, version: str = "9.2.8", nodes: tuple[str, ...] = ("alpha", "beta"),
                 conf: str | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pyha-drbd-", dir="/tmp"))
        self.version = version
        self.nodes = nodes
        for n in nodes:
            (self.base / n).mkdir()
        template = conf or (CONF84 if version.startswith("8.") else CONF9)
        self.conf = self.base / "drbd.conf"
        self.conf.write_text(template.format(base=self.base, a=nodes[0], b=nodes[1]))
        ids = {n: str(i + 1) for i, n in enumerate(nodes)}
        self.cib = self.base / "cib.xml"
        self.cib.write_text(CIB.format(
            nodes="".join(f'<node id="{ids[n]}" uname="{n}"/>' for n in nodes),
            states="".join(
                f'<node_state id="{ids[n]}" uname="{n}" in_ccm="true" crmd="online" '
                f'join="member" expected="member"><transient_attributes id="{ids[n]}">'
                f'<instance_attributes id="status-{ids[n]}"/></transient_attributes>'
                "</node_state>" for n in nodes)))

    # -- environment -------------------------------------------------------------

    def env(self, node: str) -> dict[str, str]:
        env = base_env(self.base / node / "rsctmp")
        env.update({
            "PATH": f"{SIM}:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYHA_DRBDSIM_DIR": str(self.base),
            "__DRBD_NODE__": node,
            "PYHA_KERNEL_ROOT": str(self.base / node / "root"),
            "DRBD_DRIVER_VERSION_OVERRIDE": self.version,
            "CIB_file": str(self.cib),
        })
        return env

    def agent(self, node: str, action: str, res: str = "r0", *, agent: str | Path | None = None,
              interval: int = 0, timeout_ms: int = 20000, notify: bool = True,
              **extra: str) -> Run:
        env = self.env(node)
        env.update({
            "OCF_RESOURCE_INSTANCE": "drbd-" + res,
            "OCF_RESKEY_drbd_resource": res,
            "OCF_RESKEY_drbdconf": str(self.conf),
            "OCF_RESKEY_CRM_meta_on_node": node,
            "OCF_RESKEY_CRM_meta_clone_max": "2",
            "OCF_RESKEY_CRM_meta_interval": str(interval),
            "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
        })
        if notify:
            env["OCF_RESKEY_CRM_meta_notify"] = "true"
        # The peer of a lone start never comes: wait 1 s for it, not the default 5.
        env["OCF_RESKEY_wfc_timeout"] = "1"
        for key, value in extra.items():
            name = key if key.startswith(("OCF_", "HA_")) else f"OCF_RESKEY_{key}"
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        path = Path(agent) if agent else AGENTS / "drbd"
        proc = subprocess.run([str(path), action], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def upstream(self, node: str, action: str, res: str = "r0", **extra: str) -> Run:
        """linbit's own agent on the same simulated kernel (an oracle for the simulator).

        Its two hard-coded kernel checks (``test -f /proc/drbd``, ``test -b /dev/drbdN``)
        are pointed at the simulated files by a ``test`` shell function defined in a
        wrapper ocf-shellfuncs (the agent sources ``$OCF_FUNCTIONS_DIR/ocf-shellfuncs``);
        nothing else of the agent is changed.
        """
        funcs = self.base / "ocf-functions"
        if not funcs.exists():
            funcs.mkdir()
            real = Path("/usr/lib/ocf/lib/heartbeat")
            for item in real.iterdir():
                if item.name != "ocf-shellfuncs":
                    (funcs / item.name).symlink_to(item)
            (funcs / "ocf-shellfuncs").write_text(
                f". {real}/ocf-shellfuncs\n"
                "test() {\n"
                '  case "$1 $2" in\n'
                '    "-f /proc/drbd") builtin test -f "$PYHA_KERNEL_ROOT/proc/drbd" ;;\n'
                '    "-b /dev/"*) builtin test -b "$PYHA_KERNEL_ROOT$2" ;;\n'
                '    *) builtin test "$@" ;;\n'
                "  esac\n"
                "}\n")
        return self.agent(node, action, res, agent=UPSTREAM, OCF_FUNCTIONS_DIR=str(funcs),
                          **extra)

    def drbdadm(self, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["drbdadm", "-c", str(self.conf), *args], env=self.env(node),
                              capture_output=True, text=True, timeout=30)

    # -- looking at the simulated world ---------------------------------------------

    def score(self, node: str, res: str = "r0") -> str | None:
        root = ET.parse(self.cib).getroot()
        for state in root.iter("node_state"):
            if state.get("uname") != node:
                continue
            for nv in state.iter("nvpair"):
                if nv.get("name") == f"master-drbd-{res}":
                    return nv.get("value")
        return None

    def kernel(self, node: str) -> dict[str, Any]:
        path = self.base / node / "kernel.json"
        return json.loads(path.read_text()) if path.exists() else {"loaded": None, "res": {}}

    def role(self, node: str, res: str = "r0") -> str | None:
        r = self.kernel(node)["res"].get(res)
        return None if r is None else str(r["role"])

    def calls(self, node: str) -> list[str]:
        path = self.base / node / "calls.log"
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines()] \
            if path.exists() else []

    # -- fault injection ------------------------------------------------------------

    def _sim(self) -> Any:
        drbdsim.BASE = str(self.base)
        return drbdsim

    def set_disk(self, node: str, state: str, res: str = "r0") -> None:
        self._sim().set_disk(node, res, state)

    def fail_disk(self, node: str, res: str = "r0") -> None:
        sim = self._sim()
        sim.NODE = node
        sim.fail_disk(node, res)
        sim.refresh_all()

    def fault(self, key: str, value: Any) -> None:
        sim = self._sim()
        f = sim.faults()
        f[key] = value
        sim.save_faults(f)
        sim.refresh_all()

    def finish_resync(self, res: str = "r0") -> None:
        """Resync reached 100%: every SyncTarget's disk becomes UpToDate."""
        sim = self._sim()
        for n in self.nodes:
            sim.NODE = n
            k = sim.kernel(n)
            if res in k["res"] and sim.resync(n, res, "0")[0] == "SyncTarget":
                sim.set_disk(n, res, "UpToDate")
        sim.refresh_all()

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def clean_err(err: str) -> str:
    """stderr without drbdadm's __DRBD_NODE__ banner."""
    return "\n".join(line for line in err.splitlines()
                     if line.strip() and "PRETENDING" not in line and "__DRBD_NODE__" not in line)


__all__ = ["DrbdLab", "clean_err", "os"]
