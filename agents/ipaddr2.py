"""ocf:pyha:IPaddr2 -- a floating IPv4/IPv6 address, compatible with ocf:heartbeat:IPaddr2.

Same parameters, defaults and meaning as upstream.  Everything talks to the
kernel over rtnetlink (:mod:`ocf_lib.netlink`): a monitor is one address dump
and one link dump, no fork.  Announcements are sent in-process
(:mod:`ocf_lib.announce`).  Every value is parsed by its declared type; values
the upstream agent accepted are taken as it took them, with a warning
(docs/ipaddr2.md lists the exceptions).

Exit codes, chosen deliberately (upstream's own ocft suites disagree with
upstream HEAD here, see docs/design.md, "IPaddr2 and Filesystem"):

* malformed ``ip``/``cidr_netmask``/``broadcast``/tunables: 6 (the
  configuration is wrong on every node); stop ignores all but ``ip`` and
  ``network_namespace``;
* ``network_namespace`` does not exist: 6 at validate-all, 5 at start, 7 from
  monitor, 0 from stop (no address can be configured in it);
* a view of the kernel that stays inconsistent (address dumps interrupted
  again and again by concurrent changes): 1, never 7;
* ``nic`` does not exist: 5 at start (this node lacks it; the resource may
  run elsewhere), 6 at validate-all;
* no route to the address, or a ``cidr_netmask`` the route contradicts: 1
  at start (what the IPaddr2v4/v6 suites expect; restart elsewhere);
* monitor: 0 on the right interface, 7 absent everywhere, 1 present on another
  interface, with another prefix or label, or on a link that is down while
  ``check_link_status`` is set.  A probe says 7 only when the address is on
  no interface at all.

Upstream bugs fixed here: stop failing (6 -> fencing) on a malformed tunable
such as ``arp_count=0``; ``check_link_status`` never firing for interfaces
with an altname; the broadcast scraped positionally from another address
(wrong or empty, issue #656; we compute it from the prefix); findif needing
gawk; cluster-IP rules changed one by one (a window with the drop rule but
no accept rule).
"""

from __future__ import annotations

from ocf_lib import codes, ipaddr, netlink
from ocf_lib.ocf import Context, OCFError, ResourceAgent
from ocf_lib.params import (
    ADDR_LABEL,
    BROADCAST,
    HASH_SEED,
    INTEGER,
    INTERFACE,
    IPADDR,
    LENIENT_BOOLEAN,
    LIFETIME,
    MULTICAST_MAC,
    NETNS_NAME,
    PREFIX,
    ROUTE_PROTOCOL,
    STRING,
    Choice,
    Param,
    ParamError,
    Tolerant,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from ocf_lib.params import Values

CLONE_ONLY = "the upstream agent uses it only in a cluster-IP clone"

agent = ResourceAgent(
    "IPaddr2",
    rgmanager_primary="ip",
    shortdesc="Manages virtual IPv4 and IPv6 addresses (Linux specific version)",
    longdesc=(
        "Adds and removes one IPv4 or IPv6 address on a Linux interface, announces it with "
        "gratuitous ARP or unsolicited neighbour advertisements, and in a clone spreads "
        "clients over the nodes (cluster IP). Compatible with ocf:heartbeat:IPaddr2. "
        "Values the upstream agent accepted but pyha would not are taken as upstream took "
        "them, with a warning in the log (e.g. a boolean that is not yes/no is false)."
    ),
    params=[
        Param("ip", IPADDR, required=True, unique=True, identifies=True,
              shortdesc="IPv4 or IPv6 address",
              longdesc="The address to manage, e.g. 192.168.1.101 or 2001:db8::101 "
                       "(IPv4 octets without leading zeros)."),
        Param("nic", INTERFACE, shortdesc="Network interface",
              longdesc="The base interface (a name or altname without '/' or blanks). Empty: "
                       "the interface of the most specific route to the address. The old "
                       "form 'eth0:label' sets the label too."),
        Param("cidr_netmask", PREFIX, aliases=("netmask",), shortdesc="CIDR netmask",
              longdesc="Prefix length in decimal without leading zeros: 1-32 for IPv4, "
                       "1-128 for IPv6. An IPv4 dotted netmask (255.255.255.0) is converted, "
                       "with a warning. Empty: the prefix of the route to the address."),
        Param("broadcast", BROADCAST, shortdesc="Broadcast address",
              longdesc="IPv4 broadcast address. Empty or '+': computed from the prefix; '-': "
                       "none. Ignored (with a warning) for an IPv6 address."),
        Param("proto", ROUTE_PROTOCOL, shortdesc="Route protocol",
              longdesc="Only use routes of this protocol to find the interface: a name from "
                       "rt_protos (e.g. kernel, static) or a number 0-255."),
        Param("iflabel", ADDR_LABEL, shortdesc="Interface label",
              longdesc="Label the address as <nic>:<iflabel> (at most 15 characters in all, "
                       "no blanks)."),
        Param("lvs_support", LENIENT_BOOLEAN, default="false",
              shortdesc="Enable support for LVS DR",
              longdesc="Move a matching /32 from a loopback interface aside while running, "
                       "and restore it on stop (IPv4 only, not in a clone)."),
        Param("lvs_ipv6_addrlabel", LENIENT_BOOLEAN, default="false",
              shortdesc="Give IPv6 addresses their own address label",
              longdesc="So that the address is not chosen as a source address (RFC 6724)."),
        Param("lvs_ipv6_addrlabel_value",
              Tolerant(INTEGER(0, 2**32 - 2), "99", "the upstream agent checks it only for "
                       "IPv6 with lvs_ipv6_addrlabel"),
              default="99", shortdesc="IPv6 address label value",
              longdesc="An integer 0-4294967294."),
        Param("mac", Tolerant(MULTICAST_MAC, None, CLONE_ONLY),
              shortdesc="Cluster IP MAC address",
              longdesc="Multicast MAC for cluster IP mode: six hex octets, the first one odd "
                       "(01:00:5e:12:34:56). Empty: derived from the address."),
        Param("clusterip_hash",
              Tolerant(Choice("sourceip", "sourceip-sourceport",
                              "sourceip-sourceport-destport"), "sourceip-sourceport",
                       CLONE_ONLY),
              default="sourceip-sourceport", shortdesc="Cluster IP hash function",
              longdesc="What decides which clone instance serves a client."),
        Param("clusterip_firewall", Choice("auto", "nft", "iptables"), default="auto",
              shortdesc="Cluster IP firewall",
              longdesc="Only nftables is implemented; 'iptables' is refused (xt_cluster)."),
        Param("clusterip_hash_seed", Tolerant(HASH_SEED, None, CLONE_ONLY),
              shortdesc="Cluster IP hash seed",
              longdesc="A 32-bit number, decimal or 0x hexadecimal; leading zeros are decimal "
                       "(010 is 10), as nft reads them. Empty: derived from ip, netmask and "
                       "broadcast."),
        Param("clusterip_table", STRING, default="mangle",
              shortdesc="iptables table (accepted for compatibility)"),
        Param("clusterip_chain", STRING, default="PREROUTING",
              shortdesc="iptables chain (accepted for compatibility)"),
        Param("clusterip_mac_mangle", LENIENT_BOOLEAN, default="false",
              shortdesc="Rewrite ARP source MACs to the cluster MAC (IPv4)"),
        Param("unique_clone_address", LENIENT_BOOLEAN, default="false",
              shortdesc="Create a unique address per clone instance",
              longdesc="Add the clone number to the last IPv4 octet "
                       "(needs globally-unique=true)."),
        Param("arp_interval", INTEGER(1), default="200",
              shortdesc="ARP packet interval in ms", longdesc="A positive integer."),
        Param("arp_count", INTEGER(1), default="5", shortdesc="ARP packet count",
              longdesc="Announcements sent after start (a positive integer)."),
        Param("arp_count_refresh",
              Tolerant(INTEGER(0), "0", "the upstream agent then sends no refresh"),
              default="0", shortdesc="ARP packets sent on each monitor (IPv4)",
              longdesc="A non-negative integer; 0 sends none."),
        Param("arp_bg", LENIENT_BOOLEAN, shortdesc="ARP from background",
              longdesc="Announce in the background. Default: yes for IPv4, no for IPv6."),
        Param("arp_sender", Choice("send_arp", "iputils_arping", "libnet_arping",
                                   "ipoibarping"), shortdesc="ARP sender",
              longdesc="send_arp (default): sent in-process. The others run that program."),
        Param("send_arp_opts", STRING, shortdesc="Options for the external ARP sender",
              longdesc="Split at blanks into arguments (no shell)."),
        Param("flush_routes", LENIENT_BOOLEAN, default="false",
              shortdesc="Flush the route cache on stop"),
        Param("run_arping", LENIENT_BOOLEAN, default="false",
              shortdesc="Detect IPv4 address conflicts before start (arping -D)"),
        Param("nodad", LENIENT_BOOLEAN, default="false",
              shortdesc="IPv6: no duplicate address detection"),
        Param("noprefixroute", LENIENT_BOOLEAN, default="false",
              shortdesc="Do not add a prefix route for the address"),
        Param("preferred_lft",
              Tolerant(LIFETIME, "forever", "the upstream agent ignores it for IPv4"),
              default="forever", shortdesc="IPv6 preferred lifetime",
              longdesc="Seconds or 'forever'; 0 keeps the address from being a source address."),
        Param("network_namespace", NETNS_NAME, identifies=True, shortdesc="Network namespace",
              longdesc="Run in this network namespace (as 'ip netns exec' does): a name "
                       "under /run/netns."),
        Param("check_link_status", LENIENT_BOOLEAN, default="true",
              shortdesc="Treat a down link as a failure",
              longdesc="monitor fails (1) when the interface is down or has no carrier."),
    ],
)

@agent.validator
def _check_together(v: Values) -> Iterator[ParamError]:
    """Checks that need more than one parameter; the types did the rest."""
    ipv6 = ":" in v.ip
    if not ipv6 and v.cidr_netmask is not None and v.cidr_netmask > 32:
        yield ParamError("cidr_netmask", v.raw.get("cidr_netmask"),
                         "is not a prefix length 1-32")
    if ipv6 and v.broadcast:
        v.warn("broadcast", "is ignored for an IPv6 address")
        v.set("broadcast", None)
    if ipv6 and v.lvs_support:
        yield ParamError("lvs_support", v.raw.get("lvs_support"), "is IPv4 only")
    if ipv6 and v.unique_clone_address:
        yield ParamError("unique_clone_address", v.raw.get("unique_clone_address"),
                         "is IPv4 only")
    if ipv6 and v.tolerated("preferred_lft"):
        yield ParamError("preferred_lft", v.raw.get("preferred_lft"),
                         "is not a number of seconds or 'forever'")
    if ipv6 and v.lvs_ipv6_addrlabel and v.tolerated("lvs_ipv6_addrlabel_value"):
        yield ParamError("lvs_ipv6_addrlabel_value", v.raw.get("lvs_ipv6_addrlabel_value"),
                         "is not an integer 0-4294967294")
    nic, label = v.nic or ("", "")
    if v.iflabel:
        label = v.iflabel
    if netlink.canonical(v.ip).startswith("fe80:") and not nic:
        yield ParamError("nic", None, "is mandatory for a link-local address")
    if nic and label and len(f"{nic}:{label}") > ipaddr.MAX_IFNAME:
        yield ParamError("iflabel", label, f"makes '{nic}:{label}' longer than "
                         f"{ipaddr.MAX_IFNAME} characters")


@agent.proves_absent
def _nothing_started(ctx: Context) -> bool:
    """stop without a usable ip or network_namespace: pyha's start records every address
    it adds under the resource's instance name (and a monitor that finds one running,
    after a switch from another agent); no record, nothing of ours can run."""
    return not ctx.state.exists(ipaddr.record_name(ctx))


# -- actions --------------------------------------------------------------------


@agent.action("start", timeout="20s")
@ipaddr.consistent
def start(ctx: Context) -> int:
    rc = ipaddr.namespace(ctx)
    if rc is not None:
        return rc
    ipaddr.need_root(ctx)
    cfg = ipaddr.configure(ctx)
    with ctx.state.lock(ipaddr.state_name(cfg.ip), timeout=ctx.deadline.limit(10.0)):
        try:
            ipaddr.place(ctx, cfg)
        except ipaddr.Unplaceable as exc:
            ctx.fail(exc.rc, str(exc))
        link = cfg.link
        assert link is not None and cfg.prefix is not None
        cip = ipaddr.cluster(ctx, cfg)
        state, reason = ipaddr.served(ctx, cfg)
        if state == "ok" and (cip is None or cip.buckets() and cfg.clone_no in cip.buckets()):
            ipaddr.save_state(ctx, cfg)
            ctx.log.info(f"{cfg.ip}/{cfg.prefix} is already on {cfg.nic}")
            return codes.SUCCESS
        if state in ("elsewhere", "mismatch"):
            ctx.fail(codes.ERR_GENERIC, f"{reason}; not adding it again")
        added = state == "absent"
        if added:
            ipaddr.check_conflict(ctx, cfg)
            ipaddr.lvs_save(ctx, cfg)
            ipaddr.save_state(ctx, cfg)  # recorded before the address exists: stop can find it
            ipaddr.add(ctx, cfg)
        netlink.set_link_up(link.index)
        cfg.link = netlink.link_by_index(link.index)
        if added and cfg.family == netlink.AF_INET6 and not ctx.params.nodad:
            ipaddr.wait_dad(ctx, cfg)
        state, reason = ipaddr.served(ctx, cfg)
        if state != "ok":
            if added:
                ipaddr.remove(ctx, cfg)
            ctx.fail(codes.ERR_GENERIC, f"after adding it: {reason}")
        if cip is not None:
            buckets = cip.buckets() or set()
            try:
                cip.multicast(True)
                cip.apply(buckets | {cfg.clone_no})
            except OSError as exc:
                if not buckets:
                    ipaddr.remove(ctx, cfg)
                ctx.fail(codes.ERR_GENERIC, f"cluster IP setup failed: {exc}")
        ipaddr.save_state(ctx, cfg)
    if cip is None or ctx.params.arp_sender == "send_arp":
        ipaddr.send_announcement(ctx, cfg, ctx.params.arp_count, start=True)
    ctx.log.info(f"{cfg.ip}/{cfg.prefix} added to {cfg.nic}")
    return codes.SUCCESS


@agent.action("stop", timeout="20s")
@ipaddr.consistent
def stop(ctx: Context) -> int:
    rc = ipaddr.namespace(ctx)
    if rc is not None:
        return rc
    ipaddr.need_root(ctx)
    from ocf_lib.announce import stop_background

    ip = netlink.canonical(ctx.params.ip)
    stop_background(ctx.state.file(f"send_arp-{ip}"))
    try:
        cfg = ipaddr.resolve(ctx)
    except ParamError as exc:
        if exc.param == "ip":  # the clone's address overflows: start never added it
            ctx.log.info(f"stop: {exc}: no such address can have been added")
            ctx.state.remove(ipaddr.record_name(ctx))
            return codes.SUCCESS
        cfg = ipaddr.configure(ctx, stopping=True)
        ctx.log.warning(f"stop: {exc}; using what the system shows")
    except ipaddr.Unplaceable as exc:
        cfg = ipaddr.configure(ctx, stopping=True)
        ctx.log.warning(f"stop: {exc}; using what the system shows")
    with ctx.state.lock(ipaddr.state_name(cfg.ip), timeout=ctx.deadline.limit(10.0)):
        found = netlink.find_address(cfg.ip)
        if (cfg.link is None or cfg.prefix is None) and not ctx.params.nic:
            if len(found) == 1:  # unique=1: the one address by this name is ours
                cfg.link = netlink.link_by_index(found[0].index)
                cfg.prefix = found[0].prefixlen
                cfg.nic = cfg.link.name if cfg.link else ""
        mine = [a for a in found if cfg.link is not None and a.index == cfg.link.index
                and a.prefixlen == cfg.prefix]
        try:
            cip = ipaddr.cluster(ctx, cfg) if mine else None
        except OCFError as exc:  # no nft: no rules can exist; still remove the address
            ctx.log.warning(f"stop: {exc.reason}")
            cip = None
        if cip is not None:
            buckets = (cip.buckets() or set()) - {cfg.clone_no}
            cip.apply(buckets)
            if buckets:
                ctx.log.info(f"{cfg.ip} still serves buckets {sorted(buckets)} on this node")
                ctx.state.remove(ipaddr.state_name(cfg.ip))
                ctx.state.remove(ipaddr.record_name(ctx))
                return codes.SUCCESS
            cip.multicast(False)
        if mine:
            ipaddr.remove(ctx, cfg)
            if any(a.index == mine[0].index and a.prefixlen == cfg.prefix
                   for a in netlink.find_address(cfg.ip)):
                ctx.fail(codes.ERR_GENERIC, f"{cfg.ip} is still on {cfg.nic} after removal")
            if ctx.params.flush_routes:
                netlink.flush_route_cache(cfg.family)
            ctx.log.info(f"{cfg.ip}/{cfg.prefix} removed from {cfg.nic}")
        ipaddr.refuse_strays(ctx, cfg)
        ipaddr.lvs_restore(ctx, cfg)
        ctx.state.remove(ipaddr.state_name(cfg.ip))
        ctx.state.remove(ipaddr.record_name(ctx))
    return codes.SUCCESS



@agent.action("monitor", timeout="20s", interval="10s", depth=0)
@ipaddr.consistent
def monitor(ctx: Context) -> int:
    rc = ipaddr.namespace(ctx)
    if rc is not None:
        return rc
    try:
        cfg = ipaddr.resolve(ctx)
    except ipaddr.Unplaceable as exc:
        if ctx.is_probe and not netlink.find_address(netlink.canonical(ctx.params.ip)):
            return codes.NOT_RUNNING  # on no interface at all: verifiably stopped
        ctx.fail(codes.ERR_GENERIC, str(exc))
    state, reason = ipaddr.served(ctx, cfg)
    if state == "absent":
        return codes.NOT_RUNNING
    if state != "ok":
        ctx.fail(codes.ERR_GENERIC, reason)
    cip = ipaddr.cluster(ctx, cfg)
    if cip is not None:
        buckets = cip.buckets()
        if not buckets or cfg.clone_no not in buckets:
            ctx.fail(codes.ERR_GENERIC, f"cluster IP bucket {cfg.clone_no} of {cfg.ip} is "
                                        "not in the firewall")
    try:  # started by another agent (a live switch to pyha): record it once
        ctx.state.write_once(ipaddr.record_name(ctx), f"{cfg.ip}\n", 0o644)
    except OSError as exc:
        ctx.log.warning(f"cannot record {cfg.ip} as running: {exc}")
    refresh = ctx.params.arp_count_refresh
    if refresh and cfg.family == netlink.AF_INET:
        ipaddr.send_announcement(ctx, cfg, refresh, start=False)
    return codes.SUCCESS


@agent.action("validate-all", timeout="20s")
@ipaddr.consistent
def validate_all(ctx: Context) -> int:
    rc = ipaddr.namespace(ctx)
    if rc is not None:
        return rc
    cfg = ipaddr.configure(ctx)
    try:
        ipaddr.place(ctx, cfg)
    except ipaddr.Unplaceable as exc:
        ctx.fail(codes.ERR_CONFIGURED if exc.rc == codes.ERR_INSTALLED else exc.rc, str(exc))
    ipaddr.cluster(ctx, cfg)
    sender = ctx.params.arp_sender
    if sender and sender != "send_arp":
        from ocf_lib.proc import which

        program = "ipoibarping" if sender == "ipoibarping" else "arping"
        if which(program) is None:
            ctx.fail(codes.ERR_INSTALLED, f"arp_sender={sender} needs {program}")
    return codes.SUCCESS

