"""docs/operator.md runs: every code block, by its info string, on real components.

The guide's blocks are found by their info string (```` ```sh crmsh ```` ...);
the table at the end of the guide says how each kind runs.  Substituted are
only the placeholders in ``PLACEHOLDERS``; node names (``node1``, ``node2``)
and the floating address (192.0.2.0/24) are the test cluster's own.

* ``sh crmsh`` / ``sh pcs``: applied to a two-node namespaced cluster
  (tests/lib/cluster.py), one tool per test.  Inside the nodes, ocf:pyha is this
  checkout's (a bind mount: other test runs relink the host's shared
  /usr/lib/ocf/resource.d/pyha to their own trees), and pyha's fence_ipmilan and
  fence_ilo_mp are /usr/sbin's agents inside the nodes (an overlay in each
  node's mount namespace stands in for ``update-alternatives --set``).  The
  BMC of node1 (OpenIPMI's ipmi_sim) and its iLO MP (tests/sim/ilosim.py)
  listen on 127.0.0.1 inside node2, where the location constraints put node1's
  devices, and the other way round: a simulator that was asked for the power
  state proves its device ran on the right node.  The address is checked with
  ``ip``, the mount with ``findmnt``, both from outside Pacemaker.
* ``sh crmsh verify`` / ``sh pcs verify``: against a shadow CIB (crmsh) or a
  CIB file (``pcs -f``, through a ``pcs`` wrapper first in PATH; pcs 0.11
  ignores ``CIB_file``), then ``crm configure verify`` / ``crm_verify``.
* ``sh logs`` / ``sh trace``: on the node running ``vip``; the trace
  directory is a private bind mount inside the nodes.
* ``xml cluster.conf`` / ``sh fence-node``: ``pyha-fence-node --dry-run``.
* ``sh build`` / ``sh rpm`` on the host; ``sh install`` in the overlay sandbox
  of tests/test_packaging.py (the host's /usr, /etc, /var never change).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FENCE, ROOT
from lib.cluster import Cluster, agent_executables
from sim.ipmisim import IpmiSim

GUIDE = ROOT / "docs" / "operator.md"
KINDS = {"sh build", "sh install", "sh rpm", "sh crmsh", "sh pcs", "sh crmsh verify",
         "sh pcs verify", "sh status", "sh logs", "sh trace", "xml cluster.conf",
         "sh fence-node", "text"}
NODES = ("node1", "node2")
VIP = "192.0.2.100"
TRACE_HOST_DIR = Path("/var/lib/heartbeat/trace_ra")


@dataclass
class Block:
    kind: str
    text: str
    line: int


def blocks(kind: str | None = None) -> list[Block]:
    found, current, start, lines = [], None, 0, []
    for number, line in enumerate(GUIDE.read_text().splitlines(), 1):
        if current is None and line.startswith("```"):
            current, start, lines = line[3:].strip(), number, []
        elif current is not None and line.startswith("```"):
            found.append(Block(current, "\n".join(lines) + "\n", start))
            current = None
        elif current is not None:
            lines.append(line)
    assert current is None, f"unclosed code block at operator.md:{start}"
    return [b for b in found if kind is None or b.kind == kind]


def excerpt_after(block: Block) -> str | None:
    """The ``text`` block that directly follows ``block`` (its expected output)."""
    every = blocks()
    i = next(n for n, b in enumerate(every) if b.line == block.line)
    if i + 1 < len(every) and every[i + 1].kind == "text":
        between = GUIDE.read_text().splitlines()[block.line:every[i + 1].line - 1]
        if sum(1 for line in between if line.startswith("```")) == 1:  # nothing in between
            return every[i + 1].text
    return None


def substitute(text: str, table: dict[str, str]) -> str:
    for key, value in table.items():
        text = re.sub(r"(?<![\w.])" + re.escape(key) + r"(?![\w.])", value, text)
    return text


def normalised(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\bnode[12]\b", "NODE", " ".join(line.split()))
        if line:
            lines.append(line)
    return lines


def assert_excerpt(block: Block, output: str) -> None:
    want = excerpt_after(block)
    if want is None:
        return
    got = normalised(output)
    missing = [line for line in normalised(want) if line not in got]
    assert not missing, f"operator.md:{block.line}: output lacks {missing}:\n{output}"


# -- the guide itself -------------------------------------------------------------------


def test_every_block_is_of_a_kind_this_test_runs():
    found = blocks()
    assert {b.kind for b in found} <= KINDS, {b.kind for b in found} - KINDS
    for kind in KINDS - {"text"}:
        assert blocks(kind), f"no ```{kind} block left: drop it from KINDS"
    text = GUIDE.read_text()
    assert "## Switching a running cluster to pyha" in text
    assert "(operator.md)" in (ROOT / "README.md").read_text() or \
        "docs/operator.md" in (ROOT / "README.md").read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_the_documents_resolve():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{doc.name}: {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", dest.read_text(),
                                                           flags=re.S), re.M)
                assert anchor in {slug(h) for h in headings}, f"{doc.name}: {target}"


def test_crmsh_and_pcs_build_the_same_resources():
    def ids(kind: str) -> set[str]:
        out: set[str] = set()
        for b in blocks(kind) + blocks(kind + " verify"):
            out |= set(re.findall(r"^\s*primitive (\S+)", b.text, re.M))
            out |= set(re.findall(r"^\s*crm configure primitive (\S+)", b.text, re.M))
            out |= set(re.findall(r"pcs (?:resource|stonith) create (\S+)", b.text))
        return out
    assert ids("sh crmsh") == ids("sh pcs")


# -- cluster.conf and pyha-fence-node ---------------------------------------------------


def fence_node_env() -> dict[str, str]:
    return {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}


def test_cluster_conf_blocks_through_pyha_fence_node(tmp_path):
    confs = blocks("xml cluster.conf")
    assert len(confs) >= 2
    agents_seen = set()
    for n, block in enumerate(confs):
        path = tmp_path / f"cluster{n}.conf"
        path.write_text(block.text)
        root = ET.fromstring(block.text.split("?>", 1)[-1])
        devices = {d.get("name"): d for d in root.iter("fencedevice")}
        for node in root.iter("clusternode"):
            proc = subprocess.run(["pyha-fence-node", "-c", str(path), "--dry-run",
                                   node.get("name", "")], capture_output=True, text=True,
                                  timeout=60, env=fence_node_env())
            assert proc.returncode == 0, f"operator.md:{block.line}: {proc.stderr}"
            for used in node.iter("device"):
                agent = devices[used.get("name")].get("agent")
                agents_seen.add(agent)
                assert f"device {used.get('name')}: {agent}\n" in proc.stdout
            assert "secret" not in proc.stdout + proc.stderr
            if any(d.get("passwd") for d in devices.values()):
                assert "passwd=****" in proc.stdout
    assert agents_seen == {"fence_ipmilan", "fence_na", "fence_pcmk"}

    # The command shown in the guide, on the first cluster.conf, prints the excerpt.
    for block in blocks("sh fence-node"):
        script = substitute(block.text, {"/etc/cluster/cluster.conf": str(tmp_path /
                                                                          "cluster0.conf")})
        proc = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True,
                              timeout=60, env=fence_node_env())
        assert proc.returncode == 0, proc.stderr
        assert_excerpt(block, proc.stdout)


# -- install: build on the host, install in the sandbox ----------------------------------


def host_sh(script: str, *, cwd: Path = ROOT, timeout: float = 600) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{script}\nrc={proc.returncode}\n{proc.stdout[-2000:]}\n" \
                                 f"{proc.stderr[-2000:]}"
    return proc.stdout


def test_rpm_block_builds_the_rpm(tmp_path):
    for block in blocks("sh rpm"):
        host_sh(substitute(block.text, {"/tmp/pyha-rpm": str(tmp_path)}))
    assert list(tmp_path.glob("RPMS/noarch/pyha-*.noarch.rpm"))


def test_build_and_install_blocks(tmp_path):
    from test_packaging import Sandbox

    build = tmp_path / "build"
    table = {"/tmp/pyha-build": str(build)}
    for block in blocks("sh build"):
        host_sh(substitute(block.text, table))
    assert list(build.glob("pyha_*_all.deb"))
    box = Sandbox(tmp_path / "sandbox")
    try:
        # tests/lib/cluster.py may have linked the checkout's agents here: hide them in the
        # sandbox only, so the package owns the directory (as test_packaging does).
        box.run(["rm", "-rf", "/usr/lib/ocf/resource.d/pyha"], check=True)
        pyha = "/usr/share/pyha/fence/"
        for block in blocks("sh install"):
            proc = box.run(["sh", "-eu", "-c", substitute(block.text, table)], timeout=600)
            assert proc.returncode == 0, f"operator.md:{block.line}\n{proc.stdout[-3000:]}" \
                                         f"\n{proc.stderr}"
            for name, target in re.findall(r"update-alternatives --set (\S+) (\S+)", block.text):
                assert box.realpath(f"/usr/sbin/{name}") == target
            for name in re.findall(r"update-alternatives --auto (\S+)", block.text):
                assert not box.realpath(f"/usr/sbin/{name}").startswith(pyha)
                assert box.run([f"/usr/sbin/{name}", "-o", "metadata"]).returncode == 0
        assert box.exists("/usr/lib/ocf/resource.d/pyha/IPaddr2")
    finally:
        box.close()


# -- the cluster --------------------------------------------------------------------------


def enter(cluster: Cluster, i: int) -> list[str]:
    return ["nsenter", "-t", str(cluster.node(i).holder_pid), "-m", "-u", "-n", "--"]


class Lab:
    def __init__(self, cluster: Cluster, base: Path, loop: str) -> None:
        self.c = cluster
        self.base = base
        self.loop = loop
        self.mnt = base / "shared"
        self.sims: dict[str, Any] = {}
        self.placeholders = {
            "198.51.100.1": "127.0.0.1", "198.51.100.2": "127.0.0.1",
            "198.51.100.11": "127.0.0.1", "198.51.100.12": "127.0.0.1",
            "/dev/vg0/shared": loop, "/srv/shared": str(self.mnt),
        }

    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.base / "home"), **extra}

    def sh(self, block: Block, i: int = 1, **env: str) -> str:
        script = substitute(block.text, self.placeholders)
        proc = self.c.exec(i, ["sh", "-eu", "-c", script], env=self.env(**env), timeout=180)
        assert proc.returncode == 0, f"operator.md:{block.line} rc={proc.returncode}\n" \
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    def primitives(self, cib: ET.Element | None = None) -> dict[str, ET.Element]:
        root = cib if cib is not None else self.c.cib_xml(1)
        return {p.get("id", ""): p for p in root.iter("primitive")}

    def where(self, rsc: str) -> int:
        node = self.c.wait_resource_started(rsc, timeout=60)
        return NODES.index(node) + 1

    def ilo_log(self, node: str) -> str:
        log = self.base / f"ilo-{node}" / "commands.log"
        return log.read_text() if log.exists() else ""


@pytest.fixture(scope="module")
def lab(pyha_agents: Path) -> Iterator[Lab]:
    # Readable by hacluster: Pacemaker's controller runs meta-data as that user.
    base = Path(tempfile.mkdtemp(prefix="pyha-guide-", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir()
    # ocf:pyha inside the nodes is this checkout's, whatever other test runs link
    # into the host's shared /usr/lib/ocf/resource.d/pyha meanwhile.
    ocf = base / "ocf-pyha"
    ocf.mkdir()
    for agent in agent_executables():
        (ocf / agent.name).symlink_to(agent)
    image = base / "shared.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    TRACE_HOST_DIR.mkdir(parents=True, exist_ok=True)  # the mount point of the bind below
    cluster = Cluster(nodes=2, subnet="192.0.2", node_names=list(NODES))
    procs: list[subprocess.Popen[bytes]] = []
    sims: list[IpmiSim] = []
    try:
        cluster.start()
        lab = Lab(cluster, base, loop)
        for node in cluster.nodes:
            upper, work = base / f"{node.name}-upper", base / f"{node.name}-work"
            upper.mkdir()
            work.mkdir()
            for name in ("fence_ipmilan", "fence_ilo_mp"):
                (upper / name).symlink_to(FENCE / name)
            trace = base / f"{node.name}-trace"
            trace.mkdir(mode=0o755)
            cluster.exec(node.index, ["mount", "-t", "overlay", f"{cluster.prefix}-sbin", "-o",
                                      f"lowerdir=/usr/sbin,upperdir={upper},workdir={work}",
                                      "/usr/sbin"], check=True)
            cluster.exec(node.index, ["mount", "--bind", str(trace), str(TRACE_HOST_DIR)],
                         check=True)
            cluster.exec(node.index, ["mount", "--bind", str(ocf), str(pyha_agents)],
                         check=True)
        # node1's BMC and iLO answer inside node2 (where node1's devices run), and back.
        for victim, host in (("node1", 2), ("node2", 1)):
            sim = IpmiSim(623, prefix=enter(cluster, host))
            sim.dir = base / f"bmc-{victim}"
            sims.append(sim.start())
            lab.sims[victim] = sim
            ilo = base / f"ilo-{victim}"
            ilo.mkdir()
            (ilo / "power").write_text("on\n")
            procs.append(subprocess.Popen(
                [*enter(cluster, host), "/usr/bin/python3", str(ROOT / "tests/sim/ilosim.py"),
                 "--telnet", "23", str(ilo)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            cluster.wait_for(lambda h=host: cluster.exec(h, ["ss", "-Htln", "sport = :23"])
                             .stdout.strip(), 10, what="ilosim listening")
        yield lab
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)
        for sim in sims:
            sim.stop()
        cluster.stop()
        subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(base, ignore_errors=True)


def check_running(lab: Lab) -> None:
    """Every configured resource started where its constraints say, seen from outside."""
    prims = lab.primitives()
    assert {"vip", "fs_shared", "fence-node1", "fence-node2"} <= set(prims)
    for rsc, prim in prims.items():
        node = lab.where(rsc)
        for nv in prim.iter("nvpair"):
            if nv.get("name") == "pcmk_host_list":
                assert NODES[node - 1] != nv.get("value"), f"{rsc} runs on its own target"
    vip_node = lab.where("vip")
    for i, name in enumerate(NODES, 1):
        addrs = subprocess.run(["ip", "-n", lab.c.node(i).netns, "-o", "addr", "show"],
                               capture_output=True, text=True, check=True).stdout
        on_eth0 = re.search(rf"\beth0\s+inet {re.escape(VIP)}/24\b", addrs) is not None
        assert on_eth0 == (i == vip_node), f"{VIP} on {name}: {addrs}"
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "--task",
                                 str(lab.c.node(i).holder_pid), str(lab.mnt)],
                                capture_output=True, text=True).stdout.strip()
        assert (source == lab.loop) == (i == lab.where("fs_shared")), (name, source)
    # The depth-20 monitor is configured and has written its status file in the mount.
    depth = [op for op in prims["fs_shared"].iter("op")
             if any(nv.get("name") == "OCF_CHECK_LEVEL" and nv.get("value") == "20"
                    for nv in op.iter("nvpair"))]
    assert depth, ET.tostring(prims["fs_shared"], encoding="unicode")
    status_dir = lab.c.node_path(lab.where("fs_shared"), str(lab.mnt / ".Filesystem_status"))
    lab.c.wait_for(lambda: status_dir.is_dir() and any(status_dir.iterdir()), 60,
                   what="the depth-20 status file")
    # Each device's monitor reached its own node's simulator (only reachable where
    # the constraints put it).
    for victim in NODES:
        lab.c.wait_for(lambda v=victim: "get power" in
                       (lab.sims[v].dir / "chassis.log").read_text(errors="replace"), 30,
                       what=f"{victim}'s BMC asked for the power state")
        if f"fence-{victim}-ilo" in prims:
            lab.c.wait_for(lambda v=victim: "show /system1" in lab.ilo_log(v), 30,
                           what=f"{victim}'s iLO asked for the power state")


def run_verify_blocks(lab: Lab, tool: str) -> None:
    """The verify-only blocks against a copy of the live CIB; the live CIB stays as it was."""
    live_before = set(lab.primitives())
    verify = blocks(f"sh {tool} verify")
    wanted = set()
    for b in verify:
        wanted |= set(re.findall(r"(?:^\s*primitive|crm configure primitive|"
                                 r"(?:resource|stonith) create) (\S+)", b.text, re.M))
    if tool == "crmsh":
        lab.c.exec(1, ["crm_shadow", "--batch", "--force", "--create", "guide"], check=True)
        try:
            for b in verify:
                lab.sh(b, CIB_shadow="guide")
            out = lab.c.exec(1, ["crm", "configure", "verify"], env=lab.env(CIB_shadow="guide"))
            assert out.returncode == 0, out.stdout + out.stderr
            assert "ERROR" not in out.stdout + out.stderr, out.stdout + out.stderr
            res = lab.c.exec(1, ["crm_verify", "-L", "-V"], env={"CIB_shadow": "guide"})
            assert res.returncode == 0, res.stdout + res.stderr
            shadow = ET.fromstring(lab.c.exec(1, ["cibadmin", "-Q"],
                                              env={"CIB_shadow": "guide"}, check=True).stdout)
        finally:
            lab.c.exec(1, ["crm_shadow", "--batch", "--force", "--delete", "guide"])
    else:
        copy = lab.base / "pcs-verify.xml"
        copy.write_text(lab.c.exec(1, ["cibadmin", "-Q"], check=True).stdout)
        wrapper = lab.base / "pcs-wrapper"
        wrapper.mkdir(exist_ok=True)
        (wrapper / "pcs").write_text(f'#!/bin/sh\nexec /usr/sbin/pcs -f "{copy}" "$@"\n')
        (wrapper / "pcs").chmod(0o755)
        for b in verify:
            lab.sh(b, PATH=f"{wrapper}:/usr/sbin:/usr/bin:/sbin:/bin")
        res = lab.c.exec(1, ["crm_verify", "-x", str(copy), "-V"])
        assert res.returncode == 0, res.stdout + res.stderr
        shadow = ET.fromstring(copy.read_text())
    assert wanted <= set(lab.primitives(shadow)), wanted - set(lab.primitives(shadow))
    assert set(lab.primitives()) == live_before  # nothing reached the live cluster
    types = {p.get("type") for p in lab.primitives(shadow).values()}
    assert {"VirtualDomain", "Xen", "drbd", "o2cb"} <= types


def teardown_resources(lab: Lab) -> None:
    c = lab.c
    c.set_property("stop-all-resources", "true")
    try:
        c.wait_for(lambda: not any(r.get("active") == "true"
                                   for r in c.crm_mon_xml(1).iter("resource")), 90,
                   what="every resource stopped")
    except BaseException:
        diagnose(lab)
        raise
    for section in ("constraints", "resources"):
        c.exec(1, ["cibadmin", "--replace", "-o", section, "--xml-text", f"<{section}/>"],
               check=True)
    c.exec(1, ["crm_attribute", "--type", "crm_config", "--name", "stop-all-resources",
               "--delete"], check=True)
    c.set_property("stonith-enabled", "false")
    c.exec(1, ["crm_resource", "--cleanup"], check=True)
    for i in (1, 2):  # stopped for real: no address, no mount on either node
        addrs = subprocess.run(["ip", "-n", c.node(i).netns, "-o", "addr", "show"],
                               capture_output=True, text=True, check=True).stdout
        assert VIP not in addrs
        assert subprocess.run(["findmnt", "--task", str(c.node(i).holder_pid),
                               str(lab.mnt)], capture_output=True).returncode != 0
    for sim in lab.sims.values():
        (sim.dir / "chassis.log").write_text("")
    for victim in NODES:
        log = lab.base / f"ilo-{victim}" / "commands.log"
        log.unlink(missing_ok=True)


def run_status_blocks(lab: Lab) -> None:
    for b in blocks("sh status"):
        assert_excerpt(b, lab.sh(b))


def diagnose(lab: Lab) -> None:
    """On a failure, show what the cluster saw (pytest prints it with the error)."""
    for i in (1, 2):
        print(f"--- crm_mon on {NODES[i - 1]}:\n"
              + lab.c.exec(i, ["crm_mon", "-1", "-r", "--include=failures"]).stdout)
        print(f"--- pacemaker.log of {NODES[i - 1]}:\n" + lab.c.log_tail(i, 60))


def test_crmsh_blocks_start_on_the_cluster(lab):
    try:
        for b in blocks("sh crmsh"):
            lab.sh(b)
        check_running(lab)
        run_status_blocks(lab)
        run_logs_and_trace(lab)
        check_running(lab)
        run_verify_blocks(lab, "crmsh")
    except BaseException:
        diagnose(lab)
        raise
    finally:
        teardown_resources(lab)


def test_pcs_blocks_start_on_the_cluster(lab):
    try:
        for b in blocks("sh pcs"):
            lab.sh(b)
        check_running(lab)
        run_status_blocks(lab)
        run_verify_blocks(lab, "pcs")
    except BaseException:
        diagnose(lab)
        raise
    finally:
        teardown_resources(lab)


def run_logs_and_trace(lab: Lab) -> None:
    node = lab.where("vip")
    for b in blocks("sh logs"):
        assert "IPaddr2(vip)" in lab.sh(b, node)
    trace = lab.base / f"{NODES[node - 1]}-trace" / "IPaddr2"
    before = set(os.listdir(trace)) if trace.exists() else set()
    trace_blocks = blocks("sh trace")
    assert "crm resource trace vip start" in trace_blocks[0].text
    lab.sh(trace_blocks[0], node)
    # Pacemaker restarts vip by itself (its start operation changed): no restart asked.
    new = lab.c.wait_for(lambda: {f for f in os.listdir(trace) if f.startswith("vip.start.")}
                         - before if trace.exists() else set(), 60, what="a start trace")
    (name,) = new
    path = trace / name
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "OCF_RESKEY_trace_ra=1" in text and f"ip={VIP}" in text
    assert "# start exit code 0" in text
    for b in trace_blocks[1:]:
        out = lab.sh(b, lab.where("vip"))
        if b.text.startswith("ls "):
            assert name in out.split()
    ops = lab.c.exec(1, ["crm", "configure", "show", "vip"], env=lab.env()).stdout
    assert "trace_ra" not in ops
