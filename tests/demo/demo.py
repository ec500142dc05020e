#!/usr/bin/env python3
"""pyha's demo: the seeds' cluster, three nodes on one machine, run by pyha's agents.

Run as root on Debian 12 (the README's main job)::

    packaging/setup-debian.sh && .venv/bin/python tests/demo/demo.py

``--pause`` waits for Enter before the teardown (to look around inside the
nodes); ``--without vm`` (or ip, fs, fencing) leaves a part out.  It takes
about a minute on 2 cores.

What it builds (all of it torn down at the end, on failure and on Ctrl-C):

* three Corosync 3 + Pacemaker 2 nodes n1..n3 in network/mount/UTS namespaces
  (tests/lib/cluster.py, prefix ``pyhad``, 10.231.9.0/24 on the bridge ``pyhadbr``);
* one libvirtd + virtlogd inside every node (private /etc/libvirt,
  /var/lib/libvirt, ...; the socket lives under /tmp/pyha-demo-run/virt-nX so
  a node can reach its peer for live migration), QEMU in TCG mode;
* three simulated BMCs: OpenIPMI's ipmi_sim in the namespace ``pyhad-bmc`` on
  the cluster network (10.231.9.101-103, UDP 9651-9653); pulling a node's power
  through its BMC kills everything that node runs (tests/demo/demo_bmc.py);
* the seeds' resources, configured with crmsh like the seeds do: a floating
  ``ocf:pyha:IPaddr2``, an ``ocf:pyha:Filesystem`` (ext4 on a loop device,
  mounted inside the node's own mount namespace), an ``ocf:pyha:VirtualDomain``
  guest with ``allow-migrate=true``, and one ``stonith:fence_ipmilan`` (pyha's)
  per node, kept off the node it fences.

The scenario: ``crm_mon``; live migration with ``crm resource move``; the
cluster stack of the VM's node is SIGKILLed (the guest keeps running: only
fencing can make it safe to start elsewhere); the survivors fence that node
through its BMC and recover everything; the operator lets the node back in
(its cluster stack does not start at boot, as seed 001 advises) and nothing
moves back; teardown.  A timeline with seconds
since start is printed as it goes and summarised at the end.

The agents come from this checkout: each node sees them through overlay mounts
in its own mount namespace (``/usr/lib/ocf/resource.d/pyha`` and
``/usr/sbin/fence_ipmilan``), so the host's files are never touched.  A part
whose agent is not in the tree is skipped with the reason said out loud; the
exit status is non-zero only when something that ran failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

# Run as a script: the labs and simulators are imported from tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib import virtlab  # noqa: E402
from lib.cluster import LOCK_DIR, ROOT, Cluster, alive, pids_in_netns, wait_gone  # noqa: E402
from lib.clusterhelpers import libvirt_dirs  # noqa: E402
from sim.ipmisim import EMU, LAN_CONF  # noqa: E402

PREFIX = "pyhad"
SUBNET = "10.231.9"
BASE = Path("/tmp/pyha-demo-run")
BMC_NETNS = "pyhad-bmc"
BMC_VETH = "pyhadbmch"
BMC_PORT0 = 9650  # BMC of node i listens on BMC_PORT0 + i
VIP = f"{SUBNET}.100"
VM_NAME = "pyha-demo-vm"
BMC_USER, BMC_PASSWORD = "admin", "secret"  # a simulator's credentials, nothing real
NODES = 3


def bmc_address(i: int) -> str:
    return f"{SUBNET}.{100 + i}"


class DemoError(RuntimeError):
    pass


# -- the timeline -------------------------------------------------------------------

@dataclass
class Step:
    title: str
    start: float
    end: float | None = None
    outcome: str = "running"  # ok | failed | skipped
    notes: list[str] = field(default_factory=list)


class Timeline:
    """Steps with their times in seconds since the demo started, printed as they go."""

    def __init__(self, out: TextIO) -> None:
        self.t0 = time.monotonic()
        self.out = out
        self.steps: list[Step] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Step]:
        step = Step(title, self.now())
        self.steps.append(step)
        self.say(f"[{step.start:6.1f}s] {title}")
        try:
            yield step
        except BaseException as exc:
            step.outcome = "failed"
            step.end = self.now()
            self.say(f"[{step.end:6.1f}s]   FAILED: {_describe(exc)}")
            raise
        step.outcome = "ok"
        step.end = self.now()
        self.say(f"[{step.end:6.1f}s]   done ({step.end - step.start:.1f}s)")

    def note(self, text: str) -> None:
        if self.steps:
            self.steps[-1].notes.append(text)
        for line in text.splitlines():
            self.say(f"           {line}")

    def skip(self, title: str, why: str) -> None:
        step = Step(title, self.now(), self.now(), "skipped", [why])
        self.steps.append(step)
        self.say(f"[{step.start:6.1f}s] SKIPPED {title}: {why}")

    def summary(self) -> str:
        lines = ["", "Timeline (seconds since start):"]
        for s in self.steps:
            took = f"{(s.end or self.now()) - s.start:5.1f}s"
            lines.append(f"  {s.start:6.1f}s  {took}  {s.outcome:7s}  {s.title}")
            if s.outcome == "skipped":
                lines.append(f"                            ({s.notes[0]})")
        return "\n".join(lines)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


# -- what the run found out (the e2e test asserts on this) ---------------------------

@dataclass
class Result:
    skipped: dict[str, str] = field(default_factory=dict)  # part -> reason
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.leftovers


# -- the parts ----------------------------------------------------------------------

def available_parts() -> dict[str, str]:
    """{part: reason} for every part that cannot run from this tree (empty: all can)."""
    missing: dict[str, str] = {}
    for part, path in (("ip", ROOT / "agents" / "IPaddr2"),
                       ("fs", ROOT / "agents" / "Filesystem"),
                       ("vm", ROOT / "agents" / "VirtualDomain"),
                       ("fencing", ROOT / "fence" / "fence_ipmilan")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            missing[part] = f"{path.relative_to(ROOT)} is not in this tree yet"
    for part, tool in (("vm", "libvirtd"), ("vm", "qemu-system-x86_64"),
                       ("fencing", "ipmi_sim"), ("fs", "mkfs.ext4")):
        if part not in missing and shutil.which(tool) is None:
            missing[part] = f"{tool} is not installed (run packaging/setup-debian.sh)"
    if "vm" not in missing:
        problem = _guest_problem()
        if problem:
            missing["vm"] = problem
    return missing


def _guest_problem() -> str | None:
    """Why virtlab cannot build the tiny guest here (it boots the host's Debian kernel)."""
    if (virtlab.GUEST_DIR / "vmlinuz").exists() and (virtlab.GUEST_DIR / "initrd.gz").exists():
        return None
    releases = sorted(p.name[len("vmlinuz-"):] for p in Path("/boot").glob("vmlinuz-*"))
    if not releases:
        return "no kernel in /boot for the tiny guest (a container?)"
    drivers = Path("/lib/modules") / releases[-1] / "kernel/drivers"
    for ko in ("acpi/button.ko", "input/evdev.ko"):
        if not (drivers / ko).exists():
            return f"{drivers / ko} is missing: the tiny guest needs it for ACPI power-off"
    return None


class Demo:
    def __init__(self, out: TextIO = sys.stdout, skip: dict[str, str] | None = None,
                 pause: Callable[[], None] | None = None) -> None:
        self.tl = Timeline(out)
        self.pause = pause
        self.result = Result()
        self.result.skipped = dict(available_parts() if skip is None else skip)
        self.cluster: Cluster | None = None
        self.bmcs: dict[int, subprocess.Popen[bytes]] = {}
        self.loop: str | None = None
        self._lock: Any = None

    def has(self, part: str) -> bool:
        return part not in self.result.skipped

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    # -- the whole run ------------------------------------------------------------

    def run(self) -> Result:
        for part, why in self.result.skipped.items():
            self.tl.skip(f"part '{part}'", why)
        try:
            self._take_lock()
            self.setup()
            self.scenario()
            if self.pause is not None:
                self.pause()
        except BaseException as exc:  # noqa: BLE001 - reported, then torn down
            self.result.error = _describe(exc)
            if not isinstance(exc, (DemoError, KeyboardInterrupt, TimeoutError)):
                import traceback

                self.tl.say(traceback.format_exc())
            if not isinstance(exc, KeyboardInterrupt):
                self._dump_logs()
        finally:
            # Teardown must finish: a second Ctrl-C (or a TERM) must not cut it short.
            previous = {sig: signal.signal(sig, signal.SIG_IGN)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                self.teardown()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                self._release_lock()
        self.result.steps = self.tl.steps
        self.tl.say(self.tl.summary())
        for line in self.outcome_lines():
            self.tl.say(line)
        if self.result.error:
            self.tl.say(f"\nDEMO FAILED: {self.result.error}")
        elif self.result.leftovers:
            self.tl.say(f"\nDEMO FAILED: left behind: {', '.join(self.result.leftovers)}")
        else:
            skipped = (f" (skipped: {', '.join(self.result.skipped)})"
                       if self.result.skipped else "")
            self.tl.say(f"\nDemo complete in {self.tl.now():.1f}s{skipped}.")
        return self.result

    def outcome_lines(self) -> list[str]:
        facts, lines = self.result.facts, []
        if "migration" in facts:
            m = facts["migration"]
            lines.append(f"  live migration: vm {m['from']} -> {m['to']}, guest boots "
                         f"{m['boots']} (it kept running)")
        if "fence_event" in facts:
            off = [t for t, state in facts.get("bmc_power_log", []) if state == "off"]
            cut = f", power cut {off[0] - facts['kill_time']:.1f}s after the crash" if off else ""
            by = facts["fence_event"].get("delegate", "?")
            lines.append(f"  {facts['victim']} crashed: fenced by {by} through its BMC with "
                         f"pyha's fence_ipmilan{cut}")
        if "recovered" in facts:
            lines.append("  recovered: " + ", ".join(
                f"{r} on {n}" for r, n in facts["recovered"].items()) +
                f" ({facts['recovered_after']:.1f}s after the crash)")
        if "rejoin" in facts:
            lines.append(f"  {facts['rejoin']['node']} let back in by the operator: online "
                         f"{' '.join(facts['rejoin']['online'] or [])}, nothing moved back")
        return ["", "Outcome:", *lines] if lines else []

    def _take_lock(self) -> None:
        LOCK_DIR.mkdir(mode=0o755, exist_ok=True)
        handle = open(LOCK_DIR / "pyha-demo.lock", "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.tl.say("another demo is running; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- setup --------------------------------------------------------------------

    def setup(self) -> None:
        with self.tl.step("start a 3-node Corosync + Pacemaker cluster in namespaces"):
            self.cluster = Cluster(prefix=PREFIX, nodes=NODES, subnet=SUBNET,
                                   stonith=self.has("fencing"), token_ms=1000,
                                   properties={"no-quorum-policy": "stop"})
            # Starting removes what a killed earlier run left in the nodes (daemons,
            # libvirtd, QEMU); the rest of its leftovers go next.
            self.cluster.start()
            self._cleanup_stale()
            BASE.mkdir(mode=0o755)
            self.tl.note(f"nodes {', '.join(n.name for n in self.c.nodes)} online on "
                         f"{SUBNET}.0/24 (bridge {self.c.bridge})")
        with self.tl.step("make pyha's agents visible inside the nodes (overlay mounts)"):
            self._node_files()
        if self.has("fencing"):
            with self.tl.step("start one simulated BMC (ipmi_sim) per node"):
                self._start_bmcs()
        if self.has("fs"):
            with self.tl.step("create an ext4 filesystem on a loop device"):
                self._make_loop()
        if self.has("vm"):
            with self.tl.step("start libvirtd inside every node; build the tiny guest"):
                self._start_libvirt()
        with self.tl.step("configure the resources with crmsh (as the seeds do)"):
            self._configure()

    def _node_files(self) -> None:
        hosts = BASE / "hosts"
        hosts.write_text("127.0.0.1\tlocalhost\n" + "".join(
            f"{n.address}\t{n.name}\n" for n in self.c.nodes))
        crmlog = BASE / "crmsh-log"
        for node in self.c.nodes:
            i = node.index
            nd = BASE / node.name
            ocf_upper = nd / "ocf-upper"
            (ocf_upper / "pyha").mkdir(parents=True)
            for agent in ("IPaddr2", "Filesystem", "VirtualDomain"):
                src = ROOT / "agents" / agent
                if src.exists():
                    (ocf_upper / "pyha" / agent).symlink_to(src)
            self._overlay(i, "/usr/lib/ocf/resource.d", ocf_upper, nd / "ocf-work")
            if self.has("fencing"):
                sbin_upper = nd / "sbin-upper"
                sbin_upper.mkdir()
                (sbin_upper / "fence_ipmilan").symlink_to(ROOT / "fence" / "fence_ipmilan")
                self._overlay(i, "/usr/sbin", sbin_upper, nd / "sbin-work")
            self.c.exec(i, ["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
            (nd / "holder.pid").write_text(f"{node.holder_pid}\n")
            # crmsh logs to /var/log/crmsh: give each node its own, like a real node.
            (crmlog / node.name).mkdir(parents=True)
            shutil.chown(crmlog / node.name, "hacluster", "haclient")
            (crmlog / node.name).chmod(0o775)
            if Path("/var/log/crmsh").is_dir():
                self.c.exec(i, ["mount", "--bind", str(crmlog / node.name), "/var/log/crmsh"],
                            check=True)
        (BASE / "home").mkdir()

    def _overlay(self, i: int, lower: str, upper: Path, work: Path) -> None:
        work.mkdir(parents=True)
        self.c.exec(i, ["mount", "-t", "overlay", f"pyhad-{upper.name}", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}", lower], check=True)

    def _start_bmcs(self) -> None:
        subprocess.run(["ip", "netns", "add", BMC_NETNS], check=True)
        _ip("link", "add", BMC_VETH, "type", "veth", "peer", "name", "eth0", "netns", BMC_NETNS)
        _ip("link", "set", BMC_VETH, "master", self.c.bridge, "up")
        _ip("-n", BMC_NETNS, "link", "set", "lo", "up")
        for node in self.c.nodes:
            _ip("-n", BMC_NETNS, "addr", "add", f"{bmc_address(node.index)}/24", "dev", "eth0")
        _ip("-n", BMC_NETNS, "link", "set", "eth0", "up")
        hook = Path(__file__).resolve().parent / "demo_bmc.py"
        for node in self.c.nodes:
            d = BASE / f"bmc-{node.name}"
            (d / "state").mkdir(parents=True)
            (d / "power").write_text("on\n")
            (d / "power.log").write_text("")
            (d / "node.json").write_text(json.dumps({
                "name": node.name, "netns": node.netns, "holder": node.holder_pid,
                "address": f"{node.address}/24", "volatile_mounts": str(BASE) + "/",
                "volatile_dirs": [str(node.path("/run/resource-agents")),
                                  str(node.path("/dev/shm")),
                                  str(self._virt_dir(node.name) / "run")]}))
            wrapper = d / "chassis-control.sh"
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/python3 -I {hook} {d} "$@"\n')
            wrapper.chmod(0o755)
            port = BMC_PORT0 + node.index
            (d / "lan.conf").write_text(LAN_CONF.format(addr=bmc_address(node.index), port=port,
                                                        dir=d))
            (d / "bmc.emu").write_text(EMU)
            with open(d / "ipmi_sim.log", "wb") as log:
                self.bmcs[node.index] = subprocess.Popen(
                    ["ip", "netns", "exec", BMC_NETNS, "ipmi_sim", "-n", "-c",
                     str(d / "lan.conf"), "-f", str(d / "bmc.emu"), "-s", str(d / "state")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        for i, proc in self.bmcs.items():
            _wait_udp_listener(proc, bmc_address(i), BMC_PORT0 + i)
            self.tl.note(f"BMC of n{i}: ipmi_sim pid {proc.pid} on {bmc_address(i)}:"
                         f"{BMC_PORT0 + i}/udp")

    def _make_loop(self) -> None:
        image = BASE / "shared-disk.img"
        with open(image, "wb") as handle:
            handle.truncate(64 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "pyhademo", str(image)], check=True,
                       capture_output=True)
        self.loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                   capture_output=True, text=True).stdout.strip()
        (BASE / "mnt").mkdir()
        self.tl.note(f"{self.loop} backed by {image}; every node sees the device, "
                     "none has it mounted")

    def _virt_dir(self, name: str) -> Path:
        return BASE / f"virt-{name}"

    def _start_libvirt(self) -> None:
        kernel, initrd = virtlab.build_guest()
        for node in self.c.nodes:
            self._libvirt_dirs(node.name)
        first = self.c.nodes[0]
        self._libvirt_daemons(first.index)
        if not any((self._virt_dir(first.name) / "cache").rglob("*.xml")):
            # QEMU's capabilities are probed once (about 8 s) and copied to the others.
            _virsh(first.name, "domcapabilities", "--virttype", "qemu")
            for node in self.c.nodes[1:]:
                shutil.copytree(self._virt_dir(first.name) / "cache",
                                self._virt_dir(node.name) / "cache", dirs_exist_ok=True)
        for node in self.c.nodes[1:]:
            self._libvirt_daemons(node.index)
        console = BASE / "vm-console.log"
        xml = virtlab.domain_xml(VM_NAME, "acpi", console)
        # append='on': the destination QEMU of a migration keeps writing the same log,
        # so the log shows whether the guest booted again or just carried on.
        xml = xml.replace(f"<source path='{console}'/>", f"<source path='{console}' append='on'/>")
        (BASE / "vm.xml").write_text(xml)
        self.tl.note(f"guest: {kernel.name} + busybox initrd, 96 MiB, TCG; "
                     f"config {BASE / 'vm.xml'}")

    def _libvirt_dirs(self, name: str) -> None:
        libvirt_dirs(self._virt_dir(name), int(name[1:]), caps_cache=virtlab.CAPS_CACHE,
                     uuid_prefix="5a1e0009",
                     qemu_conf="migration_port_min = 49152\nmigration_port_max = 49215\n")

    def _libvirt_daemons(self, i: int) -> None:
        node = self.c.node(i)
        d = self._virt_dir(node.name)
        node.path("/run/libvirt").mkdir(exist_ok=True)
        for key, inside in virtlab.DIRS.items():
            self.c.exec(i, ["mount", "--bind", str(d / key), inside], check=True)
        self._start_virt_daemons(i)

    def _start_virt_daemons(self, i: int) -> None:
        node = self.c.node(i)
        d = self._virt_dir(node.name)
        self.c.exec(i, ["virtlogd", "-d", "-p", str(d / "virtlogd.pid")], check=True)
        self.c.exec(i, ["libvirtd", "-d", "-p", str(d / "libvirtd.pid")], check=True)
        self.c.wait_for(lambda: _virsh(node.name, "version", check=False).returncode == 0,
                        30, what=f"libvirtd on {node.name}")

    def crm_config(self) -> str:
        stonith = "true" if self.has("fencing") else "false"
        lines = [f"property cib-bootstrap-options: stonith-enabled={stonith} "
                 "no-quorum-policy=stop",
                 "rsc_defaults resource-stickiness=100",
                 "op_defaults timeout=60s"]
        if self.has("fencing"):
            for node in self.c.nodes:
                i, n = node.index, node.name
                lines += [f"primitive fence-{n} stonith:fence_ipmilan params "
                          f"ip={bmc_address(i)} ipport={BMC_PORT0 + i} username={BMC_USER} "
                          f"password={BMC_PASSWORD} lanplus=1 pcmk_host_list={n} "
                          f"pcmk_host_check=static-list op monitor interval=60s",
                          f"location l-fence-{n} fence-{n} -inf: {n}"]
        members = []
        if self.has("fs"):
            lines.append(f"primitive data ocf:pyha:Filesystem params device={self.loop} "
                         f"directory={BASE / 'mnt'} fstype=ext4 op monitor interval=20s")
            members.append("data")
        if self.has("ip"):
            lines.append(f"primitive vip ocf:pyha:IPaddr2 params ip={VIP} cidr_netmask=24 "
                         "op monitor interval=10s")
            members.append("vip")
        if members:
            lines += [f"group svc {' '.join(members)}", "location l-svc svc 50: n2"]
        if self.has("vm"):
            lines += [
                f"primitive vm ocf:pyha:VirtualDomain params config={BASE / 'vm.xml'} "
                "hypervisor=qemu:///system "
                f"remoteuri=qemu+unix:///system?socket={BASE}/virt-%n/run/libvirt-sock "
                "migrateuri=tcp://%n "
                "op start timeout=90s op stop timeout=60s op monitor interval=10s timeout=30s "
                "op migrate_to timeout=120s op migrate_from timeout=60s "
                "meta allow-migrate=true target-role=Started",
                "location l-vm vm 50: n1"]
        return "\n".join(lines) + "\n"

    def _configure(self) -> None:
        text = self.crm_config()
        path = BASE / "demo.crm"
        path.write_text(text)
        shown = text.replace(f"password={BMC_PASSWORD}", "password=******")
        self.tl.note("crm configure load update " + str(path) + ":\n" + shown.rstrip())
        self.crm(["configure", "load", "update", str(path)])

    def crm(self, args: list[str], i: int | None = None, both: bool = False) -> str:
        node = i or self.c.live_node()
        proc = self.c.exec(node, ["crm", *args], env={"HOME": str(BASE / "home")}, timeout=120)
        if proc.returncode != 0:
            raise DemoError(f"crm {' '.join(args)} on n{node} failed rc={proc.returncode}: "
                            f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        text = proc.stdout + proc.stderr if both else proc.stdout
        return _strip_colours(text)

    # -- the scenario ---------------------------------------------------------------

    def resources(self) -> list[str]:
        out = []
        if self.has("fs"):
            out.append("data")
        if self.has("ip"):
            out.append("vip")
        if self.has("vm"):
            out.append("vm")
        return out

    def scenario(self) -> None:
        facts = self.result.facts
        with self.tl.step("wait for every resource to start"):
            if self.has("fencing"):
                for node in self.c.nodes:
                    self.c.wait_resource_started(f"fence-{node.name}", timeout=60)
            placed = {r: self.c.wait_resource_started(r, timeout=120) for r in self.resources()}
            facts["initial"] = placed
            self.tl.note(", ".join(f"{r} on {n}" for r, n in placed.items()))
        self.show_crm_mon("crm_mon -1: the cluster as an operator sees it")
        if self.has("vm"):
            self.live_migration()
        else:
            self.tl.skip("live migration", self.result.skipped["vm"])
        if self.has("fencing"):
            self.node_failure()
        else:
            self.tl.skip("kill a node, fence it, recover", self.result.skipped["fencing"])
        # Every agent action the cluster ran succeeded (crm_mon's "Failed Resource Actions").
        facts["failed_actions"] = self.c.failures()
        for failure in facts["failed_actions"]:
            self.tl.note(f"FAILED ACTION: {failure}")

    def show_crm_mon(self, title: str, extra: list[str] | None = None) -> None:
        with self.tl.step(title):
            out = self.c.exec(self.c.live_node(), ["crm_mon", "-1", *(extra or [])],
                              check=True).stdout
            self.tl.note(out.rstrip())

    def live_migration(self) -> None:
        facts = self.result.facts
        source = self.c.wait_resource_started("vm")
        target = "n2" if source != "n2" else "n3"
        console = BASE / "vm-console.log"
        with self.tl.step(f"guest boots on {source} (serial console)"):
            virtlab.wait_console(console, timeout=120)
            self.tl.note(f"console: PYHAGUEST: up; qemu pid {self.qemu_pid(source)} on {source}")
        with self.tl.step(f"crm resource move vm {target} (live migration)"):
            said = self.crm(["resource", "move", "vm", target], both=True).strip()
            if said:
                self.tl.note(said)
            where = self.c.wait_for(lambda: self._vm_settled_on(target), 120,
                                    what=f"vm running on {target}")
            ops = self.c.lrm_ops("vm")
            migr = sorted({(o.get("operation", ""), o.get("on_node", ""), o.get("rc-code", ""))
                           for o in ops if o.get("operation") in ("migrate_to", "migrate_from")})
            facts["migration"] = {"from": source, "to": where, "ops": migr,
                                  "boots": console.read_text(errors="replace")
                                  .count("PYHAGUEST: up"),
                                  "source_state": _domstate(source),
                                  "target_state": _domstate(target),
                                  "target_qemu": self.qemu_pid(target)}
            self.tl.note("recorded operations: " + ", ".join(
                f"{op} on {node} rc={rc}" for op, node, rc in migr))
            self.tl.note(f"libvirt: {source} says {facts['migration']['source_state']}, "
                         f"{target} says {facts['migration']['target_state']}; the guest "
                         f"booted {facts['migration']['boots']} time(s): it moved while "
                         "running")
            self.crm(["resource", "clear", "vm"])
            self.tl.note("crm resource clear vm: stickiness keeps it where it is")

    def _vm_settled_on(self, node: str) -> str | None:
        res = self.c.resource("vm")
        if res is None or res.get("role") != "Started" or res.get("failed") != "false":
            return None
        nodes = [n.get("name") for n in res.iter("node")]
        return node if nodes == [node] and _domstate(node) == "running" else None

    def qemu_pid(self, node: str) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self._virt_dir(node) / "run" / "qemu" / f"{VM_NAME}.pid").read_text())
            return pid if alive(pid) else None
        return None

    def node_failure(self) -> None:
        facts = self.result.facts
        victim_name = (self.c.resource_nodes("vm") or self.c.resource_nodes("vip")
                       or self.c.resource_nodes("data") or ["n2"])[0]
        victim = self.c.node(int(victim_name[1:]))
        survivors = [n for n in self.c.nodes if n is not victim]
        watcher = survivors[0].index
        qemu = self.qemu_pid(victim.name) if self.has("vm") else None
        facts["victim"] = victim.name
        with self.tl.step(f"crash {victim.name}: SIGKILL its corosync and pacemaker daemons"):
            facts["kill_time"] = time.time()
            killed = self._kill_cluster_stack(victim)
            self.tl.note(f"killed pids {killed}")
            if qemu:
                self.tl.note(f"the guest still runs on {victim.name} (qemu pid {qemu}, "
                             f"alive={alive(qemu)}): starting it elsewhere now would run it "
                             "twice; the cluster must fence first")
            facts["qemu_alive_after_crash"] = bool(qemu and alive(qemu))
        with self.tl.step(f"the survivors fence {victim.name} through its BMC"):
            event = self.c.wait_for(lambda: self._fenced(watcher, victim.name), 120,
                                    what=f"{victim.name} fenced")
            facts["fence_event"] = event
            log = (BASE / f"bmc-{victim.name}" / "power.log").read_text().split()
            facts["bmc_power_log"] = [(float(t), s) for t, s in zip(log[::2], log[1::2])]
            facts["qemu_alive_after_fence"] = bool(qemu and alive(qemu))
            facts["victim_processes_after_fence"] = len(_node_pids(victim))
            hist = self.c.exec(watcher, ["stonith_admin", "--history", victim.name,
                                         "--verbose"])
            facts["fence_history"] = (hist.stdout + hist.stderr).strip()
            self.tl.note("stonith_admin --history: " + facts["fence_history"])
            facts["fence_log"] = self._fence_log_lines(victim.name)
            for line in facts["fence_log"]:
                self.tl.note(line)
            self.tl.note("BMC power log: " + ", ".join(
                f"{state} at +{t - facts['kill_time']:.1f}s"
                for t, state in facts["bmc_power_log"]))
            if qemu:
                self.tl.note(f"qemu pid {qemu} on {victim.name}: "
                             f"{'still alive!' if alive(qemu) else 'gone with the power'}")
        with self.tl.step("resources recover on the survivors"):
            placed = {}
            for rsc in self.resources():
                placed[rsc] = self.c.wait_resource_started(rsc, timeout=180, i=watcher)
            facts["recovered"] = placed
            facts["recovered_after"] = time.time() - facts["kill_time"]
            self.tl.note(", ".join(f"{r} on {n}" for r, n in placed.items()) +
                         f": {facts['recovered_after']:.1f}s after the crash")
            if "vm" in placed:
                # A cold start this time: the node it ran on lost its power.
                console = BASE / "vm-console.log"
                self.c.wait_for(lambda: console.read_text(errors="replace")
                                .count("PYHAGUEST: up") >= 2, 120,
                                what="the guest to boot again")
                facts["boots_after_recovery"] = console.read_text(
                    errors="replace").count("PYHAGUEST: up")
                self.tl.note(f"the guest booted again on {placed['vm']} (console: "
                             "PYHAGUEST: up)")
            facts["recovered_checks"] = self._check_recovered(placed)
            for line in facts["recovered_checks"]:
                self.tl.note(line)
        self.show_crm_mon(f"crm_mon -1 after the failure ({victim.name} fenced)")
        self.rejoin(victim)

    def rejoin(self, node: Any) -> None:
        """The operator boots the fenced node's services again; nothing moves back."""
        facts = self.result.facts
        before = {r: self.c.resource_nodes(r) for r in self.resources()}
        with self.tl.step(f"the operator lets {node.name} back in (libvirtd, corosync, "
                          "pacemaker)"):
            if self.has("vm"):
                self._start_virt_daemons(node.index)
            self.c.start_node(node.index)
            # The returning node is probed for every resource before anything may move.
            self.c.wait_for(lambda: self._probed(node.name), 60,
                            what=f"{node.name} probed")
            after = {r: self.c.resource_nodes(r) for r in self.resources()}
            facts["rejoin"] = {"node": node.name, "online": self.c.online_nodes(),
                               "before": before, "after": after}
            self.tl.note(f"online: {facts['rejoin']['online']}; "
                         + ", ".join(f"{r} stays on {', '.join(n)}" for r, n in after.items())
                         + " (resource-stickiness=100)")

    def _probed(self, name: str) -> bool:
        for rsc in self.resources():
            if not any(op.get("on_node") == name and op.get("operation") == "monitor"
                       and op.get("interval") == "0" for op in self.c.lrm_ops(rsc)):
                return False
        return True

    def _kill_cluster_stack(self, node: Any) -> list[int]:
        pm = node.pacemakerd.pid if node.pacemakerd is not None else None
        co = node.corosync.pid if node.corosync is not None else None
        children = [p for p in _node_pids(node) if _ppid(p) == pm] if pm else []
        pids = [p for p in (co, pm, *children) if p]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(pids, 10)
        for proc in (node.pacemakerd, node.corosync):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        return pids

    def _fenced(self, i: int, target: str) -> dict[str, str] | None:
        proc = self.c.exec(i, ["stonith_admin", "--history", target, "--output-as=xml"],
                           timeout=20)
        if proc.returncode != 0:
            return None
        with contextlib.suppress(ET.ParseError):
            for ev in ET.fromstring(proc.stdout).iter("fence_event"):
                if ev.get("target") == target and ev.get("status") == "success":
                    return dict(ev.attrib)
        return None

    def _fence_log_lines(self, victim: str) -> list[str]:
        """The fencer's own words: which device fenced the victim, with what result."""
        found = []
        for node in self.c.nodes:
            if node.name == victim:
                continue
            with contextlib.suppress(OSError):
                for line in self.c.log_path(node.index).read_text(errors="replace").splitlines():
                    if f"targeting {victim} using" in line and "returned" in line:
                        found.append(f"{node.name}: " + line.split(")", 1)[-1].strip())
        return found

    def _check_recovered(self, placed: dict[str, str]) -> list[str]:
        checks = []
        if "vip" in placed:
            node = self.c.node(int(placed["vip"][1:]))
            addrs = subprocess.run(["ip", "-n", node.netns, "-o", "-4", "addr", "show"],
                                   capture_output=True, text=True).stdout
            holders = [n.name for n in self.c.nodes if VIP + "/" in subprocess.run(
                ["ip", "-n", n.netns, "-o", "-4", "addr", "show"], capture_output=True,
                text=True).stdout]
            self.result.facts["vip_holders"] = holders
            checks.append(f"{VIP} configured on {holders} (ip addr, seen from the host)")
            if VIP + "/" not in addrs:
                raise DemoError(f"{VIP} is not configured on {node.name}")
        if "data" in placed:
            mounted = [n.name for n in self.c.nodes if _node_alive(n) and str(BASE / "mnt") in
                       _mountpoints(n.holder_pid)]
            self.result.facts["fs_mounted_on"] = mounted
            checks.append(f"{BASE / 'mnt'} mounted in the mount namespace of {mounted}")
        if "vm" in placed:
            states = {n.name: _domstate(n.name) for n in self.c.nodes}
            self.result.facts["vm_states"] = states
            checks.append("libvirt domain state per node: " +
                          ", ".join(f"{k}={v}" for k, v in states.items()))
        return checks

    # -- teardown ---------------------------------------------------------------------

    def teardown(self) -> None:
        with self.tl.step("tear everything down"):
            # Every phase runs even when an earlier one fails; what stays is reported.
            for phase in (self._stop_cluster, self._stop_bmcs, self._cleanup_stale):
                try:
                    phase()
                except Exception as exc:  # noqa: BLE001
                    self.tl.note(f"{phase.__name__}: {_describe(exc)}")
                    self.result.error = self.result.error or f"teardown: {_describe(exc)}"
            self.result.leftovers = self.leftovers()
            if self.result.leftovers:
                self.tl.note("LEFT BEHIND: " + ", ".join(self.result.leftovers))
            else:
                self.tl.note("no namespace, bridge, qemu, libvirtd, ipmi_sim, loop device or "
                             "directory of the demo is left")

    def _stop_cluster(self) -> None:
        if self.cluster is None:
            return
        if self.result.error and self.cluster.nodes:
            # Interrupted or failed: no graceful stop (a guest that has not booted yet
            # ignores ACPI and would hold the stop for a minute); cut every node's power.
            self.tl.note("the run did not finish: stopping the nodes hard")
            for node in self.cluster.nodes:
                with contextlib.suppress(Exception):
                    self.cluster.kill_node(node.index)
        self.cluster.stop()  # also kills what runs in the nodes: libvirtd, QEMU, agents

    def _stop_bmcs(self) -> None:
        for proc in self.bmcs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.bmcs.clear()

    def _cleanup_stale(self) -> None:
        """Remove what this or an interrupted earlier run left (not the cluster's part)."""
        ns_file = f"/run/netns/{BMC_NETNS}"
        if os.path.exists(ns_file):
            pids = pids_in_netns(ns_file)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_gone(pids, 10)
            subprocess.run(["ip", "netns", "del", BMC_NETNS], capture_output=True)
        for name in ("libvirtd", "virtlogd"):
            for pidfile in BASE.glob(f"virt-*/{name}.pid"):
                with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                    pid = int(pidfile.read_text())
                    if _cmdline(pid).startswith(name):
                        os.kill(pid, signal.SIGKILL)
        for pidfile in BASE.glob("virt-*/run/qemu/*.pid"):
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                pid = int(pidfile.read_text())
                if "qemu" in _cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
        for dev in _loops():
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        self.loop = None
        end = time.monotonic() + 10
        while _loops() and time.monotonic() < end:
            time.sleep(0.1)  # a loop still mounted in a dying namespace clears itself
        shutil.rmtree(BASE, ignore_errors=True)

    def leftovers(self) -> list[str]:
        found = []
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        found += [f"netns {w}" for w in netns.split() if w.startswith(f"{PREFIX}-")]
        if Path(f"/sys/class/net/{PREFIX}br").exists():
            found.append(f"bridge {PREFIX}br")
        for pid, cmd in _processes():
            if ("qemu-system" in cmd and VM_NAME in cmd) or (
                    cmd.startswith(("libvirtd", "virtlogd", "ipmi_sim", "/usr/sbin/libvirtd"))
                    and str(BASE) in cmd):
                found.append(f"process {pid} {cmd[:60]}")
        found += [f"loop device {d}" for d in _loops()]
        if BASE.exists():
            found.append(f"directory {BASE}")
        return found

    def _dump_logs(self) -> None:
        if self.cluster is None or not self.c.nodes:
            return
        for node in self.c.nodes:
            with contextlib.suppress(Exception):
                self.tl.say(f"--- last lines of {node.name}'s pacemaker.log")
                self.tl.say(self.c.log_tail(node.index, 25))


# -- small helpers ----------------------------------------------------------------------

def _strip_colours(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _virsh(node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    uri = f"qemu+unix:///system?socket={BASE}/virt-{node}/run/libvirt-sock"
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                          timeout=60, check=check, stdin=subprocess.DEVNULL)


def _domstate(node: str) -> str:
    if not (BASE / f"virt-{node}" / "run" / "libvirt-sock").exists():
        return "no libvirtd"
    res = _virsh(node, "domstate", VM_NAME, check=False)
    if res.returncode == 0:
        return res.stdout.strip()
    return "absent" if "ailed to get domain" in res.stderr else "no libvirtd"


def _wait_udp_listener(proc: subprocess.Popen[bytes], addr: str, port: int) -> None:
    """Wait until ``proc`` (in another netns) has a UDP socket on addr:port."""
    packed = int.from_bytes(bytes(int(x) for x in addr.split(".")), "little")
    want = f"{packed:08X}:{port:04X}"  # /proc/net/udp's local_address column
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise DemoError(f"ipmi_sim for {addr}:{port} exited rc={proc.returncode}")
        with contextlib.suppress(OSError):
            if want in Path(f"/proc/{proc.pid}/net/udp").read_text():
                return
        time.sleep(0.05)
    raise DemoError(f"ipmi_sim did not listen on {addr}:{port}")


def _node_pids(node: Any) -> list[int]:
    if node.holder is None:
        return []
    return [p for p in pids_in_netns(f"/run/netns/{node.netns}") if p != node.holder.pid]


def _node_alive(node: Any) -> bool:
    return node.holder is not None and alive(node.holder.pid)


def _ppid(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def _processes() -> Iterator[tuple[int, str]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            yield int(entry), _cmdline(int(entry))


def _mountpoints(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as handle:
            return [line.split()[4] for line in handle]
    except OSError:
        return []


def _loops() -> list[str]:
    image = BASE / "shared-disk.img"
    out = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE", "--list"],
                         capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if len(line.split()) >= 2 and line.split(None, 1)[1].startswith(str(image))]


def main(argv: list[str] | None = None) -> int:
    if os.geteuid() != 0:
        print("the demo needs root (namespaces, loop devices, libvirtd)", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--without", action="append", default=[], metavar="PART",
                        choices=("ip", "fs", "vm", "fencing"),
                        help="leave a part out: ip, fs, vm (the guest and its migration) "
                             "or fencing (and the node failure); may be repeated")
    parser.add_argument("--pause", action="store_true",
                        help="wait for Enter before tearing down, to look around: "
                             f"nsenter -t $(cat {BASE}/n1/holder.pid) -m -u -n crm_mon")
    args = parser.parse_args(argv)

    def pause() -> None:
        print(f"\nThe cluster is up. Look around, e.g.\n  nsenter -t $(cat {BASE}/n1/holder.pid)"
              " -m -u -n crm_mon -1\nPress Enter to tear everything down.", flush=True)
        sys.stdin.readline()

    signal.signal(signal.SIGTERM, on_term)
    skip = available_parts()
    for part in args.without:
        skip.setdefault(part, "left out with --without")
    result = Demo(skip=skip, pause=pause if args.pause else None).run()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
