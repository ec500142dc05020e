"""pyha-migrate: the report on a CIB file, and switches in a real two-node Pacemaker.

The cluster test runs an IPaddr2, a Filesystem (ext4 on a loop device,
mounted in the node's private mount namespace) and a VirtualDomain guest
(QEMU TCG under a libvirtd private to each node) under the UPSTREAM agents,
switches them all to pyha and back, and proves from outside Pacemaker that
nothing restarted:

* ``ip monitor address`` runs in every node's network namespace from before
  the first switch: no RTM_DELADDR ("Deleted ...") for the address, ever (a
  canary address added and removed on lo at both ends shows the monitor was
  listening);
* the mount keeps its mount ID in the node's mountinfo;
* the guest keeps its QEMU pid (libvirt's pid file) and its libvirt domain ID;
* every pe-input the scheduler wrote meanwhile (on either node) is replayed
  with ``crm_simulate``: no start, stop, promote, demote, migration or fencing
  in any of them, and the controller logs initiated none.  (``--refresh``
  wipes the operation history, so the history itself proves nothing.)

The drbd promotable clone runs under ocf:linbit:drbd on the kernel stand-in
(tests/drbdlab.py) and switches to pyha and back with both simulated kernels
keeping their roles and receiving no role, disk or connection command.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from lib.clusterhelpers import (
    DRBD_CLONE,
    DRBD_CONF,
    bind_providers,
    drbd_clone_removed,
    drbd_roles,
    drbd_settle,
    drbd_wrapper,
    ext4_loop,
    libvirt_daemons,
    libvirt_dirs,
    promoted,
    unpromoted,
)

from ocf_lib import migrate

DATA = """<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="3" num_updates="0"
     admin_epoch="0">
 <configuration><crm_config/>
  <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
  <resources>
   <group id="web">
    <primitive id="web-ip" class="ocf" provider="heartbeat" type="IPaddr2">
     <instance_attributes id="web-ip-ia">
      <nvpair id="web-ip-ip" name="ip" value="192.0.2.10"/>
      <nvpair id="web-ip-nm" name="cidr_netmask" value="24"/>
      <nvpair id="web-ip-arp" name="run_arping" value="maybe"/>
      <nvpair id="web-ip-tr" name="trace_ra" value="1"/>
     </instance_attributes>
    </primitive>
    <primitive id="web-fs" class="ocf" provider="heartbeat" type="Filesystem">
     <instance_attributes id="web-fs-ia">
      <nvpair id="web-fs-dev" name="device" value="/dev/vg/web"/>
      <nvpair id="web-fs-dir" name="directory" value="/srv/web"/>
      <nvpair id="web-fs-t" name="fstype" value="xfs"/>
     </instance_attributes>
    </primitive>
   </group>
   <primitive id="bad-ip" class="ocf" provider="heartbeat" type="IPaddr2">
    <instance_attributes id="bad-ip-ia">
     <nvpair id="bad-ip-ip" name="ip" value="192.0.2.300"/>
    </instance_attributes>
   </primitive>
   <primitive id="dummy" class="ocf" provider="pacemaker" type="Dummy"/>
   <primitive id="ipmi-n1" class="stonith" type="fence_ipmilan">
    <instance_attributes id="ipmi-n1-ia">
     <nvpair id="ipmi-n1-ip" name="ip" value="192.0.2.201"/>
    </instance_attributes>
   </primitive>
  </resources><constraints/></configuration><status/></cib>
"""


@pytest.fixture
def cib_file(tmp_path: Path) -> Path:
    path = tmp_path / "cib.xml"
    path.write_text(DATA)
    return path


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = migrate.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- the report on a CIB file (no cluster) ----------------------------------------

def test_report_clean_resources_can_switch(cib_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = report(capsys, "--cib", str(cib_file), "web")
    assert rc == 0, out + err
    assert "web-ip (ocf:heartbeat:IPaddr2 -> ocf:pyha:IPaddr2): can switch" in out
    assert "web-fs (ocf:heartbeat:Filesystem -> ocf:pyha:Filesystem): can switch" in out
    # A value upstream tolerated is a warning, not a refusal; trace_ra is no finding.
    assert re.search(r"warning: accepted with a warning: parameter 'run_arping': value "
                     r"'maybe'", out), out
    assert "trace_ra" not in out
    assert "note: stop has one deadline" in out  # the behaviour table


def test_report_rejected_value_cannot_switch(cib_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = report(capsys, "--cib", str(cib_file), "bad-ip")
    assert rc == 1
    assert "bad-ip (ocf:heartbeat:IPaddr2 -> ocf:pyha:IPaddr2): cannot switch" in out
    assert "error: pyha rejects it: parameter 'ip': value '192.0.2.300'" in out


def test_report_all_lists_only_what_pyha_provides(cib_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = report(capsys, "--cib", str(cib_file))
    assert rc == 1  # bad-ip
    assert "dummy" not in out
    # The fence device is reported per node and never switched from here.
    assert "ipmi-n1 (stonith:fence_ipmilan): switched per node with update-alternatives" in out
    assert "  n1: not visible from here" in out and "  n2: not visible from here" in out


def test_report_named_fence_device_and_foreign_agent(cib_file: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = report(capsys, "--cib", str(cib_file), "ipmi-n1")
    assert rc == 1 and "update-alternatives (fence_ipmilan), never in the CIB" in out
    rc, out, _ = report(capsys, "--cib", str(cib_file), "dummy")
    assert rc == 1 and "pyha provides no replacement for ocf:pacemaker:Dummy" in out


def test_report_bad_input(cib_file: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = report(capsys, "--cib", str(cib_file), "nosuch")
    assert rc == 2 and err.strip() == "pyha-migrate: no resource 'nosuch' in the CIB"
    broken = tmp_path / "broken.xml"
    broken.write_text("<cib><configuration>")
    rc, _, err = report(capsys, "--cib", str(broken))
    assert rc == 2 and err.startswith("pyha-migrate: cannot read") and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        migrate.main(["--cib", str(cib_file), "--apply"])
    assert exc.value.code == 2
    assert "--apply and --rollback work on the live cluster" in capsys.readouterr().err


def test_report_default_that_differs(cib_file: Path) -> None:
    """A default that differs from upstream's meta-data is a warning.  Upstream's
    meta-data is the one input replaced here (the installed agent's default for
    fast_stop matches pyha's); an equal default in another spelling is none."""
    rsc = next(r for r in migrate.resources(ET.parse(cib_file).getroot()) if r.id == "web-fs")
    cache: dict[str, Any] = {"Filesystem": {"fstype": None, "fast_stop": "yes",
                                            "directory": None, "device": None}}
    verdict = migrate.check(rsc, True, cache)
    texts = [f.text for f in verdict.findings if f.level == "warning"]
    assert any(t == "default of 'fast_stop' differs: upstream 'yes', pyha 'no' (not set in the CIB)"
               for t in texts), texts
    assert not any("'fstype'" in t for t in texts)
    assert verdict.can_switch
    cache["Filesystem"]["fast_stop"] = "false"
    assert not [f for f in migrate.check(rsc, True, cache).findings if "fast_stop" in f.text]


def test_graph_reader_finds_restart_and_fencing() -> None:
    graph = ET.fromstring(
        '<transition_graph><synapse id="0"><action_set>'
        '<rsc_op id="2" operation="stop" operation_key="vip_stop_0" on_node="n1">'
        '<primitive id="vip"/></rsc_op></action_set><inputs/></synapse>'
        '<synapse id="1"><action_set><rsc_op id="3" operation="monitor" '
        'operation_key="vip_monitor_5000" on_node="n1"><primitive id="vip"/></rsc_op>'
        '</action_set></synapse><synapse id="2"><action_set><crm_event id="4" '
        'operation="stonith" operation_key="stonith-n2-reboot" on_node="n2"/></action_set>'
        '</synapse></transition_graph>')
    assert migrate.disruptive(graph, {"vip"}) == ["vip_stop_0 on n1",
                                                 "stonith-n2-reboot on n2"]
    assert migrate.disruptive(graph, {"other"}) == ["stonith-n2-reboot on n2"]


# -- switches in a real cluster --------------------------------------------------------

SUBNET = "10.210.61"
VIP = f"{SUBNET}.100"
CANARY = "127.0.0.77"
BASE = Path(f"/tmp/pyha-migrate-{os.getpid()}")
DISRUPTIVE = {"start", "stop", "promote", "demote", "migrate_to", "migrate_from"}


def group_xml(loop: str, mnt: Path) -> str:
    def prim(rid: str, kind: str, params: dict[str, str]) -> str:
        nv = "".join(f'<nvpair id="{rid}-{k}" name="{k}" value="{v}"/>' for k, v in params.items())
        return (f'<primitive id="{rid}" class="ocf" provider="heartbeat" type="{kind}">'
                f'<instance_attributes id="{rid}-ia">{nv}</instance_attributes>'
                f'<operations><op id="{rid}-m" name="monitor" interval="3s"/></operations>'
                "</primitive>")

    return ('<group id="mg">'
            + prim("mg-ip", "IPaddr2", {"ip": VIP, "cidr_netmask": "24"})
            + prim("mg-fs", "Filesystem", {"device": loop, "directory": str(mnt),
                                           "fstype": "ext4"})
            + "</group>")


class AddressWatch:
    """``ip monitor address`` in a network namespace, read by a thread."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["ip", "-n", netns, "monitor", "address"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.canary()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def canary(self) -> None:
        """Add and delete an address on lo until the monitor reports the deletion
        (the first round may come before it subscribed)."""
        def seen() -> int:
            return len([x for x in self.lines if CANARY in x and x.startswith("Deleted")])

        before = seen()
        end = time.monotonic() + 10
        while seen() <= before:
            assert time.monotonic() < end, f"ip monitor in {self.netns} is not listening"
            for verb in ("add", "del"):
                subprocess.run(["ip", "-n", self.netns, "addr", verb, f"{CANARY}/32", "dev",
                                "lo"], check=True)
            time.sleep(0.3)

    def deleted(self, address: str) -> list[str]:
        return [x for x in self.lines if x.startswith("Deleted") and f" {address}/" in x]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def mount_id(holder: int, mountpoint: Path) -> str | None:
    for line in Path(f"/proc/{holder}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            return fields[0]
    return None


def pe_inputs(c: Any) -> set[Path]:
    """Every pe-input file so far, on every node, once the DC is idle (so none of
    the transitions before this point is still being written)."""
    def idle() -> bool:
        dc = c.exec(c.live_node(), ["crmadmin", "-D", "--output-as=xml"]).stdout
        name = re.search(r'node_name="([^"]+)"', dc)
        if name is None:
            return False
        state = c.exec(c.live_node(), ["crmadmin", "-S", name.group(1)]).stdout
        return "S_IDLE" in state
    c.wait_for(idle, 60, what="an idle DC")
    return {p for node in c.nodes
            for p in (node.dir / "var-lib-pacemaker" / "pengine").glob("pe-input-*")}


def pe_inputs_since(c: Any, before: set[Path]) -> list[Path]:
    return sorted(pe_inputs(c) - before)


def replay(pe_input: Path, tmp: Path) -> tuple[list[str], ET.Element]:
    """The disruptive actions of the graph the scheduler makes from ``pe_input``,
    and the input's CIB."""
    graph = tmp / (pe_input.name + ".graph.xml")
    subprocess.run(["crm_simulate", "--xml-file", str(pe_input), "--run", "--save-graph",
                    str(graph)], check=True, capture_output=True, timeout=60)
    bad = []
    for act in (a for s in ET.parse(graph).getroot().iter("action_set") for a in s):
        op = act.get("operation", "")
        if (act.tag == "rsc_op" and op in DISRUPTIVE) or op == "stonith":
            bad.append(f"{pe_input.name}: {act.get('operation_key')}")
    cib = ET.fromstring(subprocess.run(["bzcat", "-f", str(pe_input)], check=True,
                                       capture_output=True, text=True).stdout)
    # A failure the scheduler was told about: an operation that did not complete,
    # or an answer that is neither running (0/8), stopped (7) nor pending (193).
    for op in cib.iter("lrm_rsc_op"):
        if op.get("op-status") not in ("0", "-1") or op.get("rc-code") not in (
                "0", "7", "8", "193"):
            bad.append(f"{pe_input.name}: failure {op.get('id')} rc {op.get('rc-code')} "
                       f"status {op.get('op-status')} on {op.get('on_node')}")
    return bad, cib


def controller_actions(c: Any, offsets: list[int]) -> list[str]:
    pattern = re.compile(r"Initiating (start|stop|promote|demote|migrate_to|migrate_from) "
                         r"operation|will be fenced|for fencing|Requesting fencing")
    found = []
    for i, start in enumerate(offsets, 1):
        with open(c.log_path(i), errors="replace") as handle:
            handle.seek(start)
            found += [line for line in handle if pattern.search(line)]
    return found


def run_migrate(c: Any, *args: str, node: int = 1,
                timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return c.exec(node, ["/usr/bin/python3", "-I", "-c",
                      "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                      "from ocf_lib.migrate import main; sys.exit(main(sys.argv[1:]))",
                      str(ROOT), *args], timeout=timeout)


def agents_of(c: Any) -> dict[str, str]:
    return {r.get("id", ""): r.get("resource_agent", "") for r in c.crm_mon_xml().iter("resource")
            if r.get("id", "").startswith("mg-")}


def private_pyha(c: Any) -> None:
    """Each node sees /usr/lib/ocf/resource.d/pyha as its own directory of links to
    this checkout's agents: parallel test runs re-point the shared links, and a
    fault injected into one node must stay there."""
    from lib.cluster import agent_executables

    for node in c.nodes:
        d = BASE / f"pyha-{node.name}"
        d.mkdir(mode=0o755)
        for agent in agent_executables(ROOT / "agents"):
            (d / agent.name).symlink_to(agent)
        c.exec(node.index, ["mount", "--bind", str(d), "/usr/lib/ocf/resource.d/pyha"],
               check=True)


@pytest.fixture
def upstream_group(cluster_factory: Any) -> Iterator[tuple[Any, str, Path]]:
    c = cluster_factory(nodes=2, subnet=SUBNET)
    BASE.mkdir()
    mnt = BASE / "mnt"
    loop = ext4_loop(BASE / "ext4.img")
    try:
        private_pyha(c)
        c.cib_create(group_xml(loop, mnt))
        where = c.wait_resource_started("mg-ip", timeout=60)
        assert c.wait_resource_started("mg-fs", timeout=60) == where
        yield c, where, mnt
    finally:
        try:
            live = c.live_node()
            c.exec(live, ["crm_resource", "-r", "mg", "--meta", "-d", "is-managed"])
            c.exec(live, ["crm_resource", "-r", "mg", "--meta", "-p", "target-role", "-v",
                       "Stopped"], check=True)
            c.wait_resource_stopped("mg-fs", timeout=60)
        finally:
            for node in c.nodes:
                subprocess.run(["nsenter", "-t", str(node.holder_pid), "-m", "umount",
                                str(mnt)], capture_output=True)
            subprocess.run(["losetup", "-d", loop], check=False)
            subprocess.run(["rm", "-rf", str(BASE)], check=False)


VM = "pyha-mg-vm"


def _virsh(c: Any, i: int, *args: str) -> subprocess.CompletedProcess[str]:
    return c.exec(i, ["virsh", "-c", "qemu:///system", *args], timeout=60)


def _libvirt_in_node(c: Any, i: int) -> None:
    """A private libvirtd + virtlogd inside node i."""
    from lib import virtlab

    d = BASE / f"virt-n{i}"
    libvirt_dirs(d, i, caps_cache=virtlab.CAPS_CACHE, uuid_prefix="5a1e0061")
    libvirt_daemons(c, i, d, virtlab.DIRS)


@pytest.fixture
def upstream_vm(upstream_group: tuple[Any, str, Path]) -> Iterator[str]:
    """An ocf:heartbeat:VirtualDomain guest (QEMU TCG, no OS) in the same cluster."""
    from lib import virtlab

    c = upstream_group[0]
    for i in (1, 2):
        _libvirt_in_node(c, i)
    config = BASE / "vm.xml"
    config.write_text(virtlab.domain_xml(VM, "noos", BASE / "vm-console.log"))
    c.cib_create(f'<primitive id="mg-vm" class="ocf" provider="heartbeat" type="VirtualDomain">'
                 f'<instance_attributes id="mg-vm-ia">'
                 f'<nvpair id="mg-vm-config" name="config" value="{config}"/>'
                 f'<nvpair id="mg-vm-hv" name="hypervisor" value="qemu:///system"/>'
                 f'</instance_attributes><operations>'
                 f'<op id="mg-vm-m" name="monitor" interval="5s" timeout="30s"/>'
                 f'<op id="mg-vm-stop" name="stop" interval="0" timeout="20s"/>'
                 f'</operations></primitive>')
    where = c.wait_resource_started("mg-vm", timeout=90)
    try:
        yield where
    finally:
        # The guest has no OS to shut down: destroy it, then let Pacemaker see it stopped.
        live = c.live_node()
        c.exec(live, ["crm_resource", "-r", "mg-vm", "--meta", "-d", "is-managed"])
        for i in (1, 2):
            _virsh(c, i, "destroy", VM)
        c.exec(live, ["crm_resource", "-r", "mg-vm", "--meta", "-p", "target-role", "-v",
                      "Stopped"])
        with contextlib.suppress(Exception):
            c.wait_resource_stopped("mg-vm", timeout=60)


def qemu_identity(c: Any, where: str) -> tuple[str, str]:
    """(QEMU's pid, libvirt's domain ID) of the guest on its node, from libvirt's files
    and virsh, not from the agent."""
    i = int(where[1:])
    pid = (BASE / f"virt-n{i}" / "run" / "qemu" / f"{VM}.pid").read_text().strip()
    domid = _virsh(c, i, "domid", VM).stdout.strip()
    assert pid.isdigit() and domid.isdigit(), (pid, domid)
    return pid, domid


def test_switch_to_pyha_and_back_restarts_nothing(upstream_group: tuple[Any, str, Path],
                                                  upstream_vm: str, tmp_path: Path) -> None:
    c, where, mnt = upstream_group
    qemu = qemu_identity(c, upstream_vm)
    n = int(where[1:])
    holder = c.node(n).holder_pid
    mid = mount_id(holder, mnt)
    assert mid is not None
    watches = [AddressWatch(node.netns) for node in c.nodes]
    offsets = [c.log_path(i).stat().st_size for i in (1, 2)]
    t0 = pe_inputs(c)
    found = c.exec(1, ["cibadmin", "--query", "-o", "resources"], check=True).stdout
    try:
        switched = run_migrate(c, "--apply")
        assert switched.returncode == 0, switched.stdout + switched.stderr
        assert agents_of(c) == {"mg-ip": "ocf:pyha:IPaddr2", "mg-fs": "ocf:pyha:Filesystem",
                                "mg-vm": "ocf:pyha:VirtualDomain"}
        assert c.wait_resource_started("mg-ip") == where
        assert c.wait_resource_started("mg-fs") == where
        time.sleep(4)  # a recurring monitor of each, now by pyha
        assert c.failures() == []

        back = run_migrate(c, "--rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        assert agents_of(c) == {"mg-ip": "ocf:heartbeat:IPaddr2",
                                "mg-fs": "ocf:heartbeat:Filesystem",
                                "mg-vm": "ocf:heartbeat:VirtualDomain"}
        assert c.wait_resource_started("mg-fs") == where
        assert c.failures() == []
        # Back exactly as found: provider, is-managed, not even an empty meta set left.
        assert c.exec(1, ["cibadmin", "--query", "-o", "resources"],
                      check=True).stdout == found
        for w in watches:
            w.canary()
    finally:
        for w in watches:
            w.close()
    # From outside Pacemaker: the address never went away, the mount is the same one.
    assert [w.deleted(VIP) for w in watches] == [[], []]
    assert mount_id(holder, mnt) == mid
    assert c.wait_resource_started("mg-vm") == upstream_vm
    assert qemu_identity(c, upstream_vm) == qemu
    # The scheduler's own inputs: nothing disruptive was ever planned, and the
    # controllers initiated nothing.  Among them, the managed group under pyha.
    inputs = pe_inputs_since(c, t0)
    planned, saw_pyha_managed = [], False
    for path in inputs:
        bad, cib = replay(path, tmp_path)
        planned += bad
        for grp in cib.iter("group"):
            prim = grp.find("primitive[@id='mg-ip']")
            managed = [nv.get("value") for nv in grp.iter("nvpair")
                       if nv.get("name") == "is-managed"]
            if prim is not None and prim.get("provider") == "pyha" and not managed:
                saw_pyha_managed = True
    assert len(inputs) >= 4 and saw_pyha_managed, [p.name for p in inputs]
    assert planned == []
    assert controller_actions(c, offsets) == []


BROKEN = """#!/bin/sh
# pyha's IPaddr2 broken on this node only: every action but meta-data answers 5.
if [ "$1" = meta-data ]; then exec cat {metadata}; fi
echo "ocf-exit-reason:injected: agent broken on this node" >&2
exit 5
"""


def test_probe_failure_rolls_back_as_found(upstream_group: tuple[Any, str, Path],
                                           tmp_path: Path) -> None:
    """pyha's probe answers 5 where the address runs (the worst case: "not
    installed" reads as "not running"): the switch is rolled back, and the
    configuration is exactly as found."""
    c, where, _mnt = upstream_group
    n = int(where[1:])
    broken = BASE / "IPaddr2.broken"
    broken.write_text(BROKEN.format(metadata=ROOT / "metadata" / "IPaddr2.xml"))
    broken.chmod(0o755)
    agent = BASE / f"pyha-{where}" / "IPaddr2"  # what that node alone sees (private_pyha)
    agent.unlink()
    broken.rename(agent)
    watch = AddressWatch(c.node(n).netns)
    t0 = pe_inputs(c)
    try:
        before = c.exec(1, ["cibadmin", "--query", "-o", "resources"], check=True).stdout
        result = run_migrate(c, "--apply", "mg-ip")
        assert result.returncode == 1, result.stdout + result.stderr
        assert re.search(r"mg-ip: the probe on n\d answered 5 where 0 was expected \(it runs "
                         r"there\): injected: agent broken on this node; rolled back to "
                         r"ocf:heartbeat:IPaddr2 as found", result.stderr), result.stderr
        after = c.exec(1, ["cibadmin", "--query", "-o", "resources"], check=True).stdout
        assert after == before
        assert c.wait_resource_started("mg-ip") == where
        time.sleep(4)
        assert c.failures() == []
        watch.canary()
    finally:
        watch.close()
        agent.unlink()
        agent.symlink_to(ROOT / "agents" / "IPaddr2")
    assert watch.deleted(VIP) == []
    # The scheduler was told of the failed probe (so the pe-input check can see a
    # failure), yet planned no stop, start or fencing while it stood.
    found = [b for p in pe_inputs_since(c, t0) for b in replay(p, tmp_path)[0]]
    assert any(f"failure mg-ip_last_failure_0 rc 5 status 0 on {where}" in b for b in found), found
    assert [b for b in found if " failure " not in b] == []


def test_refuses_with_a_node_offline(upstream_group: tuple[Any, str, Path]) -> None:
    """A node the switch cannot see probe is a refusal before anything changes."""
    c, where, _mnt = upstream_group
    n, other = int(where[1:]), (2 if where == "n1" else 1)
    before = c.exec(n, ["cibadmin", "--query", "-o", "resources"], check=True).stdout
    c.kill_node(other)
    c.wait_for(lambda: c.online_nodes(n) == [where], 60, what="one node left")
    result = run_migrate(c, "--apply", node=n, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.strip().endswith(f"node n{other} is not online"), result.stderr
    assert c.exec(n, ["cibadmin", "--query", "-o", "resources"], check=True).stdout == before


def test_fence_selection_reads_the_alternative(tmp_path: Path) -> None:
    """What this node's /usr/sbin/<agent> resolves to (a tree like Debian's)."""
    sbin, alt = tmp_path / "sbin", tmp_path / "etc" / "alternatives"
    pyha, upstream = tmp_path / "usr/share/pyha/fence", tmp_path / "usr/share/pyha/diverted"
    for d in (sbin, alt, pyha, upstream):
        d.mkdir(parents=True)
    (pyha / "fence_ipmilan").write_text("")
    (upstream / "fence_ipmilan").write_text("")
    (sbin / "fence_ipmilan").symlink_to(alt / "fence_ipmilan")
    (alt / "fence_ipmilan").symlink_to(pyha / "fence_ipmilan")
    assert migrate.fence_selection("fence_ipmilan", str(sbin)).endswith(
        "usr/share/pyha/fence/fence_ipmilan (pyha, chosen with update-alternatives)")
    (alt / "fence_ipmilan").unlink()
    (alt / "fence_ipmilan").symlink_to(upstream / "fence_ipmilan")
    assert "(fence-agents, chosen with update-alternatives)" in migrate.fence_selection(
        "fence_ipmilan", str(sbin))
    (sbin / "fence_ilo_mp").write_text("")
    assert migrate.fence_selection("fence_ilo_mp", str(sbin)).endswith(
        "(fence-agents; no alternative registered)")
    assert migrate.fence_selection("fence_imm", str(sbin)).endswith("does not exist")


# -- the drbd promotable clone on the kernel stand-in (tests/drbdlab.py) ----------------

# drbdsetup subcommands that change a role, a disk or a connection (a stop/start has them).
ROLE_CHANGES = frozenset(("primary", "secondary", "down", "attach", "detach", "connect",
                          "disconnect", "new-resource", "new-minor", "new-peer", "new-path",
                          "del-resource", "del-minor", "del-peer", "del-path"))


@pytest.fixture
def linbit_drbd(cluster_factory: Any) -> Iterator[tuple[Any, Any]]:
    from lib.drbdlab import SIM, UPSTREAM, DrbdLab

    c = cluster_factory(nodes=2, subnet="10.210.62")
    lab = DrbdLab(nodes=("n1", "n2"), conf=DRBD_CONF.replace("@NET@", c.subnet))
    try:
        lab.base.chmod(0o755)
        lab.upstream("n1", "meta-data")  # builds the ocf-shellfuncs wrapper it uses
        copy = lab.base / "linbit-real"  # the agent and the helpers it sources from its dir
        copy.mkdir(mode=0o755)
        for item in UPSTREAM.parent.iterdir():
            (copy / item.name).write_bytes(item.read_bytes())
            (copy / item.name).chmod(0o755)
        real = copy / UPSTREAM.name
        dirs = {"pyha": lab.base / "pyha", "linbit": lab.base / "linbit"}
        for d in dirs.values():
            d.mkdir(mode=0o755)
        (dirs["pyha"] / "drbd").write_text(drbd_wrapper(ROOT / "agents" / "drbd", SIM,
                                                        lab.base))
        (dirs["pyha"] / "Example").symlink_to(ROOT / "agents" / "Example")
        # linbit's agent is a copy: the bind mount hides the original in the node.
        (dirs["linbit"] / "drbd").write_text(drbd_wrapper(
            real, SIM, lab.base, OCF_FUNCTIONS_DIR=str(lab.base / "ocf-functions")))
        for d in dirs.values():
            (d / "drbd").chmod(0o755)
        bind_providers(c, dirs)
        yield c, lab
    finally:
        drbd_clone_removed(c)
        lab.close()


def test_drbd_clone_switches_without_a_role_change(linbit_drbd: tuple[Any, Any],
                                                   tmp_path: Path) -> None:
    c, lab = linbit_drbd
    c.cib_create(DRBD_CLONE.format(conf=lab.conf).replace('provider="pyha"', 'provider="linbit"'))
    found = drbd_settle(c, lambda r: len(promoted(r)) == 1 and len(unpromoted(r)) == 1)
    kernel = {n: lab.role(n) for n in ("n1", "n2")}
    assert sorted(kernel.values()) == ["Primary", "Secondary"]
    time.sleep(5)  # a monitor round of each role, so nothing is still settling
    calls = {n: len(lab.calls(n)) for n in ("n1", "n2")}
    offsets = [c.log_path(i).stat().st_size for i in (1, 2)]
    t0 = pe_inputs(c)
    for args, agent in ((("--apply", "drbd-clone"), "ocf:pyha:drbd"),
                        (("--rollback", "drbd-clone"), "ocf:linbit:drbd")):
        result = run_migrate(c, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "drbd: probes with " in result.stdout
        assert {r.get("resource_agent") for r in c.crm_mon_xml().iter("resource")
                if r.get("id") == "drbd"} == {agent}
        assert drbd_roles(c) == found
    # From outside Pacemaker: the simulated kernels kept their roles, and no
    # command that changes a role or a connection reached them.
    assert {n: lab.role(n) for n in ("n1", "n2")} == kernel
    for n in ("n1", "n2"):
        changed = [x for x in lab.calls(n)[calls[n]:]
                   if x.split()[0] == "drbdsetup" and set(x.split()[1:2]) & ROLE_CHANGES]
        assert changed == [], changed
    planned = []
    inputs = pe_inputs_since(c, t0)
    for path in inputs:
        planned += replay(path, tmp_path)[0]
    assert len(inputs) >= 4 and planned == []
    assert controller_actions(c, offsets) == []
    assert drbd_settle(c, lambda r: r == found, timeout=10) == found


def test_upstream_parameter_pyha_lacks_blocks(cib_file: Path) -> None:
    """A parameter upstream's meta-data declares and pyha does not is an error
    (its behaviour would be lost); upstream's meta-data is the input replaced."""
    rsc = next(r for r in migrate.resources(ET.parse(cib_file).getroot()) if r.id == "web-fs")
    rsc.attrs["new_upstream_knob"] = "1"
    verdict = migrate.check(rsc, True, {"Filesystem": {"new_upstream_knob": None}})
    assert not verdict.can_switch
    assert [f.text for f in verdict.findings if f.level == "error"] == [
        "parameter 'new_upstream_knob' of ocf:heartbeat:Filesystem is not declared by pyha"]


def test_probed_nodes_follow_resource_discovery() -> None:
    cib = ET.fromstring(
        '<cib><configuration><resources><group id="g"><primitive id="p"/></group></resources>'
        '<constraints><rsc_location id="l1" rsc="g" node="n2" score="-INFINITY" '
        'resource-discovery="never"/><rsc_location id="l2" rsc="other" node="n1" '
        'score="0" resource-discovery="never"/></constraints></configuration></cib>')
    chain = migrate.resources(cib)[0].chain
    assert migrate.probed_nodes(cib, chain, ["n1", "n2", "n3"]) == ["n1", "n3"]
    loc = cib.find("configuration/constraints/rsc_location[@id='l2']")
    assert loc is not None
    loc.set("rsc", "p")
    loc.set("resource-discovery", "exclusive")
    assert migrate.probed_nodes(cib, chain, ["n1", "n2", "n3"]) == ["n1"]
