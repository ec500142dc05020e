"""The deb and the rpm: build them, install the deb, use the installed paths.

The .deb is built by packaging/build-deb.sh from a copy of the tree (under
/tmp/pyha-pkg-*; nothing is written into the checkout).  It is installed
with ``apt-get install ./pyha_*.deb`` next to Debian's resource-agents and
fence-agents, exercised through the cluster tools that read the installed
paths (crm_resource, stonith_admin, pcs, crmsh), then purged, after which
Debian's own agents must still work.

Isolation (decided here): everything that installs runs in a private mount
namespace whose /usr, /etc and /var are overlays (writes land in a temp
directory).  dpkg, apt, update-alternatives and dpkg-divert do their real
work there with the real package database, but the host's files never
change: other tests that link repo agents into /usr/lib/ocf/resource.d/pyha
at the same time never collide with the package, and a crashed run leaves
nothing behind.  The purge is still tested for what it restores.  /var/lib/dpkg
is a private copy taken while the host's dpkg is idle, so that another apt run
on the host cannot show the sandbox a half-written database.

Package churn: the package that ships /usr/sbin/fence_ipmilan (found with
``dpkg -S``) is removed and reinstalled under pyha, and every shared agent must
keep working throughout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT

CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
DEB_DEPENDS = {"python3-lxml", "python3-libvirt", "python3-pexpect", "python3-pyghmi"}
DIRECT_FENCE = ("fence_na", "fence_pcmk")


def tree_agents() -> list[str]:
    return sorted(p.name for p in (ROOT / "agents").iterdir()
                  if p.is_file() and os.access(p, os.X_OK) and "." not in p.name
                  and not p.name.startswith("_"))


def tree_fence_agents() -> list[str]:
    return sorted(p.name for p in (ROOT / "fence").glob("fence_*")
                  if p.is_file() and os.access(p, os.X_OK) and "." not in p.name)


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="pyha-pkg-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def deb(workdir: Path) -> Path:
    proc = subprocess.run([str(ROOT / "packaging" / "build-deb.sh"), str(workdir)],
                          capture_output=True, text=True, timeout=600, env=CLEAN_ENV)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.name.startswith("pyha_") and path.name.endswith("_all.deb")
    return path


class Sandbox:
    """A mount namespace whose /usr, /etc and /var are private overlays."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                                        "sleep", "infinity"], stdin=subprocess.DEVNULL)
        try:
            self._wait_private()
            for top in ("usr", "etc", "var"):
                upper, work = base / top / "upper", base / top / "work"
                upper.mkdir(parents=True)
                work.mkdir()
                self.run(["mount", "-t", "overlay", f"pyha-pkg-{top}", "-o",
                          f"lowerdir=/{top},upperdir={upper},workdir={work}", f"/{top}"],
                         check=True)
            self._private_dpkg_database()
            # Skip the man-db trigger's index rebuild (seconds, and not what we test).
            self.run(["debconf-set-selections"], check=True,
                     input="man-db man-db/auto-update boolean false\n")
        except BaseException:
            self.close()
            raise

    def _private_dpkg_database(self, timeout: float = 600.0) -> None:
        """Give the sandbox a copy of /var/lib/dpkg taken while the host's dpkg is idle.

        The overlay's lower /var is the live host: an apt run on the host (another
        engineer's set-up) would otherwise show the sandbox a half-written journal
        ("dpkg was interrupted").  The copy is taken between two idle checks."""
        import time

        copy = self.base / "dpkg"
        end = time.monotonic() + timeout
        while True:
            if host_dpkg_idle():
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree("/var/lib/dpkg", copy, symlinks=True)
                if host_dpkg_idle():
                    break
            if time.monotonic() >= end:
                raise RuntimeError("the host's dpkg stayed busy; no consistent database copy")
            time.sleep(2)
        self.run(["mount", "--bind", str(copy), "/var/lib/dpkg"], check=True)

    def _wait_private(self, timeout: float = 10.0) -> None:
        """Mount nothing until the holder really is in its own mount namespace.

        Right after the fork, /proc/<pid>/ns/mnt is still ours: an nsenter then
        would mount the overlays over the host's /usr.  Wait until unshare has
        exec'd sleep, i.e. after unshare(2) and the private propagation."""
        import time

        pid = self.holder.pid
        ours = os.readlink("/proc/self/ns/mnt")
        end = time.monotonic() + timeout
        while True:
            try:
                with open(f"/proc/{pid}/comm", encoding="ascii") as handle:
                    comm = handle.read().strip()
                theirs = os.readlink(f"/proc/{pid}/ns/mnt")
            except OSError:
                comm, theirs = "", ours
            if comm == "sleep" and theirs != ours:
                return
            if time.monotonic() >= end or self.holder.poll() is not None:
                raise RuntimeError("the sandbox's mount namespace did not come up")
            time.sleep(0.01)

    def run(self, argv: list[str], *, check: bool = False, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 300,
            ) -> subprocess.CompletedProcess[str]:
        if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            raise RuntimeError("the sandbox shares the host's mount namespace")
        full = {**CLEAN_ENV, **(env or {})}
        proc = subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", "env", "-i",
                               *[f"{k}={v}" for k, v in full.items()], *argv],
                              capture_output=True, text=True, input=input, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, f"{argv}: rc={proc.returncode}\n{proc.stdout}\n" \
                                         f"{proc.stderr}"
        return proc

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path]).returncode == 0

    def realpath(self, path: str) -> str:
        return self.run(["readlink", "-f", path], check=True).stdout.strip()

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()
        leaked = host_overlays()
        for target in leaked:  # never leave a sandbox overlay on the host
            subprocess.run(["umount", "-l", target], check=False)
        assert not leaked, f"sandbox overlays leaked onto the host: {leaked}"


def host_dpkg_idle() -> bool:
    """No process holds the host's dpkg locks and no journal entry is pending."""
    held = set()
    with open("/proc/locks", encoding="ascii") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 5:
                held.add(fields[5])
    for name in ("lock", "lock-frontend"):
        try:
            st = os.stat(f"/var/lib/dpkg/{name}")
        except FileNotFoundError:
            continue
        if f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}" in held:
            return False
    return not any(n.isdigit() for n in os.listdir("/var/lib/dpkg/updates"))


def host_overlays() -> list[str]:
    """Mount points in *our* namespace that carry a sandbox overlay (should be none)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line.split()[4] for line in handle if " pyha-pkg-" in line]


def install(box: Sandbox, deb: Path) -> None:
    # As the README says: apt install ./pyha_*.deb (from the directory of the .deb).
    proc = box.run(["env", "-C", str(deb.parent), "apt-get", "install", "-y", f"./{deb.name}"],
                   timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


@pytest.fixture(scope="module")
def installed(deb: Path, workdir: Path):
    box = Sandbox(workdir / "sandbox")
    try:
        # tests/lib/cluster.py links repo agents into the host's resource.d/pyha while
        # cluster tests run; the overlay shows the host live.  Hide that directory
        # in the sandbox only (a whiteout), so the package owns what it finds there.
        box.run(["rm", "-rf", "/usr/lib/ocf/resource.d/pyha"], check=True)
        install(box, deb)
        yield box
    finally:
        box.close()


# -- the package itself ---------------------------------------------------------------


def test_deb_depends_only_on_debians_libraries(deb):
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Architecture"],
                            capture_output=True, text=True, check=True).stdout
    depends = {d.strip().split()[0] for d in fields.split("\n")[0].split(":", 1)[1].split(",")}
    assert depends == DEB_DEPENDS | {"python3:any"}, depends
    assert "python3-pyghmi (>= 1.5.34)" in fields and "python3-pyghmi (<< 1.7~)" in fields
    assert "Architecture: all" in fields


def test_deb_layout(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    entries = {}
    for line in listing.splitlines():
        parts = line.split(None, 5)[5].split(" -> ")
        path = parts[0].lstrip(".")
        # symlink targets, resolved to absolute paths
        entries[path] = (os.path.normpath(os.path.join(os.path.dirname(path), parts[1]))
                         if len(parts) > 1 else None)
    for name in tree_agents():
        assert entries[f"/usr/lib/ocf/resource.d/pyha/{name}"] == \
            f"/usr/share/pyha/agents/{name}"
        assert f"/usr/share/pyha/agents/{name}" in entries
        assert f"/usr/share/man/man7/ocf_pyha_{name}.7.gz" in entries
    for name in ("fence_pcmk", "fence_na"):
        if name in tree_fence_agents():
            assert entries[f"/usr/sbin/{name}"] == f"/usr/share/pyha/fence/{name}"
            assert f"/usr/share/man/man8/{name}.8.gz" in entries
    for name in tree_fence_agents():
        assert f"/usr/share/pyha/fence/{name}" in entries
        if name not in DIRECT_FENCE:
            assert f"/usr/sbin/{name}" not in entries  # update-alternatives owns that
    assert entries["/usr/share/cluster/Example.sh"] == "/usr/share/pyha/agents/Example"
    for cmd in ("pyha-tester", "pyha-metadata", "pyha-fence-node", "pyha-migrate"):
        assert f"/usr/bin/{cmd}" in entries
        assert f"/usr/share/man/man1/{cmd}.1.gz" in entries
    assert not any(p.startswith("/usr/lib/python3") for p in entries)
    for name in tree_fence_agents():
        if name not in DIRECT_FENCE:
            assert f"/usr/share/pyha/upstream/{name}" in entries


def test_deb_triggers_on_both_names_of_each_diverted_agent(deb):
    """The triggers spec matches the path the other package ships (/usr/sbin/<name>),
    dpkg's code the diverted truename: pyha is interested in both, and in nothing
    it ships itself (which would trigger pyha on its own upgrades)."""
    triggers = subprocess.run(["dpkg-deb", "-I", str(deb), "triggers"], capture_output=True,
                              text=True, check=True).stdout.split("\n")
    interests = {line.split()[1] for line in triggers if line.startswith("interest-noawait ")}
    names = [n for n in tree_fence_agents() if n not in DIRECT_FENCE]
    assert interests == {f"/usr/sbin/{n}" for n in names} | \
        {f"/usr/share/pyha/diverted/{n}" for n in names}


def test_rpm_file_list(workdir):
    src = workdir / "rpm-src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", ".*_cache"))
    top = workdir / "rpm-top"
    proc = subprocess.run(["rpmbuild", "-bb", "--build-in-place", "--define", f"_topdir {top}",
                           "packaging/pyha.spec"], cwd=src, capture_output=True, text=True,
                          env={**CLEAN_ENV, "HOME": str(workdir)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rpm = top / "RPMS" / "noarch" / "pyha-0.1.0-1.noarch.rpm"
    files = set(subprocess.run(["rpm", "-qlp", str(rpm)], capture_output=True, text=True,
                               check=True).stdout.split())
    for name in tree_agents():
        assert f"/usr/lib/ocf/resource.d/pyha/{name}" in files
        assert f"/usr/share/pyha/agents/{name}" in files
    for name in tree_fence_agents():
        assert f"/usr/share/pyha/fence/{name}" in files
    assert "/usr/sbin/fence_pcmk" in files and "/usr/share/cluster/Example.sh" in files
    assert "/usr/share/pyha/ocf_lib/ocf.py" in files
    assert any(f.startswith("/usr/share/pyha/ocf_lib/__pycache__/") for f in files)
    requires = {r.strip() for r in subprocess.run(
        ["rpm", "-qp", "--requires", str(rpm)], capture_output=True, text=True,
        check=True).stdout.split("\n")}
    assert DEB_DEPENDS - {"python3-pyghmi"} <= requires, requires
    assert "python3 >= 3.9" in requires, requires
    assert "(python3-pyghmi >= 1.5.34 with python3-pyghmi < 1.7)" in requires, requires
    arch = subprocess.run(["rpm", "-qp", "--qf", "%{ARCH}", str(rpm)], capture_output=True,
                          text=True, check=True).stdout
    assert arch == "noarch"
    scripts = subprocess.run(["rpm", "-qp", "--scripts", str(rpm)], capture_output=True,
                             text=True, check=True).stdout
    assert "update-alternatives --install" in scripts and "--remove" in scripts


# -- installed: the cluster tools find and read the agents -------------------------------


def installed_types(box: Sandbox) -> list[str]:
    out = box.run(["ls", "/usr/lib/ocf/resource.d/pyha"], check=True).stdout.split()
    assert sorted(out) == tree_agents()
    return out


def test_crm_resource_reads_every_installed_agent(installed):
    for name in installed_types(installed):
        proc = installed.run(["crm_resource", "--show-metadata", f"ocf:pyha:{name}"])
        assert proc.returncode == 0, (name, proc.stderr)
        assert ET.fromstring(proc.stdout).get("name") == name


def test_stonith_admin_reads_the_fence_agents(installed):
    names = [n for n in ("fence_na", "fence_pcmk") if n in tree_fence_agents()]
    assert names
    for name in names:
        proc = installed.run(["stonith_admin", "--metadata", "--agent", name])
        assert proc.returncode == 0, (name, proc.stderr)
        assert ET.fromstring(proc.stdout).get("name") == name
    listed = installed.run(["stonith_admin", "--list-installed"], check=True).stdout
    assert all(n in listed.split() for n in names)
    for name in names:
        proc = installed.run(["pcs", "stonith", "describe", name], timeout=120)
        assert proc.returncode == 0 and name in proc.stdout, (name, proc.stderr)
        proc = installed.run(["crm", "ra", "info", f"stonith:{name}"], timeout=120)
        assert proc.returncode == 0 and name in proc.stdout, (name, proc.stderr)


def test_pcs_describes_every_installed_agent(installed):
    for name in installed_types(installed):
        proc = installed.run(["pcs", "resource", "describe", f"ocf:pyha:{name}"], timeout=120)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        assert f"ocf:pyha:{name}" in proc.stdout


def test_crmsh_ra_info_for_every_installed_agent(installed):
    for name in installed_types(installed):
        proc = installed.run(["crm", "ra", "info", f"ocf:pyha:{name}"], timeout=120)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        assert name in proc.stdout


def test_installed_agents_run_and_are_byte_compiled(installed):
    assert installed.exists("/usr/share/pyha/ocf_lib/__pycache__")
    proc = installed.run(["/usr/lib/ocf/resource.d/pyha/Example", "monitor"],
                         env={"HA_RSCTMP": "/var/tmp", "OCF_RESOURCE_INSTANCE": "pkgtest"})
    assert proc.returncode == 7, proc.stderr
    rg = installed.run(["/usr/share/cluster/Example.sh", "meta-data"], check=True).stdout
    assert 'primary="1"' in rg and '<special tag="rgmanager"' in rg
    # The installed tools import the private tree (drift itself is CI's own check).
    proc = installed.run(["pyha-metadata", "--dir", "/var/tmp/pyha-md"])
    assert proc.returncode == 0 and "metadata files" in proc.stdout, proc.stderr
    dry = installed.run(["pyha-fence-node", "-c", "/dev/stdin", "--dry-run", "n1"],
                        input='<cluster><clusternodes><clusternode name="n1"><fence>'
                              '<method name="m"><device name="p" port="n1"/></method></fence>'
                              '</clusternode></clusternodes><fencedevices>'
                              '<fencedevice name="p" agent="fence_pcmk"/></fencedevices>'
                              '</cluster>', check=True).stdout
    assert "port=n1\nnodename=n1\nagent=fence_pcmk\n" in dry


def alternatives(box: Sandbox) -> list[str]:
    return box.run(["cat", "/usr/share/pyha/fence-alternatives"], check=True).stdout.split()


def test_fence_agents_coexist_through_alternatives(installed):
    names = alternatives(installed)
    assert sorted(names) == sorted(n for n in tree_fence_agents()
                                   if n not in ("fence_na", "fence_pcmk"))
    for name in names:
        diverted = f"/usr/share/pyha/diverted/{name}"
        if installed.exists(diverted):
            # Debian's agent keeps the higher priority: nothing changes by installing.
            assert installed.realpath(f"/usr/sbin/{name}") == f"/usr/share/pyha/upstream/{name}"
            proc = installed.run([f"/usr/sbin/{name}", "-o", "metadata"])
            assert proc.returncode == 0 and f'name="{name}"' in proc.stdout
            assert proc.stdout == installed.run([diverted, "-o", "metadata"]).stdout
        else:
            assert installed.realpath(f"/usr/sbin/{name}") == f"/usr/share/pyha/fence/{name}"
    if "fence_ipmilan" in names:
        installed.run(["update-alternatives", "--set", "fence_ipmilan",
                       "/usr/share/pyha/fence/fence_ipmilan"], check=True)
        assert installed.realpath("/usr/sbin/fence_ipmilan") == \
            "/usr/share/pyha/fence/fence_ipmilan"
        proc = installed.run(["stonith_admin", "--metadata", "--agent", "fence_ipmilan"])
        assert proc.returncode == 0, proc.stderr
        installed.run(["update-alternatives", "--auto", "fence_ipmilan"], check=True)


def owner(box: Sandbox, path: str) -> str | None:
    """The package that ships *path*, by ``dpkg -S`` (diversions are followed)."""
    for line in box.run(["dpkg", "-S", path]).stdout.splitlines():
        if not line.startswith("diversion by ") and line.endswith(f": {path}"):
            return line.split(":")[0].split(",")[0].strip()
    return None


def status(box: Sandbox, package: str) -> str:
    return box.run(["dpkg-query", "-W", "-f", "${Status}", package], check=True).stdout


def query(box: Sandbox, name: str) -> list[str]:
    out = box.run(["update-alternatives", "--query", name]).stdout
    return sorted(line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("Alternative: "))


def package_file(box: Sandbox, package: str, workdir: Path) -> Path:
    """The .deb of the installed version of *package*: apt's cache, else apt-get download."""
    version, arch = box.run(["dpkg-query", "-W", "-f", "${Version} ${Architecture}",
                             package], check=True).stdout.split()
    cached = Path(f"/var/cache/apt/archives/{package}_{version.replace(':', '%3a')}_{arch}.deb")
    if cached.is_file():
        return cached
    dest = workdir / "debs"
    dest.mkdir(exist_ok=True)
    proc = box.run(["env", "-C", str(dest), "apt-get", "download", f"{package}={version}"],
                   timeout=300)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        pytest.skip(f"no .deb of {package} {version} (apt cache empty, download failed)")
    return found[0]


def test_upstream_package_churn_keeps_every_agent_working(installed, workdir):
    """Remove the package that owns Debian's fence agents, then install it again."""
    pkg = owner(installed, "/usr/sbin/fence_ipmilan")
    if pkg is None:
        pytest.skip("no package ships /usr/sbin/fence_ipmilan on this machine")
    debfile = package_file(installed, pkg, workdir)
    names = [n for n in alternatives(installed) if owner(installed, f"/usr/sbin/{n}") == pkg]
    assert "fence_ipmilan" in names
    pyha_metadata = installed.run(["/usr/share/pyha/fence/fence_ipmilan", "-o", "metadata"],
                                  check=True).stdout

    # Removed, before dpkg runs pyha's trigger: the trigger is pending, and every
    # /usr/sbin/<name> still runs an agent (pyha's, which is where the trigger goes).
    installed.run(["dpkg", "--remove", "--no-triggers", pkg], check=True)
    assert status(installed, "pyha") == "install ok triggers-pending"
    pending = installed.run(["dpkg-query", "-W", "-f", "${Triggers-Pending}", "pyha"],
                            check=True).stdout.split()
    assert pending and all(p.rsplit("/", 1)[1] in names for p in pending), pending
    print("pyha's pending triggers after the removal:", pending)
    for name in names:
        assert not installed.exists(f"/usr/share/pyha/diverted/{name}")
        proc = installed.run([f"/usr/sbin/{name}", "-o", "metadata"])
        assert proc.returncode == 0 and f'name="{name}"' in proc.stdout, (name, proc.stderr)
        assert "running pyha's" in proc.stderr
    assert installed.run(["/usr/sbin/fence_ipmilan", "-o", "metadata"]).stdout == pyha_metadata

    # The trigger: only pyha's alternative is left, and it is the link's target.
    installed.run(["dpkg", "--triggers-only", "pyha"], check=True)
    assert status(installed, "pyha") == "install ok installed"
    for name in names:
        assert query(installed, name) == [f"/usr/share/pyha/fence/{name}"]
        assert installed.realpath(f"/usr/sbin/{name}") == f"/usr/share/pyha/fence/{name}"
    proc = installed.run(["stonith_admin", "--metadata", "--agent", "fence_ipmilan"])
    assert proc.returncode == 0 and ET.fromstring(proc.stdout).get("name") == "fence_ipmilan"

    # Installed again after pyha: its files land in the diversion directory and the
    # trigger registers them again, with the higher priority.
    installed.run(["dpkg", "--install", str(debfile)], check=True, timeout=300)
    assert status(installed, pkg) == "install ok installed"
    assert status(installed, "pyha") == "install ok installed"
    for name in names:
        diverted = f"/usr/share/pyha/diverted/{name}"
        assert installed.run(["test", "-f", diverted]).returncode == 0, name
        assert query(installed, name) == sorted([f"/usr/share/pyha/fence/{name}",
                                                 f"/usr/share/pyha/upstream/{name}"])
        assert installed.realpath(f"/usr/sbin/{name}") == f"/usr/share/pyha/upstream/{name}"
        proc = installed.run([f"/usr/sbin/{name}", "-o", "metadata"])
        assert proc.returncode == 0 and "running pyha's" not in proc.stderr, proc.stderr
        assert proc.stdout == installed.run([diverted, "-o", "metadata"]).stdout


def test_configure_replaces_the_old_direct_alternative(installed):
    """Earlier packages registered the diverted file itself as the alternative."""
    name = "fence_ipmilan"
    diverted = f"/usr/share/pyha/diverted/{name}"
    if not installed.exists(diverted):
        pytest.skip(f"no package ships /usr/sbin/{name} on this machine")
    installed.run(["update-alternatives", "--install", f"/usr/sbin/{name}", name, diverted,
                   "50"], check=True)
    installed.run(["update-alternatives", "--set", name, diverted], check=True)
    installed.run(["/var/lib/dpkg/info/pyha.postinst", "configure", "0.1.0-1"], check=True)
    assert query(installed, name) == sorted([f"/usr/share/pyha/fence/{name}",
                                             f"/usr/share/pyha/upstream/{name}"])
    assert installed.realpath(f"/usr/sbin/{name}") == f"/usr/share/pyha/upstream/{name}"


def test_configure_releases_a_name_this_version_no_longer_ships(installed):
    """An earlier pyha diverted a name (an alias since dropped): configure gives
    the file back to its path and drops the alternatives."""
    name, path = "fence_pyhatestold", "/usr/sbin/fence_pyhatestold"
    diverted = f"/usr/share/pyha/diverted/{name}"
    installed.run(["sh", "-c", f"printf '#!/bin/sh\\necho old\\n' > {path}; chmod 755 {path}"],
                  check=True)
    installed.run(["dpkg-divert", "--package", "pyha", "--add", "--rename", "--divert",
                   diverted, path], check=True)
    installed.run(["update-alternatives", "--install", path, name, diverted, "50"], check=True)
    assert installed.realpath(path) == diverted
    installed.run(["/var/lib/dpkg/info/pyha.postinst", "configure", "0.1.0-1"], check=True)
    assert name not in installed.run(["dpkg-divert", "--list"], check=True).stdout
    assert installed.run(["update-alternatives", "--query", name]).returncode != 0
    assert installed.run(["test", "-f", path, "-a", "!", "-L", path]).returncode == 0
    assert installed.run([path], check=True).stdout == "old\n"
    assert not installed.exists(diverted)
    installed.run(["rm", path], check=True)


def test_a_name_that_cannot_be_registered_does_not_stop_the_others(installed):
    """Another package's alternatives group holds one of our names as a slave link:
    that name is skipped with a warning, every other one is registered."""
    names = alternatives(installed)
    victim, others = names[0], names[1:]
    for name in names:
        installed.run(["update-alternatives", "--remove-all", name], check=True)
        assert not installed.exists(f"/usr/sbin/{name}")
    conflict = ["update-alternatives", "--install", "/usr/local/sbin/pyha-conflict",
                "pyha-conflict", "/usr/bin/true", "10", "--slave", f"/usr/sbin/{victim}", victim,
                "/usr/bin/false"]
    installed.run(conflict, check=True)
    proc = installed.run(["/var/lib/dpkg/info/pyha.postinst", "configure", "0.1.0-1"])
    assert proc.returncode == 0, proc.stderr
    assert f"pyha: {victim}: " in proc.stderr
    assert installed.realpath(f"/usr/sbin/{victim}") == "/usr/bin/false"  # left alone
    for name in others:
        assert installed.realpath(f"/usr/sbin/{name}") in (
            f"/usr/share/pyha/upstream/{name}", f"/usr/share/pyha/fence/{name}"), name
    # Once the conflict is gone, configuring again registers the name too.
    installed.run(["update-alternatives", "--remove-all", "pyha-conflict"], check=True)
    installed.run(["/var/lib/dpkg/info/pyha.postinst", "configure", "0.1.0-1"], check=True)
    for name in names:
        assert f"/usr/share/pyha/fence/{name}" in query(installed, name)
        assert installed.run([f"/usr/sbin/{name}", "-o", "metadata"]).returncode == 0


def test_purge_restores_debians_agents(installed, deb):
    """Remove the package and show Debian's own agents work as before.  The tests
    run in random order and share the sandbox: the package goes back in after."""
    names = alternatives(installed)
    try:
        purge_and_check(installed, names)
    finally:
        install(installed, deb)


def purge_and_check(installed: Sandbox, names: list[str]) -> None:
    proc = installed.run(["apt-get", "purge", "-y", "pyha"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert not installed.exists("/usr/lib/ocf/resource.d/pyha")
    assert not installed.exists("/usr/share/pyha")
    assert not installed.exists("/usr/share/cluster/Example.sh")
    assert "pyha" not in installed.run(["dpkg-divert", "--list"], check=True).stdout
    for name in names:
        assert installed.run(["update-alternatives", "--query", name]).returncode != 0
    meta = installed.run(["crm_resource", "--show-metadata", "ocf:heartbeat:IPaddr2"])
    assert meta.returncode == 0 and 'name="IPaddr2"' in meta.stdout
    if owner(installed, "/usr/sbin/fence_ipmilan") is not None:
        assert installed.run(["test", "-f", "/usr/sbin/fence_ipmilan", "-a", "!", "-L",
                              "/usr/sbin/fence_ipmilan"]).returncode == 0
        proc = installed.run(["/usr/sbin/fence_ipmilan", "-o", "metadata"])
        assert proc.returncode == 0 and 'name="fence_ipmilan"' in proc.stdout
        proc = installed.run(["stonith_admin", "--metadata", "--agent", "fence_ipmilan"])
        assert proc.returncode == 0
