"""fence_ipmilan through its real executable against real BMC implementations.

OpenIPMI's ipmi_sim is the BMC (its chassis_control hook keeps the power
state in a file we read); a pyghmi-based BMC that refuses a cycle on an off
node (as real ones do) and a packet-losing UDP relay cover what ipmi_sim
cannot show.  Loopback only, on udp ports the kernel finds free (other test
runs share the loopback: sim/ipmisim.py), files under /tmp/pyha-fence-*.

``PYHA_TEST_AGENT_PYTHON`` (read by this test module only, never by an
agent) names the interpreter of a virtualenv holding one pyghmi release: the
agents and the pyghmi BMC then run as ``<python> -I <agent>``, so they import
that release (.ci/pyghmi-matrix, tests/pyghmi-versions.txt).  Unset, the
agents run through their ``#!/usr/bin/python3 -IS`` line with Debian's pyghmi.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import FENCE, METADATA, ROOT, Run, base_env
from sim.ipmisim import IpmiSim, free_udp_ports, wait_udp_owner

AGENT = "fence_ipmilan"
SIM_PORT, FAKEBMC_PORT, PROXY_PORT, DEAD_PORT = free_udp_ports(4)
RNG = "/usr/share/cluster/relaxng/metadata.rng"
GOLDEN_ORDER = (
    "action auth cipher hexadecimal_kg ip ipaddr ipport lanplus login method passwd "
    "passwd_script password password_script plug port privlvl target username quiet verbose "
    "verbose_level debug debug_file version help plug_separator delay disable_timeout "
    "ipmitool_path login_timeout port_as_ip power_timeout power_wait shell_timeout "
    "stonith_status_sleep ipmitool_timeout retry_on sudo use_sudo sudo_path").split()
ALIASES = ("fence_ipmilanplus", "fence_idrac", "fence_ilo3", "fence_ilo4", "fence_ilo5",
           "fence_imm")


AGENT_PYTHON = os.environ.get("PYHA_TEST_AGENT_PYTHON")


def _tuned() -> bool:
    """Whether the agent's pyghmi gets the tuned session (else the public interface)."""
    py = AGENT_PYTHON or "/usr/bin/python3"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from ocf_lib import ipmi; "
            "print(ipmi.pyghmi_version() in ipmi.TUNED_PYGHMI)")
    res = subprocess.run([py, "-I" if AGENT_PYTHON else "-IS", "-c", code],
                         capture_output=True, text=True, check=True)
    return res.stdout.strip() == "True"


TUNED = _tuned()


def run_fence(agent: str, *, args: list[str] | None = None, stdin: str | None = None,
              env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    """conftest.run_fence, under the matrix's interpreter when one is given."""
    path = FENCE / agent
    cmd = [AGENT_PYTHON, "-I", str(path)] if AGENT_PYTHON else [str(path)]
    proc = subprocess.run([*cmd, *(args or [])], env=dict(base_env() if env is None else env),
                          capture_output=True, text=True, timeout=timeout,
                          input=stdin if stdin is not None else "")
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def sim():
    bmc = IpmiSim(SIM_PORT).start()
    yield bmc
    bmc.stop()


@pytest.fixture
def bmc(sim):
    """The module's ipmi_sim, reset to a running node with an empty power log."""
    sim.set_stuck(False)
    sim.power = "on"
    sim.clear_log()
    yield sim
    sim.set_stuck(False)


def argv(*extra: str, port: int = SIM_PORT, user: str = "admin", password: str = "secret"):
    return ["-a", "127.0.0.1", "-u", str(port), "-l", user, "-p", password, "-P",
            "--power-wait=0", *extra]


def stdin(**kw: str) -> str:
    base = {"ip": "127.0.0.1", "ipport": str(SIM_PORT), "username": "admin",
            "password": "secret", "lanplus": "1", "power_wait": "0"}
    base.update(kw)
    return "".join(f"{k}={v}\n" for k, v in base.items())


# -- metadata ---------------------------------------------------------------------


def test_metadata_matches_golden_order_and_validates(tmp_path):
    res = run_fence(AGENT, args=["-o", "metadata"])
    assert res.rc == 0
    assert res.out == (METADATA / "fence_ipmilan.xml").read_text()
    names = [line.split('"')[1] for line in res.out.splitlines()
             if line.strip().startswith("<parameter name=")]
    assert names == GOLDEN_ORDER
    assert 'name="ip" unique="0" required="0" obsoletes="ipaddr"' in res.out
    assert 'name="ipaddr" unique="0" required="0" deprecated="1"' in res.out
    assert '<action name="diag"' in res.out and '<action name="list"' not in res.out
    via_stdin = run_fence(AGENT, stdin="action=metadata\n")
    assert via_stdin.rc == 0 and via_stdin.out == res.out
    path = tmp_path / "m.xml"
    path.write_text(res.out)
    subprocess.run(["xmllint", "--noout", "--relaxng", RNG, str(path)], check=True,
                   capture_output=True)


@pytest.mark.parametrize("alias", ALIASES)
def test_alias_metadata_and_defaults(alias):
    assert (FENCE / alias).exists()
    res = run_fence(alias, stdin="action=meta-data\n")
    assert res.rc == 0
    assert f'<resource-agent name="{alias}"' in res.out
    lanplus = res.out.split('name="lanplus"')[1].split("</parameter>")[0]
    wait = res.out.split('name="power_wait"')[1].split("</parameter>")[0]
    plus = alias in ("fence_ipmilanplus", "fence_ilo3", "fence_ilo4", "fence_ilo5")
    assert f'default="{1 if plus else 0}"' in lanplus
    assert f'default="{4 if alias == "fence_ilo3" else 2}"' in wait


# -- actions, three input forms -------------------------------------------------------


def test_status_on_and_off_argv(bmc):
    res = run_fence(AGENT, args=argv("-o", "status"))
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    bmc.power = "off"
    res = run_fence(AGENT, args=argv("-o", "status"))
    assert (res.rc, res.out) == (2, "Status: OFF\n"), res.err
    assert bmc.power_log() == []


def test_off_pacemaker_stdin_verifies_off(bmc):
    res = run_fence(AGENT, stdin=stdin(action="off", plug="node1", nodename="node1"),
                    env={**base_env(), "PCMK_service": "pacemaker-fenced"})
    assert res.rc == 0, res.err
    assert res.out == "Success: Powered OFF\n"
    assert bmc.power == "off" and bmc.power_log() == ["off"]
    again = run_fence(AGENT, stdin=stdin(action="off"))
    assert (again.rc, again.out) == (0, "Success: Already OFF\n")
    assert bmc.power_log() == ["off"]


def test_on_argv(bmc):
    bmc.power = "off"
    res = run_fence(AGENT, args=argv("-o", "on"))
    assert (res.rc, res.out) == (0, "Success: Powered ON\n"), res.err
    assert bmc.power == "on" and bmc.power_log() == ["on"]


def test_reboot_cman_stdin_legacy_names(bmc):
    # cluster.conf: <fencedevice agent="fence_ipmilan" ipaddr=... login=... passwd=.../>,
    # the per-node <device action="reboot"/>, libfence adds nodename.
    text = (f"action=reboot\nnodename=an-node01.alteeve.com\nagent=fence_ipmilan\n"
            f"ipaddr=127.0.0.1\nipport={SIM_PORT}\nlogin=admin\npasswd=secret\n"
            "power_wait=0\n")  # no lanplus, as in the seed: the BMC offers RMCP+, pyha takes it
    res = run_fence(AGENT, stdin=text)
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    assert bmc.power_log() == ["off", "on"]


def test_reboot_is_one_session_and_quick(bmc):
    start = time.monotonic()
    res = run_fence(AGENT, args=argv("-o", "reboot", "-v"))
    assert res.rc == 0, res.err
    assert res.err.count("IPMI session with") == 1
    assert time.monotonic() - start < 3.0
    assert bmc.power_log() == ["off", "on"]


def test_option_status_old_cman_spelling_never_reboots(bmc):
    res = run_fence(AGENT, stdin=f"option=status\nipaddr=127.0.0.1\nipport={SIM_PORT}\n"
                    "login=admin\npasswd=secret\nlanplus=1\n")
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    assert bmc.power_log() == []


def test_monitor_answers_0_even_when_off(bmc):
    bmc.power = "off"
    assert run_fence(AGENT, args=argv("-o", "monitor")).rc == 0
    assert bmc.power_log() == []


def test_method_cycle_on_running_node(bmc):
    res = run_fence(AGENT, args=argv("-o", "reboot", "-m", "cycle"))
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    assert bmc.power_log()[:1] == ["off"]  # ipmi_sim powers back on a second later


def test_validate_all(bmc):
    assert run_fence(AGENT, args=argv("-o", "validate-all")).rc == 0
    res = run_fence(AGENT, stdin="action=validate-all\nusername=admin\n")
    assert res.rc == 1 and "fence address" in res.err


def test_port_as_ip_takes_the_address_from_plug(bmc):
    res = run_fence(AGENT, stdin=f"action=status\nplug=127.0.0.1\nport_as_ip=1\n"
                    f"ipport={SIM_PORT}\nusername=admin\npassword=secret\nlanplus=1\n")
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err


def test_lanplus_alias_needs_no_flag(bmc):
    res = run_fence("fence_ipmilanplus", stdin=f"action=status\nip=127.0.0.1\nipport={SIM_PORT}\n"
                    "username=admin\npassword=secret\n")
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err


# -- failures: 1, a reason, and no power action ------------------------------------------


def test_wrong_password(bmc):
    res = run_fence(AGENT, args=argv("-o", "off", password="Hunter2x"))
    assert res.rc == 1
    assert "password" in res.err and "Hunter2x" not in res.err + res.out
    assert bmc.power == "on" and bmc.power_log() == []


def test_insufficient_privilege_is_decoded(bmc):
    res = run_fence(AGENT, args=argv("-o", "off", "-L", "user", user="viewer",
                                     password="viewpw"))
    assert res.rc == 1
    assert "insufficient privilege level (0xd4)" in res.err
    assert bmc.power == "on"


def test_operator_privilege_is_enough(bmc):
    res = run_fence(AGENT, args=argv("-o", "off", "-L", "operator", user="oper",
                                     password="operpw"))
    assert res.rc == 0, res.err
    assert bmc.power == "off"


def test_unreachable_bmc_fails_within_login_timeout():
    start = time.monotonic()
    res = run_fence(AGENT, args=argv("-o", "off", "--login-timeout=2", port=DEAD_PORT))
    took = time.monotonic() - start
    assert res.rc == 1 and "timed out" in res.err
    assert took < 3.0


def test_a_second_simulator_never_takes_over_a_held_port():
    # ipmi_sim binds with SO_REUSEADDR: a second one on the same port (another
    # test run sharing the loopback) would bind too and answer from its own
    # chassis.  The lab refuses to start it and leaves the first one alone.
    port = free_udp_ports(1)[0]
    first, second = IpmiSim(port), IpmiSim(port)
    first.start()
    try:
        first.power = "off"
        with pytest.raises(RuntimeError, match="already held"):
            second.start()
        assert second.proc is None
        res = run_fence(AGENT, args=argv("-o", "status", port=port))
        assert (res.rc, res.out) == (2, "Status: OFF\n"), res.err
    finally:
        second.stop()
        first.stop()


def test_bmc_that_stops_answering(bmc):
    bmc.pause()
    try:
        start = time.monotonic()
        res = run_fence(AGENT, args=argv("-o", "status", "--login-timeout=1.5"))
        took = time.monotonic() - start
    finally:
        bmc.resume()
    assert res.rc == 1 and "timed out" in res.err
    assert took < 2.5


def test_node_that_never_goes_off_is_never_success(bmc):
    bmc.set_stuck(True)
    start = time.monotonic()
    res = run_fence(AGENT, args=argv("-o", "off", "--power-timeout=2"))
    assert res.rc == 1
    assert "Timed out waiting to power OFF" in res.err and "timed out" in res.err
    assert 1.5 < time.monotonic() - start < 5
    res = run_fence(AGENT, args=argv("-o", "reboot", "--power-timeout=1"))
    assert res.rc == 1 and "Success" not in res.out
    assert bmc.power == "on" and "on" not in bmc.power_log()


def test_cipher_policy(bmc):
    res = run_fence(AGENT, args=argv("-o", "status", "-C", "17"))
    assert res.rc == 1 and "none of the cipher suites" in res.err and "tried 17" in res.err
    res = run_fence(AGENT, args=argv("-o", "status", "-C", "3"))
    assert res.rc == 0, res.err
    res = run_fence(AGENT, args=argv("-o", "status", "-v"))
    assert res.rc == 0, res.err
    if TUNED:
        assert "cipher suite 3, tuned pyghmi" in res.err  # 17 refused, then 3
    else:
        assert "pyghmi public interface" in res.err


@pytest.mark.parametrize("bad, words", [
    (["-o", "frobnicate"], "Unrecognised action 'frobnicate'"),
    (["-C", "99", "-o", "off"], "not an IPMI cipher suite"),
    (["-C", "0", "-o", "off"], "suite 0"),
    (["-C", "²", "-o", "off"], "not an IPMI cipher suite"),
    (["-C", "3 ", "-o", "off", "--hexadecimal-kg=abc"], "hex digits"),
    (["--target=0x100", "-o", "off"], "IPMB address"),
    (["--target=010x", "-o", "off"], "IPMB address"),
    (["--hexadecimal-kg=zz12", "-o", "off"], "hex"),
    (["--target=0x2x", "-o", "off"], "IPMB address"),
    (["-A", "kerberos", "-o", "off"], "auth"),
    (["-a", "127.0.0.1 -f /etc/shadow", "-o", "off"], "spaces"),
    (["-a", "127.0.0.1\nx", "-o", "off"], "spaces"),
    (["--ipmitool-path=/nonexistent/ipmitool", "-o", "off"], "Ipmitool not found"),
])
def test_bad_input_is_rejected_before_any_power_action(bmc, bad, words):
    res = run_fence(AGENT, args=argv(*bad))
    assert res.rc == 1
    assert words in res.err
    assert "Traceback" not in res.err
    assert bmc.power == "on" and bmc.power_log() == []


@pytest.mark.parametrize("action", ["list", "list-status"])
def test_list_prints_upstreams_notice_without_contacting_the_bmc(action):
    # Upstream's fencing.py answers list on a plug-less device with a notice and 0,
    # before any ipmitool run: so nothing listens on DEAD_PORT and it still succeeds.
    res = run_fence(AGENT, args=argv("-o", action, port=DEAD_PORT))
    assert (res.rc, res.out) == (0, "NOTICE: List option is not working on this device yet\n")
    meta = run_fence(AGENT, args=["-o", "metadata"]).out
    assert '<action name="list"' not in meta and '<action name="list-status"' not in meta


def test_missing_ip_and_empty_password_script(bmc, tmp_path):
    res = run_fence(AGENT, stdin="action=off\nusername=admin\npassword=secret\n")
    assert res.rc == 1 and "fence address" in res.err
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    res = run_fence(AGENT, stdin=stdin(action="off", password="", password_script=str(script)))
    assert res.rc == 1 and "no password" in res.err
    assert bmc.power_log() == []


def test_password_script(bmc, tmp_path):
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\necho secret\n")
    script.chmod(0o755)
    res = run_fence(AGENT, stdin=stdin(action="status", password="", password_script=str(script)))
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err


def test_diag_error_is_decoded(bmc):
    # ipmi_sim does not implement the diagnostic interrupt.
    res = run_fence(AGENT, args=argv("-o", "diag"))
    assert res.rc == 1 and "invalid data field in request (0xcc)" in res.err


# -- cycle on an off node: the BMC refuses, the agent powers on (issue #596) ----------------


@pytest.fixture(scope="module")
def refusing_bmc():
    state = Path(f"/tmp/pyha-fence-fakebmc-{FAKEBMC_PORT}")
    state.write_text("off\n")
    log = Path(str(state) + ".log")
    log.write_text("")
    proc = subprocess.Popen([AGENT_PYTHON or "/usr/bin/python3", str(ROOT / "tests/sim/fakebmc.py"),
                             str(FAKEBMC_PORT), str(state)], stderr=subprocess.DEVNULL)
    wait_udp_owner(proc, FAKEBMC_PORT)
    yield state, log
    proc.terminate()
    proc.wait(5)
    state.unlink()
    log.unlink()


def test_cycle_on_off_node_falls_back_to_power_on(refusing_bmc):
    state, log = refusing_bmc
    state.write_text("off\n")
    res = run_fence(AGENT, args=argv("-o", "reboot", "-m", "cycle", "-C", "3",
                                     port=FAKEBMC_PORT))
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    assert state.read_text().strip() == "on"
    assert "cycle-refused" not in log.read_text()
    # The same BMC cycles a running node.
    res = run_fence(AGENT, args=argv("-o", "reboot", "-m", "cycle", "-C", "3",
                                     port=FAKEBMC_PORT))
    assert res.rc == 0, res.err
    events = [line.split()[1] for line in log.read_text().splitlines()]
    assert events[-2:] == ["off", "on"] and "cycle-refused" not in events


# -- every action against both BMC implementations (the pyghmi matrix runs this per release)


def _every_action(port: int, power, set_power, log, *extra: str) -> None:
    """on, off, reboot, status, monitor, list, validate-all; the BMC's own record as oracle."""
    cases = [  # (action, power before, rc, stdout, power after, new log entries)
        ("status", "on", 0, "Status: ON\n", "on", []),
        ("status", "off", 2, "Status: OFF\n", "off", []),
        ("monitor", "off", 0, "", "off", []),
        ("on", "off", 0, "Success: Powered ON\n", "on", ["on"]),
        ("off", "on", 0, "Success: Powered OFF\n", "off", ["off"]),
        ("reboot", "on", 0, "Success: Rebooted\n", "on", ["off", "on"]),
        ("list", "on", 0, "NOTICE: List option is not working on this device yet\n", "on", []),
        ("validate-all", "on", 0, "", "on", []),
    ]
    for action, before, rc, out, after, entries in cases:
        set_power(before)
        seen = len(log())
        res = run_fence(AGENT, args=argv("-o", action, *extra, port=port))
        assert (res.rc, res.out) == (rc, out), (action, res.err)
        assert power() == after and log()[seen:] == entries, action


def test_every_action_against_ipmi_sim(bmc):
    def set_power(state: str) -> None:
        bmc.power = state

    _every_action(SIM_PORT, lambda: bmc.power, set_power, bmc.power_log)


def test_every_action_against_the_pyghmi_bmc(refusing_bmc):
    state, log = refusing_bmc

    def events() -> list[str]:
        return [line.split()[1] for line in log.read_text().splitlines()]

    _every_action(FAKEBMC_PORT, lambda: state.read_text().strip(),
                  lambda s: state.write_text(s + "\n"), events, "-C", "3")


def test_a_reply_pyghmi_cannot_parse_is_a_reason_not_an_internal_error(refusing_bmc):
    # pyghmi's BMC accepts suite 17 but answers with SHA-1 sized keys; the client
    # side of some pyghmi releases then fails inside struct.pack.
    res = run_fence(AGENT, args=argv("-o", "status", "--login-timeout=3", port=FAKEBMC_PORT))
    assert "internal error" not in res.err and "Traceback" not in res.err
    assert res.rc in (0, 1) and res.err.count("Failed:") == (res.rc == 1)


def test_declared_defaults_only(bmc):
    """The request bound comes from the declared, typed values: a small power_timeout
    stays small (a fallback once turned 0 into 20; 0 itself is now refused by its type)."""
    from fence.ipmilan import IPMIFence, agent
    from ocf_lib import ipmi

    raw = {"action": "status", "ip": "127.0.0.1", "login_timeout": "1", "shell_timeout": "1",
           "power_timeout": "0.5"}
    fence = IPMIFence(agent.context(raw, base_env(), AGENT),
                      ipmi.LoopbackSession(ipmi.LoopbackBMC()))
    assert fence.request_timeout == 1.0


# -- packet loss ----------------------------------------------------------------------------


@pytest.mark.skipif(not TUNED, reason="pyghmi's public interface drops a session that "
                    "loses packets; only the tuned session restarts it (docs/design.md, Fencing)")
def test_reboot_survives_20_percent_packet_loss(bmc):
    proxy = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests/sim/udpproxy.py"),
                              str(PROXY_PORT), str(SIM_PORT), "0.2", "7"])
    try:
        wait_udp_owner(proxy, PROXY_PORT)
        # pyghmi restarts its whole login on a lost packet; once the BMC has
        # answered, the agent keeps trying for login_timeout + power_timeout.
        res = run_fence(AGENT, args=argv("-o", "reboot", "--power-timeout=30",
                                         port=PROXY_PORT))
        assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
        # A retransmitted request may be executed twice (IPMI is at-least-once).
        log = bmc.power_log()
        assert log[0] == "off" and log[-1] == "on" and bmc.power == "on", log
    finally:
        proxy.terminate()
        proxy.wait(5)


# -- secrets --------------------------------------------------------------------------------


def _ours(pid: int) -> bool:
    """Whether ``pid`` descends from this test process (other test runs on the
    machine pass passwords in their argv on purpose)."""
    me = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == me:
            return True
    return False


def _watch_cmdlines(stop: threading.Event, seen: list[str]) -> None:
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if ("ipmitool" in cmd or AGENT in cmd) and _ours(int(pid)):
                seen.append(cmd)
        time.sleep(0.002)


def test_ipmitool_backend_never_has_the_password_in_argv(bmc, tmp_path):
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_cmdlines, args=(stop, seen))
    watcher.start()
    debug = tmp_path / "debug.log"
    try:
        res = run_fence(AGENT, stdin=stdin(action="reboot", password="Sw0rdfish",
                                           ipmitool_path="/usr/bin/ipmitool", verbose="1",
                                           debug_file=str(debug)))
    finally:
        stop.set()
        watcher.join()
    # ipmi_sim's admin password is "secret": a wrong one must fail, and leak nowhere.
    assert res.rc == 1
    assert any("/usr/bin/ipmitool" in c for c in seen), "no ipmitool process was observed"
    assert all("Sw0rdfish" not in c for c in seen)
    assert "Sw0rdfish" not in res.err + res.out + debug.read_text()
    assert all(" -P " not in c for c in seen if "ipmitool" in c)


def test_ipmitool_backend_works(bmc, tmp_path):
    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_cmdlines, args=(stop, seen))
    watcher.start()
    try:
        res = run_fence(AGENT, stdin=stdin(action="reboot", ipmitool_path="/usr/bin/ipmitool"))
    finally:
        stop.set()
        watcher.join()
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    assert bmc.power_log() == ["off", "on"]
    assert any(" -E " in c for c in seen if "/usr/bin/ipmitool" in c)
    assert all("secret" not in c for c in seen)


def test_native_verbose_and_debug_file_never_show_the_password(bmc, tmp_path):
    debug = tmp_path / "debug.log"
    res = run_fence(AGENT, stdin=stdin(action="reboot", verbose="1", debug_file=str(debug)))
    assert res.rc == 0, res.err
    text = res.err + res.out + debug.read_text()
    assert "IPMI session" in text and "secret" not in text


AES_SHIM = """
import json, sys
sys.path.insert(0, {root!r})
from ocf_lib import aes
assert aes.install(), "libcrypto could not be loaded"
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
assert Cipher is aes.Cipher, "not the shim"
out = []
for key, iv, data in json.loads(sys.argv[1]):
    key, iv, data = bytes.fromhex(key), bytes.fromhex(iv), bytes.fromhex(data)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv), default_backend()).encryptor()
    sealed = enc.update(data) + enc.finalize()
    dec = Cipher(algorithms.AES(key), modes.CBC(iv), default_backend()).decryptor()
    out.append([sealed.hex(), (dec.update(sealed) + dec.finalize()).hex()])
print(json.dumps(out))
"""


def test_aes_shim_matches_cryptography():
    """ocf_lib.aes, installed the way the IPMI seam installs it for pyghmi (before any
    cryptography import, in a fresh agent interpreter), seals the same bytes as
    cryptography's AES-CBC and opens them again."""
    import json

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cases = [(os.urandom(16), os.urandom(16), os.urandom(size)) for size in (16, 48, 160)]
    res = subprocess.run(["/usr/bin/python3", "-IS", "-c", AES_SHIM.format(root=str(ROOT)),
                          json.dumps([[k.hex(), i.hex(), d.hex()] for k, i, d in cases])],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    for (key, iv, data), (sealed, opened) in zip(cases, json.loads(res.stdout)):
        ref = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        assert bytes.fromhex(sealed) == ref.update(data) + ref.finalize()
        assert bytes.fromhex(opened) == data


def test_cycle_refused_in_a_race_is_rechecked_through_the_loopback_seam():
    """Status said on, then the BMC refuses the cycle (0xD5): off is checked, then on."""
    from fence.ipmilan import IPMIFence, agent
    from ocf_lib import ipmi
    from ocf_lib.fence import FenceContext, FenceError

    def ctx() -> FenceContext:
        return agent.context({"action": "reboot", "ip": "192.0.2.1", "login_timeout": "1"},
                             base_env(), AGENT)

    bmc = ipmi.LoopbackBMC("off")  # went off after the status read
    fence = IPMIFence(ctx(), ipmi.LoopbackSession(bmc))
    assert fence.cycle(None) is True
    assert bmc.requests == [ipmi.POWER_CYCLE, ipmi.POWER_UP] and bmc.power == "on"
    bmc = ipmi.LoopbackBMC("on")
    bmc.refuse[ipmi.POWER_CYCLE] = 0xD5  # refused while still on: an error, never success
    fence = IPMIFence(ctx(), ipmi.LoopbackSession(bmc))
    with pytest.raises(FenceError, match=r"not supported in present state \(0xd5\)"):
        fence.cycle(None)
