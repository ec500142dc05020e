"""VirtualDomain and Xen against ocf:heartbeat, on the same guest.

VirtualDomain: a real libvirtd + QEMU (TCG) started for the case in its own
namespaces (tests/lib/virtlab.py: netns ``pyha-vd-bench1``/``-bench2``, state under
``/tmp/pyha-virt-bench*``), a no-OS guest ``pyha-bench``.  Both sides get the
same parameters, upstream defaults included (utilization autoset on), and a
``CIB_file`` holding the resource, so the crm_resource calls are real but
never reach a live cluster.

Xen: both agents drive the xl simulator (tests/sim/xlsim), so these numbers are
the agents' own cost plus one simulator process per toolstack call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.cases import AGENTS, OCF_ENV, ROOT, UPSTREAM_OCF, Case, Side, Workspace, ocf_side

PYHA_VD, UP_VD = AGENTS / "VirtualDomain", UPSTREAM_OCF / "heartbeat" / "VirtualDomain"
PYHA_XEN, UP_XEN = AGENTS / "Xen", UPSTREAM_OCF / "heartbeat" / "Xen"
SOCK = "/tmp/pyha-virt-{}/run/libvirt-sock"
URI1 = "qemu+unix:///system?socket=" + SOCK.format("bench1")
URI2 = "qemu+unix:///system?socket=" + SOCK.format("bench2")
IP1, IP2 = "10.213.78.1", "10.213.78.2"
VD = {"config": "{dir}/vm.xml", "hypervisor": URI1}
VD_STOPPED = {"config": "{dir}/stopped.xml", "hypervisor": URI1}
VD_ENV = {"CIB_file": "{dir}/cib.xml"}
RESOURCE = '<primitive id="bench" class="ocf" provider="pyha" type="VirtualDomain"/>'


def _lab() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from lib import virtlab  # tests/lib/virtlab.py: the same fixture code the tests use

    return virtlab


def _expand(ws: Workspace, params: dict[str, str]) -> dict[str, str]:
    return {k: v.replace("{dir}", str(ws.dir)) for k, v in params.items()}


def vd_setup(ws: Workspace, start: bool = True, second: bool = False) -> None:
    lab = _lab()
    (ws.dir / "rsctmp").mkdir(exist_ok=True)
    hosts = lab.claim("bench", 2 if second else 1)
    if [h.name for h in hosts] != ["bench1", "bench2"][:len(hosts)]:
        for host in hosts:
            host.release()
        raise RuntimeError("another VirtualDomain bench is running (bench1/bench2 taken)")
    ws.data["hosts"] = hosts
    for host in hosts:
        host.up()
    if second:
        lab.veth(hosts[0], hosts[1], IP1, IP2)
    console = ws.dir / "console.log"
    (ws.dir / "vm.xml").write_text(lab.domain_xml("pyha-bench", "noos", console))
    (ws.dir / "stopped.xml").write_text(lab.domain_xml("pyha-bench-off", "noos", console))
    cib = str(ws.dir / "cib.xml")
    ws.run(["sh", "-c", f"cibadmin --empty > {cib}"])
    ws.run(["cibadmin", "--create", "-o", "resources", "-X", RESOURCE],
           env={**OCF_ENV, "CIB_file": cib})
    if start:
        side = ocf_side("setup", PYHA_VD, ["start"], VD, env=VD_ENV)
        ws.run(side.commands[0], env=side.env)


def vd_setup_libvirtd_down(ws: Workspace) -> None:
    """A running guest whose libvirtd has been killed: the answer comes from /proc."""
    import os
    import signal
    import time

    vd_setup(ws)
    hosts: Any = ws.data["hosts"]
    host = hosts[0]
    pid = host.pid("libvirtd")
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _lab()._alive(pid):
            return
        time.sleep(0.05)
    raise RuntimeError("libvirtd did not stop")


def vd_teardown(ws: Workspace) -> None:
    hosts: Any = ws.data.get("hosts", [])
    for host in hosts:
        host.release()


def vd_case(name: str, actions: list[str], params: dict[str, str],
            rcs: list[int] | None = None, start: bool = True) -> Case:
    def setup(ws: Workspace) -> None:
        vd_setup(ws, start=start)

    return Case(f"VirtualDomain/{name}",
                ocf_side("pyha VirtualDomain", PYHA_VD, actions, params, rcs, VD_ENV),
                ocf_side("heartbeat VirtualDomain", UP_VD, actions, params, rcs, VD_ENV),
                setup=setup, teardown=vd_teardown, target_ratio=0.3 if name in (
                    "monitor", "probe") else 1.0)


def migrate_side(label: str, agent: Path) -> Side:
    """There and back: migrate_to, migrate_from, stop on the source; twice."""
    side = ocf_side(label, agent, [], {"config": "{dir}/vm.xml",
                                       "remoteuri": "qemu+unix:///system?socket="
                                                    + SOCK.format("%n")}, env=VD_ENV)
    commands = []
    for src, dst, uri_src, uri_dst, ip_dst in (("bench1", "bench2", URI1, URI2, IP2),
                                               ("bench2", "bench1", URI2, URI1, IP1)):
        common = [f"OCF_RESKEY_CRM_meta_migrate_target={dst}",
                  f"OCF_RESKEY_CRM_meta_migrate_source={src}"]
        commands += [
            ["env", *common, f"OCF_RESKEY_hypervisor={uri_src}",
             f"OCF_RESKEY_migrateuri=tcp://{ip_dst}", f"HA_RSCTMP={{dir}}/rsc-{src}",
             str(agent), "migrate_to"],
            ["env", *common, f"OCF_RESKEY_hypervisor={uri_dst}", f"HA_RSCTMP={{dir}}/rsc-{dst}",
             str(agent), "migrate_from"],
            ["env", f"OCF_RESKEY_hypervisor={uri_src}", f"HA_RSCTMP={{dir}}/rsc-{src}",
             str(agent), "stop"],
        ]
    side.commands = commands
    side.expect_rc = [0] * len(commands)
    return side


def migrate_setup(ws: Workspace) -> None:
    vd_setup(ws, start=False, second=True)
    for host in ("bench1", "bench2"):
        (ws.dir / f"rsc-{host}").mkdir(exist_ok=True)
    side = ocf_side("setup", PYHA_VD, ["start"], {**VD, "hypervisor": URI1},
                    env={**VD_ENV, "HA_RSCTMP": "{dir}/rsc-bench1"})
    ws.run(side.commands[0], env=side.env)


# -- Xen on the simulator --------------------------------------------------------

XLSIM = ROOT / "tests" / "sim" / "xlsim"
XEN_ENV = {"PATH": f"{XLSIM}:{OCF_ENV['PATH']}", "XLSIM_ROOT": "{dir}/xlsim",
           "XLSIM_HOST": "host1", "XLSIM_SHUTDOWN_DELAY": "0.1"}
XEN = {"xmfile": "{dir}/dom.cfg"}


def xen_setup(ws: Workspace, start: bool = True) -> None:
    (ws.dir / "rsctmp").mkdir(exist_ok=True)
    (ws.dir / "xlsim" / "host1").mkdir(parents=True, exist_ok=True)
    (ws.dir / "dom.cfg").write_text('name = "pyha-xbench"\nmemory = 256\nvcpus = 1\n')
    if start:
        side = ocf_side("setup", PYHA_XEN, ["start"], XEN, env=XEN_ENV)
        ws.run(side.commands[0], env=side.env)


def xen_case(name: str, actions: list[str], rcs: list[int] | None = None,
             start: bool = True, params: dict[str, str] | None = None) -> Case:
    def setup(ws: Workspace) -> None:
        xen_setup(ws, start)

    p = {**XEN, **(params or {})}
    return Case(f"Xen/{name}",
                ocf_side("pyha Xen", PYHA_XEN, actions, p, rcs, XEN_ENV),
                ocf_side("heartbeat Xen", UP_XEN, actions, p, rcs, XEN_ENV), setup=setup)


INTERVAL = {"CRM_meta_interval": "10000"}
CASES: list[Case] = [
    vd_case("monitor", ["monitor"], {**VD, **INTERVAL}),
    vd_case("probe", ["monitor"], VD),
    vd_case("probe-stopped", ["monitor"], VD_STOPPED, [7], start=False),
    Case("VirtualDomain/probe-libvirtd-down",
         ocf_side("pyha VirtualDomain", PYHA_VD, ["monitor"], VD, env=VD_ENV),
         ocf_side("heartbeat VirtualDomain", UP_VD, ["monitor"], VD, env=VD_ENV),
         setup=vd_setup_libvirtd_down, teardown=vd_teardown),
    vd_case("start+stop", ["start", "stop"], {**VD, "force_stop": "true"}, start=False),
    Case("VirtualDomain/migrate-there-and-back",
         migrate_side("pyha VirtualDomain", PYHA_VD),
         migrate_side("heartbeat VirtualDomain", UP_VD),
         setup=migrate_setup, teardown=vd_teardown, target_ratio=1.0),
    xen_case("monitor", ["monitor"], params=INTERVAL),
    xen_case("probe-stopped", ["monitor"], [7], start=False),
    xen_case("start+stop", ["start", "stop"], start=False),
]
