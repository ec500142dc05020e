"""IPaddr2 and Filesystem against ocf:heartbeat, on the same address and the same mount.

IPaddr2 runs in network namespace ``pyha-ip-bench`` (a veth pair, base
address 10.210.200.1/24); Filesystem in a persistent private mount namespace
(``/tmp/pyha-fs-bench/ns/mnt``, entered with ``nsenter``) on an ext4 image on a
loop device.  Nothing is added to the host's network or mount namespace
except the private bind mount that holds the namespace file.
"""

from __future__ import annotations

from pathlib import Path

from bench.cases import AGENTS, UPSTREAM_OCF, Case, Side, Workspace, ocf_side

NS = "pyha-ip-bench"
IN_NS = ["ip", "netns", "exec", NS]
IP_UP = {"ip": "10.210.200.50", "cidr_netmask": "24", "arp_count": "1"}
IP_DOWN = {"ip": "10.210.200.60"}
FS_DIR = Path("/tmp/pyha-fs-bench")
MNT_NS = FS_DIR / "ns" / "mnt"
IN_MNT = ["nsenter", f"--mount={MNT_NS}"]
DEV = FS_DIR / "dev"  # a symlink to the loop device made by setup
FS = {"device": str(DEV), "directory": str(FS_DIR / "mnt"), "fstype": "ext4"}
FS_DOWN = {**FS, "directory": str(FS_DIR / "unmounted")}
PYHA_IP, UP_IP = AGENTS / "IPaddr2", UPSTREAM_OCF / "heartbeat" / "IPaddr2"
PYHA_FS, UP_FS = AGENTS / "Filesystem", UPSTREAM_OCF / "heartbeat" / "Filesystem"


def wrap(prefix: list[str], side: Side) -> Side:
    side.commands = [[*prefix, *cmd] for cmd in side.commands]
    return side


def ip_setup(ws: Workspace) -> None:
    (ws.dir / "rsctmp").mkdir(exist_ok=True)
    ws.run(["ip", "netns", "del", NS], check=False)
    ws.run(["ip", "netns", "add", NS])
    ws.run(["ip", "-n", NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"])
    ws.run(["ip", "-n", NS, "link", "set", "eth0", "up"])
    ws.run(["ip", "-n", NS, "link", "set", "eth1", "up"])
    ws.run(["ip", "-n", NS, "addr", "add", "10.210.200.1/24", "brd", "+", "dev", "eth0"])
    side = ocf_side("setup", PYHA_IP, ["start"], IP_UP)
    ws.run([*IN_NS, *side.commands[0]], env=side.env)


def ip_teardown(ws: Workspace) -> None:
    ws.run(["ip", "netns", "del", NS], check=False)


def fs_setup(ws: Workspace) -> None:
    (ws.dir / "rsctmp").mkdir(exist_ok=True)
    fs_teardown(ws)
    (FS_DIR / "ns").mkdir(parents=True)
    ws.run(["truncate", "-s", "64M", str(FS_DIR / "ext4.img")])
    ws.run(["mkfs.ext4", "-q", "-F", str(FS_DIR / "ext4.img")])
    loop = ws.run(["losetup", "-f", "--show", str(FS_DIR / "ext4.img")]).stdout.strip()
    (FS_DIR / "loop").write_text(loop)
    DEV.symlink_to(loop)
    ws.run(["mount", "--bind", str(FS_DIR / "ns"), str(FS_DIR / "ns")])
    ws.run(["mount", "--make-private", str(FS_DIR / "ns")])
    MNT_NS.touch()
    ws.run(["unshare", f"--mount={MNT_NS}", "--propagation", "private", "true"])
    side = ocf_side("setup", PYHA_FS, ["start"], FS)
    ws.run([*IN_MNT, *side.commands[0]], env=side.env)


def fs_teardown(ws: Workspace) -> None:
    if MNT_NS.exists():
        ws.run(["umount", str(MNT_NS)], check=False)  # the namespace and its mounts go
        ws.run(["umount", str(FS_DIR / "ns")], check=False)
    loop = FS_DIR / "loop"
    if loop.exists():
        ws.run(["losetup", "-d", loop.read_text().strip()], check=False)
    ws.run(["rm", "-rf", str(FS_DIR)], check=False)


def fs_side(label: str, agent: Path, actions: list[str], env: dict[str, str] | None = None,
            params: dict[str, str] = FS, rc: list[int] | None = None) -> Side:
    return wrap(IN_MNT, ocf_side(label, agent, actions, params, expect_rc=rc, env=env))


def _ip(label: str, agent: Path, actions: list[str], params: dict[str, str],
        rc: list[int] | None = None) -> Side:
    return wrap(IN_NS, ocf_side(label, agent, actions, params, expect_rc=rc))


CASES: list[Case] = [
    Case("IPaddr2/monitor", _ip("pyha IPaddr2", PYHA_IP, ["monitor"], IP_UP),
         _ip("heartbeat IPaddr2", UP_IP, ["monitor"], IP_UP),
         setup=ip_setup, teardown=ip_teardown, target_ratio=0.5),
    Case("IPaddr2/probe", _ip("pyha IPaddr2", PYHA_IP, ["monitor"], IP_DOWN, [7]),
         _ip("heartbeat IPaddr2", UP_IP, ["monitor"], IP_DOWN, [7]),
         setup=ip_setup, teardown=ip_teardown, target_ratio=0.5),
    Case("IPaddr2/start+stop", _ip("pyha IPaddr2", PYHA_IP, ["start", "stop"], IP_DOWN),
         _ip("heartbeat IPaddr2", UP_IP, ["start", "stop"], IP_DOWN),
         setup=ip_setup, teardown=ip_teardown, target_ratio=1.0),
    Case("IPaddr2/meta-data", ocf_side("pyha IPaddr2", PYHA_IP, ["meta-data"]),
         ocf_side("heartbeat IPaddr2", UP_IP, ["meta-data"]), target_ratio=1.0),
    Case("Filesystem/monitor", fs_side("pyha Filesystem", PYHA_FS, ["monitor"]),
         fs_side("heartbeat Filesystem", UP_FS, ["monitor"]),
         setup=fs_setup, teardown=fs_teardown, target_ratio=0.5),
    Case("Filesystem/probe",
         fs_side("pyha Filesystem", PYHA_FS, ["monitor"], params=FS_DOWN, rc=[7]),
         fs_side("heartbeat Filesystem", UP_FS, ["monitor"], params=FS_DOWN, rc=[7]),
         setup=fs_setup, teardown=fs_teardown, target_ratio=0.5),
    Case("Filesystem/monitor-depth20",
         fs_side("pyha Filesystem", PYHA_FS, ["monitor"], {"OCF_CHECK_LEVEL": "20"}),
         fs_side("heartbeat Filesystem", UP_FS, ["monitor"], {"OCF_CHECK_LEVEL": "20"}),
         setup=fs_setup, teardown=fs_teardown, target_ratio=0.5),
    Case("Filesystem/stop+start",
         fs_side("pyha Filesystem", PYHA_FS, ["stop", "start"]),
         fs_side("heartbeat Filesystem", UP_FS, ["stop", "start"]),
         setup=fs_setup, teardown=fs_teardown, target_ratio=1.0),
    Case("Filesystem/meta-data", ocf_side("pyha Filesystem", PYHA_FS, ["meta-data"]),
         ocf_side("heartbeat Filesystem", UP_FS, ["meta-data"]), target_ratio=1.0),
]
