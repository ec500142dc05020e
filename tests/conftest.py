"""Shared test helpers: run agents exactly as the cluster does (exec, env, argv).

pytest puts this directory on sys.path: the labs are ``lib.*``, the simulators
``sim.*`` (layout and buckets: tests/README.md).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"
FENCE = ROOT / "fence"
METADATA = ROOT / "metadata"


# -- test buckets (markers) --------------------------------------------------------
#
# Every test is in exactly one bucket, given here rather than in the test files:
#   unit       no root, no namespaces, no daemons ("pytest -m unit", as any user)
#   kernel     root: network namespaces, loop devices, mounts, simulators in netns
#   cluster    real Corosync + Pacemaker (tests/lib/cluster.py)
#   vm         libvirtd + QEMU
#   packaging  builds and installs the deb and the rpm
# A module's bucket comes from MODULE_BUCKETS; a test that uses a cluster
# fixture is "cluster"; TEST_BUCKETS moves single tests (by name prefix) out of
# their module's bucket.  A module missing from the table is a collection error,
# and CI runs the unit bucket as an unprivileged user, so a unit test that needs
# root fails there.
BUCKETS = ("unit", "kernel", "cluster", "vm", "packaging")
MODULE_BUCKETS = {
    "test_agents_common": "unit",
    "test_bench_smoke": "unit",
    "test_fence_runtime": "unit",
    "test_log": "unit",
    "test_metadata": "unit",
    "test_ocf_runtime": "unit",
    "test_params": "unit",
    "test_python_floor": "unit",
    "test_proc": "unit",
    "test_rgmanager": "unit",
    "test_smoke": "unit",
    "test_state": "unit",
    "test_tester": "unit",
    "test_transport": "unit",
    "test_xen": "unit",
    "test_o2cb": "unit",
    "test_dependencies": "unit",
    "test_oracle_xen": "unit",
    "test_oracle_drbd": "kernel",
    "test_proc_hung": "kernel",
    "test_trace": "unit",
    "test_ipmi_backends": "unit",
    "test_drbd": "kernel",
    "test_filesystem": "kernel",
    "test_ipaddr2": "kernel",
    "test_fence_ilo_mp": "kernel",
    "test_fence_ipmilan": "kernel",
    "test_fence_na": "kernel",
    "test_ocft": "kernel",
    "test_demo_bmc": "kernel",
    "test_import_budget": "kernel",
    "test_ipmi_dns": "kernel",
    "test_mounts_seam": "kernel",
    "test_netlink_oracle": "kernel",
    "test_oracle_filesystem": "kernel",
    "test_oracle_ipaddr2": "kernel",
    "test_params_network": "kernel",
    "test_sweep": "kernel",
    "test_cluster_example": "cluster",
    "test_cluster_fixture": "cluster",
    "test_cluster_ip_fs": "cluster",
    "test_drbd_cluster": "cluster",
    "test_fence_cluster": "cluster",
    "test_fence_pcmk": "cluster",
    "test_fencenode": "cluster",
    "test_migrate": "cluster",
    "test_operator_guide": "cluster",
    "test_virtualdomain": "vm",
    "test_demo_e2e": "vm",
    "test_oracle_virtualdomain": "vm",
    "test_packaging": "packaging",
}
# Tests that need more than their module's bucket: "module::name prefix" -> bucket.
# Running a command "as nobody" needs root to switch to nobody; a private
# network namespace or another owner's file needs root too.
TEST_BUCKETS = {
    "test_agents_common::test_resource_agent_meta_data_and_usage_as_nobody": "kernel",
    "test_agents_common::test_fence_agent_metadata_as_nobody": "kernel",
    "test_fence_runtime::test_exec_metadata_as_nobody": "kernel",
    "test_log::test_syslog_for_real": "kernel",
    "test_metadata::test_stonith_admin_reads_our_fence_metadata": "kernel",
    "test_ocf_runtime::test_meta_data_and_usage_need_no_environment_and_no_privileges": "kernel",
    "test_ocf_runtime::test_meta_data_without_shipped_file_still_works_as_nobody": "kernel",
    "test_tester::test_metadata_must_work_as_nobody": "kernel",
    "test_tester::test_ocf11_only_constructs_are_a_warning_not_a_failure": "kernel",
    "test_xen::test_pyha_tester_passes": "kernel",
    "test_transport::test_lookups_are_bounded_and_numbers_skip_dns": "kernel",
    "test_transport::test_tcp_transport_lookup_is_bounded": "kernel",
    "test_o2cb::test_other_users_processes_named_like_the_daemon_do_not_count": "kernel",
    "test_fence_runtime::test_a_debug_file_must_be_a_regular_file": "kernel",
    "test_state::test_state_directory_others_control_is_refused": "kernel",
}
CLUSTER_FIXTURES = {"pyha_agents", "cluster1", "cluster_factory", "module_cluster_factory"}


def bucket_of(item: pytest.Item) -> str:
    module = Path(str(item.fspath)).stem
    if module not in MODULE_BUCKETS:
        raise pytest.UsageError(
            f"{module}.py has no bucket: add it to MODULE_BUCKETS in tests/conftest.py")
    for key, bucket in TEST_BUCKETS.items():
        mod, _, prefix = key.partition("::")
        if mod == module and item.name.startswith(prefix):
            return bucket
    if MODULE_BUCKETS[module] in ("unit", "kernel") and CLUSTER_FIXTURES & set(
            getattr(item, "fixturenames", ())):
        return "cluster"
    return MODULE_BUCKETS[module]


def pytest_configure(config: pytest.Config) -> None:
    for name, text in (("unit", "no root, no namespaces, no daemons"),
                       ("kernel", "root: namespaces, loop devices, mounts"),
                       ("cluster", "real Corosync + Pacemaker"),
                       ("vm", "libvirtd + QEMU"),
                       ("packaging", "builds and installs the deb and the rpm")):
        config.addinivalue_line("markers", f"{name}: {text}")


# Modules whose tests still narrate one shared cluster's history (a test relies
# on what an earlier one fenced): pytest-randomly may shuffle the modules, but
# their own tests keep the file's order.  To be emptied, not extended.
SEQUENTIAL_MODULES = {"test_fence_pcmk"}


@pytest.hookimpl(tryfirst=True)  # before -m selects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(bucket_of(item))


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_finish(session: pytest.Session) -> None:
    _restore_file_order(session.items)


def _restore_file_order(items: list[pytest.Item]) -> None:
    def stem(item: pytest.Item) -> str:
        return Path(str(item.fspath)).stem

    i = 0
    while i < len(items):
        j = i
        while j < len(items) and stem(items[j]) == stem(items[i]):
            j += 1
        if stem(items[i]) in SEQUENTIAL_MODULES:
            items[i:j] = sorted(items[i:j], key=lambda it: it.location[1] or 0)
        i = j


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def reason(self) -> str | None:
        """The last ocf-exit-reason line, as Pacemaker reads it."""
        found = None
        for line in self.err.splitlines():
            if line.startswith("ocf-exit-reason:"):
                found = line[len("ocf-exit-reason:"):]
        return found


def base_env(tmp: Path | None = None) -> dict[str, str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "1",
        "OCF_EXIT_REASON_PREFIX": "ocf-exit-reason:",
    }
    if tmp is not None:
        env["HA_RSCTMP"] = str(tmp)
    return env


def run_ocf(agent: str | Path, action: str, params: Mapping[str, str] | None = None, *,
            env: Mapping[str, str] | None = None, instance: str = "test",
            timeout: float = 120, extra_args: tuple[str, ...] = (),
            wrap: tuple[str, ...] = ()) -> Run:
    """Run an OCF agent (a name in agents/ or a path) with OCF_RESKEY_ parameters.

    ``wrap`` prefixes the command, e.g. ``("ip", "netns", "exec", NS)``.
    """
    path = Path(agent) if "/" in str(agent) else AGENTS / str(agent)
    full = dict(base_env() if env is None else env)
    full.setdefault("OCF_RESOURCE_INSTANCE", instance)
    full.setdefault("OCF_RESOURCE_TYPE", path.name)
    for key, value in (params or {}).items():
        full[key if key.startswith(("OCF_", "HA_", "PCMK_")) else f"OCF_RESKEY_{key}"] = value
    proc = subprocess.run([*wrap, str(path), action, *extra_args], env=full, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def run_fence(agent: str | Path, *, args: list[str] | None = None, stdin: str | None = None,
              env: Mapping[str, str] | None = None, timeout: float = 120) -> Run:
    """Run a fence agent with argv options, or with name=value lines on stdin."""
    path = Path(agent) if "/" in str(agent) else FENCE / str(agent)
    full = dict(base_env() if env is None else env)
    proc = subprocess.run([str(path), *(args or [])], env=full, capture_output=True, text=True,
                          timeout=timeout, input=stdin if stdin is not None else "")
    return Run(proc.returncode, proc.stdout, proc.stderr)


OCFT_SHARE = Path("/usr/share/resource-agents/ocft")


def private_ocft(root: Path, *, fast_poll: bool = False) -> Path:
    """A copy of Debian's ocft whose directories all lie under ``root``.

    Stock ocft writes its generated case scripts to the global
    /var/lib/resource-agents/ocft/cases, which exists only after some ocft run
    created it: a test that used it would depend on leftovers and on order.
    ``fast_poll`` makes caselib poll a running agent every 50 ms instead of
    every second.  Returns the path of the ocft script; cases go to root/cases.
    """
    lib, cases = root / "lib", root / "cases"
    lib.mkdir(parents=True)
    cases.mkdir()
    caselib = (OCFT_SHARE / "caselib").read_text()
    if fast_poll:
        for old, new in (("while [ $i -lt $timeout ]", "while [ $i -lt $((timeout*20)) ]"),
                         ("    sleep 1\n    let i++", "    sleep 0.05\n    let i++"),
                         ("if [ $i -ge $timeout ]", "if [ $i -ge $((timeout*20)) ]")):
            assert old in caselib, old
            caselib = caselib.replace(old, new)
    (lib / "caselib").write_text(caselib)
    (lib / "helpers.sh").write_text((OCFT_SHARE / "helpers.sh").read_text())
    ocft = Path("/usr/sbin/ocft").read_text()
    for old, new in (("OCFT_DIR=/usr/share/resource-agents/ocft", f"OCFT_DIR={lib}"),
                     ("CASES_DIR=/var/lib/resource-agents/ocft/cases", f"CASES_DIR={cases}")):
        assert old in ocft, old
        ocft = ocft.replace(old, new)
    script = root / "ocft"
    script.write_text(ocft)
    script.chmod(0o755)
    return script


@pytest.fixture
def rsctmp(tmp_path: Path) -> Path:
    """A private HA_RSCTMP so tests never see each other's state files."""
    path = tmp_path / "rsctmp"
    path.mkdir()
    return path


@pytest.fixture
def ocf_env(rsctmp: Path) -> dict[str, str]:
    return base_env(rsctmp)


# -- real Corosync + Pacemaker clusters (tests/lib/cluster.py) ---------------------------

@pytest.fixture(scope="session")
def pyha_agents() -> Iterator[Path]:
    """pyha's agents installed as ocf:pyha:<Type> (symlinks into this checkout)."""
    from lib.cluster import install_pyha_agents

    with install_pyha_agents() as path:
        yield path


def _cluster_maker() -> Iterator[Callable[..., Any]]:
    from lib.cluster import Cluster

    made: list[Any] = []

    def make(nodes: int = 1, **kwargs: Any) -> Any:
        cluster = Cluster(nodes=nodes, **kwargs)
        made.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in reversed(made):
            cluster.stop()


@pytest.fixture(scope="module")
def cluster1(pyha_agents: Path) -> Iterator[Any]:
    """A running single-node cluster (node n1), shared by a test module."""
    from lib.cluster import Cluster

    with Cluster(nodes=1) as cluster:
        yield cluster


@pytest.fixture
def cluster_factory(pyha_agents: Path) -> Iterator[Callable[..., Any]]:
    """``make(nodes=2, subnet="10.231.8", stonith=True)`` -> a started Cluster,
    stopped after the test.  Names are taken automatically (pyhacq0, pyhacq1, ...)."""
    yield from _cluster_maker()


@pytest.fixture(scope="module")
def module_cluster_factory(pyha_agents: Path) -> Iterator[Callable[..., Any]]:
    """As ``cluster_factory``, but the clusters live until the module ends."""
    yield from _cluster_maker()
