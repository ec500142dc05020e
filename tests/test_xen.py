"""Xen against the xl/xm simulator (tests/sim/xlsim/xl): Xen cannot run on this machine.

The simulator keeps two hosts' domains in directories and follows xl's
documented output formats and failures (see its docstring).  Each action's
toolstack calls are read back from the simulator's ``calls.log``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import base_env, run_ocf
from test_virtualdomain import upstream_params

TESTS = Path(__file__).resolve().parent
XL_PATH = f"{TESTS / 'sim' / 'xlsim'}:/usr/sbin:/usr/bin:/sbin:/bin"
XM_PATH = f"{TESTS / 'sim' / 'xmsim'}:/usr/sbin:/usr/bin:/sbin:/bin"


def xen_dom0_sysroot(root: Path) -> Path:
    """The kernel files of a Xen control domain (ocf_lib.sysroot): this host has no Xen."""
    kernel = root / "kernel"
    (kernel / "sys/hypervisor").mkdir(parents=True, exist_ok=True)
    (kernel / "proc/xen").mkdir(parents=True, exist_ok=True)
    (kernel / "sys/hypervisor/type").write_text("xen\n")
    (kernel / "proc/xen/capabilities").write_text("control_d\n")
    return kernel


class Host:
    def __init__(self, root: Path, name: str, path: str = XL_PATH) -> None:
        self.root = root
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rsc = root / f"rsc-{name}"
        self.rsc.mkdir(exist_ok=True)
        self.path = path
        self.kernel: Path | None = xen_dom0_sysroot(root)

    def env(self, timeout_ms: int = 20000, **extra: str) -> dict[str, str]:
        env = base_env(self.rsc)
        if self.kernel is not None:
            env["PYHA_KERNEL_ROOT"] = str(self.kernel)
        env.update(PATH=self.path, XLSIM_ROOT=str(self.root), XLSIM_HOST=self.name,
                   XLSIM_SHUTDOWN_DELAY="0.3", OCF_RESKEY_CRM_meta_timeout=str(timeout_ms),
                   CIB_file=str(self.root / "cib.xml"))
        env.update(extra)
        return env

    def run(self, action: str, cfg: Path, timeout_ms: int = 20000, instance: str = "xvm",
            **params: str):
        return run_ocf("Xen", action, {"xmfile": str(cfg), **params},
                       env=self.env(timeout_ms), instance=instance,
                       timeout=timeout_ms / 1000 + 20)

    def xl(self, *args: str, tool: str = "xl") -> subprocess.CompletedProcess:
        return subprocess.run([tool, *args], env=self.env(), capture_output=True, text=True)

    def has(self, dom: str) -> bool:
        return self.xl("list", dom).returncode == 0

    def calls(self) -> list[str]:
        log = self.dir / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return lines

    def inject(self, dom: str, what: str) -> None:
        (self.dir / f"inject-{dom}").write_text(what)

    def exists(self, dom: str) -> bool:
        """From the simulator's own state, not through xl (which may be broken)."""
        return (self.dir / f"dom-{dom}.json").exists()


@pytest.fixture
def sim(tmp_path):
    subprocess.run(["cibadmin", "--empty"], stdout=(tmp_path / "cib.xml").open("w"), check=True)
    return Host(tmp_path, "host1"), Host(tmp_path, "host2")


def config(tmp: Path, name: str, memory: int = 256, extra: str = "") -> Path:
    path = tmp / f"{name}.cfg"
    path.write_text(f'# a domU\nname = "{name}"\nmemory = {memory}\nvcpus = 2\n{extra}')
    return path


def test_parameters_match_upstream():
    ours = upstream_params(str(TESTS.parent / "agents/Xen"))
    theirs = upstream_params("/usr/lib/ocf/resource.d/heartbeat/Xen")
    assert set(ours) == set(theirs)
    for name, default in theirs.items():
        assert (ours[name] or "") == (default or ""), name


def test_lifecycle_and_calls_per_action(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-x1")
    assert h1.run("monitor", cfg).rc == 7
    assert h1.calls() == ["xl list pyha-x1"]  # one toolstack call per probe
    assert h1.run("start", cfg).rc == 0
    assert f'xl create {cfg} name="pyha-x1"' in h1.calls()
    res = h1.run("monitor", cfg, OCF_RESKEY_CRM_meta_interval="10000")
    assert res.rc == 0 and h1.calls() == ["xl list pyha-x1"]
    assert h1.run("start", cfg).rc == 0  # already running
    assert not any("create" in c for c in h1.calls())
    res = h1.run("stop", cfg)
    assert res.rc == 0 and "destroying" not in res.err
    assert "xl shutdown pyha-x1" in h1.calls()
    assert not h1.has("pyha-x1")
    assert h1.run("stop", cfg).rc == 0
    assert h1.run("monitor", cfg).rc == 7


def test_ignored_shutdown_escalates_before_deadline(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-deaf", extra="sim_ignore_shutdown = 1\n")
    assert h1.run("start", cfg).rc == 0
    started = time.monotonic()
    res = h1.run("stop", cfg, timeout_ms=6000)
    assert res.rc == 0 and "destroying" in res.err
    assert time.monotonic() - started < 6
    assert not h1.has("pyha-deaf")
    h1.calls()
    assert h1.run("start", cfg).rc == 0
    assert h1.run("stop", cfg, shutdown_timeout="0").rc == 0  # straight to destroy
    calls = h1.calls()
    assert "xl destroy pyha-deaf" in calls and not any(c.split()[1] == "shutdown" for c in calls)


def test_shutdown_acpi_for_hvm_without_pv_drivers(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-hvm", extra="sim_pv = 0\n")
    assert h1.run("start", cfg).rc == 0
    res = h1.run("stop", cfg, shutdown_acpi="true")
    assert res.rc == 0 and "destroying" not in res.err
    assert "xl trigger pyha-hvm power" in h1.calls()


def test_crash_and_reboot_disappearance(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-rb")
    assert h1.run("start", cfg).rc == 0
    # Rebooting: the domain is missing from the list for 1.5 s; a recurring
    # monitor and a probe look again instead of reporting "not running".
    h1.inject("pyha-rb", "reboot 1.5")
    started = time.monotonic()
    res = h1.run("monitor", cfg, OCF_RESKEY_CRM_meta_interval="10000")
    assert res.rc == 0 and time.monotonic() - started >= 1.0
    h1.inject("pyha-rb", "reboot 1.5")
    assert h1.run("monitor", cfg).rc == 0
    h1.inject("pyha-rb", "crash")
    res = h1.run("monitor", cfg, OCF_RESKEY_CRM_meta_interval="10000")
    assert res.rc == 1 and "crashed" in res.reason
    assert h1.run("stop", cfg).rc == 0
    assert not h1.has("pyha-rb")


def test_unreadable_config_still_known(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-gone")
    assert h1.run("start", cfg).rc == 0
    cfg.rename(tmp_path / "elsewhere.cfg")
    assert h1.run("monitor", cfg).rc == 0  # name recorded at start, not the resource id
    upstream = run_ocf("/usr/lib/ocf/resource.d/heartbeat/Xen", "monitor",
                       {"xmfile": str(cfg)}, instance="xvm",
                       env=h1.env(OCF_ROOT="/usr/lib/ocf"))
    assert upstream.rc == 7  # upstream guesses the resource id and says "stopped"
    assert h1.run("stop", cfg).rc == 0
    assert not h1.has("pyha-gone")


def test_memory_management_never_rewrites_config(sim, tmp_path):
    h1, _ = sim
    first, second = config(tmp_path, "pyha-m1"), config(tmp_path, "pyha-m2", memory=1024)
    digest = hashlib.sha256(second.read_bytes()).hexdigest()
    mm = {"allow_mem_management": "true", "reserved_Dom0_memory": "512"}
    assert h1.run("start", first, instance="m1", **mm).rc == 0
    h1.calls()
    assert h1.run("start", second, instance="m2", **mm).rc == 0
    calls = h1.calls()
    # XLSIM_TOTAL_MIB 8192 - 512 reserved, shared by two domains: 3840 MiB each.
    m1 = h1.xl("domid", "pyha-m1").stdout.strip()
    assert f"xl mem-set {m1} 3840m" in calls
    assert f'xl create {second} name="pyha-m2" memory=3840' in calls
    assert hashlib.sha256(second.read_bytes()).hexdigest() == digest
    listing = h1.xl("list").stdout
    assert all(" 3840 " in line for line in listing.splitlines() if "pyha-m" in line)
    assert h1.run("stop", second, instance="m2", **mm).rc == 0
    assert f"xl mem-set {m1} 7680m" in h1.calls()
    assert h1.run("stop", first, instance="m1", **mm).rc == 0


def test_live_migration_between_hosts(sim, tmp_path):
    h1, h2 = sim
    cfg = config(tmp_path, "pyha-mig")
    cib = {"CIB_file": str(tmp_path / "cib.xml")}
    subprocess.run(["cibadmin", "--create", "-o", "nodes", "-X", '<node id="2" uname="n2"/>'],
                   env={**os.environ, **cib}, check=True)
    subprocess.run(["crm_attribute", "--type", "nodes", "--node", "n2", "--name", "xen_ip",
                    "--update", "host2"], env={**os.environ, **cib}, check=True)
    assert h1.run("start", cfg).rc == 0
    res = h1.run("migrate_to", cfg, node_ip_attribute="xen_ip",
                 OCF_RESKEY_CRM_meta_migrate_target="n2")
    assert res.rc == 0, res.err
    assert "xl migrate pyha-mig host2" in h1.calls()
    assert h2.run("migrate_from", cfg, OCF_RESKEY_CRM_meta_migrate_source="n1").rc == 0
    assert h1.run("stop", cfg).rc == 0
    assert h2.run("monitor", cfg).rc == 0 and h1.run("monitor", cfg).rc == 7
    # Back, straight to the node name; an unknown host fails with xl's reason.
    res = h2.run("migrate_to", cfg, OCF_RESKEY_CRM_meta_migrate_target="host9")
    assert res.rc == 1 and "Could not resolve hostname" in res.reason
    assert h2.has("pyha-mig")
    assert h2.run("migrate_to", cfg, OCF_RESKEY_CRM_meta_migrate_target="host1").rc == 0
    assert h1.run("migrate_from", cfg).rc == 0
    assert h1.run("monitor", cfg).rc == 0 and h2.run("monitor", cfg).rc == 7
    res = h2.run("migrate_to", cfg, OCF_RESKEY_CRM_meta_migrate_target="host1")
    assert res.rc == 1 and "not active locally" in res.reason
    assert h1.run("stop", cfg).rc == 0


def test_xm_fallback(sim, tmp_path):
    h1 = Host(tmp_path, "host1", path=XM_PATH)
    cfg = config(tmp_path, "pyha-xm")
    assert h1.run("start", cfg).rc == 0
    assert f"xm create {cfg} name=pyha-xm" in h1.calls()  # unquoted for xm
    assert h1.run("monitor", cfg).rc == 0
    assert h1.run("stop", cfg).rc == 0
    assert h1.run("monitor", cfg).rc == 7


def test_no_toolstack(sim, tmp_path):
    h1 = Host(tmp_path, "host1", path="/usr/sbin:/usr/bin:/sbin:/bin")
    cfg = config(tmp_path, "pyha-none")
    for action in ("start", "validate-all"):
        res = h1.run(action, cfg)
        assert res.rc == 5 and "neither xl nor xm" in res.reason, action
    # A Xen control domain without its tools: nothing proves the domain absent.
    res = h1.run("monitor", cfg)
    assert res.rc == 1 and "neither xl nor xm" in res.reason
    res = h1.run("stop", cfg, timeout_ms=5000)
    assert res.rc == 1 and "cannot tell" in res.reason
    # This host's own kernel: no Xen, so no domain can run.
    h1.kernel = None
    res = h1.run("monitor", cfg)
    assert res.rc == 5 and "neither xl nor xm" in res.reason
    assert h1.run("stop", cfg).rc == 0


def test_hung_toolstack_fails_within_deadline(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-hang", extra="sim_hang = 1\n")
    h1.xl("create", str(cfg))
    started = time.monotonic()
    res = h1.run("monitor", cfg, timeout_ms=3000, OCF_RESKEY_CRM_meta_interval="10000")
    assert res.rc == 1 and "did not finish" in res.reason
    assert time.monotonic() - started < 3.5


def test_bad_input(sim, tmp_path):
    h1, _ = sim
    missing = tmp_path / "nope.cfg"
    res = h1.run("start", missing)
    assert res.rc == 5 and "does not exist" in res.reason
    assert h1.run("stop", missing).rc == 0
    cfg = config(tmp_path, "pyha-bad")
    for action in ("start", "validate-all"):
        res = h1.run(action, cfg, shutdown_timeout="-1")
        assert res.rc == 6 and "shutdown_timeout" in res.reason
    assert h1.run("stop", cfg, shutdown_timeout="-1").rc == 0
    res = h1.run("migrate_to", cfg)
    assert res.rc == 6 and "target" in res.reason
    assert not h1.has("pyha-bad")


def test_utilization(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-u")
    cib = {**os.environ, "CIB_file": str(tmp_path / "cib.xml")}
    subprocess.run(["cibadmin", "--create", "-o", "resources", "-X",
                    '<primitive id="xvm" class="ocf" provider="pyha" type="Xen"/>'],
                   env=cib, check=True)
    assert h1.run("start", cfg).rc == 0
    util = {"autoset_utilization_cpu": "true", "autoset_utilization_hv_memory": "true",
            "OCF_RESKEY_CRM_meta_interval": "10000"}
    assert h1.run("monitor", cfg, **util).rc == 0
    text = (tmp_path / "cib.xml").read_text()
    assert 'name="cpu" value="2"' in text and 'name="hv_memory" value="256"' in text
    assert h1.run("stop", cfg).rc == 0


def test_pyha_tester_passes(sim, tmp_path):
    h1, _ = sim
    cfg = config(tmp_path, "pyha-tst")
    res = subprocess.run([str(TESTS.parent / ".venv/bin/pyha-tester"), "--agent",
                          str(TESTS.parent / "agents/Xen"), "--strict", "-o", f"xmfile={cfg}",
                          "--rsctmp", str(h1.rsc)],
                         env=h1.env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", ["pyha web 1", "pyha  two", "pyha-x" * 8 + " end"])
def test_domain_name_with_blanks(sim, tmp_path, name):
    """Regression: a name holding a blank was dropped from the list (monitor 7, stop 0)."""
    h1, _ = sim
    cfg = config(tmp_path, "pyha-cfgname")
    assert h1.run("start", cfg, name=name).rc == 0
    assert h1.exists(name)
    assert h1.run("monitor", cfg, name=name).rc == 0  # probe
    res = h1.run("monitor", cfg, name=name, OCF_RESKEY_CRM_meta_interval="10000")
    assert res.rc == 0, res.err
    h1.calls()
    res = h1.run("stop", cfg, name=name)
    assert res.rc == 0, res.err
    assert f"xl shutdown {name}" in h1.calls()
    assert not h1.exists(name)
    assert h1.run("monitor", cfg, name=name).rc == 7


def test_only_xl_s_own_answer_means_absent(sim, tmp_path):
    """Regression: any error text was read as "absent" (monitor 7, stop 0)."""
    h1, _ = sim
    cfg = config(tmp_path, "pyha-err")
    assert h1.run("start", cfg).rc == 0
    (h1.dir / "inject-host").write_text("listfail")  # (rc=-5): the list could not be read
    try:
        res = h1.run("monitor", cfg)
        assert res.rc == 1 and "rc=-5" in res.reason
        res = h1.run("monitor", cfg, OCF_RESKEY_CRM_meta_interval="10000")
        assert res.rc == 1
        res = h1.run("stop", cfg, timeout_ms=8000)
        assert res.rc == 1 and res.reason
        assert h1.exists("pyha-err")
        (h1.dir / "inject-host").write_text("nohyp")  # xl cannot even start
        res = h1.run("monitor", cfg)
        assert res.rc == 1 and "cannot init xl context" in res.reason
        assert h1.run("stop", cfg, timeout_ms=8000).rc == 1
        assert h1.exists("pyha-err")
    finally:
        (h1.dir / "inject-host").unlink()
    assert h1.run("stop", cfg).rc == 0
    assert not h1.exists("pyha-err")


def test_xl_without_xen_is_not_running(sim, tmp_path):
    """xl installed on a node booted without Xen: xl fails, but no domain can exist."""
    h1, _ = sim
    h1.kernel = None  # this host's real kernel files: no /sys/hypervisor/type
    cfg = config(tmp_path, "pyha-nox")
    (h1.dir / "inject-host").write_text("nohyp")
    res = h1.run("monitor", cfg)
    assert res.rc == 7 and "no Xen hypervisor" in res.err
    assert h1.run("stop", cfg).rc == 0
    assert h1.run("start", cfg).rc == 1


def test_says_absent_is_exact():
    from ocf_lib.xentool import parse_list, parse_one, says_absent

    assert says_absent("a b is an invalid domain identifier (rc=-6)\n", "a b")
    assert says_absent("warning: x\nError: Domain 'vm' does not exist.\n", "vm")
    assert not says_absent("vm is an invalid domain identifier (rc=-5)\n", "vm")
    assert not says_absent("Error: Domain 'other' does not exist.\n", "vm")
    assert not says_absent("Can't get domid of domain name 'vm', maybe this domain does not "
                           "exist.\n", "vm")
    assert not says_absent("Error: Domain 'vm' does not exist.\nlibxl: error: later\n", "vm")
    head = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
    rows = head + f"{'Domain-0':<40} {0:5} {1024:5} {2:5}     r-----  {10.0:8.1f}\n" + \
        f"{'my  vm':<40} {7:5} {256:5} {2:5}     -b----  {1.5:8.1f}\n"
    assert [(d.name, d.domid, d.mem_mib) for d in parse_list(rows)] == \
        [("Domain-0", 0, 1024), ("my  vm", 7, 256)]
    one = parse_one(rows, "my  vm")
    assert one is not None and one.domid == 7 and one.state == "blocked"
    assert parse_one(rows, "my") is None


def test_stop_ignores_parameters_it_does_not_need(sim, tmp_path):
    """Parameters broken after start: stop still finds the domain by the recorded name."""
    h1, _ = sim
    cfg = config(tmp_path, "pyha-brk")
    assert h1.run("start", cfg, name="pyha brk").rc == 0
    bad = {"name": "123", "reserved_Dom0_memory": "lots", "shutdown_acpi": "perhaps",
           "monitor_scripts": "/bin/true\x01"}
    assert h1.run("monitor", cfg, **bad).rc == 6
    res = h1.run("stop", cfg, **bad)
    assert res.rc == 0, res.err
    assert not h1.exists("pyha brk")
    # Never started here (nothing recorded) and the name is invalid: nothing to stop.
    assert h1.run("stop", cfg, **bad).rc == 0
