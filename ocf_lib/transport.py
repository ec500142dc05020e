"""The seam for line-oriented devices: one small interface, real and loopback.

A fence agent that talks to a device by lines (a TCP line protocol such as
Node Assassin's, or a CLI over telnet/SSH) speaks to a :class:`LineTransport`
and never to a socket directly.  :class:`TCPLineTransport` is the real one;
:class:`LoopbackTransport` puts an in-process device model behind the very
same interface, so tests exercise the agent's code paths, not a monkeypatch.
Every read takes a timeout: a device that stops answering is an error, never
a hang.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing costs ~5 ms to import; not on hot paths
if TYPE_CHECKING:
    from collections.abc import Callable


class TransportError(OSError):
    """The device could not be reached, or stopped answering; ``str()`` says which."""


class TransportTimeout(TransportError):
    pass


class LineTransport:
    """Send lines, read lines; ``eol`` is what the device expects."""

    eol = "\n"

    def send_line(self, line: str) -> None:
        raise NotImplementedError

    def read_line(self, timeout: float) -> str:
        """One line without its terminator; TransportTimeout when none arrives in time."""
        raise NotImplementedError

    def read_until(self, last_line: str, timeout: float) -> list[str]:
        """Lines up to and including one equal to ``last_line`` (e.g. ``EOM``)."""
        end = time.monotonic() + timeout
        lines = []
        while True:
            line = self.read_line(max(0.0, end - time.monotonic()))
            lines.append(line)
            if line.strip() == last_line:
                return lines

    def close(self) -> None:
        pass


class TCPLineTransport(LineTransport):
    def __init__(self, host: str, port: int, timeout: float, eol: str = "\n") -> None:
        from .resolve import ResolveError, ResolveTimeout, connect

        self.eol = eol
        self._buf = b""
        try:
            self.sock = connect(host, port, max(0.1, timeout))  # the DNS lookup too
        except ResolveTimeout as exc:
            raise TransportTimeout(str(exc)) from None
        except ResolveError as exc:
            raise TransportError(str(exc)) from None
        except TimeoutError:
            raise TransportTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            reason = exc.strerror or exc
            raise TransportError(f"cannot connect to {host}:{port}: {reason}") from None
        self.peer = f"{host}:{port}"

    def send_line(self, line: str) -> None:
        try:
            self.sock.sendall((line + self.eol).encode())
        except OSError as exc:
            raise TransportError(f"sending to {self.peer} failed: {exc}") from None

    def read_line(self, timeout: float) -> str:
        import socket

        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.peer} timed out (no reply)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise TransportTimeout(f"{self.peer} timed out (no reply)") from None
            except OSError as exc:
                raise TransportError(f"reading from {self.peer} failed: {exc}") from None
            if not chunk:
                raise TransportError(f"{self.peer} closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class LoopbackTransport(LineTransport):
    """An in-process device: ``device(line)`` returns the reply lines for one sent line."""

    def __init__(self, device: Callable[[str], list[str]]) -> None:
        self.device = device
        self.pending: list[str] = []
        self.sent: list[str] = []
        self.closed = False

    def send_line(self, line: str) -> None:
        if self.closed:
            raise TransportError("loopback device closed")
        self.sent.append(line)
        self.pending.extend(self.device(line))

    def read_line(self, timeout: float) -> str:
        if not self.pending:
            raise TransportTimeout("loopback device timed out (no reply)")
        return self.pending.pop(0)

    def close(self) -> None:
        self.closed = True
