"""The network seam: addresses, links and routes, read and changed over rtnetlink.

One small rtnetlink client written on ``_socket`` and ``struct`` (both built
into the interpreter), used by every action, reads and writes alike.

Why not pyroute2, and why not ``ip``?  Importing pyroute2 costs many times
a whole monitor; each ``ip`` run is a fork+exec, and ``start`` would need
several (route list, addr add, link up, addr show); a request over this
module's own socket costs a small fraction of either (docs/design.md has
the measurements).  So the monitor/probe path and start/stop all talk netlink directly: no fork,
no third-party import.  The price is this file; the kernel ABI it encodes
(``linux/rtnetlink.h``, ``if_addr.h``, ``if_link.h``) is stable.

A dump the kernel flags ``NLM_F_DUMP_INTR`` (the table changed under it) is
taken again a bounded number of times, then :class:`DumpInterrupted` is raised:
an inconsistent dump can miss an address, and an agent must never answer
"not running" from one.

The transport is :data:`socket_factory`; a loopback double that replays
prepared replies can stand in for the kernel there.
"""

from __future__ import annotations

import _socket
import os
import struct

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

AF_INET = 2
AF_INET6 = 10
_AF_NETLINK = 16
_NETLINK_ROUTE = 0

# Message types and flags (linux/rtnetlink.h, linux/netlink.h).
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_GETROUTE = 26
_F_REQUEST, _F_ACK, _F_DUMP = 0x1, 0x4, 0x300
_F_DUMP_INTR = 0x10
_F_EXCL, _F_CREATE = 0x200, 0x400

# Address attributes and flags (linux/if_addr.h).
_IFA_ADDRESS, _IFA_LOCAL, _IFA_LABEL, _IFA_BROADCAST = 1, 2, 3, 4
_IFA_CACHEINFO, _IFA_FLAGS = 6, 8
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80
IFA_F_NOPREFIXROUTE = 0x200
INFINITY_LIFE = 0xFFFFFFFF

# Link attributes and flags (linux/if_link.h, linux/if.h).
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_OPERSTATE = 1, 3, 16
_IFLA_PROP_LIST, _IFLA_ALT_IFNAME = 52, 53
_NLA_TYPE_MASK = 0x3FFF
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_LOWER_UP = 0x10000
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

# Route attributes (linux/rtnetlink.h).
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_PREFSRC, _RTA_TABLE = 1, 4, 5, 6, 7, 15
RTN_UNICAST, RTN_LOCAL = 1, 2
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
_RT_SCOPE_HOST = 254

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_CACHEINFO = struct.Struct("=IIII")


class NetlinkError(OSError):
    """The kernel refused a request; ``errno`` is the kernel's error number."""


# -- records ------------------------------------------------------------------

class Address:
    __slots__ = ("family", "prefixlen", "flags", "scope", "index", "address", "local",
                 "broadcast", "label", "preferred", "valid")

    def __init__(self, family: int, prefixlen: int, flags: int, scope: int, index: int) -> None:
        self.family = family
        self.prefixlen = prefixlen
        self.flags = flags
        self.scope = scope
        self.index = index
        self.address = ""  # IFA_ADDRESS (the peer on point-to-point links)
        self.local = ""  # IFA_LOCAL (IPv4's own address)
        self.broadcast = ""
        self.label = ""
        self.preferred = INFINITY_LIFE
        self.valid = INFINITY_LIFE

    @property
    def ip(self) -> str:
        """This host's address: IFA_LOCAL when present (IPv4), else IFA_ADDRESS."""
        return self.local or self.address

    def __repr__(self) -> str:
        return f"Address({self.ip}/{self.prefixlen} if={self.index} label={self.label!r})"


class Link:
    __slots__ = ("index", "name", "flags", "type", "operstate", "mac", "altnames")

    def __init__(self, index: int, flags: int, type_: int) -> None:
        self.index = index
        self.flags = flags
        self.type = type_  # ARPHRD_*: 1 ether, 32 infiniband, 772 loopback
        self.name = ""
        self.operstate = "unknown"
        self.mac = b""
        self.altnames: list[str] = []

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def carrier_down(self) -> bool:
        """Administratively up but no usable lower layer (``LOWERLAYERDOWN``/``DOWN``)."""
        return self.operstate in ("down", "lowerlayerdown", "notpresent")

    def __repr__(self) -> str:
        return f"Link({self.index} {self.name} {self.operstate})"


class Route:
    __slots__ = ("family", "dst", "dst_len", "table", "protocol", "scope", "type", "oif",
                 "gateway", "metric", "prefsrc")

    def __init__(self, family: int, dst_len: int, table: int, protocol: int, scope: int,
                 type_: int) -> None:
        self.family = family
        self.dst_len = dst_len
        self.table = table
        self.protocol = protocol
        self.scope = scope
        self.type = type_
        self.dst = ""
        self.oif = 0
        self.gateway = ""
        self.metric = 0
        self.prefsrc = ""

    def __repr__(self) -> str:
        return f"Route({self.dst or 'default'}/{self.dst_len} oif={self.oif} metric={self.metric})"


# -- address helpers (no ipaddress import: it costs milliseconds) ---------------

def family_of(ip: str) -> int:
    return AF_INET6 if ":" in ip else AF_INET


def pack_ip(ip: str) -> bytes:
    """The address in network order; raises ValueError when it is not one."""
    try:
        return _socket.inet_pton(family_of(ip), ip)
    except OSError:
        raise ValueError(f"'{ip}' is not an IP address") from None


def unpack_ip(family: int, data: bytes) -> str:
    return _socket.inet_ntop(family, data)


def canonical(ip: str) -> str:
    """RFC 5952 text for IPv6 (``fd00:0::0050`` -> ``fd00::50``); IPv4 unchanged."""
    return unpack_ip(family_of(ip), pack_ip(ip))


def in_prefix(ip: str, network: str, prefixlen: int) -> bool:
    """True when ``ip`` lies inside ``network/prefixlen`` (same family)."""
    a, b = pack_ip(ip), pack_ip(network)
    if len(a) != len(b):
        return False
    bits = len(a) * 8
    if prefixlen <= 0:
        return True
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)
    return (int.from_bytes(a, "big") & mask) == (int.from_bytes(b, "big") & mask)


def ipv4_broadcast(ip: str, prefixlen: int) -> str:
    """The directed broadcast of ``ip/prefixlen`` (none for /31 and /32)."""
    if prefixlen >= 31:
        return ""
    value = int.from_bytes(pack_ip(ip), "big") | ((1 << (32 - prefixlen)) - 1)
    return unpack_ip(AF_INET, value.to_bytes(4, "big"))


def netmask_to_prefix(mask: str) -> int | None:
    """``255.255.255.0`` -> 24; None when the dotted quad is not a contiguous mask."""
    try:
        value = int.from_bytes(_socket.inet_pton(AF_INET, mask), "big")
    except OSError:
        return None
    inverted = (~value) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        return None
    return 32 - inverted.bit_length()


# -- the wire -----------------------------------------------------------------

def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _attrs(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    end = len(data)
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & _NLA_TYPE_MASK, data[offset + 4: offset + length]
        offset += (length + 3) & ~3


def _route_socket() -> _socket.socket:
    sock = _socket.socket(_AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


# The seam's transport: what every request is sent over.  Tests may put a loopback
# double here (an object with send, recv and close).
socket_factory: Callable[[], Any] = _route_socket

# Dumps retaken because the kernel flagged them interrupted (for tests and bench).
stats = {"interrupted": 0}


class _Channel:
    """One NETLINK_ROUTE socket; used for a single request, then closed."""

    def __init__(self) -> None:
        self.sock = socket_factory()
        self.seq = int.from_bytes(os.urandom(2), "big") + 1
        self.interrupted = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> _Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        """Send one message; yield (type, payload) of each reply until DONE or the ACK."""
        self.seq += 1
        seq = self.seq
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | _F_REQUEST, seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(1 << 17)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, mflags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return
                payload = data[offset + _NLMSGHDR.size: offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mflags & _F_DUMP_INTR:  # the table changed while it was being dumped
                    self.interrupted = True
                if mtype == _NLMSG_DONE:
                    return
                if mtype == _NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    if error:
                        raise NetlinkError(-error, os.strerror(-error))
                    return  # an ACK
                yield mtype, payload
                if not flags & _F_DUMP and not flags & _F_ACK:
                    return


DUMP_ATTEMPTS = 5


class DumpInterrupted(NetlinkError):
    """Every attempt at a dump was interrupted by concurrent changes: no consistent view."""


def _dump(kind: int, body: bytes) -> list[tuple[int, bytes]]:
    """A complete, consistent dump.  A dump the kernel flags NLM_F_DUMP_INTR may have
    skipped or repeated entries (an address can be missing): take it again, a bounded
    number of times, then give up with DumpInterrupted rather than answer from it."""
    for _attempt in range(DUMP_ATTEMPTS):
        with _Channel() as chan:
            replies = list(chan.request(kind, _F_DUMP, body))
            if not chan.interrupted:
                return replies
        stats["interrupted"] += 1
    raise DumpInterrupted(4, f"netlink dump interrupted {DUMP_ATTEMPTS} times by concurrent "
                             "changes; no consistent view")  # 4: EINTR


def _do(kind: int, flags: int, body: bytes) -> None:
    with _Channel() as chan:
        for _ in chan.request(kind, flags | _F_ACK, body):
            pass


# -- queries ------------------------------------------------------------------

def addresses(family: int = 0) -> list[Address]:
    """Every address of every interface (``ip -o addr show``), in one dump."""
    found = []
    for _mtype, payload in _dump(RTM_GETADDR, _IFADDRMSG.pack(family, 0, 0, 0, 0)):
        fam, plen, flags, scope, index = _IFADDRMSG.unpack_from(payload)
        if family and fam != family:
            continue
        rec = Address(fam, plen, flags, scope, index)
        for kind, value in _attrs(payload, _IFADDRMSG.size):
            if kind == _IFA_ADDRESS:
                rec.address = unpack_ip(fam, value)
            elif kind == _IFA_LOCAL:
                rec.local = unpack_ip(fam, value)
            elif kind == _IFA_BROADCAST:
                rec.broadcast = unpack_ip(fam, value)
            elif kind == _IFA_LABEL:
                rec.label = value.rstrip(b"\0").decode("utf-8", "replace")
            elif kind == _IFA_FLAGS:
                (rec.flags,) = struct.unpack_from("=I", value)
            elif kind == _IFA_CACHEINFO:
                rec.preferred, rec.valid, _, _ = _CACHEINFO.unpack_from(value)
        found.append(rec)
    return found


def find_address(ip: str) -> list[Address]:
    """Every interface's record of ``ip`` (normally zero or one)."""
    want = pack_ip(ip)
    fam = family_of(ip)
    return [a for a in addresses(fam) if pack_ip(a.ip) == want]


def _parse_link(payload: bytes) -> Link:
    _fam, type_, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    link = Link(index, flags, type_)
    for kind, value in _attrs(payload, _IFINFOMSG.size):
        if kind == _IFLA_IFNAME:
            link.name = value.rstrip(b"\0").decode("utf-8", "replace")
        elif kind == _IFLA_OPERSTATE:
            state = value[0]
            link.operstate = OPERSTATES[state] if state < len(OPERSTATES) else "unknown"
        elif kind == _IFLA_ADDRESS:
            link.mac = bytes(value)
        elif kind == _IFLA_PROP_LIST:
            for sub, name in _attrs(value, 0):
                if sub == _IFLA_ALT_IFNAME:
                    link.altnames.append(name.rstrip(b"\0").decode("utf-8", "replace"))
    return link


def links() -> list[Link]:
    """Every interface (``ip link show``), altnames included."""
    return [_parse_link(p) for _t, p in _dump(RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0))]


def link_by_name(name: str) -> Link | None:
    """The interface called ``name`` (its altnames count), or None."""
    for link in links():
        if link.name == name or name in link.altnames:
            return link
    return None


def link_by_index(index: int) -> Link | None:
    for link in links():
        if link.index == index:
            return link
    return None


def routes(family: int, table: int = RT_TABLE_MAIN) -> list[Route]:
    """The routes of one table (``ip -f <family> route show table <table>``)."""
    found = []
    body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    for _mtype, payload in _dump(RTM_GETROUTE, body):
        fam, dst_len, _src_len, _tos, tab, proto, scope, rtype, _flags = _RTMSG.unpack_from(payload)
        if fam != family:
            continue
        rec = Route(fam, dst_len, tab, proto, scope, rtype)
        for kind, value in _attrs(payload, _RTMSG.size):
            if kind == _RTA_TABLE:
                (rec.table,) = struct.unpack_from("=I", value)
            elif kind == _RTA_DST:
                rec.dst = unpack_ip(fam, value)
            elif kind == _RTA_OIF:
                (rec.oif,) = struct.unpack_from("=I", value)
            elif kind == _RTA_GATEWAY:
                rec.gateway = unpack_ip(fam, value)
            elif kind == _RTA_PRIORITY:
                (rec.metric,) = struct.unpack_from("=I", value)
            elif kind == _RTA_PREFSRC:
                rec.prefsrc = unpack_ip(fam, value)
        if rec.table == table:
            found.append(rec)
    return found


def best_route(ip: str, *, prefix: int | None = None, oif: int | None = None,
               proto: int | None = None) -> Route | None:
    """The route that places ``ip`` (upstream's findif, without gawk or forks).

    Main table, unicast, never a default route; optionally only via ``oif``,
    of protocol number ``proto``, and at most as narrow as
    ``prefix`` (a route must contain the whole ``ip/prefix``).  The longest
    prefix wins, then the lowest metric.  127/8 addresses fall back to the
    local table, where loopback routes live.
    """
    family = family_of(ip)
    tables = [(RT_TABLE_MAIN, RTN_UNICAST)]
    if family == AF_INET and pack_ip(ip)[0] == 127:
        tables.append((RT_TABLE_LOCAL, RTN_LOCAL))
    for table, rtype in tables:
        best = None
        for r in routes(family, table):
            if r.dst_len == 0 or not r.dst or r.type != rtype:
                continue
            if oif is not None and r.oif != oif:
                continue
            if proto is not None and r.protocol != proto:
                continue
            if prefix is not None and r.dst_len > prefix:
                continue
            if not in_prefix(ip, r.dst, r.dst_len):
                continue
            if best is None or (r.dst_len, -r.metric) > (best.dst_len, -best.metric):
                best = r
        if best is not None:
            return best
    return None


def wait_dad(ip: str, index: int, seconds: float) -> str:
    """Wait for IPv6 duplicate address detection on ``ip``: "ok", "failed" or "tentative"."""
    import time

    end = time.monotonic() + seconds
    while True:
        found = [a for a in find_address(ip) if a.index == index]
        if found and found[0].flags & IFA_F_DADFAILED:
            return "failed"
        if not found or not found[0].flags & IFA_F_TENTATIVE:
            return "ok"
        if time.monotonic() >= end:
            return "tentative"
        time.sleep(0.1)


# -- changes ------------------------------------------------------------------

def _address_body(index: int, ip: str, prefixlen: int, *, broadcast: str = "", label: str = "",
                  flags: int = 0, preferred: int | None = None, metric: int = 0) -> bytes:
    fam = family_of(ip)
    raw = pack_ip(ip)
    # As ip(8) does: IPv4 loopback addresses get host scope (the kernel refuses
    # them with the default universe scope).
    scope = _RT_SCOPE_HOST if fam == AF_INET and raw[0] == 127 else 0
    body = _IFADDRMSG.pack(fam, prefixlen, flags & 0xFF, scope, index)
    body += _attr(_IFA_LOCAL, raw) + _attr(_IFA_ADDRESS, raw)
    if broadcast:
        body += _attr(_IFA_BROADCAST, pack_ip(broadcast))
    if label:
        body += _attr(_IFA_LABEL, label.encode() + b"\0")
    if flags > 0xFF:
        body += _attr(_IFA_FLAGS, struct.pack("=I", flags))
    if preferred is not None:
        body += _attr(_IFA_CACHEINFO, _CACHEINFO.pack(preferred, INFINITY_LIFE, 0, 0))
    if metric:
        body += _attr(9, struct.pack("=I", metric))  # IFA_RT_PRIORITY
    return body


def add_address(index: int, ip: str, prefixlen: int, *, broadcast: str = "", label: str = "",
                flags: int = 0, preferred: int | None = None, metric: int = 0) -> None:
    """``ip addr add ip/prefixlen [brd B] [label L] dev <index> [nodad] [noprefixroute]``.

    Raises NetlinkError (EEXIST when the address is already there).
    """
    body = _address_body(index, ip, prefixlen, broadcast=broadcast, label=label, flags=flags,
                         preferred=preferred, metric=metric)
    _do(RTM_NEWADDR, _F_CREATE | _F_EXCL, body)


def del_address(index: int, ip: str, prefixlen: int) -> None:
    """``ip addr del ip/prefixlen dev <index>``; EADDRNOTAVAIL when it is not there."""
    _do(RTM_DELADDR, 0, _address_body(index, ip, prefixlen))


def set_link_up(index: int) -> None:
    """``ip link set dev <index> up``."""
    _do(RTM_NEWLINK, 0, _IFINFOMSG.pack(0, 0, index, IFF_UP, IFF_UP))


def flush_route_cache(family: int) -> None:
    """``ip route flush cache``: write to the kernel's flush knob (a no-op for modern IPv4)."""
    name = "ipv6" if family == AF_INET6 else "ipv4"
    try:
        with open(f"/proc/sys/net/{name}/route/flush", "w") as handle:
            handle.write("1\n")
    except OSError:
        pass


_RTM_NEWADDRLABEL, _RTM_DELADDRLABEL = 72, 73
_IFADDRLBLMSG = struct.Struct("=BBBBII")


def _addrlabel(kind: int, ip: str, prefixlen: int, label: int) -> None:
    body = _IFADDRLBLMSG.pack(AF_INET6, 0, prefixlen, 0, 0, 0)
    body += _attr(1, pack_ip(ip)) + _attr(2, struct.pack("=I", label))  # IFAL_ADDRESS, _LABEL
    _do(kind, _F_CREATE | _F_EXCL if kind == _RTM_NEWADDRLABEL else 0, body)


def add_addrlabel(ip: str, label: int, prefixlen: int = 128) -> None:
    """``ip addrlabel add prefix ip/prefixlen label N`` (IPv6 source selection, RFC 6724)."""
    _addrlabel(_RTM_NEWADDRLABEL, ip, prefixlen, label)


def del_addrlabel(ip: str, label: int, prefixlen: int = 128) -> None:
    _addrlabel(_RTM_DELADDRLABEL, ip, prefixlen, label)
