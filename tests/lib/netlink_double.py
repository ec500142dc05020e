"""Doubles for ocf_lib.netlink's transport (``netlink.socket_factory``).

:class:`InterruptingSocket` stands between the seam and the real kernel: it
passes every request through, and for the first ``times`` address dumps it
does what an interrupted dump may do, drop the record of ``hide`` and flag the
reply ``NLM_F_DUMP_INTR``.  ``times=-1`` interrupts every dump.

Install it in a process that runs inside a test network namespace::

    netlink.socket_factory = InterruptingSocket.factory("10.0.0.5", times=2)
"""

from __future__ import annotations

import _socket
import struct
from collections.abc import Callable

_HDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTM_NEWADDR, _RTM_GETADDR, _NLMSG_DONE = 20, 22, 3
_F_DUMP_INTR = 0x10
_IFA_ADDRESS, _IFA_LOCAL = 1, 2


class InterruptingSocket:
    dumps_interrupted = 0  # across all instances, for the test's own check

    def __init__(self, hide: str, budget: dict[str, int]) -> None:
        self.sock = _socket.socket(16, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.hide = _socket.inet_pton(_socket.AF_INET6 if ":" in hide else _socket.AF_INET, hide)
        self.budget = budget  # shared by the sockets of one factory: {"left": n}
        self.address_dump = False

    @classmethod
    def factory(cls, hide: str, times: int) -> Callable[[], InterruptingSocket]:
        budget = {"left": times}
        return lambda: cls(hide, budget)

    def send(self, data: bytes) -> int:
        self.address_dump = _HDR.unpack_from(data)[1] == _RTM_GETADDR
        return self.sock.send(data)

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        budget = self.budget
        if not self.address_dump or budget["left"] == 0:
            return data
        out = b""
        offset = 0
        while offset + _HDR.size <= len(data):
            length, mtype, flags, seq, pid = _HDR.unpack_from(data, offset)
            msg = data[offset: offset + length]
            offset += (length + 3) & ~3
            if mtype == _RTM_NEWADDR and self._is_hidden(msg):
                continue  # the record an interrupted dump skipped
            if mtype == _NLMSG_DONE:
                InterruptingSocket.dumps_interrupted += 1
                if budget["left"] > 0:
                    budget["left"] -= 1
            msg = _HDR.pack(length, mtype, flags | _F_DUMP_INTR, seq, pid) + msg[_HDR.size:]
            out += msg + b"\0" * ((4 - length % 4) % 4)
        return out

    def _is_hidden(self, msg: bytes) -> bool:
        offset = _HDR.size + _IFADDRMSG.size
        while offset + 4 <= len(msg):
            alen, kind = struct.unpack_from("=HH", msg, offset)
            if alen < 4:
                break
            if kind in (_IFA_ADDRESS, _IFA_LOCAL) and msg[offset + 4: offset + alen] == self.hide:
                return True
            offset += (alen + 3) & ~3
        return False

    def close(self) -> None:
        self.sock.close()
