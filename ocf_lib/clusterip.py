"""Cluster-IP (IPaddr2 clone) packet filtering with nftables.

Every node of a clone holds the same address; a hash of the client's source
(and port, per ``clusterip_hash``) decides which node accepts a packet, the
others drop it.  ``ipt_CLUSTERIP`` is gone from Linux (6.x), so, like upstream
HEAD, this uses an nftables ``jhash`` rule per bucket this node serves plus a
final drop rule, in one table per address (``IPaddr2_<ip>``).

Unlike upstream (which adds and deletes single rules by handle), the whole
table is rewritten in one ``nft -f`` transaction from the set of buckets:
there is never a moment with the drop rule but without this node's buckets,
and a half-applied change cannot exist.  Callers hold the per-address lock.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .ocf import Context

HASHES = {
    "sourceip": "saddr",
    "sourceip-sourceport": "saddr . th sport",
    "sourceip-sourceport-destport": "saddr . th sport . th dport",
}


class ClusterIP:
    def __init__(self, ctx: Context, ip: str, nic: str, total: int, seed: int,
                 hashmode: str, mac: str = "", mac_mangle: bool = False) -> None:
        self.ctx = ctx
        self.ip = ip
        self.nic = nic
        self.total = total
        self.seed = seed
        self.hashmode = hashmode
        self.mac = mac
        self.mac_mangle = mac_mangle
        self.family = "ip6" if ":" in ip else "ip"
        self.table = "IPaddr2_" + ip.replace(".", "_").replace(":", "_")

    def _nft(self, *args: str, script: str | None = None) -> str:
        res = self.ctx.run(["nft", *args], input=script, timeout=10, quiet=True)
        if res.rc != 0:
            raise OSError(f"nft {' '.join(args)} failed: {res.reason()}")
        return str(res.out)

    def buckets(self) -> set[int] | None:
        """This node's buckets, or None when the table (and drop rule) is absent."""
        res = self.ctx.run(["nft", "list", "table", self.family, self.table], timeout=10,
                           quiet=True)
        if res.rc != 0 or " drop" not in res.out:
            return None
        found = set()
        for part in res.out.split('comment "cip-node-')[1:]:
            number = part.split('"', 1)[0]
            if number.isdigit():
                found.add(int(number))
        return found

    def apply(self, buckets: Iterable[int]) -> None:
        """Make the table hold exactly ``buckets`` (empty: remove the table)."""
        fam = self.family
        lines = [f"table {fam} {self.table} {{}}", f"delete table {fam} {self.table}"]
        wanted = sorted(set(buckets))
        if wanted:
            key = f"{fam} {HASHES[self.hashmode]}"
            lines += [f"table {fam} {self.table} {{", "  chain prerouting {",
                      "    type filter hook prerouting priority mangle; policy accept;"]
            for n in wanted:
                lines.append(f'    iif "{self.nic}" {fam} daddr {self.ip} jhash {key} '
                             f"mod {self.total} seed {self.seed:#x} offset 1 == {n} "
                             f'meta pkttype set host accept comment "cip-node-{n}"')
            if fam == "ip6":  # neighbour discovery must reach every node
                lines.append(f'    iif "{self.nic}" icmpv6 type {{ nd-neighbor-solicit, '
                             "nd-neighbor-advert } accept")
            lines += [f'    iif "{self.nic}" {fam} daddr {self.ip} drop', "  }", "}"]
            if self.mac_mangle and fam == "ip":
                lines += [f"table arp {self.table} {{}}", f"delete table arp {self.table}",
                          f"table arp {self.table} {{", "  chain output {",
                          "    type filter hook output priority 0; policy accept;",
                          f"    arp saddr ip {self.ip} arp saddr ether set {self.mac}",
                          "  }", "}"]
        elif self.mac_mangle and fam == "ip":
            lines += [f"table arp {self.table} {{}}", f"delete table arp {self.table}"]
        self._nft("-f", "-", script="\n".join(lines) + "\n")

    def multicast(self, add: bool) -> None:
        """Join (or leave) the cluster's multicast MAC on the interface."""
        if not self.mac:
            return
        verb = "add" if add else "del"
        res = self.ctx.run(["ip", "maddr", verb, self.mac, "dev", self.nic], timeout=10,
                           quiet=True)
        if res.rc != 0 and add and "exists" not in res.reason().lower():
            raise OSError(f"ip maddr add {self.mac} failed: {res.reason()}")


def derive_mac(ip: str, netmask: int, broadcast: str) -> str:
    """Upstream's derivation: md5 of "ip netmask brd", multicast bit set (33:33 for IPv6)."""
    import hashlib

    digest = hashlib.md5(f"{ip} {netmask} {broadcast}".encode(), usedforsecurity=False)
    raw = bytearray(digest.digest()[:6])
    if ":" in ip:
        raw[0], raw[1] = 0x33, 0x33
    else:
        raw[0] |= 0x01
    return ":".join(f"{b:02x}" for b in raw)


def derive_seed(ip: str, netmask: int, broadcast: str) -> int:
    import hashlib

    digest = hashlib.md5(f"{ip} {netmask} {broadcast}".encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16)
