"""Differential oracle for VirtualDomain: pyha and ocf:heartbeat:VirtualDomain probe
the same domains of a private libvirtd + QEMU (TCG), and libvirt itself (virsh),
or the QEMU process when libvirtd is gone, says what is true.
See tests/lib/oracle.py for the rules."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Run, base_env, run_ocf
from lib import virtlab
from lib.oracle import Answer

UPSTREAM = "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"
PYHA = "VirtualDomain"
NAME = "pyha-oracle"


@pytest.fixture(scope="module")
def inst() -> Iterator[virtlab.Instance]:
    (inst,) = virtlab.claim("o", 1)
    try:
        inst.up()
        yield inst
    finally:
        inst.release()


class Host:
    def __init__(self, inst: virtlab.Instance, work: Path) -> None:
        self.inst = inst
        self.work = work
        (work / "rsc").mkdir(exist_ok=True)
        self.cib = work / "cib.xml"
        if not self.cib.exists():
            subprocess.run(["cibadmin", "--empty"], stdout=self.cib.open("w"), check=True)
        self.config = work / f"{NAME}.xml"
        self.config.write_text(virtlab.domain_xml(NAME, "noos", work / "console"))

    def agent(self, path: str, action: str, timeout: float = 60) -> int | None:
        env = base_env(self.work / "rsc")
        env.update(CIB_file=str(self.cib), OCF_RESKEY_CRM_meta_timeout="20000",
                   OCF_RESKEY_hypervisor=self.inst.uri)
        if action == "monitor":
            env["OCF_RESKEY_CRM_meta_interval"] = "0"
        params = {"config": str(self.config), "autoset_utilization_cpu": "false",
                  "autoset_utilization_hv_memory": "false"}
        try:
            return run_ocf(path, action, params, env=env, instance="oracle",
                           timeout=timeout).rc
        except subprocess.TimeoutExpired:
            return None

    def run(self, path: str, action: str, params: dict[str, str], timeout_ms: int = 20000,
            **env: str) -> Run:
        full = base_env(self.work / "rsc")
        full.update(CIB_file=str(self.cib), OCF_RESKEY_CRM_meta_timeout=str(timeout_ms),
                    OCF_RESKEY_hypervisor=self.inst.uri, **env)
        return run_ocf(path, action, {"config": str(self.config), **params}, env=full,
                       instance="oracle", timeout=timeout_ms / 1000 + 30)

    def qemu_pid(self) -> int | None:
        """The domain's QEMU, from /proc (independent of libvirt and of the agents)."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    argv = handle.read().split(b"\0")
                exe = os.readlink(f"/proc/{entry}/exe")
            except OSError:
                continue
            if "qemu-system" in exe and f"guest={NAME}".encode() in b",".join(argv):
                return int(entry)
        return None

    def active(self) -> bool:
        res = self.inst.virsh("domstate", NAME, check=False)
        if res.returncode == 0:
            return res.stdout.strip() not in ("shut off", "")
        return self.qemu_pid() is not None  # libvirtd unreachable: ask the kernel


Setup = Callable[[Host], None]


def by(path: str) -> Setup:
    def start(host: Host) -> None:
        assert host.agent(path, "start") == 0
    return start


def nothing(host: Host) -> None:
    pass


def defined_only(host: Host) -> None:
    host.inst.virsh("define", str(host.config))


def paused(host: Host) -> None:
    by(UPSTREAM)(host)
    host.inst.virsh("suspend", NAME)


def libvirtd_gone(host: Host) -> None:
    by(UPSTREAM)(host)
    pid = host.inst.pid("libvirtd")
    assert pid
    os.kill(pid, signal.SIGKILL)
    while virtlab.alive(pid):
        time.sleep(0.05)


ROWS: list[tuple[str, Setup]] = [
    ("absent", nothing),
    ("defined-not-running", defined_only),
    ("started-by-upstream", by(UPSTREAM)),
    ("started-by-pyha", by(PYHA)),
    ("paused", paused),
    ("libvirtd-gone-guest-running", libvirtd_gone),
]


def restart_libvirtd(inst: virtlab.Instance) -> None:
    pid = inst.pid("libvirtd")
    if pid and virtlab.alive(pid):
        return
    inst.in_ns("libvirtd", "-d", "-p", str(inst.dir / "libvirtd.pid"))
    for _ in range(200):
        if inst.virsh("version", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("libvirtd did not come back")


@pytest.mark.parametrize(("row", "setup"), ROWS, ids=[r[0] for r in ROWS])
def test_probe_against_upstream_on_the_same_domains(
        inst: virtlab.Instance, tmp_path: Path, row: str, setup: Setup) -> None:
    host = Host(inst, tmp_path)
    try:
        setup(host)
        truth = host.active()
        # upstream retries until killed when it cannot decide: a short leash
        answer = Answer("VirtualDomain", row, pyha=host.agent(PYHA, "monitor") or 0,
                        upstream=host.agent(UPSTREAM, "monitor", timeout=15), truth=truth)
        assert not answer.problems(), f"{answer}: {answer.problems()}"
        if truth:
            rc = host.agent(PYHA, "stop")
            assert rc != 0 or not host.active(), f"{answer}: stop 0, the guest still runs"
    finally:
        restart_libvirtd(inst)
        inst.virsh("destroy", NAME, check=False)
        inst.virsh("undefine", NAME, check=False)
        pid = host.qemu_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)


def test_switch_then_config_lost(inst: virtlab.Instance, tmp_path: Path) -> None:
    """Upstream started the guest; pyha's first probe (the switch) sees it running.
    If the config then becomes unreadable, pyha's stop still stops it: never a
    stop that answers 0 with the guest running."""
    host = Host(inst, tmp_path)
    try:
        assert host.agent(UPSTREAM, "start") == 0
        assert host.agent(PYHA, "monitor") == 0
        host.config.rename(tmp_path / "moved-away.xml")
        rc = host.agent(PYHA, "stop")
        assert rc != 0 or not host.active(), "stop 0 while the guest still runs"
        assert rc == 0 and not host.active()
    finally:
        inst.virsh("destroy", NAME, check=False)
        inst.virsh("undefine", NAME, check=False)


# -- values upstream accepted: both agents run with them; pyha warns -------------------

TOLERATED = {
    "force_stop": "maybe",                  # ocf_is_true: false
    "unset_utilization_cpu": "perhaps",     # false
    "save_config_on_stop": "nope",          # false
    "stateless": "later",                   # false
    "start_resources": "sometimes",         # false
    "shutdown_mode": "Gently,ACPI",         # upstream never read it; pyha keeps acpi
    "migration_transport": "pigeon",        # put into the remote URI as it is
    "migration_user": "root@evil",          # upstream drops it: the default user
    "migrateport": "auto",                  # never checked; a random port
    "migrate_options": "--timeout 30",      # virsh options pyha cannot honour
}


def warned(err: str) -> set[str]:
    return {name for name in TOLERATED
            if any(f"parameter '{name}'" in line for line in err.splitlines()
                   if "WARNING" in line)}


def test_values_upstream_accepted_still_work(inst: virtlab.Instance, tmp_path: Path) -> None:
    """Both agents validate and monitor with these values; pyha starts, stops and
    refuses to migrate live with options it cannot honour (1, the guest untouched),
    warning once per value.  libvirt (virsh) says what runs."""
    host = Host(inst, tmp_path)
    try:
        for path in (UPSTREAM, PYHA):
            res = host.run(path, "validate-all", TOLERATED)
            assert res.rc == 0, (path, res.err)
        assert warned(res.err) == set(TOLERATED), res.err
        res = host.run(PYHA, "start", TOLERATED)
        assert res.rc == 0 and host.active(), res.err
        for path in (UPSTREAM, PYHA):
            res = host.run(path, "monitor", TOLERATED, OCF_RESKEY_CRM_meta_interval="0")
            assert res.rc == 0, (path, res.err)
        res = host.run(PYHA, "monitor", TOLERATED, OCF_RESKEY_CRM_meta_interval="10000")
        assert res.rc == 0 and "WARNING" not in res.err  # not every 10 s
        res = host.run(PYHA, "migrate_to", TOLERATED,
                       OCF_RESKEY_CRM_meta_migrate_target="elsewhere")
        assert res.rc == 1 and res.reason and "--timeout" in res.reason
        assert host.active()
        # force_stop=maybe is false: a graceful attempt (this guest ignores it), then destroy
        res = host.run(PYHA, "stop", TOLERATED, timeout_ms=8000)
        assert res.rc == 0 and not host.active(), res.err
        assert "destroying it" in res.err
        # upstream starts with them too; force_stop=ja is true to both: destroy at once
        assert host.run(UPSTREAM, "start", TOLERATED).rc == 0 and host.active()
        res = host.run(PYHA, "stop", {**TOLERATED, "force_stop": "ja"})
        assert res.rc == 0 and not host.active(), res.err
        assert "destroying it" not in res.err  # "ja" is a plain true: no warning either
        assert "force_stop" not in res.err, res.err
    finally:
        inst.virsh("destroy", NAME, check=False)
        inst.virsh("undefine", NAME, check=False)


REFUSED = [
    ({"migrate_options": "--p2p --dname other"}, 6, "renames the domain", 0),
    ({"migration_transport": "tcp/evil"}, 6, "another host", 0),
    ({"hypervisor": "myalias"}, 6, "alias", 0),
    ({"snapshot": "/nonexistent/pyha-snapshots"}, 5, "snapshot directory", 0),
    ({"migration_speed": "fast"}, 6, "migration_speed", 6),
    ({"force_stop": "yes", "snapshot": "/tmp"}, 6, "force_stop", 6),
]


@pytest.mark.parametrize(("params", "rc", "reason", "upstream_rc"), REFUSED,
                         ids=[",".join(p) for p, *_ in REFUSED])
def test_values_still_refused(inst: virtlab.Instance, tmp_path: Path, params: dict[str, str],
                              rc: int, reason: str, upstream_rc: int) -> None:
    """Still refused, though upstream's validate-all passed most of them.  --dname
    renames the guest on the target, where both agents look for the old name: "not
    running" while it runs, then a second copy.  A transport that is not a word makes
    the remote URI name another host.  An alias cannot be checked while libvirtd is
    down (a failed probe at boot, then fencing).  A missing snapshot directory (shared
    storage not mounted) would boot the guest cold while its saved state waits there,
    to be restored later over newer disks (5).  migration_speed that is not a number,
    force_stop with snapshot: upstream refuses them too."""
    host = Host(inst, tmp_path)
    assert host.run(UPSTREAM, "validate-all", params).rc == upstream_rc
    res = host.run(PYHA, "start", params)
    assert res.rc == rc and res.reason and reason in res.reason, res.err
    assert not host.active()
