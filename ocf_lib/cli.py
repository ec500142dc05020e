"""The seam for devices driven through a command line (telnet or SSH).

A :class:`CLITransport` sends lines and waits for one of several regular
expressions; that is all a CLI fence agent needs.  Two real ones:

* :class:`TelnetCLI`: telnet spoken natively over a socket.  Every option the
  device proposes is refused (IAC DO/WILL answered with WONT/DONT), so lines
  arrive as sent; no ``telnet`` binary, no pty turning ``\\r\\n`` into two lines.
* :class:`SSHCLI`: the OpenSSH client driven by pexpect (it insists on a
  terminal for its password prompt).  Commands end with CR LF, as
  fence-agents sends them: an embedded SSH CLI with no terminal line
  discipline reads LF-terminated lines and never sees a line that ends with
  CR alone, while a device-side pty turns CR LF into two line ends (the
  caller then sees the echo and one extra prompt).

Passwords go through :meth:`CLITransport.send_secret`, which never logs what
it sends.  A test double implements the same three methods.
"""

from __future__ import annotations

import re
import time

TYPE_CHECKING = False  # typing costs ~5 ms to import; not on hot paths
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .log import Logger


class CLIError(Exception):
    """The device could not be reached, closed the session, or did not answer."""


class CLITimeout(CLIError):
    pass


class CLITransport:
    eol = "\r\n"

    def send(self, line: str) -> None:
        raise NotImplementedError

    def send_secret(self, line: str) -> None:
        """Like :meth:`send`; the text is never logged."""
        self.send(line)

    def expect(self, patterns: Sequence[str], timeout: float) -> tuple[int, str]:
        """Wait for the first of ``patterns`` (regexes, case-insensitive).

        Returns its index and the text received before it (and the match).
        CLITimeout if none appears in time, CLIError if the connection ends.
        """
        raise NotImplementedError

    def close(self) -> None:
        pass


IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


class TelnetCLI(CLITransport):
    def __init__(self, host: str, port: int, timeout: float, log: Logger) -> None:
        import socket

        from .resolve import ResolveError, ResolveTimeout, connect

        self.log = log
        self.buf = ""
        self.peer = f"{host}:{port}"
        try:
            self.sock = connect(host, port, max(0.1, timeout))  # the DNS lookup too
        except ResolveTimeout as exc:
            raise CLITimeout(str(exc)) from None
        except ResolveError as exc:
            raise CLIError(str(exc)) from None
        except TimeoutError:
            raise CLITimeout(f"connecting to {self.peer} timed out") from None
        except OSError as exc:
            raise CLIError(f"cannot connect to {self.peer}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one line, one packet
        self.pending = b""

    def send(self, line: str) -> None:
        self.log.debug(f"sent: {line}")
        self._write((line + self.eol).encode())

    def send_secret(self, line: str) -> None:
        self.log.debug("sent: (password, not logged)")
        self._write((line + self.eol).encode())

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data.replace(bytes([IAC]), bytes([IAC, IAC])))
        except OSError as exc:
            raise CLIError(f"sending to {self.peer} failed: {exc}") from None

    def _filter(self, data: bytes) -> bytes:
        """Strip telnet commands from ``data``, refusing every option offered."""
        data = self.pending + data
        self.pending = b""
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
                self.pending = data[i:]
                break
            cmd = data[i + 1]
            if cmd == IAC:
                out.append(IAC)
                i += 2
            elif cmd in (DO, DONT, WILL, WONT):
                if i + 2 >= len(data):
                    self.pending = data[i:]
                    break
                if cmd in (DO, WILL):
                    replies += bytes([IAC, WONT if cmd == DO else DONT, data[i + 2]])
                i += 3
            elif cmd == SB:
                end = data.find(bytes([IAC, SE]), i)
                if end < 0:
                    self.pending = data[i:]
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

    def expect(self, patterns: Sequence[str], timeout: float) -> tuple[int, str]:
        import socket

        compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
        end = time.monotonic() + timeout
        while True:
            best = None
            for index, rx in enumerate(compiled):
                m = rx.search(self.buf)
                if m and (best is None or m.start() < best[1].start()):
                    best = (index, m)
            if best is not None:
                index, m = best
                text, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return index, text
            left = end - time.monotonic()
            if left <= 0:
                raise CLITimeout(f"{self.peer} timed out waiting for {' or '.join(patterns)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError as exc:
                raise CLIError(f"reading from {self.peer} failed: {exc}") from None
            if not chunk:
                raise CLIError(f"{self.peer} closed the connection")
            text = self._filter(chunk).decode("utf-8", "replace").replace("\r", "")
            self.log.debug(f"received: {text.strip()}")
            self.buf += text

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class SSHCLI(CLITransport):
    """``ssh`` under pexpect; ``argv`` is the full client command line (no secrets)."""

    eol = "\r\n"
    # The password goes to the local ssh client's own prompt (a tty in canonical
    # mode): one LF, so no stray line end is left over for the device.
    secret_eol = "\n"

    def __init__(self, argv: Sequence[str], log: Logger) -> None:
        from .lazy import need

        self.pexpect: Any = need("pexpect")
        self.log = log
        self.argv = list(argv)
        log.debug(f"running: {' '.join(self.argv)}")
        try:
            self.child = self.pexpect.spawn(self.argv[0], self.argv[1:], encoding="utf-8",
                                            codec_errors="replace", echo=False,
                                            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
        except self.pexpect.ExceptionPexpect as exc:
            raise CLIError(f"cannot run {self.argv[0]}: {exc}") from None

    def send(self, line: str) -> None:
        self.log.debug(f"sent: {line}")
        self.child.send(line + self.eol)

    def send_secret(self, line: str) -> None:
        self.log.debug("sent: (password, not logged)")
        self.child.send(line + self.secret_eol)

    def expect(self, patterns: Sequence[str], timeout: float) -> tuple[int, str]:
        compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
        try:
            index = self.child.expect(compiled, timeout=max(0.01, timeout))
        except self.pexpect.TIMEOUT:
            raise CLITimeout(f"ssh timed out waiting for {' or '.join(patterns)}") from None
        except self.pexpect.EOF:
            last = (self.child.before or "").strip().splitlines()
            raise CLIError("ssh ended: " + (last[-1] if last else "connection closed")) \
                from None
        text = (self.child.before or "") + (self.child.after or "")
        text = text.replace("\r", "")
        self.log.debug(f"received: {text.strip()}")
        return index, text

    def close(self) -> None:
        try:
            self.child.close(force=True)
        except Exception:  # noqa: BLE001 - the session is over either way
            pass


class LoopbackCLI(CLITransport):
    """The test double: ``device(line)`` returns the text the device prints for a line.

    ``banner`` is what the device prints before any input (a prompt).  Secrets
    are recorded as ``[secret]`` so a test can check none was sent in clear.
    """

    def __init__(self, device: Any, banner: str = "") -> None:
        self.device = device
        self.buf = banner
        self.sent: list[str] = []
        self.closed = False

    def send(self, line: str) -> None:
        if self.closed:
            raise CLIError("loopback device closed")
        self.sent.append(line)
        self.buf += self.device(line)

    def send_secret(self, line: str) -> None:
        if self.closed:
            raise CLIError("loopback device closed")
        self.sent.append("[secret]")
        self.buf += self.device(line)

    def expect(self, patterns: Sequence[str], timeout: float) -> tuple[int, str]:
        best = None
        for index, pattern in enumerate(patterns):
            m = re.search(pattern, self.buf, re.IGNORECASE)
            if m and (best is None or m.start() < best[1].start()):
                best = (index, m)
        if best is None:
            raise CLITimeout(f"loopback device timed out waiting for {' or '.join(patterns)}")
        text, self.buf = self.buf[:best[1].end()], self.buf[best[1].end():]
        return best[0], text

    def close(self) -> None:
        self.closed = True
