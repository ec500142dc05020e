"""The IPMI seam's backend choice, made once per action before any packet is sent.

Runs under the interpreter .ci/pyghmi-matrix names in PYHA_TEST_AGENT_PYTHON
(one pyghmi release per virtualenv), or Debian's python3 and pyghmi.  The
installed version is checked against an outside source (dpkg, or pip's
metadata in the virtualenv), and the backend against what the agent did on
the wire: its log line, the ipmitool processes seen in /proc.  Every backend
and the loopback double (ocf_lib.ipmi.LoopbackSession) answer one script alike.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from conftest import FENCE, ROOT, base_env
from sim.ipmisim import IpmiSim, free_udp_ports

AGENT_PYTHON = os.environ.get("PYHA_TEST_AGENT_PYTHON")
PYTHON = AGENT_PYTHON or "/usr/bin/python3"
PORT = free_udp_ports(1)[0]  # never another run's simulator


def outside_version() -> str:
    if AGENT_PYTHON is None:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-pyghmi"],
                             capture_output=True, text=True, check=True).stdout
        return out.split("-")[0]
    return subprocess.run([PYTHON, "-c", "import importlib.metadata as m; "
                           "print(m.version('pyghmi'))"], capture_output=True, text=True,
                          check=True).stdout.strip()


def in_agent_python(code: str) -> str:
    """Run ``code`` the way the agent imports things (-I, ocf_lib from this tree)."""
    flags = "-I" if AGENT_PYTHON else "-IS"
    res = subprocess.run([PYTHON, flags, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                          + code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [PYTHON, "-I", str(FENCE / "fence_ipmilan")] if AGENT_PYTHON else \
        [str(FENCE / "fence_ipmilan")]
    return subprocess.run([*cmd, "-a", "127.0.0.1", "-u", str(PORT), "-l", "admin", "-p",
                           "secret", "-P", "--power-wait=0", *args], env=base_env(),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def sim():
    bmc = IpmiSim(PORT).start()
    yield bmc
    bmc.stop()


def test_version_is_read_from_the_installed_distribution():
    got = in_agent_python("from ocf_lib import ipmi; print(ipmi.pyghmi_version())")
    assert got == outside_version()


def test_backend_follows_the_version(sim):
    version = outside_version()
    tuned = in_agent_python(f"from ocf_lib import ipmi; print({version!r} in ipmi.TUNED_PYGHMI)")
    res = agent("-o", "status", "-v")
    assert (res.returncode, res.stdout) == (0, "Status: ON\n"), res.stderr
    words = "tuned pyghmi" if tuned == "True" else "pyghmi public interface"
    assert res.stderr.count("IPMI session with") == 1 and words in res.stderr


def _ipmitool_runs(stop: threading.Event, seen: list[str]) -> None:
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "ipmitool" in cmd and str(PORT) in cmd:
                    seen.append(cmd)
        time.sleep(0.002)


@pytest.mark.parametrize("cipher", ["3", "17"])
def test_pinned_or_foreign_suite_is_decided_before_the_session(sim, cipher):
    """A pinned suite that pyghmi cannot be held to goes to ipmitool from the start."""
    version = outside_version()
    tuned = in_agent_python(f"from ocf_lib import ipmi; print({version!r} in ipmi.TUNED_PYGHMI)")
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_ipmitool_runs, args=(stop, seen))
    watcher.start()
    try:
        res = agent("-o", "status", "-C", cipher, "-v")
    finally:
        stop.set()
        watcher.join()
    if cipher == "3":  # ipmi_sim refuses 17
        assert (res.returncode, res.stdout) == (0, "Status: ON\n"), res.stderr
    else:
        assert res.returncode == 1 and "tried 17" in res.stderr
    if tuned == "True":
        assert not seen and "IPMI backend: ipmitool" not in res.stderr
    else:
        assert seen and all(f"-C {cipher}" in c for c in seen)
        assert "IPMI backend: ipmitool" in res.stderr and "IPMI session with" not in res.stderr


def test_suite_pyghmi_does_not_speak_uses_ipmitool(sim):
    """Suite 1 (SHA-1, no confidentiality), upstream-accepted: ipmitool, chosen up front."""
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_ipmitool_runs, args=(stop, seen))
    watcher.start()
    try:
        valid = agent("-o", "validate-all", "-C", "1")
        res = agent("-o", "status", "-C", "1", "-v")
    finally:
        stop.set()
        watcher.join()
    assert valid.returncode == 0, valid.stderr
    assert (res.returncode, res.stdout) == (0, "Status: ON\n"), res.stderr
    assert seen and all("-C 1" in c for c in seen)
    assert "IPMI session with" not in res.stderr


SEAM = """
import sys, json
sys.path.insert(0, {root!r})
from ocf_lib import ipmi
from ocf_lib.log import Logger

kind = sys.argv[1]
cfg = ipmi.IPMIConfig("127.0.0.1", port={port}, username="admin", password="secret",
                      ciphers=ipmi.NATIVE_CIPHERS, lanplus=True, ipmitool="/usr/bin/ipmitool")
log = Logger("seam", {{"HA_debug": "0"}})
if kind == "public":
    session = ipmi.PyghmiCommandSession(cfg, 5.0, log)
elif kind == "tuned":
    session = ipmi.PyghmiSession(cfg, 5.0, log, None, ipmi.pyghmi_version())
elif kind == "ipmitool":
    session = ipmi.IpmitoolSession(cfg, 10.0, log)
else:  # the test double, its refusal scripted as ipmi_sim refuses diag
    bmc = ipmi.LoopbackBMC("on")
    bmc.refuse[ipmi.DIAG_INTERRUPT] = 0xCC
    session = ipmi.LoopbackSession(bmc)
seen = [session.power_state()]
session.chassis_control(ipmi.POWER_DOWN)
seen.append(session.power_state())
session.chassis_control(ipmi.POWER_UP)
seen.append(session.power_state())
try:
    session.chassis_control(ipmi.DIAG_INTERRUPT)  # ipmi_sim refuses it
except ipmi.IPMIError as exc:
    seen.append(exc.code)
session.close()
ciphers = sys.modules.get("cryptography.hazmat.primitives.ciphers")
seen.append(ciphers is not None and getattr(ciphers, "__file__", None) is None)  # the stand-in
print(json.dumps(seen))
"""


@pytest.mark.parametrize("kind", ["public", "tuned", "ipmitool", "loopback"])
def test_each_backend_and_the_double_through_the_seam(sim, kind):
    """Every backend with this release, and the loopback double, answer the same
    requests alike: states, a refusal's code; the AES stand-in only with tuned pyghmi."""
    import json

    version = outside_version()
    tuned = in_agent_python(f"from ocf_lib import ipmi; print({version!r} in ipmi.TUNED_PYGHMI)")
    if kind == "tuned" and tuned != "True":
        pytest.skip(f"pyghmi {version} is not a tuned release: the public interface only")
    sim.power = "on"
    sim.clear_log()
    flags = "-I" if AGENT_PYTHON else "-IS"
    res = subprocess.run([PYTHON, flags, "-c", SEAM.format(root=str(ROOT), port=PORT), kind],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    states = json.loads(res.stdout)
    assert states[:4] == ["on", "off", "on", 0xCC]
    # ipmi_sim's own record (the double has none)
    assert sim.power_log() == ([] if kind == "loopback" else ["off", "on"])
    # The stand-in for cryptography's AES is only ever used with a tuned release.
    assert states[4] is (kind == "tuned")


@pytest.mark.parametrize("version, cipher, want", [
    ("9.9.9", None, "public"),       # an untested release: the public interface
    ("9.9.9", 3, "ipmitool"),        # ... which cannot pin a suite
    ("1.5.34", 3, "tuned"),
    ("1.6.19", None, "tuned"),
    (None, 1, "ipmitool"),           # a suite pyghmi does not speak
])
def test_backend_decision(version, cipher, want):
    code = (f"from ocf_lib import ipmi\n"
            f"cfg = ipmi.IPMIConfig('192.0.2.1', ciphers={(cipher,) if cipher else ()!r} "
            f"or ipmi.NATIVE_CIPHERS)\n"
            f"print(ipmi.choose_backend(cfg, {version!r}))")
    assert in_agent_python(code) == want


FAILURES = """
import sys
sys.path.insert(0, {root!r})
from ocf_lib import ipmi
from ocf_lib.log import Logger

kind = sys.argv[1]
log = Logger("seam", {{"HA_debug": "0"}})
for address, port, password in (("127.0.0.1", {port}, "wrong"),
                                ("no-such-bmc.invalid", {port}, "secret"),
                                ("127.0.0.1", {silent}, "secret")):
    cfg = ipmi.IPMIConfig(address, port=port, username="admin", password=password)
    cfg.address = address  # as open_session leaves it; the backend meets the bad name
    try:
        if kind == "public":
            ipmi.PyghmiCommandSession(cfg, 1.5, log)
        else:
            ipmi.PyghmiSession(cfg, 1.5, log, None, ipmi.pyghmi_version())
        print("logged in")
    except ipmi.IPMIError as exc:
        print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("kind", ["public", "tuned"])
def test_each_pyghmi_backend_words_a_failed_login(sim, kind):
    """The same reason line from either backend: refused credentials, a socket
    error, a BMC that never answers (the last as a timeout)."""
    version = outside_version()
    tuned = in_agent_python(f"from ocf_lib import ipmi; print({version!r} in ipmi.TUNED_PYGHMI)")
    if kind == "tuned" and tuned != "True":
        pytest.skip(f"pyghmi {version} is not a tuned release: the public interface only")
    silent = free_udp_ports(1)[0]
    flags = "-I" if AGENT_PYTHON else "-IS"
    res = subprocess.run([PYTHON, flags, "-c", FAILURES.format(root=str(ROOT), port=PORT,
                                                               silent=silent), kind],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == (f"IPMIError IPMI login to 127.0.0.1:{PORT} failed: wrong user name "
                        "or password (Incorrect password provided)"), lines
    assert lines[1].startswith("IPMIError IPMI login to no-such-bmc.invalid:"
                               f"{PORT} failed: [Errno "), lines
    assert lines[2] == f"IPMITimeout IPMI login to 127.0.0.1:{silent}: timed out after 1.5s", lines
