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
from conftest import base_env, run_ocf
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
    while virtlab._alive(pid):
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
    if pid and virtlab._alive(pid):
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
