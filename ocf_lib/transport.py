"""The seam for line-oriented devices: one interface, real and loopback.

A fence agent that talks to a device by lines (a TCP line protocol such as
Node Assassin's, or a CLI over telnet or SSH) speaks to a
:class:`LineTransport` and never to a socket or a pty directly.  The
interface is small: :meth:`~LineTransport.send` a line (or
:meth:`~LineTransport.send_secret`, which never logs it),
:meth:`~LineTransport.read_line`, :meth:`~LineTransport.read_until` a
terminator line, or :meth:`~LineTransport.expect` the first of several
regular expressions.  Every read takes a timeout: a device that stops
answering is a :class:`TransportTimeout`, never a hang; a connection that
ends is a :class:`TransportError` (an OSError, which the fence runtime
reports with its message).

The base class owns the receive buffer and all the reading logic; an
implementation only moves bytes:

* :class:`TCPLineTransport`: a TCP connection (the host name resolved within
  the timeout).  With ``telnet=True`` it speaks telnet natively: every option
  the device proposes is refused (IAC DO/WILL answered with WONT/DONT), so
  lines arrive as sent, with no ``telnet`` binary and no pty turning
  ``\\r\\n`` into two lines.
* :class:`SSHTransport`: the OpenSSH client driven by pexpect (it insists on
  a terminal for its password prompt).  The password goes to the local
  client's prompt with LF alone; device commands end with the transport's
  ``eol``.  A CLI device wants CR LF, as fence-agents send it: an embedded
  SSH CLI with no terminal line discipline reads LF-terminated lines and
  never sees a line that ends with CR alone, while a device-side pty turns
  CR LF into two line ends (the caller then sees the echo and one extra
  prompt).
* :class:`LoopbackTransport`, the test double: an in-process device model
  behind the very same interface, so tests exercise the agent's code paths,
  not a monkeypatch.

Carriage returns are dropped from what is received: lines end with LF.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing is not worth importing on hot paths
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .log import Logger


class TransportError(OSError):
    """The device could not be reached, or stopped answering; ``str()`` says which."""


class TransportTimeout(TransportError):
    pass


class LineTransport:
    """Send lines, read lines or patterns.  Subclasses implement :meth:`_write`
    and :meth:`_receive`; ``peer`` names the device in messages."""

    eol = "\n"
    secret_eol: str | None = None  # what ends a secret line; None: ``eol``
    peer = "device"
    log: Logger | None = None

    def __init__(self) -> None:
        self.buf = ""

    # -- what an implementation provides -------------------------------------

    def _write(self, data: str) -> None:
        raise NotImplementedError

    def _receive(self, timeout: float) -> str | None:
        """More text, or None when nothing arrived within ``timeout``;
        TransportError when the connection has ended."""
        raise NotImplementedError

    # -- the interface -----------------------------------------------------------

    def send(self, line: str) -> None:
        if self.log is not None:
            self.log.debug(f"sent: {line}")
        self._write(line + self.eol)

    def send_secret(self, line: str) -> None:
        """Like :meth:`send`; the text is never logged."""
        if self.log is not None:
            self.log.debug("sent: (password, not logged)")
        self._write(line + (self.eol if self.secret_eol is None else self.secret_eol))

    def _fill(self, end: float) -> bool:
        """Receive more into the buffer; False when ``end`` passed with nothing new."""
        left = end - time.monotonic()
        if left <= 0:
            return False
        text = self._receive(left)
        if text is None:
            return False
        self._feed(text)
        return True

    def _feed(self, text: str) -> None:
        text = text.replace("\r", "")
        if self.log is not None and text.strip():
            self.log.debug(f"received: {text.strip()}")
        self.buf += text

    def read_line(self, timeout: float) -> str:
        """One line without its terminator; TransportTimeout when none arrives in time."""
        end = time.monotonic() + timeout
        while "\n" not in self.buf:
            if not self._fill(end):
                raise TransportTimeout(f"{self.peer} timed out (no reply)")
        line, _, self.buf = self.buf.partition("\n")
        return line

    def read_until(self, last_line: str, timeout: float) -> list[str]:
        """Lines up to and including one equal to ``last_line`` (e.g. ``EOM``)."""
        end = time.monotonic() + timeout
        lines = []
        while True:
            line = self.read_line(max(0.0, end - time.monotonic()))
            lines.append(line)
            if line.strip() == last_line:
                return lines

    def expect(self, patterns: Sequence[str], timeout: float) -> tuple[int, str]:
        """Wait for the first of ``patterns`` (regexes, case-insensitive).

        Returns its index and the text received up to the end of the match.
        TransportTimeout if none appears in time, TransportError if the
        connection ends.
        """
        import re

        compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
        end = time.monotonic() + timeout
        while True:
            best = None
            for index, rx in enumerate(compiled):
                m = rx.search(self.buf)
                if m and (best is None or m.start() < best[1].start()):
                    best = (index, m)
            if best is not None:
                text, self.buf = self.buf[:best[1].end()], self.buf[best[1].end():]
                return best[0], text
            if not self._fill(end):
                raise TransportTimeout(f"{self.peer} timed out waiting for "
                                       f"{' or '.join(patterns)}")

    def close(self) -> None:
        pass


IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


class TCPLineTransport(LineTransport):
    """A TCP connection; ``telnet``: refuse every option and unescape IAC."""

    def __init__(self, host: str, port: int, timeout: float, eol: str = "\n", *,
                 telnet: bool = False, log: Logger | None = None) -> None:
        import codecs
        import socket

        from .resolve import ResolveError, ResolveTimeout, connect

        super().__init__()
        self.eol = eol
        self.telnet = telnet
        self.log = log
        self.peer = f"{host}:{port}"
        self._pending = b""  # an incomplete telnet command
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            self.sock = connect(host, port, max(0.1, timeout))  # the DNS lookup too
        except ResolveTimeout as exc:
            raise TransportTimeout(str(exc)) from None
        except ResolveError as exc:
            raise TransportError(str(exc)) from None
        except TimeoutError:
            raise TransportTimeout(f"connecting to {self.peer} timed out") from None
        except OSError as exc:
            reason = exc.strerror or exc
            raise TransportError(f"cannot connect to {self.peer}: {reason}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one line, one packet

    def _write(self, data: str) -> None:
        raw = data.encode()
        if self.telnet:
            raw = raw.replace(bytes([IAC]), bytes([IAC, IAC]))
        try:
            self.sock.sendall(raw)
        except OSError as exc:
            raise TransportError(f"sending to {self.peer} failed: {exc}") from None

    def _receive(self, timeout: float) -> str | None:
        import socket

        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(4096)
        except socket.timeout:
            return None
        except OSError as exc:
            raise TransportError(f"reading from {self.peer} failed: {exc}") from None
        if not chunk:
            raise TransportError(f"{self.peer} closed the connection")
        if self.telnet:
            chunk = self._telnet_filter(chunk)
        return self._decoder.decode(chunk)

    def _telnet_filter(self, data: bytes) -> bytes:
        """Strip telnet commands from ``data``, refusing every option offered."""
        data = self._pending + data
        self._pending = b""
        out = bytearray()
        replies = bytearray()
        i = 0
        while i < len(data):
            byte = data[i]
            if byte != IAC:
                out.append(byte)
                i += 1
                continue
            if i + 1 >= len(data):
                self._pending = data[i:]
                break
            cmd = data[i + 1]
            if cmd == IAC:
                out.append(IAC)
                i += 2
            elif cmd in (DO, DONT, WILL, WONT):
                if i + 2 >= len(data):
                    self._pending = data[i:]
                    break
                if cmd in (DO, WILL):
                    replies += bytes([IAC, WONT if cmd == DO else DONT, data[i + 2]])
                i += 3
            elif cmd == SB:
                end = data.find(bytes([IAC, SE]), i)
                if end < 0:
                    self._pending = data[i:]
                    break
                i = end + 2
            else:
                i += 2
        if replies:
            try:
                self.sock.sendall(bytes(replies))
            except OSError:
                pass
        return bytes(out)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class SSHTransport(LineTransport):
    """``ssh`` under pexpect; ``argv`` is the full client command line (no secrets)."""

    eol = "\r\n"
    # The password goes to the local ssh client's own prompt (a tty in canonical
    # mode): one LF, so no stray line end is left over for the device.
    secret_eol = "\n"
    peer = "ssh"

    def __init__(self, argv: Sequence[str], log: Logger) -> None:
        from .lazy import need

        super().__init__()
        self.pexpect: Any = need("pexpect")
        self.log = log
        self.argv = list(argv)
        log.debug(f"running: {' '.join(self.argv)}")
        try:
            self.child = self.pexpect.spawn(self.argv[0], self.argv[1:], encoding="utf-8",
                                            codec_errors="replace", echo=False,
                                            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
        except self.pexpect.ExceptionPexpect as exc:
            raise TransportError(f"cannot run {self.argv[0]}: {exc}") from None

    def _write(self, data: str) -> None:
        try:
            self.child.send(data)
        except OSError as exc:
            raise TransportError(f"sending to ssh failed: {exc}") from None

    def _receive(self, timeout: float) -> str | None:
        try:
            return str(self.child.read_nonblocking(4096, timeout=max(0.01, timeout)))
        except self.pexpect.TIMEOUT:
            return None
        except self.pexpect.EOF:
            last = self.buf.strip().splitlines()
            raise TransportError("ssh ended: " + (last[-1] if last else "connection closed")) \
                from None

    def close(self) -> None:
        try:
            self.child.close(force=True)
        except Exception:  # noqa: BLE001 - the session is over either way
            pass


class LoopbackTransport(LineTransport):
    """The test double: an in-process device.

    ``device(line)`` returns what the device prints for one line received:
    text, or a list of lines (each then ends with LF).  ``banner`` is what it
    prints before any input (a prompt).  ``sent`` records the lines, a secret
    as ``[secret]``, so a test can check none was sent in clear.  Nothing more
    ever arrives than the device printed: a read it cannot satisfy times out
    at once.
    """

    peer = "loopback device"

    def __init__(self, device: Callable[[str], str | list[str]], banner: str = "") -> None:
        super().__init__()
        self.device = device
        self._feed(banner)
        self.sent: list[str] = []
        self.closed = False

    def send(self, line: str) -> None:
        self._deliver(line, line)

    def send_secret(self, line: str) -> None:
        self._deliver(line, "[secret]")

    def _deliver(self, line: str, shown: str) -> None:
        if self.closed:
            raise TransportError("loopback device closed")
        self.sent.append(shown)
        reply = self.device(line)
        self._feed(reply if isinstance(reply, str) else "".join(f"{r}\n" for r in reply))

    def _receive(self, timeout: float) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True
