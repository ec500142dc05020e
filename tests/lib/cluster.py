"""A real Corosync 3 + Pacemaker 2 cluster for tests, one to three nodes on this machine.

Each node is a holder process (``sleep infinity``) in its own network, mount and
UTS namespaces:

* network: netns ``<prefix>-n<i>`` whose ``eth0`` is a veth to the bridge
  ``<prefix>br``; the address ``<subnet>.<i>/24`` exists only inside the
  namespaces, so clusters on different bridges may even share a subnet;
* mount: per-node directories under ``/tmp/pyha-cluster-<prefix>/n<i>/`` are
  bind-mounted over ``/var/lib/pacemaker``, ``/var/lib/corosync``,
  ``/etc/corosync`` and ``/var/log/pacemaker``; ``/run`` and ``/dev/shm`` are
  private tmpfs (libqb keeps its IPC buffers in /dev/shm, so every client
  command must run inside the node: use :meth:`Cluster.exec`);
* UTS: hostname ``n<i>`` (= the corosync node name, so ``crm_node -n`` and
  ``OCF_RESKEY_CRM_meta_on_node`` agree).

Daemons start with ``env -i`` (as systemd would) so agents see only what
Pacemaker sets, and with ``PCMK_logfile`` so agents get ``HA_LOGFILE``.  The
seeded CIB sets ``dc-deadtime=2s`` (the 20 s default makes every start wait
20 s) and ``stonith-enabled=false`` unless asked otherwise.

Nodes are numbered from 1 (node 1 is ``n1``, nodeid 1, address ``.1``)::

    with install_pyha_agents(), Cluster(nodes=2, subnet="10.231.7") as c:
        c.cib_create('<primitive id="p" class="ocf" provider="pyha" type="Example">'
                     '<operations><op id="p-m" name="monitor" interval="5s"/></operations>'
                     '</primitive>')
        where = c.wait_resource_started("p")            # "n1" or "n2"
        print(c.exec(1, ["crm_mon", "-1"]).stdout)      # any client command: inside a node
        c.kill_node(2)                                  # power cut (for fencing tests)
        c.start_node(2)                                 # back online
        c.node_path(1, "/run/resource-agents")          # a node's private /run, from the host
        c.log_path(1)                                   # its pacemaker.log (HA_LOGFILE)

In pytest use the fixtures of tests/conftest.py: ``cluster1`` (one node, per
module), ``cluster_factory`` / ``module_cluster_factory`` (``make(nodes=3,
subnet="10.231.8", stonith=True)``) and ``pyha_agents`` (the ocf:pyha links).
Processes are only ever signalled by PID, and only those inside our own
namespaces.  A name is held with an ``flock`` for the cluster's lifetime, so
parallel test runs never share one; leftovers of a crashed run under a name we
now hold are removed before starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent.parent
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
OCF_PROVIDER_DIR = Path("/usr/lib/ocf/resource.d")
LOCK_DIR = Path("/tmp/pyha-cluster-locks")
# Cluster names become veth and bridge names in the host's network namespace, so
# runs in a chroot with its own /tmp (.ci/debroot) must take them under the
# host's locks: that job points this at the host's LOCK_DIR.
NAME_LOCK_DIR = Path(os.environ.get("PYHA_CLUSTER_NAME_LOCKS", str(LOCK_DIR)))
_USES = itertools.count()
T = TypeVar("T")


class ClusterError(RuntimeError):
    pass


# -- small process helpers -------------------------------------------------------

def alive(pid: int | None) -> bool:
    """True while ``pid`` exists and is not a zombie.

    PID 1 here is not systemd and reaps orphans only every 1-2 s, while
    ``kill -0`` succeeds on zombies: count Z (and X) as gone.
    """
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return bool(state) and state[0] not in ("Z", "X")


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while True:
        if not any(alive(p) for p in pids):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _run(argv: Sequence[str], check: bool = True,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed rc={proc.returncode}: {proc.stderr.strip()}")
    return proc


def pids_in_netns(ns_file: str) -> list[int]:
    """PIDs of every live process whose network namespace is ``ns_file``'s."""
    try:
        target = os.stat(ns_file).st_ino
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                found.append(int(entry))
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


# -- the cluster -----------------------------------------------------------------

class Node:
    def __init__(self, cluster: Cluster, index: int) -> None:
        self.index = index
        self.name = cluster.node_names[index - 1]
        self.netns = f"{cluster.prefix}-n{index}"
        self.veth = f"{cluster.prefix}n{index}h"
        self.address = f"{cluster.subnet}.{index}"
        self.dir = cluster.base / f"n{index}"
        self.holder: subprocess.Popen[bytes] | None = None
        self.corosync: subprocess.Popen[bytes] | None = None
        self.pacemakerd: subprocess.Popen[bytes] | None = None

    @property
    def holder_pid(self) -> int:
        if self.holder is None or not alive(self.holder.pid):
            raise ClusterError(f"node {self.name} has no holder process")
        return self.holder.pid

    def path(self, inside: str) -> Path:
        """A path inside this node's mount namespace, as seen from the host."""
        return Path(f"/proc/{self.holder_pid}/root") / inside.lstrip("/")


class Cluster:
    """``with Cluster(nodes=1) as c: c.exec(1, ["crm_mon", "-1"])``.

    ``prefix`` "pyhac" (default) takes the first free name pyhacq0, pyhacq1, ...
    (the "pyhacq" names are reserved for this); any other prefix (e.g. "pyhac7",
    "pyhacf") is used as it is, waiting while another process holds it.  Names
    must stay short: interface names have 15 bytes.
    """

    def __init__(self, prefix: str = "pyhac", nodes: int = 1, subnet: str = "10.231.7", *,
                 node_names: Sequence[str] | None = None, dc_deadtime: str = "2s",
                 stonith: bool = False, token_ms: int = 1000,
                 properties: Mapping[str, str] | None = None, timeout: float = 90) -> None:
        # "pyhad" is the README demo's cluster (tests/demo/demo.py).
        if (not prefix.startswith(("pyhac", "pyhad")) or len(prefix) > 9
                or not prefix.isalnum()):
            raise ValueError("prefix must be 'pyhac' (or 'pyhad') plus at most 4 letters/digits")
        if prefix.startswith("pyhacq"):
            raise ValueError("'pyhacq*' names are taken automatically; pass prefix='pyhac'")
        if not 1 <= nodes <= 3:
            raise ValueError("nodes must be 1..3")
        if node_names is not None and len(node_names) != nodes:
            raise ValueError("node_names must name every node")
        self.requested_prefix = prefix
        self.prefix = prefix
        self.subnet = subnet
        self.node_names = list(node_names or [f"n{i}" for i in range(1, nodes + 1)])
        self.dc_deadtime = dc_deadtime
        self.stonith = stonith
        self.token_ms = token_ms
        self.properties = dict(properties or {})
        self.timeout = timeout
        self.nodes: list[Node] = []
        self._lock: Any = None
        self.started = False

    # -- naming and locking ---------------------------------------------------

    @property
    def base(self) -> Path:
        return Path(f"/tmp/pyha-cluster-{self.prefix}")

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def _take_name(self) -> None:
        NAME_LOCK_DIR.mkdir(mode=0o755, exist_ok=True)
        if self.requested_prefix != "pyhac":
            candidates = [self.requested_prefix]
        else:
            candidates = ["pyhacq" + c for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
        end = time.monotonic() + self.timeout
        while True:
            for name in candidates:
                handle = open(NAME_LOCK_DIR / f"{name}.lock", "w")  # noqa: SIM115 - held open
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                self._lock = handle
                self.prefix = name
                return
            if time.monotonic() >= end:
                raise ClusterError(f"no free cluster name among {candidates}")
            time.sleep(0.5)

    def _release_name(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- nodes ----------------------------------------------------------------

    def node(self, i: int) -> Node:
        if not 1 <= i <= len(self.nodes):
            raise IndexError(f"node numbers are 1..{len(self.nodes)}, got {i}")
        return self.nodes[i - 1]

    def node_name(self, i: int) -> str:
        return self.node(i).name

    def node_path(self, i: int, inside: str) -> Path:
        """Host view of a path inside node ``i`` (e.g. its private /run)."""
        return self.node(i).path(inside)

    def log_path(self, i: int = 1) -> Path:
        """Node ``i``'s pacemaker log (PCMK_logfile; agents get it as HA_LOGFILE)."""
        return self.node(i).dir / "var-log-pacemaker" / "pacemaker.log"

    def corosync_log_path(self, i: int = 1) -> Path:
        return self.node(i).dir / "var-log-pacemaker" / "corosync.log"

    # -- life cycle -------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._take_name()
        try:
            self._cleanup_stale()
            self.nodes = [Node(self, i) for i in range(1, len(self.node_names) + 1)]
            self.base.mkdir(mode=0o755)
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            _run(["ip", "link", "set", self.bridge, "up"])
            for node in self.nodes:
                self._create_node(node)
            for node in self.nodes:
                self._start_daemons(node)
            self.wait_online(timeout=self.timeout)
            self.started = True
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Graceful where possible, SIGKILL otherwise; always removes everything."""
        if self._lock is None:
            return  # never started (or already stopped): nothing of ours exists
        try:
            threads = [threading.Thread(target=self._stop_node_quietly, args=(n,))
                       for n in self.nodes]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for node in self.nodes:
                self._destroy_node(node)
            _run(["ip", "link", "del", self.bridge], check=False)
            shutil.rmtree(self.base, ignore_errors=True)
        finally:
            self.started = False
            self._release_name()

    def _cleanup_stale(self) -> None:
        """Remove what a crashed run left under the name we now hold."""
        for i in range(1, 6):
            ns = f"{self.prefix}-n{i}"
            ns_file = f"/run/netns/{ns}"
            if os.path.exists(ns_file):
                pids = pids_in_netns(ns_file)
                for pid in pids:
                    _kill(pid)
                wait_gone(pids, 10)
                _run(["ip", "netns", "del", ns], check=False)
        if Path(f"/sys/class/net/{self.bridge}").exists():
            _run(["ip", "link", "del", self.bridge], check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _create_node(self, node: Node) -> None:
        d = node.dir
        dirs = {name: d / name for name in
                ("var-lib-pacemaker", "var-lib-corosync", "etc-corosync", "var-log-pacemaker")}
        for path in dirs.values():
            path.mkdir(parents=True, mode=0o755)
        for sub in ("cib", "pengine", "blackbox", "cores"):
            (dirs["var-lib-pacemaker"] / sub).mkdir(mode=0o750)
        for path in [dirs["var-log-pacemaker"], *[dirs["var-lib-pacemaker"] / s for s in
                                                   ("cib", "pengine", "blackbox", "cores")]]:
            shutil.chown(path, "hacluster", "haclient")
        dirs["var-log-pacemaker"].chmod(0o770)
        (dirs["etc-corosync"] / "corosync.conf").write_text(self._corosync_conf())
        cib = dirs["var-lib-pacemaker"] / "cib" / "cib.xml"
        cib.write_text(self._seed_cib())
        shutil.chown(cib, "hacluster", "haclient")
        cib.chmod(0o600)

        ns = node.netns
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0",
              "netns", ns])
        _run(["ip", "link", "set", node.veth, "master", self.bridge, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # ip netns exec and unshare (without --fork) exec in place: the Popen
        # PID is the holder, and its namespaces are the node's.
        node.holder = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--uts", "--propagation",
             "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self._wait_holder(node)
        mounts = [("--bind", str(dirs["var-lib-pacemaker"]), "/var/lib/pacemaker"),
                  ("--bind", str(dirs["var-lib-corosync"]), "/var/lib/corosync"),
                  ("--bind", str(dirs["etc-corosync"]), "/etc/corosync"),
                  ("--bind", str(dirs["var-log-pacemaker"]), "/var/log/pacemaker")]
        for opt, src, dst in mounts:
            self._nsenter_checked(node, ["mount", opt, src, dst])
        self._nsenter_checked(node, ["mount", "-t", "tmpfs", "-o", "mode=0755",
                                     f"{node.netns}-run", "/run"])
        self._nsenter_checked(node, ["mount", "-t", "tmpfs", "-o", "mode=1777",
                                     f"{node.netns}-shm", "/dev/shm"])
        self._nsenter_checked(node, ["hostname", node.name])
        run = node.path("/run")
        for sub in ("crm", "resource-agents", "lock"):
            (run / sub).mkdir(mode=0o755)
        shutil.chown(run / "crm", "hacluster", "haclient")
        (run / "crm").chmod(0o750)

    def _wait_holder(self, node: Node) -> None:
        # The holder is ready once it runs sleep in a mount namespace of its own.
        assert node.holder is not None
        mine = os.stat("/proc/self/ns/mnt").st_ino
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if node.holder.poll() is not None:
                raise ClusterError(f"holder of {node.name} exited rc={node.holder.returncode}")
            try:
                comm = Path(f"/proc/{node.holder.pid}/comm").read_text().strip()
                if comm == "sleep" and os.stat(f"/proc/{node.holder.pid}/ns/mnt").st_ino != mine:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise ClusterError(f"holder of {node.name} did not come up")

    def _nsenter(self, node: Node) -> list[str]:
        return ["nsenter", "-t", str(node.holder_pid), "-m", "-u", "-n", "--"]

    def _nsenter_checked(self, node: Node, argv: Sequence[str]) -> None:
        _run([*self._nsenter(node), *argv])

    def _clean_env(self, extra: Mapping[str, str] | None = None) -> list[str]:
        pairs = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **(extra or {})}
        return ["env", "-i", *[f"{k}={v}" for k, v in pairs.items()]]

    def _start_daemons(self, node: Node) -> None:
        # Popen's child is not a group leader, and nsenter/env exec in place, so
        # the Popen PID is the daemon's; start_new_session detaches it like setsid.
        with open(node.dir / "corosync.stdout", "ab") as out:
            node.corosync = subprocess.Popen(
                [*self._nsenter(node), *self._clean_env(), "corosync", "-f"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.wait_for(lambda: self.exec(node.index, ["corosync-cfgtool", "-s"]).returncode == 0,
                      timeout=30, what=f"corosync on {node.name}",
                      abort=lambda: node.corosync is not None and node.corosync.poll() is not None)
        with open(node.dir / "pacemakerd.stdout", "ab") as out:
            node.pacemakerd = subprocess.Popen(
                [*self._nsenter(node),
                 *self._clean_env({"PCMK_logfile": "/var/log/pacemaker/pacemaker.log"}),
                 "pacemakerd"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def start_node(self, i: int, timeout: float | None = None) -> None:
        """(Re)start node ``i``'s daemons, e.g. after :meth:`kill_node`; waits until online."""
        node = self.node(i)
        self._start_daemons(node)
        expect = [n.name for n in self.nodes
                  if n.pacemakerd is not None and alive(n.pacemakerd.pid)]
        self.wait_online(i, expect, timeout=timeout or self.timeout)

    def kill_node(self, i: int) -> None:
        """SIGKILL every process of node ``i`` (daemons, agents), as a power cut would.

        The namespaces stay, so :meth:`start_node` can bring the node back.
        """
        node = self.node(i)
        self._kill_node_processes(node)
        self._reap(node)

    def stop_node(self, i: int) -> None:
        """Graceful leave of node ``i`` (resources stop or move; no fencing)."""
        self._stop_node(self.node(i))

    def _node_processes(self, node: Node) -> list[int]:
        if node.holder is None:
            return []
        h = node.holder.pid
        return [p for p in pids_in_netns(f"/run/netns/{node.netns}") if p != h]

    def _kill_node_processes(self, node: Node) -> None:
        # Everything in the node's netns was started by us (daemons, their
        # agents, nsenter'd commands); killing by PID only.
        for _ in range(3):
            pids = self._node_processes(node)
            if not pids:
                break
            for pid in pids:
                _kill(pid)
            wait_gone(pids, 10)
        if node.holder is not None and alive(node.holder.pid):
            # libqb leaves directories qb-<pid>-... after a SIGKILL.
            shm = node.path("/dev/shm")
            for entry in shm.glob("qb-*"):
                shutil.rmtree(entry, ignore_errors=True)

    def _reap(self, node: Node) -> None:
        for proc in (node.pacemakerd, node.corosync):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        node.pacemakerd = node.corosync = None

    def _has_dc(self, node: Node) -> bool:
        try:
            root = self.crm_mon_xml(node.index, timeout=10)
        except (ClusterError, subprocess.TimeoutExpired, ET.ParseError):
            return False
        dc = root.find("summary/current_dc")
        return dc is not None and dc.get("present") == "true"

    def _stop_node_quietly(self, node: Node) -> None:
        try:
            self._stop_node(node)
        except Exception:  # noqa: BLE001 - teardown must go on; leftovers are killed below
            pass
        finally:
            with contextlib.suppress(Exception):
                self._kill_node_processes(node)

    def _stop_node(self, node: Node) -> None:
        pm = node.pacemakerd.pid if node.pacemakerd is not None else None
        co = node.corosync.pid if node.corosync is not None else None
        if alive(pm) and self._has_dc(node):
            # Without a DC, "pacemakerd --shutdown" hangs and SIGTERM takes >30 s.
            shutdown = subprocess.Popen([*self._nsenter(node), "pacemakerd", "--shutdown"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            wait_gone([pm] if pm else [], 60)
            if shutdown.poll() is None:
                shutdown.kill()
            shutdown.wait()
        if alive(co):
            self.exec(node.index, ["corosync-cfgtool", "-H", "--force"], timeout=20)
            wait_gone([co] if co else [], 20)
        self._kill_node_processes(node)
        self._reap(node)

    def _destroy_node(self, node: Node) -> None:
        self._kill_node_processes(node)
        self._reap(node)
        if node.holder is not None:
            _kill(node.holder.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.holder.wait(timeout=10)
        _run(["ip", "netns", "del", node.netns], check=False)  # takes the veth pair along
        node.holder = None

    # -- configuration files ----------------------------------------------------

    def _corosync_conf(self) -> str:
        nodes = "".join(
            f"    node {{\n        name: {n.name}\n        nodeid: {n.index}\n"
            f"        ring0_addr: {n.address}\n    }}\n" for n in self.nodes)
        two_node = "    two_node: 1\n" if len(self.nodes) == 2 else ""
        return (
            "totem {\n    version: 2\n    cluster_name: " + self.prefix + "\n"
            "    transport: knet\n    token: " + str(self.token_ms) + "\n"
            "    crypto_cipher: none\n    crypto_hash: none\n}\n"
            "logging {\n    to_stderr: no\n    to_logfile: yes\n"
            "    logfile: /var/log/pacemaker/corosync.log\n    to_syslog: no\n"
            "    timestamp: on\n}\n"
            "quorum {\n    provider: corosync_votequorum\n" + two_node + "}\n"
            "nodelist {\n" + nodes + "}\n")

    def _seed_cib(self) -> str:
        props = {"stonith-enabled": "true" if self.stonith else "false",
                 "dc-deadtime": self.dc_deadtime, **self.properties}
        root = ET.Element("cib", {"crm_feature_set": "3.16.1", "validate-with": "pacemaker-3.9",
                                  "epoch": "1", "num_updates": "0", "admin_epoch": "0"})
        conf = ET.SubElement(root, "configuration")
        crm = ET.SubElement(ET.SubElement(conf, "crm_config"), "cluster_property_set",
                            {"id": "cib-bootstrap-options"})
        for name, value in props.items():
            ET.SubElement(crm, "nvpair", {"id": f"cib-bootstrap-options-{name}",
                                          "name": name, "value": value})
        for section in ("nodes", "resources", "constraints"):
            ET.SubElement(conf, section)
        ET.SubElement(root, "status")
        return ET.tostring(root, encoding="unicode") + "\n"

    # -- using the cluster -------------------------------------------------------

    def exec(self, i: int, argv: Sequence[str], *, check: bool = False, timeout: float = 60,
             input: str | None = None, env: Mapping[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside node ``i`` with a clean environment (plus ``env``)."""
        node = self.node(i)
        proc = subprocess.run([*self._nsenter(node), *self._clean_env(env), *argv],
                              capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise ClusterError(f"{argv} on {node.name} failed rc={proc.returncode}: "
                               f"{proc.stderr.strip() or proc.stdout.strip()[:500]}")
        return proc

    def live_node(self) -> int:
        """The number of the first node whose pacemakerd runs (commands go there)."""
        for node in self.nodes:
            if node.pacemakerd is not None and alive(node.pacemakerd.pid):
                return node.index
        raise ClusterError("no live node")

    def crm_mon_xml(self, i: int | None = None, timeout: float = 30) -> ET.Element:
        proc = self.exec(i or self.live_node(), ["crm_mon", "-1", "--output-as=xml"],
                         timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(f"crm_mon rc={proc.returncode}: {proc.stderr.strip()}")
        return ET.fromstring(proc.stdout)

    def cib_xml(self, i: int | None = None) -> ET.Element:
        return ET.fromstring(self.exec(i or self.live_node(), ["cibadmin", "--query"],
                                       check=True).stdout)

    def cib_create(self, xml: str, section: str = "resources", i: int | None = None) -> None:
        """Create ``xml`` (one element or several siblings) in ``section``.

        Pacemaker 2.1's cibadmin took several sibling elements in one
        ``--xml-text``; 3.0 rejects that ("Couldn't parse input"), so siblings
        are created one by one."""
        elements = list(ET.fromstring(f"<pyha-fragment>{xml}</pyha-fragment>"))
        parts = [xml] if len(elements) == 1 else [ET.tostring(e, encoding="unicode")
                                                  for e in elements]
        for part in parts:
            self.exec(i or self.live_node(), ["cibadmin", "--create", "-o", section,
                                              "--xml-text", part], check=True)

    def cib_delete(self, xml: str, i: int | None = None) -> None:
        self.exec(i or self.live_node(), ["cibadmin", "--delete", "--xml-text", xml], check=True)

    def set_property(self, name: str, value: str, i: int | None = None) -> None:
        self.exec(i or self.live_node(), ["crm_attribute", "--type", "crm_config", "--name",
                                          name, "--update", value], check=True)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30, *, interval: float = 0.2,
                 what: str = "condition", abort: Callable[[], bool] | None = None) -> T:
        """Poll ``predicate`` until it returns something truthy; return that."""
        end = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if abort is not None and abort():
                raise ClusterError(f"gave up waiting for {what}")
            if time.monotonic() >= end:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def online_nodes(self, i: int | None = None) -> list[str] | None:
        """Online node names as node ``i`` sees them, or None while there is no DC."""
        try:
            root = self.crm_mon_xml(i, timeout=10)
        except (ClusterError, subprocess.TimeoutExpired, ET.ParseError):
            return None
        dc = root.find("summary/current_dc")
        if dc is None or dc.get("present") != "true":
            return None
        return sorted(n.get("name", "") for n in root.iter("node") if n.get("online") == "true")

    def wait_online(self, i: int = 1, expect: Sequence[str] | None = None,
                    timeout: float = 60) -> None:
        want = sorted(expect if expect is not None else [n.name for n in self.nodes])
        node = self.node(i)
        try:
            self.wait_for(lambda: self.online_nodes(i) == want, timeout, what=f"{want} online",
                          abort=lambda: (node.pacemakerd is None
                                         or node.pacemakerd.poll() is not None))
        except (TimeoutError, ClusterError) as exc:
            raise ClusterError(f"{exc}; {node.name} sees {self.online_nodes(i)}\n"
                               f"{self.log_tail(i)}") from exc

    def log_tail(self, i: int = 1, lines: int = 30) -> str:
        try:
            text = self.log_path(i).read_text(errors="replace")
        except OSError:
            return "(no pacemaker log)"
        return "\n".join(text.splitlines()[-lines:])

    def resource(self, rsc_id: str, i: int | None = None) -> ET.Element | None:
        """The crm_mon ``<resource>`` element of ``rsc_id`` (None if unknown)."""
        for res in self.crm_mon_xml(i).iter("resource"):
            if res.get("id") == rsc_id:
                return res
        return None

    def resource_nodes(self, rsc_id: str, i: int | None = None) -> list[str]:
        res = self.resource(rsc_id, i)
        if res is None or res.get("active") != "true":
            return []
        return [n.get("name", "") for n in res.iter("node")]

    def wait_resource_started(self, rsc_id: str, timeout: float = 30,
                              i: int | None = None) -> str:
        """Wait until ``rsc_id`` is Started (and not failed); return its node."""
        def started() -> str | None:
            res = self.resource(rsc_id, i)
            if (res is not None and res.get("role") == "Started"
                    and res.get("active") == "true" and res.get("failed") == "false"):
                nodes = [n.get("name", "") for n in res.iter("node")]
                return nodes[0] if nodes else None
            return None
        return self.wait_for(started, timeout, what=f"{rsc_id} started")

    def wait_resource_stopped(self, rsc_id: str, timeout: float = 30,
                              i: int | None = None) -> None:
        def stopped() -> bool:
            res = self.resource(rsc_id, i)
            return res is None or (res.get("role") == "Stopped" and res.get("active") == "false")
        self.wait_for(stopped, timeout, what=f"{rsc_id} stopped")

    def failures(self, i: int | None = None) -> list[dict[str, str]]:
        """crm_mon's failed actions, each as its attributes (op_key, exitreason, ...)."""
        return [dict(f.attrib) for f in self.crm_mon_xml(i).iter("failure")]

    def lrm_ops(self, rsc_id: str, i: int | None = None) -> list[dict[str, str]]:
        """The CIB status's recorded operations of ``rsc_id`` (all nodes)."""
        ops = []
        for rsc in self.cib_xml(i).iter("lrm_resource"):
            if rsc.get("id") == rsc_id:
                ops.extend(dict(op.attrib) for op in rsc.iter("lrm_rsc_op"))
        return ops


# -- installing pyha's agents as ocf:pyha:<Type> ------------------------------------

def agent_executables(directory: Path = ROOT / "agents") -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith(("_", "."))
                  and p.suffix == "")


@contextlib.contextmanager
def ocf_provider(provider: str, agents: Mapping[str, Path]) -> Iterator[Path]:
    """Symlink ``agents`` ({type: file}) into /usr/lib/ocf/resource.d/<provider>/.

    Test runs in parallel share the directory.  Each registers its PID under
    /tmp/pyha-cluster-locks/ocf-<provider>.users/; the links a run creates are
    listed in ocf-<provider>.created, and the last run out removes those (never
    a link or file that was there before any of us).  A symlink elsewhere is
    replaced and restored at the end; a regular file (an installed package) is
    an error, never clobbered.
    Agents find their library through realpath, so a symlink is enough.
    """
    target = OCF_PROVIDER_DIR / provider
    users = LOCK_DIR / f"ocf-{provider}.users"
    created = LOCK_DIR / f"ocf-{provider}.created"
    LOCK_DIR.mkdir(mode=0o755, exist_ok=True)
    guard = LOCK_DIR / f"ocf-{provider}.lock"
    me = users / f"{os.getpid()}.{next(_USES)}"
    with open(guard, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        users.mkdir(exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)
        made = []
        for name, src in agents.items():
            link = target / name
            before = ""
            if link.is_symlink():
                before = os.readlink(link)
                if before == str(src):
                    continue
            elif link.exists():
                raise ClusterError(f"{link} is an installed file; not replacing it with {src}")
            tmp = target / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(src)
            tmp.rename(link)  # atomic: a running cluster never sees the agent missing
            made.append(f"{name}\t{src}\t{before}\n")
        with open(created, "a") as listing:
            listing.write("".join(made))
        me.touch()
    try:
        yield target
    finally:
        with open(guard, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            me.unlink(missing_ok=True)
            others = [p for p in users.iterdir()
                      if p.name.split(".")[0].isdigit() and alive(int(p.name.split(".")[0]))]
            if not others and created.exists():
                # newest first, so a chain of replacements unwinds to the original
                for line in reversed(created.read_text().splitlines()):
                    name, src, before = (line.split("\t") + ["", ""])[:3]
                    link = target / name
                    if link.is_symlink() and os.readlink(link) == src:
                        link.unlink()
                        if before:
                            link.symlink_to(before)
                created.unlink()
                with contextlib.suppress(OSError):
                    target.rmdir()  # only when empty


def check_hacluster_can_run(agent: Path) -> None:
    """Pacemaker's controller runs meta-data as hacluster: the checkout must allow it."""
    try:
        proc = subprocess.run([str(agent), "meta-data"], user="hacluster", group="haclient",
                              extra_groups=[], capture_output=True, text=True, timeout=30,
                              env={"PATH": CLEAN_PATH, "OCF_ROOT": "/usr/lib/ocf"},
                              stdin=subprocess.DEVNULL, cwd="/")
        problem = "" if proc.returncode == 0 and "<resource-agent" in proc.stdout else \
            f"rc {proc.returncode}: {proc.stderr.strip()[-300:]}"
    except OSError as exc:
        problem = str(exc)
    if problem:
        raise ClusterError(
            f"hacluster cannot run {agent} meta-data ({problem}); Pacemaker runs meta-data "
            f"as hacluster, so the checkout must be readable by it (not under a 0700 /root)")


def install_pyha_agents() -> contextlib.AbstractContextManager[Path]:
    """Make every ``agents/<Type>`` executable reachable as ``ocf:pyha:<Type>``."""
    check_hacluster_can_run(ROOT / "agents" / "Example")
    return ocf_provider("pyha", {p.name: p for p in agent_executables()})
