"""Telling the segment that an address moved: gratuitous ARP and unsolicited NA.

Frames are built here and sent on an ``AF_PACKET`` socket bound to the
interface, in-process: no ``send_arp``/``send_ua``/``arping`` fork, no
dependence on libnet, and the same code for IPv4 and IPv6.  Sending the
frames in-process costs a fraction of one fork+exec of ``arping``, which also
waits a second for replies (docs/design.md has the measurements).

* IPv4: for each round an ARP *request* "who-has IP tell IP" and an ARP
  *reply* "IP is-at MAC", both to the broadcast MAC (what ``send_arp`` sends;
  some switches and hosts honour only one of the two forms).
* IPv6: an unsolicited neighbour advertisement (RFC 4861 §7.2.6) from the
  address to ff02::1 with the override flag and the target link-layer
  address option, hop limit 255.

:func:`background` forks a child (new session, stdio on /dev/null, so that
Pacemaker is never kept waiting on our pipes) and records ``pid starttime``
in a pid file, so that stop can kill it without ever hitting a reused pid.
"""

from __future__ import annotations

import _socket
import os
import struct
import time

_AF_PACKET = 17
_ETH_P_ARP = 0x0806
_ETH_P_IPV6 = 0x86DD
_BROADCAST = b"\xff" * 6
_ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
_ALL_NODES = _socket.inet_pton(_socket.AF_INET6, "ff02::1")


def arp_frames(mac: bytes, ip: str) -> list[bytes]:
    """A gratuitous ARP request and reply for ``ip`` at ``mac``."""
    spa = _socket.inet_pton(_socket.AF_INET, ip)
    frames = []
    for op, target_mac in ((1, b"\0" * 6), (2, _BROADCAST)):
        eth = _BROADCAST + mac + struct.pack("!H", _ETH_P_ARP)
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + spa + target_mac + spa
        frames.append(eth + arp)
    return frames


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def na_frame(mac: bytes, ip: str) -> bytes:
    """An unsolicited neighbour advertisement of ``ip`` at ``mac`` to all nodes."""
    src = _socket.inet_pton(_socket.AF_INET6, ip)
    # type 136, code 0, checksum, flags: Override (0x20000000); target; option 2 (TLLA).
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + src + struct.pack("!BB", 2, 1) + mac
    pseudo = src + _ALL_NODES + struct.pack("!I3xB", len(body), 58)
    csum = _checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + _ALL_NODES
    return _ALL_NODES_MAC + mac + struct.pack("!H", _ETH_P_IPV6) + ip6 + body


def send(ifname: str, mac: bytes, ip: str, count: int, interval: float,
         end: float | None = None) -> int:
    """Send ``count`` rounds ``interval`` seconds apart; returns the rounds sent.

    ``end`` (a ``time.monotonic()`` value) stops early so that a foreground
    announcement never outlives the action's deadline.
    """
    ipv6 = ":" in ip
    frames = [na_frame(mac, ip)] if ipv6 else arp_frames(mac, ip)
    proto = _ETH_P_IPV6 if ipv6 else _ETH_P_ARP
    sock = _socket.socket(_AF_PACKET, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, 0)
    sent = 0
    try:
        sock.bind((ifname, proto))
        for i in range(count):
            for frame in frames:
                sock.send(frame)
            sent += 1
            if i + 1 < count:
                if end is not None and time.monotonic() + interval > end:
                    break
                time.sleep(interval)
    finally:
        sock.close()
    return sent


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name in () may contain spaces.
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else None


def background(pidfile: str, ifname: str, mac: bytes, ip: str, count: int,
               interval: float) -> int:
    """Announce from a detached child; returns its pid."""
    pid = os.fork()
    if pid:
        # The parent records it, so that a stop right after start always finds it.
        from .state import write_atomic

        write_atomic(pidfile, f"{pid} {_starttime(pid)}\n", 0o644)
        return pid
    # The child: never return into the agent's code path.
    code = 0
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        send(ifname, mac, ip, count, interval)
    except BaseException:  # noqa: BLE001 - a child must exit, whatever happened
        code = 1
    finally:
        try:
            time.sleep(0.05)  # let the parent finish writing the pid file
            if read_pidfile(pidfile) == os.getpid():
                os.unlink(pidfile)
        except OSError:
            pass
        os._exit(code)


def read_pidfile(pidfile: str) -> int | None:
    """The live announcer recorded in ``pidfile`` (pid and start time must match)."""
    try:
        with open(pidfile, encoding="ascii") as handle:
            words = handle.read().split()
    except OSError:
        return None
    if not words or not words[0].isdigit():
        return None
    pid = int(words[0])
    if len(words) > 1 and _starttime(pid) != words[1]:
        return None
    return pid


def stop_background(pidfile: str) -> None:
    """Kill a still-running announcer (stop must not leave one advertising)."""
    pid = read_pidfile(pidfile)
    if pid is not None:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
