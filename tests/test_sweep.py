"""The bad-input sweep (tests/lib/hostile.py) over every agent and every parameter.

Resource agents run validate-all, a probe, a recurring monitor and stop; fence
agents run validate-all, status, list and monitor against a closed port.  Agents
whose world namespaces cannot isolate (libvirtd's socket, xenstore, configfs, the
DRBD kernel) run only against stand-ins: VirtualDomain sees an empty /run/libvirt,
Xen the xl simulator, drbd and o2cb their kernel stand-ins.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import AGENTS, FENCE
from lib.hostile import MARKER, World, environment, sweep

TESTS = Path(__file__).resolve().parent
OCF_ACTIONS = ("validate-all", "monitor", "monitor@10000", "stop")
FENCE_ACTIONS = ("validate-all", "status", "list", "monitor")
FENCE_FAST = {"login_timeout": "1", "power_timeout": "1", "shell_timeout": "1",
              "power_wait": "0", "retry_on": "1"}


def example(tmp: Path) -> World:
    return World(AGENTS / "Example", "ocf", environment({"HA_RSCTMP": str(tmp)}),
                 {"state": str(tmp / "state")}, actions=OCF_ACTIONS)


def ipaddr2(tmp: Path) -> World:
    return World(AGENTS / "IPaddr2", "ocf", environment({"HA_RSCTMP": str(tmp)}),
                 {"ip": "10.213.0.5"}, actions=OCF_ACTIONS)


def ipaddr2_clone(tmp: Path) -> World:
    """The cluster-IP parameters only matter inside a clone: sweep them there too."""
    env = environment({"HA_RSCTMP": str(tmp), "OCF_RESKEY_CRM_meta_clone_max": "2",
                       "OCF_RESKEY_CRM_meta_clone": "0"})
    return World(AGENTS / "IPaddr2", "ocf", env, {"ip": "10.213.0.5"},
                 actions=("validate-all", "monitor", "stop"),
                 only=("mac", "clusterip_hash", "clusterip_hash_seed", "clusterip_firewall",
                       "clusterip_mac_mangle"))


def filesystem(tmp: Path) -> World:
    (tmp / "mnt").mkdir()
    return World(AGENTS / "Filesystem", "ocf", environment({"HA_RSCTMP": str(tmp)}),
                 {"device": "/dev/pyha-sweep-disk", "directory": str(tmp / "mnt"),
                  "fstype": "ext4"}, actions=OCF_ACTIONS)


def virtualdomain(tmp: Path) -> World:
    config = tmp / "dom.xml"
    config.write_text("<domain type='qemu'><name>pyha-sweep</name><memory>65536</memory>"
                      "<os><type>hvm</type></os></domain>\n")
    return World(AGENTS / "VirtualDomain", "ocf", environment({"HA_RSCTMP": str(tmp)}),
                 {"config": str(config)}, actions=OCF_ACTIONS,
                 hide=("/run/libvirt", "/var/run/libvirt", "/var/lib/libvirt"))


def xen(tmp: Path) -> World:
    cfg = tmp / "sweep.cfg"
    cfg.write_text('name = "sweep"\nmemory = 128\nvcpus = 1\n')
    subprocess.run(["cibadmin", "--empty"], stdout=(tmp / "cib.xml").open("w"), check=True)
    env = environment({"HA_RSCTMP": str(tmp), "XLSIM_ROOT": str(tmp), "XLSIM_HOST": "h1",
                       "CIB_file": str(tmp / "cib.xml"),
                       "PATH": f"{TESTS / 'sim' / 'xlsim'}:/usr/sbin:/usr/bin:/sbin:/bin"})
    (tmp / "h1").mkdir()
    return World(AGENTS / "Xen", "ocf", env, {"xmfile": str(cfg)}, actions=OCF_ACTIONS)


# The fence runtime's own options (output, delay, timing): the same code in every
# fence agent, swept in full with fence_ipmilan; the others sweep what they use
# themselves (their device's address, login, password, plug and own options).
RUNTIME_OPTIONS = frozenset((
    "debug", "debug_file", "delay", "disable_timeout", "help", "login_timeout",
    "power_timeout", "power_wait", "quiet", "retry_on", "shell_timeout",
    "stonith_status_sleep", "verbose", "verbose_level", "version", "plug_separator"))


def fence(name: str, base: dict[str, str], skip: frozenset[str] = frozenset()
          ) -> Callable[[Path], World]:
    def make(tmp: Path) -> World:
        # A fresh network namespace has only a down loopback: every port is closed.
        return World(FENCE / name, "fence", environment(), {**FENCE_FAST, **base},
                     actions=FENCE_ACTIONS, skip=skip)
    return make


WORLDS: dict[str, Callable[[Path], World]] = {
    "Example": example,
    "IPaddr2": ipaddr2,
    "IPaddr2-clone": ipaddr2_clone,
    "Filesystem": filesystem,
    "VirtualDomain": virtualdomain,
    "Xen": xen,
    "fence_ipmilan": fence("fence_ipmilan", {"ip": "127.0.0.1", "username": "admin",
                                             "password": "pw", "lanplus": "1"}),
    "fence_ilo_mp": fence("fence_ilo_mp", {"ip": "127.0.0.1", "username": "admin",
                                           "password": "pw"}, RUNTIME_OPTIONS),
    "fence_na": fence("fence_na", {"ip": "127.0.0.1", "username": "admin",
                                   "password": "pw", "plug": "1"}, RUNTIME_OPTIONS),
    "fence_pcmk": fence("fence_pcmk", {"plug": "n1"}, RUNTIME_OPTIONS),
}


@pytest.fixture(autouse=True)
def no_marker() -> Iterator[None]:
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a shell ran a parameter value"


def report(bad: list) -> str:
    return f"{len(bad)} bad calls:\n" + "\n".join(f"  {o}: {', '.join(p)}" for o, p in bad[:40])


@pytest.mark.parametrize("name", list(WORLDS))
def test_hostile_values(name: str, tmp_path: Path) -> None:
    world = WORLDS[name](tmp_path)
    world.cwd = str(tmp_path)
    bad = sweep(world)
    assert not bad, report(bad)


def test_drbd_hostile_values(tmp_path: Path) -> None:
    from lib.drbdlab import DrbdLab

    lab = DrbdLab()
    try:
        node = lab.nodes[0]
        env = lab.env(node)
        env.update({"OCF_RESOURCE_INSTANCE": "drbd-r0", "OCF_RESKEY_CRM_meta_on_node": node,
                    "OCF_RESKEY_CRM_meta_clone_max": "2"})
        world = World(AGENTS / "drbd", "ocf", env,
                      {"drbd_resource": "r0", "drbdconf": str(lab.conf)}, actions=OCF_ACTIONS)
        bad = sweep(world)
    finally:
        lab.close()
    assert not bad, report(bad)


def test_o2cb_hostile_values(tmp_path: Path) -> None:
    from test_o2cb import O2cbLab

    lab = O2cbLab()
    try:
        world = World(AGENTS / "o2cb", "ocf", lab.env(), lab.params(), actions=OCF_ACTIONS)
        bad = sweep(world)
    finally:
        lab.close() if hasattr(lab, "close") else None
    assert not bad, report(bad)
