"""VirtualDomain against real libvirtd + QEMU (TCG), in private namespaces.

Two libvirtd instances (h1, h2) with distinct host UUIDs run for the whole
module, joined by a veth pair for live migration.  Guests: ``noos`` (no OS,
ignores ACPI: exercises escalation to destroy; boots instantly) and ``acpi``
(Debian kernel + busybox initrd that powers off on the ACPI button; booted
once, it costs ~15 s under TCG).  The agents always get a ``CIB_file`` so
crm_resource never reaches a cluster that may run on this host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import base_env, run_ocf
from lib import virtlab

UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"
IP1, IP2 = "10.213.77.1", "10.213.77.2"
REMOTE = "qemu+unix:///system?socket=/tmp/pyha-virt-%n/run/libvirt-sock"


@pytest.fixture(scope="module")
def hosts():
    h1, h2 = virtlab.claim("h", 2)  # names no parallel run holds: h1, h2 or further
    try:
        h1.up()
        h2.up()
        virtlab.veth(h1, h2, IP1, IP2)
        yield h1, h2
    finally:
        h1.release()
        h2.release()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("vd")


CIB_RESOURCE = """<primitive id="vm" class="ocf" provider="pyha" type="VirtualDomain"/>"""


def make_cib(path: Path) -> None:
    subprocess.run(["cibadmin", "--empty"], stdout=path.open("w"), check=True)
    subprocess.run(["cibadmin", "--create", "-o", "resources", "-X", CIB_RESOURCE],
                   env={**os.environ, "CIB_file": str(path)}, check=True)


class Node:
    """One host's view: its libvirt URI, its own HA_RSCTMP, a CIB file."""

    def __init__(self, inst: virtlab.Instance, work: Path) -> None:
        self.inst = inst
        self.rsc = work / f"rsc-{inst.name}"
        self.rsc.mkdir(exist_ok=True)
        self.cib = work / f"cib-{inst.name}.xml"
        if not self.cib.exists():
            make_cib(self.cib)

    def env(self, timeout_ms: int = 30000, **extra: str) -> dict[str, str]:
        env = base_env(self.rsc)
        env["CIB_file"] = str(self.cib)
        env["OCF_RESKEY_CRM_meta_timeout"] = str(timeout_ms)
        env["OCF_RESKEY_hypervisor"] = self.inst.uri
        env.update(extra)
        return env

    def run(self, action: str, config: Path, timeout_ms: int = 30000, agent: str = "VirtualDomain",
            **params: str):
        env = self.env(timeout_ms)
        params = {"config": str(config), "autoset_utilization_cpu": "false",
                  "autoset_utilization_host_memory": "false",
                  "autoset_utilization_hv_memory": "false", **params}
        return run_ocf(agent, action, params, env=env, instance="vm",
                       timeout=timeout_ms / 1000 + 30)


def guest(work: Path, name: str, kind: str, extra_devices: str = "") -> tuple[Path, Path]:
    console = work / f"{name}.console"
    console.unlink(missing_ok=True)
    xml = virtlab.domain_xml(f"pyha-{name}", kind, console)
    if extra_devices:
        xml = xml.replace("</devices>", extra_devices + "\n  </devices>")
    config = work / f"{name}.xml"
    config.write_text(xml)
    return config, console


def domstate(inst: virtlab.Instance, name: str) -> str:
    res = inst.virsh("domstate", name, check=False)
    return res.stdout.strip() if res.returncode == 0 else "absent"


# -- without VMs ------------------------------------------------------------------

def upstream_params(agent: str) -> dict[str, str | None]:
    import xml.etree.ElementTree as ET

    out = subprocess.run([agent, "meta-data"], capture_output=True, text=True, check=True,
                         env={**base_env(), "OCF_ROOT": "/usr/lib/ocf"}).stdout
    root = ET.fromstring(out)
    return {p.get("name"): p.find("content").get("default")
            for p in root.find("parameters")}


def test_parameters_match_upstream():
    ours = upstream_params(str(Path(__file__).parent.parent / "agents/VirtualDomain"))
    theirs = upstream_params(UPSTREAM)
    assert set(ours) == set(theirs)
    for name, default in theirs.items():
        assert (ours[name] or "") == (default or ""), name


def test_bad_input(hosts, work):
    h1 = Node(hosts[0], work)
    missing = work / "missing.xml"
    res = h1.run("start", missing)
    assert res.rc == 5 and "cannot read config" in res.reason
    assert h1.run("stop", missing).rc == 0
    empty = work / "empty.xml"
    empty.write_text("")
    res = h1.run("start", empty)
    assert res.rc == 6 and "empty" in res.reason
    assert h1.run("stop", empty).rc == 0
    broken = work / "broken.xml"
    broken.write_text("<domain><name>pyha-x</name>")
    res = h1.run("validate-all", broken)
    assert res.rc == 6 and "not valid XML" in res.reason
    config, _ = guest(work, "bad", "noos")
    res = h1.run("start", config, migration_transport="carrier-pigeon")
    assert res.rc == 6 and "migration_transport" in res.reason
    res = h1.run("start", config, migration_transport="tcp/evil")
    assert res.rc == 6 and "another host" in res.reason
    res = h1.run("start", config, force_stop="true", snapshot=str(work))
    assert res.rc == 6
    res = h1.run("validate-all", config, migrate_options="--dname=other")
    assert res.rc == 6 and "--dname" in res.reason
    res = h1.run("start", config, migration_speed="fast")
    assert res.rc == 6 and "migration_speed" in res.reason
    res = h1.run("validate-all", config, sync_config_on_stop="true",
                 PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    assert res.rc == 5 and "csync2" in res.reason  # csync2 is not installed here
    res = h1.run("start", config, stateless="true")
    assert res.rc == 6 and "backingfile" in res.reason
    noemu = work / "noemu.xml"
    noemu.write_text(config.read_text().replace("/usr/bin/qemu-system-x86_64",
                                                "/usr/bin/qemu-system-none"))
    res = h1.run("validate-all", noemu)
    assert res.rc == 5 and "emulator" in res.reason
    # A hypervisor URI that leads nowhere: a clear failure, and stop still succeeds
    # because no QEMU runs that domain on this host.
    env = h1.env(OCF_RESKEY_hypervisor="qemu+unix:///system?socket=/tmp/pyha-virt-none/sock")
    res = run_ocf("VirtualDomain", "start", {"config": str(config)}, env=env, instance="bad")
    assert res.rc == 1 and "cannot connect to libvirt" in res.reason
    assert run_ocf("VirtualDomain", "stop", {"config": str(config)}, env=env,
                   instance="bad").rc == 0
    # Drivers whose domains cannot be found while libvirtd is down, and aliases,
    # are refused before they can reach a probe (see docs/virtualdomain.md).
    for uri in ("nosuchdriver:///x", "test:///default", "vbox:///session", "myalias"):
        res = run_ocf("VirtualDomain", "validate-all", {"config": str(config)},
                      instance="bad", env=h1.env(OCF_RESKEY_hypervisor=uri))
        assert res.rc == 6 and ("cannot be checked" in res.reason
                                or "alias" in res.reason), (uri, res.err)
    for uri in ("qemu+ssh://node2/system", "qemu:///system", "qemu+tcp://localhost/system"):
        res = run_ocf("VirtualDomain", "validate-all", {"config": str(config)},
                      instance="bad", env=h1.env(OCF_RESKEY_hypervisor=uri))
        assert res.rc == 0, (uri, res.err)
    res = run_ocf("VirtualDomain", "validate-all", {"config": str(config)}, instance="bad",
                  env=h1.env(OCF_RESKEY_hypervisor="xen:///system"))
    assert res.rc == 6 and "'qemu' domain" in res.reason
    res = h1.run("validate-all", config, hypervisor="qemu:///system; reboot")
    assert res.rc == 6 and "hypervisor" in res.reason
    assert domstate(hosts[0], "pyha-bad") == "absent"
    for res in (h1.run("start", missing), h1.run("start", empty)):
        assert "Traceback" not in res.err


# -- lifecycle ----------------------------------------------------------------------

def test_lifecycle_and_unreadable_config(hosts, work):
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "life", "noos")
    assert h1.run("monitor", config).rc == 7  # probe
    assert h1.run("start", config).rc == 0
    assert domstate(hosts[0], "pyha-life") == "running"
    assert h1.run("monitor", config, OCF_RESKEY_CRM_meta_interval="10000").rc == 0
    assert h1.run("start", config).rc == 0  # already running: no second domain
    ident = (h1.rsc / "VirtualDomain-vm.identity").read_text().split()
    assert ident[0] == "pyha-life" and len(ident[1]) == 36
    # Shared storage gone: the config cannot be read.
    saved = config.read_text()
    config.unlink()
    assert h1.run("monitor", config).rc == 0  # probe still sees it: no double start
    upstream = run_ocf(UPSTREAM, "monitor", {"config": str(config)}, instance="vm",
                       env=h1.env(OCF_ROOT="/usr/lib/ocf", HA_RSCTMP=str(work / "up-rsc")))
    assert upstream.rc == 7  # the upstream double-start risk this agent fixes
    # Stop without the config: noos ignores ACPI, so stop escalates to destroy
    # before the (short) deadline and returns 0 only once the domain is gone.
    started = time.monotonic()
    res = h1.run("stop", config, timeout_ms=9000)
    took = time.monotonic() - started
    assert res.rc == 0, res.err
    assert took < 9.0
    assert "destroying" in res.err
    assert domstate(hosts[0], "pyha-life") == "absent"
    assert not (h1.rsc / "VirtualDomain-vm.identity").exists()
    config.write_text(saved)
    assert h1.run("stop", config).rc == 0
    assert h1.run("monitor", config).rc == 7


def test_force_stop(hosts, work):
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "force", "noos")
    assert h1.run("start", config).rc == 0
    started = time.monotonic()
    res = h1.run("stop", config, force_stop="true")
    assert res.rc == 0 and time.monotonic() - started < 6
    assert domstate(hosts[0], "pyha-force") == "absent"
    # A paused guest cannot see ACPI: stop destroys it at once instead of waiting.
    assert h1.run("start", config).rc == 0
    hosts[0].virsh("suspend", "pyha-force")
    assert h1.run("monitor", config).rc == 0  # paused still counts as running
    started = time.monotonic()
    res = h1.run("stop", config, timeout_ms=60000)
    assert res.rc == 0 and time.monotonic() - started < 6
    assert domstate(hosts[0], "pyha-force") == "absent"


def test_acpi_guest_graceful_stop_with_shutdown_mode(hosts, work):
    h1 = Node(hosts[0], work)
    config, console = guest(work, "acpi", "acpi")
    assert h1.run("start", config).rc == 0
    virtlab.wait_console(console, timeout=90)
    started = time.monotonic()
    res = h1.run("stop", config, shutdown_mode="acpi")
    assert res.rc == 0, res.err
    assert time.monotonic() - started < 10
    assert "destroying" not in res.err
    assert "Power down" in console.read_text(errors="replace")  # the guest powered off
    assert domstate(hosts[0], "pyha-acpi") == "absent"


def qemu_pid(inst: virtlab.Instance, name: str) -> int | None:
    """The guest's QEMU, from libvirt's pid file (read from outside the agent)."""
    try:
        pid = int((inst.dir / "run" / "qemu" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if virtlab.alive(pid) else None


def restart_libvirtd(inst: virtlab.Instance) -> None:
    inst.in_ns("libvirtd", "-d", "-p", str(inst.dir / "libvirtd.pid"))
    for _ in range(100):
        if inst.virsh("version", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("libvirtd did not come back")


def kill_libvirtd(inst: virtlab.Instance) -> None:
    pid = inst.pid("libvirtd")
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not virtlab.alive(pid):
            return
        time.sleep(0.1)
    raise AssertionError("libvirtd did not stop")


def test_hung_and_dead_libvirtd(hosts, work):
    h1 = Node(hosts[0], work)
    inst = hosts[0]
    config, _ = guest(work, "hang", "noos")
    assert h1.run("start", config).rc == 0
    qemu = qemu_pid(inst, "pyha-hang")
    assert qemu is not None
    pid = inst.pid("libvirtd")
    os.kill(pid, signal.SIGSTOP)
    try:
        # Hung libvirtd: answered from the QEMU process within the deadline.
        started = time.monotonic()
        res = h1.run("monitor", config, timeout_ms=5000, OCF_RESKEY_CRM_meta_interval="10000")
        assert time.monotonic() - started < 5.0
        assert res.rc == 0 and "did not answer" in res.err and f"QEMU process {qemu}" in res.err
    finally:
        os.kill(pid, signal.SIGCONT)
    # libvirtd gone: the guest keeps running; probe and monitor say so (never 7).
    kill_libvirtd(inst)
    assert qemu_pid(inst, "pyha-hang") == qemu
    for interval in ("0", "10000"):
        res = h1.run("monitor", config, OCF_RESKEY_CRM_meta_interval=interval)
        assert res.rc == 0 and f"QEMU process {qemu} runs domain pyha-hang" in res.err
    restart_libvirtd(inst)
    assert h1.run("monitor", config).rc == 0  # libvirtd reattached to the guest
    # Dead again during stop: the QEMU is ended without libvirt, verified from outside.
    kill_libvirtd(inst)
    res = h1.run("stop", config, timeout_ms=10000)
    assert res.rc == 0, res.err
    assert "ending it without libvirt" in res.err
    assert qemu_pid(inst, "pyha-hang") is None and not virtlab.alive(qemu)
    assert h1.run("monitor", config).rc == 7  # probe, libvirtd still down: no QEMU
    restart_libvirtd(inst)
    assert domstate(inst, "pyha-hang") == "absent"
    assert h1.run("monitor", config).rc == 7


def test_without_libvirt_only_the_real_executable_counts(hosts, work):
    """A process that calls itself QEMU (argv[0]) is not the guest: it is neither
    "running" evidence nor killed by stop."""
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "fake", "noos")
    fake = subprocess.Popen(["bash", "-c", "exec -a /usr/bin/qemu-system-x86_64 /usr/bin/python3"
                             " -c 'import time; time.sleep(300)' -name guest=pyha-fake,debug=on"],
                            stdin=subprocess.DEVNULL)
    env = h1.env(OCF_RESKEY_hypervisor="qemu+unix:///system?socket=/tmp/pyha-virt-none/s")
    try:
        for _ in range(100):  # until bash has exec'd the impostor
            if Path(f"/proc/{fake.pid}/cmdline").read_bytes().startswith(b"/usr/bin/qemu"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the impostor process did not start")
        res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env=env,
                      instance="fake")
        assert res.rc == 7 and "no QEMU process runs domain pyha-fake" in res.err
        assert run_ocf("VirtualDomain", "stop", {"config": str(config)}, env=env,
                       instance="fake").rc == 0
        assert fake.poll() is None  # not ours to kill
    finally:
        fake.kill()
        fake.wait()


def test_remote_uri_unreachable_is_never_stopped(hosts, work):
    """A local process check proves nothing about a remote hypervisor."""
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "remote", "noos")
    env = h1.env(timeout_ms=6000, OCF_RESKEY_hypervisor="qemu+tcp://192.0.2.1:1/system")
    for action, interval in (("monitor", "0"), ("monitor", "10000"), ("stop", "0")):
        started = time.monotonic()
        res = run_ocf("VirtualDomain", action, {"config": str(config),
                                                "CRM_meta_interval": interval},
                      env=env, instance="remote", timeout=30)
        assert res.rc == 1 and "cannot tell" in res.reason, (action, res.err)
        assert time.monotonic() - started < 6.0


def test_xen_uri_without_xen_is_proven_absent(hosts, work):
    """libvirt's Xen driver unreachable (this host has no Xen): absence is proven by
    the kernel (no /sys/hypervisor/type), so a probe says 7 and stop 0."""
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "xdom", "noos")
    config.write_text(config.read_text().replace("<domain type='qemu'>", "<domain type='xen'>"))
    uri = f"xen+unix:///system?socket={hosts[0].socket}"
    env = h1.env(OCF_RESKEY_hypervisor=uri)
    res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env=env, instance="xd")
    assert res.rc == 7 and "no Xen hypervisor" in res.err, res.err
    assert run_ocf("VirtualDomain", "stop", {"config": str(config)}, env=env,
                   instance="xd").rc == 0
    assert run_ocf("VirtualDomain", "validate-all", {"config": str(config)}, env=env,
                   instance="xd").rc == 0


def test_xen_uri_on_a_xen_host_asks_xl(hosts, work, tmp_path):
    """A Xen control domain (kernel files and xl simulated: Xen cannot run here) whose
    libvirtd is down: the domain is found in xl's list, and stop destroys it there."""
    from test_xen import XL_PATH, xen_dom0_sysroot

    h1 = Node(hosts[0], work)
    config, _ = guest(work, "xhost", "noos")
    config.write_text(config.read_text().replace("<domain type='qemu'>", "<domain type='xen'>"))
    sim = tmp_path / "xlsim"
    (sim / "host1").mkdir(parents=True)
    (tmp_path / "dom.cfg").write_text('name = "pyha-xhost"\nmemory = 128\n')
    xenv = {"PATH": XL_PATH, "XLSIM_ROOT": str(sim), "XLSIM_HOST": "host1",
            "XLSIM_SHUTDOWN_DELAY": "0.2"}
    subprocess.run(["xl", "create", str(tmp_path / "dom.cfg")], env=xenv, check=True)
    env = h1.env(OCF_RESKEY_hypervisor="xen+unix:///system?socket=/tmp/pyha-virt-none/sock",
                 PYHA_KERNEL_ROOT=str(xen_dom0_sysroot(tmp_path)), **xenv)
    dom = sim / "host1" / "dom-pyha-xhost.json"
    res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env=env, instance="xh")
    assert res.rc == 0 and "xl list shows domain pyha-xhost" in res.err, res.err
    (sim / "host1" / "inject-host").write_text("listfail")
    res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env={
        **env, "OCF_RESKEY_CRM_meta_timeout": "4000"}, instance="xh")
    assert res.rc == 1 and "cannot tell" in res.reason
    res = run_ocf("VirtualDomain", "stop", {"config": str(config)}, env={
        **env, "OCF_RESKEY_CRM_meta_timeout": "4000"}, instance="xh")
    assert res.rc == 1 and dom.exists()
    (sim / "host1" / "inject-host").unlink()
    res = run_ocf("VirtualDomain", "stop", {"config": str(config)}, env=env, instance="xh")
    assert res.rc == 0, res.err
    assert not dom.exists()
    assert "xl destroy pyha-xhost" in (sim / "host1" / "calls.log").read_text()
    res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env=env, instance="xh")
    assert res.rc == 7


LXC_STANDIN = r"""
#include <unistd.h>
int main(void) { for (;;) pause(); }
"""


def test_lxc_controller_without_libvirt(hosts, work, tmp_path):
    """libvirtd cannot start containers here (no cgroup backend in this VM), so the
    libvirt_lxc controller is stood in for by a process whose executable is named
    libvirt_lxc, started with the controller's arguments: the one thing the agent
    reads.  Running: probe 0, and stop fails rather than claim it stopped."""
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "ct", "noos")
    config.write_text("<domain type='lxc'><name>pyha-ct</name><memory unit='MiB'>64</memory>"
                      "<os><type>exe</type><init>/bin/sh</init></os></domain>\n")
    src = tmp_path / "stand.c"
    src.write_text(LXC_STANDIN)
    exe = tmp_path / "libvirt_lxc"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    env = h1.env(OCF_RESKEY_hypervisor="lxc+unix:///?socket=/tmp/pyha-virt-none/sock")
    ctl = subprocess.Popen([str(exe), "--name", "pyha-ct", "--console", "3", "--handshake",
                            "4", "--security=none"], stdin=subprocess.DEVNULL)
    try:
        res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env=env,
                      instance="ct")
        assert res.rc == 0 and f"libvirt_lxc controller {ctl.pid}" in res.err, res.err
        res = run_ocf("VirtualDomain", "stop", {"config": str(config)}, env=env,
                      instance="ct")
        assert res.rc == 1 and "cannot be stopped without libvirt" in res.reason
        assert ctl.poll() is None
    finally:
        ctl.kill()
        ctl.wait()
    res = run_ocf("VirtualDomain", "monitor", {"config": str(config)}, env=env, instance="ct")
    assert res.rc == 7 and "no libvirt_lxc controller" in res.err
    assert run_ocf("VirtualDomain", "stop", {"config": str(config)}, env=env,
                   instance="ct").rc == 0


def test_stop_uses_the_uri_of_the_start_and_ignores_unneeded_params(hosts, work):
    """Parameters changed or broken after start: stop still stops the domain it started."""
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "chg", "noos")
    params = {"config": str(config), "migration_speed": "fast", "migrate_options": "--dname x",
              "migration_transport": "pi/geon", "force_stop": "maybe"}
    # The hypervisor parameter now names another (valid) libvirtd, where the
    # domain does not exist: stop must still stop it where it was started.
    for uri in (hosts[1].uri, "qemu:///system; reboot"):
        assert h1.run("start", config).rc == 0
        assert domstate(hosts[0], "pyha-chg") == "running"
        env = h1.env(timeout_ms=10000, OCF_RESKEY_hypervisor=uri)
        res = run_ocf("VirtualDomain", "monitor", params, env=env, instance="vm")
        assert res.rc == 6
        res = run_ocf("VirtualDomain", "stop", params, env=env, instance="vm", timeout=60)
        assert res.rc == 0, res.err
        assert domstate(hosts[0], "pyha-chg") == "absent"


def test_snapshot_save_restore_and_saved_config(hosts, work):
    h1 = Node(hosts[0], work)
    snaps = work / "snaps"
    snaps.mkdir()
    secret_vnc = "<graphics type='vnc' port='-1' listen='127.0.0.1' passwd='s3cretVN'/>"
    config, _ = guest(work, "snap", "noos", secret_vnc)
    config.chmod(0o644)
    assert h1.run("start", config).rc == 0
    res = h1.run("stop", config, snapshot=str(snaps), save_config_on_stop="true")
    assert res.rc == 0, res.err
    state = snaps / "pyha-snap.state"
    assert state.exists() and (state.stat().st_mode & 0o077) == 0
    assert domstate(hosts[0], "pyha-snap") == "absent"
    assert h1.run("start", config, snapshot=str(snaps)).rc == 0
    assert not state.exists()
    assert domstate(hosts[0], "pyha-snap") == "running"
    res = h1.run("stop", config, save_config_on_stop="true", force_stop="true")
    assert res.rc == 0
    text = config.read_text()
    assert "<name>pyha-snap</name>" in text and "<uuid>" in text  # the live definition
    # Regression: the VNC password survives the write-back (VIR_DOMAIN_XML_SECURE),
    # checked with libvirt's own parser.
    import xml.etree.ElementTree as ET

    graphics = ET.fromstring(text).find("devices/graphics")
    assert graphics is not None and graphics.get("passwd") == "s3cretVN"
    assert (config.stat().st_mode & 0o777) == 0o600
    assert not list(config.parent.glob(f".{config.name}.*"))  # no temporary file left
    # The next start runs the console with that password.
    assert h1.run("start", config).rc == 0
    live = hosts[0].virsh("dumpxml", "--security-info", "pyha-snap").stdout
    assert "passwd='s3cretVN'" in live
    assert h1.run("stop", config, force_stop="true").rc == 0


def test_backingfile_overlay(hosts, work):
    h1 = Node(hosts[0], work)
    base = work / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    overlay = work / "cow.qcow2"
    disk = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{overlay}'/><target dev='vda' bus='virtio'/></disk>")
    config, _ = guest(work, "cow", "noos", disk)
    assert h1.run("start", config, backingfile=str(base), stateless="true").rc == 0
    try:
        info = subprocess.run(["qemu-img", "info", "-U", str(overlay)], capture_output=True,
                              text=True, check=True).stdout
        assert f"backing file: {base}" in info and "backing file format: qcow2" in info
        assert domstate(hosts[0], "pyha-cow") == "running"
        assert h1.run("monitor", config).rc == 0
    finally:
        assert h1.run("stop", config, force_stop="true").rc == 0
    assert h1.run("monitor", config).rc == 7
    hosts[0].virsh("undefine", "pyha-cow", check=False)


def test_utilization_written_only_when_changed(hosts, work):
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "util", "noos")
    assert h1.run("start", config).rc == 0
    try:
        params = {"autoset_utilization_cpu": "true", "autoset_utilization_hv_memory": "true",
                  "autoset_utilization_host_memory": "true"}
        env = h1.env(OCF_RESKEY_CRM_meta_interval="10000", HA_debug="1")
        res = run_ocf("VirtualDomain", "monitor", {"config": str(config), **params}, env=env,
                      instance="vm")
        assert res.rc == 0 and "crm_resource" in res.err
        cib = h1.cib.read_text()
        for attr, value in (("cpu", "1"), ("hv_memory", "96"), ("host_memory", "96")):
            assert f'name="{attr}" value="{value}"' in cib
        res = run_ocf("VirtualDomain", "monitor", {"config": str(config), **params}, env=env,
                      instance="vm")
        assert res.rc == 0 and "crm_resource" not in res.err  # unchanged: no CIB traffic
    finally:
        assert h1.run("stop", config, force_stop="true").rc == 0


def test_monitor_scripts(hosts, work):
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "scr", "noos")
    bad = work / "check-bad.sh"
    bad.write_text("#!/bin/sh\necho service down\nexit 3\n")
    bad.chmod(0o755)
    assert h1.run("start", config).rc == 0
    try:
        res = h1.run("monitor", config, monitor_scripts=f"/bin/true {bad}")
        assert res.rc == 1 and "service down" in res.reason
        assert h1.run("monitor", config, monitor_scripts="/bin/true").rc == 0
    finally:
        assert h1.run("stop", config, force_stop="true").rc == 0


# -- live migration ---------------------------------------------------------------

def test_live_migration_both_ways(hosts, work):
    h1, h2 = Node(hosts[0], work), Node(hosts[1], work)
    n1, n2 = hosts[0].name, hosts[1].name
    config, _ = guest(work, "mig", "noos")
    assert h1.run("start", config).rc == 0
    try:
        common = {"remoteuri": REMOTE, "migration_speed": "200", "migration_downtime": "300"}
        res = h1.run("migrate_to", config, migrateuri=f"tcp://{IP2}",
                     OCF_RESKEY_CRM_meta_migrate_target=n2,
                     OCF_RESKEY_CRM_meta_migrate_source=n1, **common)
        assert res.rc == 0, res.err
        res = h2.run("migrate_from", config, OCF_RESKEY_CRM_meta_migrate_target=n2,
                     OCF_RESKEY_CRM_meta_migrate_source=n1)
        assert res.rc == 0, res.err
        assert h1.run("stop", config).rc == 0  # Pacemaker stops the source afterwards
        assert h2.run("monitor", config).rc == 0
        assert h1.run("monitor", config).rc == 7
        assert domstate(hosts[1], "pyha-mig") == "running"
        # And back, peer to peer (the source libvirtd dials the destination).
        res = h2.run("migrate_to", config, migrate_options=f"--p2p --migrateuri=tcp://{IP1}",
                     OCF_RESKEY_CRM_meta_migrate_target=n1, **common)
        assert res.rc == 0, res.err
        assert h1.run("migrate_from", config, OCF_RESKEY_CRM_meta_migrate_source=n2).rc == 0
        assert h1.run("monitor", config).rc == 0
        assert h2.run("monitor", config).rc == 7
        # Generated URIs (upstream's rules): transport and network suffix.
        res = h1.run("migrate_to", config, migration_transport="tcp", migrateport="49200",
                     migration_network_suffix="-mig", OCF_RESKEY_CRM_meta_migrate_target="h9")
        assert res.rc == 1 and "h9-mig" in res.reason
        assert "(qemu+tcp://h9-mig/system?socket=" in res.err
        assert "data tcp:h9-mig:49200)" in res.err
        assert h1.run("monitor", config).rc == 0  # still running here
        # Not running locally: migrate_to refuses with a reason.
        res = h2.run("migrate_to", config, OCF_RESKEY_CRM_meta_migrate_target=n1, **common)
        assert res.rc == 1 and "not active locally" in res.reason
    finally:
        for node in (h1, h2):
            assert node.run("stop", config, force_stop="true").rc == 0


def test_pyha_tester_passes(hosts, work):
    h1 = Node(hosts[0], work)
    config, _ = guest(work, "tester", "noos")
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([str(root / ".venv/bin/pyha-tester"), "--agent",
                          str(root / "agents/VirtualDomain"), "--strict",
                          "-o", f"config={config}", "-o", f"hypervisor={hosts[0].uri}",
                          "-o", "force_stop=true", "--rsctmp", str(h1.rsc)],
                         env=h1.env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert domstate(hosts[0], "pyha-tester") == "absent"



def test_as_pacemaker_primitive(hosts, work, cluster1):
    """Probe, start, recurring monitor (which writes utilization into the real
    CIB through crm_resource) and stop, all driven by Pacemaker's execd."""
    c = cluster1
    config, _ = guest(work, "pcmk", "noos")
    params = {"config": str(config), "hypervisor": hosts[0].uri, "force_stop": "true"}
    nvpairs = "".join(f'<nvpair id="vd-{k}" name="{k}" value="{v}"/>'
                      for k, v in params.items()).replace("&", "&amp;")
    c.cib_create(
        '<primitive id="vd" class="ocf" provider="pyha" type="VirtualDomain">'
        f'<instance_attributes id="vd-ia">{nvpairs}</instance_attributes>'
        '<meta_attributes id="vd-meta"><nvpair id="vd-am" name="allow-migrate" value="true"/>'
        '</meta_attributes><operations>'
        '<op id="vd-mon" name="monitor" interval="2s" timeout="20s"/>'
        '<op id="vd-start" name="start" interval="0" timeout="60s"/>'
        '<op id="vd-stop" name="stop" interval="0" timeout="30s"/></operations></primitive>')
    try:
        assert c.wait_resource_started("vd", timeout=60) == "n1"
        assert domstate(hosts[0], "pyha-pcmk") == "running"

        def utilization_written() -> bool:
            return 'name="hv_memory" value="96"' in c.exec(1, ["cibadmin", "-Q", "-o",
                                                                "resources"]).stdout
        c.wait_for(utilization_written, 15, what="utilization from the recurring monitor")
        assert not c.failures()
    finally:
        c.exec(1, ["crm_resource", "-r", "vd", "--meta", "-p", "target-role", "-v",
                   "Stopped"], check=True)
        c.wait_resource_stopped("vd", timeout=40)
        c.cib_delete('<primitive id="vd"/>')
    assert domstate(hosts[0], "pyha-pcmk") == "absent"
