"""The line transport seam: the real TCP implementation and the loopback double agree."""

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
    t.send_line("status 1")
    assert t.read_line(2) == "got status 1"
    assert t.read_line(2) == "EOM"
    t.send_line("list")
    assert t.read_until("EOM", 2) == ["got list", "EOM"]
    t.send_line("quit")
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
    t.send_line("status 1")
    assert t.read_line(1) == "got status 1"
    assert t.read_line(1) == "EOM"
    t.send_line("list")
    assert t.read_until("EOM", 1) == ["1 on", "2 off", "EOM"]
    t.send_line("silent")
    with pytest.raises(TransportTimeout, match="timed out"):
        t.read_line(1)
    assert isinstance(t, LoopbackTransport) and t.sent == ["status 1", "list", "silent"]
    t.close()
    with pytest.raises(TransportError):
        t.send_line("after close")


def test_errors_are_oserrors_so_fence_runtime_reports_them() -> None:
    assert issubclass(TransportError, OSError)
    assert issubclass(TransportTimeout, TransportError)
