"""The line transport seam (ocf_lib.transport): the real TCP implementation, with and
without telnet, and the loopback double agree.  SSH needs a real sshd (root), so its
seam test lives next to that sshd in tests/test_fence_ilo_mp.py
(test_the_ssh_transport_on_its_own), with the agent's SSH tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ocf_lib.transport import (
    LineTransport,
    LoopbackTransport,
    TCPLineTransport,
    TransportError,
    TransportTimeout,
)


class Server:
    """A one-connection TCP device on 127.0.0.1 driven by a script function."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script: Callable[[socket.socket], None]) -> None:
        conn, _ = self.sock.accept()
        with conn:
            script(conn)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


def echo_device(conn: socket.socket) -> None:
    """Answers each line with two lines, split awkwardly across TCP segments, CRLF ended."""
    buf = b""
    while True:
        data = conn.recv(1024)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line == b"quit":
                return
            reply = b"got " + line + b"\r\nEOM\r\n"
            conn.sendall(reply[:3])
            time.sleep(0.01)
            conn.sendall(reply[3:])


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(echo_device)
    yield srv
    srv.close()


def test_tcp_lines_round_trip(server: Server) -> None:
    t = TCPLineTransport("127.0.0.1", server.port, timeout=2)
    t.send("status 1")
    assert t.read_line(2) == "got status 1"
    assert t.read_line(2) == "EOM"
    t.send("list")
    assert t.read_until("EOM", 2) == ["got list", "EOM"]
    t.send("quit")
    with pytest.raises(TransportError, match="closed the connection"):
        t.read_line(2)
    t.close()
    t.close()  # closing twice is harmless


def test_tcp_read_times_out_instead_of_hanging() -> None:
    srv = Server(lambda conn: time.sleep(1.0))
    try:
        t = TCPLineTransport("127.0.0.1", srv.port, timeout=2)
        started = time.monotonic()
        with pytest.raises(TransportTimeout, match="timed out"):
            t.read_line(0.3)
        assert 0.25 < time.monotonic() - started < 0.9
        t.close()
    finally:
        srv.close()


def test_tcp_read_until_obeys_one_overall_timeout() -> None:
    def chatty(conn: socket.socket) -> None:
        try:
            for _ in range(20):  # lines keep coming, but never the terminator
                conn.sendall(b"noise\n")
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up and closed, as it should

    srv = Server(chatty)
    try:
        t = TCPLineTransport("127.0.0.1", srv.port, timeout=2)
        started = time.monotonic()
        with pytest.raises(TransportTimeout):
            t.read_until("EOM", 0.3)
        assert time.monotonic() - started < 0.8
        t.close()
    finally:
        srv.close()


def test_tcp_refused_connection_is_a_clear_error() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}"):
        TCPLineTransport("127.0.0.1", port, timeout=1)


def fake_device(line: str) -> list[str]:
    if line == "list":
        return ["1 on", "2 off", "EOM"]
    if line == "silent":
        return []
    return ["got " + line, "EOM"]


def test_loopback_behaves_like_the_real_one() -> None:
    t: LineTransport = LoopbackTransport(fake_device)
    t.send("status 1")
    assert t.read_line(1) == "got status 1"
    assert t.read_line(1) == "EOM"
    t.send("list")
    assert t.read_until("EOM", 1) == ["1 on", "2 off", "EOM"]
    t.send("silent")
    with pytest.raises(TransportTimeout, match="timed out"):
        t.read_line(1)
    assert isinstance(t, LoopbackTransport) and t.sent == ["status 1", "list", "silent"]
    t.close()
    with pytest.raises(TransportError):
        t.send("after close")


def cli_device(line: str) -> str:
    """A CLI device: prompts, a secret, replies that end with CR LF."""
    if line == "admin":
        return "Password: "
    if line == "s3cret":
        return "\r\nWelcome\r\nMP> "
    return f"{line}\r\nstatus=0\r\nEnabledState=Enabled\r\nMP> "


def scripted(device: Callable[[str], str], banner: str) -> Callable[[socket.socket], None]:
    """``device`` served over TCP: the banner first, then its reply to each line."""

    def serve(conn: socket.socket) -> None:
        conn.sendall(banner.encode())
        buf = b""
        while True:
            data = conn.recv(1024)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                conn.sendall(device(raw.decode().rstrip("\r")).encode())

    return serve


def cli_session(t: LineTransport) -> list[object]:
    """What an agent does with a CLI device; the transcript of what it saw."""
    seen: list[object] = [t.expect([r"login: ?"], 1)]
    t.send("admin")
    seen.append(t.expect([r"password: ?"], 1))
    t.send_secret("s3cret")
    seen.append(t.expect(["denied", "MP>"], 1))
    t.send("show /system1")
    seen.append(t.read_line(1))
    seen.append(t.read_until("EnabledState=Enabled", 1))
    seen.append(t.expect(["MP>"], 1))
    with pytest.raises(TransportTimeout, match="timed out waiting for nothing"):
        t.expect(["nothing"], 0.2)
    return seen


def test_one_interface_the_loopback_double_sees_what_tcp_sees() -> None:
    """The same device behind the real TCP transport and behind the double: the
    agent's view is the same (CR dropped, the earliest pattern wins, timeouts)."""
    srv = Server(scripted(cli_device, "login: "))
    try:
        real = TCPLineTransport("127.0.0.1", srv.port, timeout=2, eol="\r\n")
        over_tcp = cli_session(real)
        real.close()
    finally:
        srv.close()
    double = LoopbackTransport(cli_device, banner="login: ")
    assert cli_session(double) == over_tcp
    assert over_tcp[2] == (1, "\nWelcome\nMP>")
    assert double.sent == ["admin", "[secret]", "show /system1"]


def test_telnet_options_are_refused_and_stripped() -> None:
    """IAC DO/WILL are answered WONT/DONT, subnegotiation and IAC IAC handled, even
    when a command is split across TCP segments; the text arrives clean."""
    IAC, DO, WILL, WONT, DONT, SB, SE = 255, 253, 251, 252, 254, 250, 240
    answers: list[bytes] = []

    def device(conn: socket.socket) -> None:
        conn.sendall(bytes([IAC, DO, 24, IAC, WILL, 1, IAC]))  # the last IAC split off
        time.sleep(0.05)
        conn.sendall(bytes([SB, 24, 1, IAC, SE]) + b"lo" + bytes([IAC, IAC]) + b"gin: ")
        conn.settimeout(2)
        data = b""
        while b"admin\r\n" not in data:
            data += conn.recv(1024)
        answers.append(data)
        conn.sendall(b"MP> ")

    srv = Server(device)
    try:
        t = TCPLineTransport("127.0.0.1", srv.port, timeout=2, eol="\r\n", telnet=True)
        assert t.expect(["gin: "], 2) == (0, "lo\ufffdgin: ")
        t.send("admin")
        assert t.expect(["MP>"], 2)[0] == 0
        t.close()
    finally:
        srv.close()
    assert answers[0] == bytes([IAC, WONT, 24, IAC, DONT, 1]) + b"admin\r\n"


def test_errors_are_oserrors_so_fence_runtime_reports_them() -> None:
    assert issubclass(TransportError, OSError)
    assert issubclass(TransportTimeout, TransportError)


# -- host-name lookups with a deadline (ocf_lib.resolve) ----------------------------------

DEAD_NAME = "fence-dev.pyha-test"


@pytest.fixture(scope="module")
def dead_dns() -> Iterator[str]:
    """A network namespace whose only DNS server swallows every query.

    ``ip netns exec`` bind-mounts /etc/netns/NAME/resolv.conf over
    /etc/resolv.conf.  The server's address is a permanent neighbour on one
    end of a veth pair whose other end has no address: queries leave and are
    dropped, with no ICMP error, so the resolver waits its full timeout (10 s).
    """
    import os
    import shutil
    import subprocess
    from pathlib import Path

    ns = f"pyha-dns-{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    conf = Path("/etc/netns") / ns
    try:
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["addr", "add", "10.53.0.1/24", "dev", "d0"], ["link", "set", "d0", "up"],
                    ["link", "set", "d1", "up"],
                    ["neigh", "add", "10.53.0.53", "lladdr", "02:00:00:00:00:53", "dev", "d0",
                     "nud", "permanent"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        conf.mkdir(parents=True)
        (conf / "resolv.conf").write_text("nameserver 10.53.0.53\noptions timeout:10 attempts:1\n")
        # The lookup really hangs there: the system's own resolver is still waiting at 2 s.
        probe = subprocess.run(["ip", "netns", "exec", ns, "timeout", "2", "getent", "hosts",
                                DEAD_NAME], capture_output=True)
        assert probe.returncode == 124, "the dead DNS server answered"
        yield ns
    finally:
        shutil.rmtree(conf, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)


RESOLVE_PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ocf_lib.resolve import ResolveTimeout, resolve
out = {}
start = time.monotonic()
out["numeric"] = [a[3][0] for a in resolve("127.0.0.1", 238, 1.0)]
out["v6"] = [a[3][0] for a in resolve("::1", 238, 1.0)]
out["numeric_s"] = time.monotonic() - start
start = time.monotonic()
try:
    resolve(sys.argv[2], 238, 1.5)
except ResolveTimeout as exc:
    out["timeout"] = str(exc)
out["name_s"] = time.monotonic() - start
print(json.dumps(out))
"""


def test_lookups_are_bounded_and_numbers_skip_dns(dead_dns: str) -> None:
    import json
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run(["ip", "netns", "exec", dead_dns, sys.executable, "-c", RESOLVE_PROBE,
                           str(ROOT), DEAD_NAME], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["numeric"] == ["127.0.0.1"] and out["v6"] == ["::1"]
    assert out["numeric_s"] < 0.5  # no DNS consulted
    assert f"resolving {DEAD_NAME} timed out after 1.5s" in out["timeout"]
    assert 1.4 < out["name_s"] < 3


def test_tcp_transport_lookup_is_bounded(dead_dns: str) -> None:
    """The TCP line transport (fence_na's) gives up at its timeout, not the resolver's."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, time; sys.path.insert(0, sys.argv[1])\n"
            "from ocf_lib.transport import TCPLineTransport, TransportTimeout\n"
            "t = time.monotonic()\n"
            "try:\n    TCPLineTransport(sys.argv[2], 238, 1.0)\n"
            "except TransportTimeout as exc:\n    print(round(time.monotonic() - t, 1), exc)\n")
    proc = subprocess.run(["ip", "netns", "exec", dead_dns, sys.executable, "-c", code,
                           str(ROOT), DEAD_NAME], capture_output=True, text=True, timeout=30)
    seconds, _, message = proc.stdout.partition(" ")
    assert float(seconds) < 2.5 and "timed out" in message, proc.stdout + proc.stderr
