"""fence_na through its real executable against a Node Assassin simulator over TCP.

The simulator (tests/sim/nasim.py) follows TNAP v1.1 and NaOS 1.0.2: node
P/R/F lines, the fence sequence timing (scaled down), the latch, malformed
command replies, and faults.  Ports 23800-23849 on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import METADATA, ROOT, run_fence
from test_transport import DEAD_NAME, dead_dns  # noqa: F401 - the fixture

AGENT = "fence_na"
RNG = "/usr/share/cluster/relaxng/metadata.rng"
PASSWORD = "Na-s3cret-pw"


class NaSim:
    def __init__(self, port: int, *opts: str) -> None:
        self.port = port
        self.state = Path(f"/tmp/pyha-fence-na-{port}")
        self.log = Path(f"/tmp/pyha-fence-na-{port}.log")
        self.log.write_text("")
        self.proc = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests/sim/nasim.py"),
                                      str(port), str(self.state), *opts])
        end = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def node(self, num: int) -> str:
        for line in self.state.read_text().splitlines():
            if line.startswith(f"{num:02d} "):
                return line[3:]
        raise KeyError(num)

    def commands(self) -> list[str]:
        return [line.split()[1] for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        for path in (self.state, self.log):
            path.unlink(missing_ok=True)


@pytest.fixture
def na():
    sims: list[NaSim] = []

    def start(port: int = 23800, *opts: str) -> NaSim:
        sim = NaSim(port, *opts)
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


def args(port: int, *extra: str) -> list[str]:
    return ["-a", "127.0.0.1", "--tcp-port", str(port), "-l", "motoko", "-p", PASSWORD,
            "--config-file=/nonexistent", *extra]


def cman(tcp: int, **kw: str) -> str:
    """What CMAN's fenced writes: the <device> attributes, nodename, the <fencedevice> ones."""
    lines = {"port": "01", "action": "reboot", "nodename": "an-node01.alteeve.com",
             "agent": "fence_na", "ipaddr": "127.0.0.1", "login": "motoko",
             "passwd": PASSWORD, "quiet": "true", "tcp_port": str(tcp),
             "config_file": "/nonexistent"}
    lines.update(kw)
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def test_metadata(tmp_path):
    res = run_fence(AGENT, args=["-o", "metadata"])
    assert res.rc == 0 and res.out == (METADATA / "fence_na.xml").read_text()
    for name in ("ipaddr", "ip", "tcp_port", "ipport", "login", "passwd", "port", "plug",
                 "max_nodes", "aliases", "mode"):
        assert f'name="{name}"' in res.out
    assert '<parameter name="ipport" unique="0" required="0" obsoletes="tcp_port">' in res.out
    assert '<getopt mixed="-u, --ipport=[ipport]" />' in res.out
    assert '<action name="list"' in res.out
    path = tmp_path / "m.xml"
    path.write_text(res.out)
    subprocess.run(["xmllint", "--noout", "--relaxng", RNG, str(path)], check=True,
                   capture_output=True)
    assert run_fence(AGENT, stdin="action=metadata\n").out == res.out


def test_status_off_on_argv(na):
    sim = na(23800, "--scale", "0.05", "--commas")
    res = run_fence(AGENT, args=args(23800, "-o", "status", "-n", "1"))
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    res = run_fence(AGENT, args=args(23800, "-o", "off", "-n", "1"))
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n"), res.err
    assert sim.node(1) == "P1 R0 F0 L1"  # latched, feed gone
    assert sim.commands()[1:3] == ["00:0", "01:1"]  # status first, then fence
    res = run_fence(AGENT, args=args(23800, "-o", "status", "-n", "01"))
    assert (res.rc, res.out) == (2, "Status: OFF\n")
    res = run_fence(AGENT, args=args(23800, "-o", "on", "-n", "1"))
    assert (res.rc, res.out) == (0, "Success: Powered ON\n"), res.err
    assert sim.node(1).endswith("F1 L0")
    assert "01:0" in sim.commands() and "01:2" in sim.commands()  # released, then pressed


def test_reboot_cman_stdin_from_the_seed(na):
    # <fencedevice agent="fence_na" ipaddr=... login=... passwd=... quiet="true"/> + port="01";
    # the wiki's own example sends port=2 (not zero-padded).
    sim = na(23801, "--scale", "0.05")
    res = run_fence(AGENT, stdin=cman(23801))
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    assert sim.node(1).endswith("F1 L0")
    cmds = sim.commands()
    assert cmds.index("01:1") < cmds.index("01:0") < cmds.index("01:2")
    res = run_fence(AGENT, stdin=cman(23801, port="2", action="off"))
    assert res.rc == 0 and sim.node(2).endswith("F0 L1")


def test_option_status_cman_spelling_runs_status(na):
    sim = na(23802, "--scale", "0.05")
    res = run_fence(AGENT, stdin=cman(23802, action="", option="status").replace("action=\n", ""))
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    assert sim.commands() == ["00:0"]


def test_pacemaker_stdin_with_alias_as_plug(na):
    sim = na(23803, "--scale", "0.05")
    text = (f"action=off\nip=127.0.0.1\ntcp_port=23803\nusername=motoko\npassword={PASSWORD}\n"
            "plug=node3\nnodename=node3\naliases=1=node1,2=node2,3=node3\n"
            "config_file=/nonexistent\n")
    res = run_fence(AGENT, stdin=text)
    assert res.rc == 0, res.err
    assert sim.node(3).endswith("F0 L1") and sim.node(1).endswith("F1 L0")


def test_ipport_is_the_port_and_tcp_port_its_old_name(na):
    """ipport / --ipport / -u, as every fence agent; tcp_port and --tcp-port still work."""
    sim = na(23813, "--scale", "0.05")
    base = (f"action=status\nip=127.0.0.1\nusername=motoko\npassword={PASSWORD}\n"
            "plug=1\nconfig_file=/nonexistent\n")
    for text in (base + "ipport=23813\n", base + "tcp_port=23813\n"):
        res = run_fence(AGENT, stdin=text)
        assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
        assert "unknown option" not in res.err
    for flag in (["-u", "23813"], ["--ipport=23813"], ["--tcp-port=23813"]):
        res = run_fence(AGENT, args=["-a", "127.0.0.1", *flag, "-l", "motoko", "-p", PASSWORD,
                                     "--config-file=/nonexistent", "-o", "status", "-n", "1"])
        assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    assert sim.commands() == ["00:0"] * 5


def test_list_and_monitor(na):
    na(23804, "--scale", "0.05", "--off", "02")
    res = run_fence(AGENT, args=args(23804, "-o", "list", "--aliases=1=an-node01,2=an-node02"))
    assert res.rc == 0
    assert res.out.splitlines() == ["01,an-node01", "02,an-node02", "03,", "04,"]
    res = run_fence(AGENT, args=args(23804, "-o", "list-status", "--max-nodes=2"))
    assert res.out.splitlines() == ["01,,ON", "02,,OFF"]
    assert run_fence(AGENT, args=args(23804, "-o", "monitor")).rc == 0


def test_off_waits_for_a_slow_device(na):
    # The device re-checks the feed 25 s into the hold; this node only loses power then.
    na(23805, "--scale", "0.2", "--late", "01")
    start = time.monotonic()
    res = run_fence(AGENT, args=args(23805, "-o", "off", "-n", "1"))
    assert res.rc == 0, res.err
    assert time.monotonic() - start > 5


def test_node_whose_feed_never_drops_is_never_success(na):
    sim = na(23806, "--scale", "0.05", "--stuck", "02")
    start = time.monotonic()
    res = run_fence(AGENT, args=args(23806, "-o", "off", "-n", "2", "--power-timeout=2"))
    assert res.rc == 1 and "Timed out waiting to power OFF" in res.err
    assert time.monotonic() - start >= 2
    res = run_fence(AGENT, args=args(23806, "-o", "reboot", "-n", "2", "--power-timeout=1"))
    assert res.rc == 1 and "Rebooted" not in res.out
    assert "02:2" not in sim.commands()


def test_only_an_explicit_feed_off_is_off(na):
    """A feed that reads F2 is no proof of "off": status fails, reboot never skips the fence."""
    sim = na(23814, "--scale", "0.05", "--odd-feed", "02")
    res = run_fence(AGENT, args=args(23814, "-o", "status", "-n", "2"))
    assert res.rc == 1 and "feed F2" in res.err, res.err
    for action in ("reboot", "off", "on"):
        res = run_fence(AGENT, args=args(23814, "-o", action, "-n", "2"))
        assert res.rc == 1 and "feed F2" in res.err, (action, res.err)
        assert "Success" not in res.out
    assert set(sim.commands()) == {"00:0"}  # nothing was pressed on a guess
    res = run_fence(AGENT, args=args(23814, "-o", "list-status"))
    assert res.out.splitlines()[1] == "02,,UNKNOWN"


def test_naos_mode(na):
    sim = na(23807, "--naos", "--scale", "0.05", "--nodes", "5")
    res = run_fence(AGENT, args=args(23807, "--mode=naos", "-o", "off", "-n", "4"))
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n"), res.err
    assert "04:0" in sim.commands() and sim.node(4).endswith("L1")  # 0 fences on NaOS
    res = run_fence(AGENT, args=args(23807, "--mode=naos", "-o", "status", "-n", "4"))
    assert res.rc == 2
    res = run_fence(AGENT, args=args(23807, "--mode=naos", "-o", "on", "-n", "4"))
    assert res.rc == 0 and "04:1" in sim.commands() and sim.node(4).endswith("L0")
    # TNAP mode against NaOS: no EOM ever comes, so it fails, in time, and never fences.
    res = run_fence(AGENT, args=args(23807, "-o", "off", "-n", "3", "--shell-timeout=1"))
    assert res.rc == 1 and "timed out" in res.err
    assert "03:1" not in sim.commands()


def test_reply_without_eom_and_dropped_connection(na):
    na(23808, "--scale", "0.05", "--no-eom")
    res = run_fence(AGENT, args=args(23808, "-o", "status", "-n", "1", "--shell-timeout=1"))
    assert res.rc == 1 and "timed out" in res.err
    na(23809, "--scale", "0.05", "--drop-mid-reply")
    res = run_fence(AGENT, args=args(23809, "-o", "status", "-n", "1"))
    assert res.rc == 1 and "closed the connection" in res.err


def test_unreachable_device_fails_within_login_timeout():
    start = time.monotonic()
    # 10.255.255.1 is not routed from loopback-only tests; use a closed local port instead.
    res = run_fence(AGENT, args=args(23849, "-o", "off", "-n", "1", "--login-timeout=2"))
    assert res.rc == 1 and "cannot reach" in res.err
    assert time.monotonic() - start < 3


def test_silent_device_times_out(na):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 23848))
    server.listen(1)
    held: list[socket.socket] = []
    thread = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        res = run_fence(AGENT, args=args(23848, "-o", "off", "-n", "1", "--shell-timeout=1"))
        assert res.rc == 1 and "timed out" in res.err
        assert time.monotonic() - start < 3
    finally:
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("bad, words", [
    (["-o", "off", "-n", "abc"], "neither a node number nor a known alias"),
    (["-o", "off", "-n", "00"], "out of range"),
    (["-o", "off", "-n", "7", "--max-nodes=4"], "out of range"),
    (["-o", "off"], "plug number"),
    (["-o", "frobnicate", "-n", "1"], "Unrecognised action"),
    (["-o", "off", "-n", "1", "--ipport=x"], "ipport"),
    (["-o", "off", "-n", "1", "--mode=naos1"], "mode"),
    (["-o", "off", "-n", "1", "--aliases=1=an-node01,two"], "'two', not NUMBER=NAME"),
    (["-o", "off", "-n", "1", "--power-timeout=0"], "'power_timeout': value '0' is not above"),
])
def test_bad_input_changes_nothing(na, bad, words):
    sim = na(23810, "--scale", "0.05")
    res = run_fence(AGENT, args=args(23810, *bad))
    assert res.rc == 1 and words in res.err, res.err
    assert "Traceback" not in res.err
    assert not any(c.endswith((":1", ":2", ":3")) for c in sim.commands())
    assert res.rc == 1


def test_missing_ip():
    res = run_fence(AGENT, stdin="action=off\nport=01\nlogin=a\n")
    assert res.rc == 1 and "'ip'" in res.err


def test_legacy_conf_file(na, tmp_path):
    sim = na(23811, "--scale", "0.05")
    conf = tmp_path / "fence_na.conf"
    conf.write_text(
        "# fence_na.conf, 1.1.6 style\nsystem::na_num = 1\nsystem::username = motoko\n"
        f"system::password = {PASSWORD}\nna::1::na_name = batou\nna::1::ipaddr = 127.0.0.1\n"
        "na::1::tcp_port = 23811\nna::1::max_nodes = 2\nna::1::alias::1 = an-node01\n"
        "na::1::alias::2 = an-node02\n")
    base = f"ipaddr=127.0.0.1\nlogin=motoko\nconfig_file={conf}\n"
    res = run_fence(AGENT, stdin=base + f"passwd={PASSWORD}\naction=list\n")
    assert res.rc == 0 and res.out.splitlines() == ["01,an-node01", "02,an-node02"], res.err
    res = run_fence(AGENT, stdin=base + f"passwd={PASSWORD}\naction=off\nport=an-node02\n")
    assert res.rc == 0 and sim.node(2).endswith("F0 L1")
    res = run_fence(AGENT, stdin=base + "passwd=wrong-one\naction=off\nport=1\n")
    assert res.rc == 1 and "does not match" in res.err
    assert sim.node(1).endswith("F1 L0")


def test_password_never_printed(na, tmp_path):
    na(23812, "--scale", "0.05")
    debug = tmp_path / "debug.log"
    res = run_fence(AGENT, stdin=cman(23812, verbose="1", debug_file=str(debug), quiet="0"))
    assert res.rc == 0, res.err
    text = res.out + res.err + debug.read_text()
    assert "sending 01:1" in text
    assert PASSWORD not in text


def test_default_port_238_in_a_private_namespace(tmp_path):
    """The real TNAP port, 238, inside a private network namespace of our own."""
    ns = f"pyha-na-{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    sim = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        state = tmp_path / "na238"
        sim = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3",
                                str(ROOT / "tests/sim/nasim.py"), "238", str(state),
                                "--scale", "0.05"])
        end = time.monotonic() + 5
        while "238" not in subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htln"],
                                          capture_output=True, text=True).stdout:
            assert time.monotonic() < end, "nasim did not listen on 238"
            time.sleep(0.05)
        text = (f"agent=fence_na\nipaddr=127.0.0.1\nlogin=motoko\npasswd={PASSWORD}\n"
                "port=02\naction=off\nconfig_file=/nonexistent\n")
        res = subprocess.run(["ip", "netns", "exec", ns, str(ROOT / "fence/fence_na")],
                             input=text, capture_output=True, text=True, timeout=60)
        assert (res.returncode, res.stdout) == (0, "Success: Powered OFF\n"), res.stderr
        assert "02 P1 R0 F0 L1" in state.read_text()
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(5)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_dead_dns_server_fails_within_login_timeout(dead_dns):  # noqa: F811
    """A host name and a DNS server that never answers (resolver timeout 10 s)."""
    start = time.monotonic()
    res = subprocess.run(["ip", "netns", "exec", dead_dns, str(ROOT / "fence/fence_na"),
                          "-a", DEAD_NAME, "-l", "motoko", "-p", PASSWORD, "-n", "1",
                          "--config-file=/nonexistent", "-o", "off", "--login-timeout=2"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and f"resolving {DEAD_NAME} timed out" in res.stderr, res.stderr
    assert time.monotonic() - start < 4
