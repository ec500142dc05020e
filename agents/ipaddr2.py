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

import os

from ocf_lib import codes, netlink
from ocf_lib.ocf import Context, OCFError, ResourceAgent
from ocf_lib.params import (
    ADDR_LABEL,
    BROADCAST,
    FOREVER,
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
    from collections.abc import Callable, Iterator
    from typing import Any

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

MAX_IFNAME = 15
NETNS_DIR = "/run/netns"  # ip(8)'s NETNS_RUN_DIR (/var/run is /run)


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
    if nic and label and len(f"{nic}:{label}") > MAX_IFNAME:
        yield ParamError("iflabel", label, f"makes '{nic}:{label}' longer than "
                         f"{MAX_IFNAME} characters")


@agent.proves_absent
def _nothing_started(ctx: Context) -> bool:
    """stop without a usable ip or network_namespace: pyha's start records every address
    it adds under the resource's instance name (and a monitor that finds one running,
    after a switch from another agent); no record, nothing of ours can run."""
    return not ctx.state.exists(_record_name(ctx))


class Config:
    """Where the address goes: the typed parameters resolved against this node."""

    def __init__(self) -> None:
        self.ip = ""
        self.family = netlink.AF_INET
        self.nic = ""
        self.label = ""
        self.prefix: int | None = None
        self.broadcast = ""
        self.link: netlink.Link | None = None
        self.metric = 0
        self.clone_total = 1
        self.clone_no = 1


def _namespace(ctx: Context) -> int | None:
    """network_namespace: run this same action inside it (as upstream does).

    A namespace that does not exist holds no address: stop has nothing to do and
    monitor finds it not running.  Returns the exit code in that case."""
    ns = ctx.params.network_namespace
    if not ns or ctx.env.get("PYHA_IN_NETNS") == ns:
        return None
    path = f"{NETNS_DIR}/{ns}"
    try:
        # ip netns add bind-mounts the namespace there: a different device than the
        # directory; a leftover plain file is no namespace.
        exists = os.stat(path).st_dev != os.stat(NETNS_DIR).st_dev
    except OSError:
        exists = False
    if not exists:
        reason = f"network namespace '{ns}' does not exist"
        if ctx.action == "stop":
            ctx.log.info(f"{reason}: no address of it can be configured")
            ctx.state.remove(_record_name(ctx))
            return codes.SUCCESS
        if ctx.action == "monitor":
            ctx.log.info(f"{reason}: not running")
            return codes.NOT_RUNNING
        if ctx.action == "start":
            ctx.fail(codes.ERR_INSTALLED, reason)
        ctx.fail(codes.ERR_CONFIGURED, reason)
    import sys

    env = {k: v for k, v in ctx.env.items() if k != "OCF_RESKEY_network_namespace"}
    env["PYHA_IN_NETNS"] = ns
    argv = ["ip", "netns", "exec", ns, sys.executable, "-IS", os.path.abspath(sys.argv[0]),
            *ctx.argv[1:]]
    from ocf_lib.proc import which

    ip = which("ip") or "/usr/sbin/ip"
    sys.stdout.flush()
    try:
        os.execve(ip, argv, env)
    except OSError as exc:
        ctx.fail(codes.ERR_INSTALLED, f"cannot run {ip} netns exec: {exc.strerror}")


def _record_name(ctx: Context) -> str:
    return "IPaddr2@" + ctx.instance.replace("/", "_")


def _clone_numbers(ctx: Context, cfg: Config) -> None:
    total = ctx.meta("clone_max")
    if total:
        if not (total.isascii() and total.isdigit()):
            raise ParamError("CRM_meta_clone_max", total, "is not a number")
        cfg.clone_total = int(total)
        number = ctx.meta("clone") or "0"
        cfg.clone_no = int(number) + 1 if number.isascii() and number.isdigit() else 1


def configure(ctx: Context, *, stopping: bool = False) -> Config:
    """The typed parameters and the clone's meta attributes, combined.

    Refusals that only keep a start from adding something are skipped when
    ``stopping``: stop removes what start would have added."""
    p = ctx.params
    cfg = Config()
    cfg.ip = netlink.canonical(p.ip)
    cfg.family = netlink.family_of(cfg.ip)
    _clone_numbers(ctx, cfg)
    if p.unique_clone_address and cfg.family == netlink.AF_INET:
        if (ctx.meta("globally_unique") or "").lower() != "true" and not stopping:
            raise ParamError("unique_clone_address", "true", "needs globally-unique=true")
        head, last = cfg.ip.rsplit(".", 1)
        octet = int(last) + cfg.clone_no - 1
        if octet > 255:
            raise ParamError("ip", cfg.ip, f"plus clone number {cfg.clone_no - 1} overflows")
        cfg.ip = f"{head}.{octet}"
    cfg.nic, cfg.label = p.nic or ("", "")
    if p.iflabel:
        cfg.label = p.iflabel
    cfg.prefix = p.cidr_netmask
    cfg.broadcast = p.broadcast or ""
    if p.lvs_support and cfg.clone_total > 1 and not stopping:
        raise ParamError("lvs_support", "true", "cannot be used in a clone")
    return cfg


class Unplaceable(Exception):
    """The address cannot be placed on this node; ``rc`` says how bad that is."""

    def __init__(self, rc: int, reason: str) -> None:
        super().__init__(reason)
        self.rc = rc


def place(ctx: Context, cfg: Config) -> Config:
    """findif, in-process: choose the interface and prefix from the kernel's routes."""
    links = netlink.links()
    if cfg.nic:
        cfg.link = next((ln for ln in links if cfg.nic == ln.name or cfg.nic in ln.altnames), None)
        if cfg.link is None:
            raise Unplaceable(codes.ERR_INSTALLED, f"interface '{cfg.nic}' does not exist")
        cfg.nic = cfg.link.name
        if cfg.prefix is not None and ctx.params.proto is None:
            return _finish(cfg)
    route = netlink.best_route(cfg.ip, prefix=cfg.prefix, proto=ctx.params.proto,
                               oif=cfg.link.index if cfg.link is not None else None)
    if route is None:
        where = f" on {cfg.nic}" if cfg.nic else ""
        masked = f"/{cfg.prefix}" if cfg.prefix is not None else ""
        raise Unplaceable(codes.ERR_GENERIC, f"no route to {cfg.ip}{masked}{where}: cannot "
                          "choose an interface and prefix (give nic and cidr_netmask)")
    if cfg.link is None:
        cfg.link = next((ln for ln in links if ln.index == route.oif), None)
        if cfg.link is None:
            raise Unplaceable(codes.ERR_GENERIC, f"the route to {cfg.ip} has no interface")
        cfg.nic = cfg.link.name
    if cfg.prefix is None:
        cfg.prefix = route.dst_len
    if cfg.family == netlink.AF_INET6:
        cfg.metric = route.metric
    return _finish(cfg)


def _finish(cfg: Config) -> Config:
    if cfg.label and len(f"{cfg.nic}:{cfg.label}") > MAX_IFNAME:
        raise ParamError("iflabel", cfg.label, f"makes '{cfg.nic}:{cfg.label}' longer than "
                         f"{MAX_IFNAME} characters")
    if cfg.family == netlink.AF_INET and cfg.prefix is not None and cfg.broadcast in ("", "+"):
        cfg.broadcast = netlink.ipv4_broadcast(cfg.ip, cfg.prefix)
    elif cfg.broadcast == "-":
        cfg.broadcast = ""
    return cfg


# -- state: what start did, so that stop and monitor use the same facts ------

def _state_name(cfg_ip: str) -> str:
    return "IPaddr2-" + cfg_ip.replace(":", "_")


def save_state(ctx: Context, cfg: Config) -> None:
    ctx.state.write(_state_name(cfg.ip), f"{cfg.nic}\n{cfg.prefix}\n{cfg.label}\n", 0o644)
    ctx.state.write(_record_name(ctx), f"{cfg.ip}\n", 0o644)  # see _nothing_started


def load_state(ctx: Context, cfg: Config) -> bool:
    text = ctx.state.read(_state_name(cfg.ip))
    if not text:
        return False
    nic, prefix, label = (text.split("\n") + ["", "", ""])[:3]
    if not prefix.isdigit() or (cfg.nic and cfg.nic != nic):
        return False
    cfg.nic, cfg.prefix, cfg.label = nic, int(prefix), label
    cfg.link = netlink.link_by_name(nic)
    return True


# -- the state of the address -------------------------------------------------

def served(ctx: Context, cfg: Config) -> tuple[str, str]:
    """("ok" | "absent" | "elsewhere" | "mismatch" | "down", reason)."""
    found = netlink.find_address(cfg.ip)
    link = cfg.link
    if ctx.params.lvs_support:  # an LVS real server's /32 on lo is not a conflict
        found = [a for a in found if (link is not None and a.index == link.index)
                 or not (a.prefixlen == 32 and _ifname(a.index).startswith("lo"))]
    if not found:
        return "absent", f"{cfg.ip} is not on any interface"
    mine = [a for a in found if link is not None and a.index == link.index]
    if not mine or link is None:
        others = ", ".join(sorted({_ifname(a.index) for a in found}))
        return "elsewhere", f"{cfg.ip} is on {others}, not on {cfg.nic or 'the expected nic'}"
    addr = mine[0]
    if addr.prefixlen != cfg.prefix:
        return "mismatch", (f"{cfg.ip} is on {cfg.nic} with prefix /{addr.prefixlen}, "
                            f"expected /{cfg.prefix}")
    if cfg.label and addr.label != f"{cfg.nic}:{cfg.label}":
        return "mismatch", (f"{cfg.ip} on {cfg.nic} has label '{addr.label}', "
                            f"expected '{cfg.nic}:{cfg.label}'")
    if addr.flags & netlink.IFA_F_DADFAILED:
        return "mismatch", f"{cfg.ip} failed duplicate address detection on {cfg.nic}"
    if ctx.params.check_link_status and (not link.up or link.carrier_down):
        state = "down" if not link.up else link.operstate.upper()
        return "down", f"{cfg.ip} is on {cfg.nic} but the link is {state}"
    return "ok", ""


def _ifname(index: int) -> str:
    link = netlink.link_by_index(index)
    return link.name if link else f"#{index}"


def _cluster(ctx: Context, cfg: Config) -> Any:
    """The cluster-IP handler in a clone without unique addresses, else None."""
    if cfg.clone_total <= 1 or ctx.params.unique_clone_address:
        return None
    from ocf_lib.clusterip import ClusterIP, derive_mac, derive_seed
    from ocf_lib.proc import which

    p = ctx.params
    stopping = ctx.action == "stop"
    if not stopping:
        # Tolerated outside a clone (upstream ignores them there); in one they matter.
        for name in ("mac", "clusterip_hash", "clusterip_hash_seed"):
            if p.tolerated(name):
                raise ParamError(name, p.raw.get(name), "is invalid for a cluster-IP clone: "
                                 + _strict_problem(name, p.raw.get(name, "")))
        if p.clusterip_mac_mangle and cfg.family == netlink.AF_INET6:
            raise ParamError("clusterip_mac_mangle", "true", "is IPv4 only")
    if p.clusterip_firewall == "iptables" or not which("nft"):
        ctx.fail(codes.ERR_INSTALLED, "cluster IP mode needs nftables (nft); ipt_CLUSTERIP is "
                                      "gone from Linux and iptables mode is not supported")
    if ctx.action == "start" and not ctx.run(["nft", "list", "tables"], timeout=10).ok:
        ctx.fail(codes.ERR_INSTALLED, "cluster IP mode needs nf_tables, which this kernel "
                                      "does not provide")
    seed = p.clusterip_hash_seed
    if seed is None:
        seed = derive_seed(cfg.ip, cfg.prefix or 0, cfg.broadcast)
    mac = p.mac or derive_mac(cfg.ip, cfg.prefix or 0, cfg.broadcast)
    return ClusterIP(ctx, cfg.ip, cfg.nic, cfg.clone_total, seed, p.clusterip_hash, mac,
                     bool(p.clusterip_mac_mangle and cfg.family == netlink.AF_INET))


def _strict_problem(name: str, raw: str) -> str:
    """Why the strict type behind a Tolerant parameter refuses ``raw``."""
    param = agent.param(name)
    if param is not None and isinstance(param.type, Tolerant):
        try:
            param.type.strict.convert(raw, name)
        except ParamError as exc:
            return exc.problem
    return "is invalid"


def _resolve(ctx: Context) -> Config:
    cfg = configure(ctx, stopping=ctx.action == "stop")
    if load_state(ctx, cfg) and cfg.link is not None:
        return _finish(cfg)
    return place(ctx, cfg)


# -- actions --------------------------------------------------------------------

def _consistent(action: Callable[[Context], int]) -> Callable[[Context], int]:
    """No answer from an inconsistent view of the kernel: a dump interrupted again and
    again by concurrent changes fails the action (1), never reads as "absent"."""

    def run(ctx: Context) -> int:
        try:
            return action(ctx)
        except netlink.DumpInterrupted as exc:
            ctx.fail(codes.ERR_GENERIC, f"{ctx.action}: {exc.strerror}")

    return run


@agent.action("start", timeout="20s")
@_consistent
def start(ctx: Context) -> int:
    rc = _namespace(ctx)
    if rc is not None:
        return rc
    _need_root(ctx)
    cfg = configure(ctx)
    with ctx.state.lock(_state_name(cfg.ip), timeout=ctx.deadline.limit(10.0)):
        try:
            place(ctx, cfg)
        except Unplaceable as exc:
            ctx.fail(exc.rc, str(exc))
        link = cfg.link
        assert link is not None and cfg.prefix is not None
        cip = _cluster(ctx, cfg)
        state, reason = served(ctx, cfg)
        if state == "ok" and (cip is None or cip.buckets() and cfg.clone_no in cip.buckets()):
            save_state(ctx, cfg)
            ctx.log.info(f"{cfg.ip}/{cfg.prefix} is already on {cfg.nic}")
            return codes.SUCCESS
        if state in ("elsewhere", "mismatch"):
            ctx.fail(codes.ERR_GENERIC, f"{reason}; not adding it again")
        added = state == "absent"
        if added:
            _check_conflict(ctx, cfg)
            _lvs_save(ctx, cfg)
            save_state(ctx, cfg)  # recorded before the address exists: stop can find it
            _add(ctx, cfg)
        netlink.set_link_up(link.index)
        cfg.link = netlink.link_by_index(link.index)
        if added and cfg.family == netlink.AF_INET6 and not ctx.params.nodad:
            _wait_dad(ctx, cfg)
        state, reason = served(ctx, cfg)
        if state != "ok":
            if added:
                _remove(ctx, cfg)
            ctx.fail(codes.ERR_GENERIC, f"after adding it: {reason}")
        if cip is not None:
            buckets = cip.buckets() or set()
            try:
                cip.multicast(True)
                cip.apply(buckets | {cfg.clone_no})
            except OSError as exc:
                if not buckets:
                    _remove(ctx, cfg)
                ctx.fail(codes.ERR_GENERIC, f"cluster IP setup failed: {exc}")
        save_state(ctx, cfg)
    if cip is None or ctx.params.arp_sender == "send_arp":
        _announce(ctx, cfg, ctx.params.arp_count, start=True)
    ctx.log.info(f"{cfg.ip}/{cfg.prefix} added to {cfg.nic}")
    return codes.SUCCESS


@agent.action("stop", timeout="20s")
@_consistent
def stop(ctx: Context) -> int:
    rc = _namespace(ctx)
    if rc is not None:
        return rc
    _need_root(ctx)
    from ocf_lib.announce import stop_background

    ip = netlink.canonical(ctx.params.ip)
    stop_background(ctx.state.file(f"send_arp-{ip}"))
    try:
        cfg = _resolve(ctx)
    except ParamError as exc:
        if exc.param == "ip":  # the clone's address overflows: start never added it
            ctx.log.info(f"stop: {exc}: no such address can have been added")
            ctx.state.remove(_record_name(ctx))
            return codes.SUCCESS
        cfg = configure(ctx, stopping=True)
        ctx.log.warning(f"stop: {exc}; using what the system shows")
    except Unplaceable as exc:
        cfg = configure(ctx, stopping=True)
        ctx.log.warning(f"stop: {exc}; using what the system shows")
    with ctx.state.lock(_state_name(cfg.ip), timeout=ctx.deadline.limit(10.0)):
        found = netlink.find_address(cfg.ip)
        if (cfg.link is None or cfg.prefix is None) and not ctx.params.nic:
            if len(found) == 1:  # unique=1: the one address by this name is ours
                cfg.link = netlink.link_by_index(found[0].index)
                cfg.prefix = found[0].prefixlen
                cfg.nic = cfg.link.name if cfg.link else ""
        mine = [a for a in found if cfg.link is not None and a.index == cfg.link.index
                and a.prefixlen == cfg.prefix]
        try:
            cip = _cluster(ctx, cfg) if mine else None
        except OCFError as exc:  # no nft: no rules can exist; still remove the address
            ctx.log.warning(f"stop: {exc.reason}")
            cip = None
        if cip is not None:
            buckets = (cip.buckets() or set()) - {cfg.clone_no}
            cip.apply(buckets)
            if buckets:
                ctx.log.info(f"{cfg.ip} still serves buckets {sorted(buckets)} on this node")
                ctx.state.remove(_state_name(cfg.ip))
                ctx.state.remove(_record_name(ctx))
                return codes.SUCCESS
            cip.multicast(False)
        if mine:
            _remove(ctx, cfg)
            if any(a.index == mine[0].index and a.prefixlen == cfg.prefix
                   for a in netlink.find_address(cfg.ip)):
                ctx.fail(codes.ERR_GENERIC, f"{cfg.ip} is still on {cfg.nic} after removal")
            if ctx.params.flush_routes:
                netlink.flush_route_cache(cfg.family)
            ctx.log.info(f"{cfg.ip}/{cfg.prefix} removed from {cfg.nic}")
        _refuse_strays(ctx, cfg)
        _lvs_restore(ctx, cfg)
        ctx.state.remove(_state_name(cfg.ip))
        ctx.state.remove(_record_name(ctx))
    return codes.SUCCESS


def _refuse_strays(ctx: Context, cfg: Config) -> None:
    """Stop never answers 0 while the node still serves the address: a copy with
    another prefix or on another interface (not lvs_support's loopback copy) was
    not added by this resource and is not removed, so stop fails and says where."""
    for a in netlink.find_address(cfg.ip):
        link = netlink.link_by_index(a.index)
        if link is not None and link.name == "lo":
            continue
        name = link.name if link is not None else f"interface #{a.index}"
        ctx.fail(codes.ERR_GENERIC, f"{cfg.ip}/{a.prefixlen} is configured on {name}, not "
                                    "as this resource adds it: left in place, and the node "
                                    "still serves the address")


@agent.action("monitor", timeout="20s", interval="10s", depth=0)
@_consistent
def monitor(ctx: Context) -> int:
    rc = _namespace(ctx)
    if rc is not None:
        return rc
    try:
        cfg = _resolve(ctx)
    except Unplaceable as exc:
        if ctx.is_probe and not netlink.find_address(netlink.canonical(ctx.params.ip)):
            return codes.NOT_RUNNING  # on no interface at all: verifiably stopped
        ctx.fail(codes.ERR_GENERIC, str(exc))
    state, reason = served(ctx, cfg)
    if state == "absent":
        return codes.NOT_RUNNING
    if state != "ok":
        ctx.fail(codes.ERR_GENERIC, reason)
    cip = _cluster(ctx, cfg)
    if cip is not None:
        buckets = cip.buckets()
        if not buckets or cfg.clone_no not in buckets:
            ctx.fail(codes.ERR_GENERIC, f"cluster IP bucket {cfg.clone_no} of {cfg.ip} is "
                                        "not in the firewall")
    try:  # started by another agent (a live switch to pyha): record it once
        ctx.state.write_once(_record_name(ctx), f"{cfg.ip}\n", 0o644)
    except OSError as exc:
        ctx.log.warning(f"cannot record {cfg.ip} as running: {exc}")
    refresh = ctx.params.arp_count_refresh
    if refresh and cfg.family == netlink.AF_INET:
        _announce(ctx, cfg, refresh, start=False)
    return codes.SUCCESS


@agent.action("validate-all", timeout="20s")
@_consistent
def validate_all(ctx: Context) -> int:
    rc = _namespace(ctx)
    if rc is not None:
        return rc
    cfg = configure(ctx)
    try:
        place(ctx, cfg)
    except Unplaceable as exc:
        ctx.fail(codes.ERR_CONFIGURED if exc.rc == codes.ERR_INSTALLED else exc.rc, str(exc))
    _cluster(ctx, cfg)
    sender = ctx.params.arp_sender
    if sender and sender != "send_arp":
        from ocf_lib.proc import which

        program = "ipoibarping" if sender == "ipoibarping" else "arping"
        if which(program) is None:
            ctx.fail(codes.ERR_INSTALLED, f"arp_sender={sender} needs {program}")
    return codes.SUCCESS


# -- the steps ------------------------------------------------------------------

def _add(ctx: Context, cfg: Config) -> None:
    assert cfg.link is not None and cfg.prefix is not None
    p = ctx.params
    flags = 0
    if cfg.family == netlink.AF_INET6 and p.nodad:
        flags |= netlink.IFA_F_NODAD
    if p.noprefixroute:
        flags |= netlink.IFA_F_NOPREFIXROUTE
    preferred = None
    if cfg.family == netlink.AF_INET6 and p.preferred_lft != FOREVER:
        preferred = p.preferred_lft
    label = f"{cfg.nic}:{cfg.label}" if cfg.label else ""
    if cfg.family == netlink.AF_INET6 and p.lvs_ipv6_addrlabel:
        try:
            netlink.add_addrlabel(cfg.ip, p.lvs_ipv6_addrlabel_value)
        except OSError as exc:
            ctx.log.warning(f"ip addrlabel add {cfg.ip}: {exc}")
    try:
        netlink.add_address(cfg.link.index, cfg.ip, cfg.prefix, broadcast=cfg.broadcast,
                            label=label, flags=flags, preferred=preferred, metric=cfg.metric)
    except OSError as exc:
        if getattr(exc, "errno", 0) != 17:  # EEXIST: a race with ourselves; verified later
            ctx.fail(_errno_rc(exc), f"cannot add {cfg.ip}/{cfg.prefix} to {cfg.nic}: "
                                        f"{exc.strerror}")


def _need_root(ctx: Context) -> None:
    if os.geteuid() != 0:
        ctx.fail(codes.ERR_PERM, f"{ctx.action} must run as root (uid {os.geteuid()})")


def _errno_rc(exc: OSError) -> int:
    return codes.ERR_PERM if exc.errno in (1, 13) else codes.ERR_GENERIC  # EPERM, EACCES


def _remove(ctx: Context, cfg: Config) -> None:
    assert cfg.link is not None and cfg.prefix is not None
    try:
        netlink.del_address(cfg.link.index, cfg.ip, cfg.prefix)
    except OSError as exc:
        if getattr(exc, "errno", 0) != 99:  # EADDRNOTAVAIL: already gone
            ctx.fail(_errno_rc(exc), f"cannot remove {cfg.ip} from {cfg.nic}: {exc.strerror}")
    if cfg.family == netlink.AF_INET6 and ctx.params.lvs_ipv6_addrlabel:
        try:
            netlink.del_addrlabel(cfg.ip, ctx.params.lvs_ipv6_addrlabel_value)
        except OSError:
            pass


def _wait_dad(ctx: Context, cfg: Config) -> None:
    """Wait (at most 10 s, within the deadline) for IPv6 duplicate address detection."""
    assert cfg.link is not None
    limit = ctx.deadline.limit(10.0, soft=True) or 0.0
    state = netlink.wait_dad(cfg.ip, cfg.link.index, limit)
    if state == "failed":
        _remove(ctx, cfg)
        ctx.fail(codes.ERR_GENERIC, f"{cfg.ip} is already used on the network "
                                    "(duplicate address detection failed)")
    if state == "tentative":
        ctx.log.warning(f"{cfg.ip} is still tentative (DAD not finished)")


def _check_conflict(ctx: Context, cfg: Config) -> None:
    """run_arping: refuse an IPv4 address that another host already answers for."""
    if not ctx.params.run_arping or cfg.family != netlink.AF_INET:
        return
    res = ctx.run(["arping", "-q", "-c", "2", "-w", "3", "-D", "-I", cfg.nic, cfg.ip],
                  timeout=5, quiet=True)
    if res.rc == 1:
        ctx.fail(codes.ERR_GENERIC, f"IPv4 address collision: {cfg.ip} answers on {cfg.nic}")


def _lvs_save(ctx: Context, cfg: Config) -> None:
    """lvs_support: move the same address on a loopback interface aside while we run."""
    if not ctx.params.lvs_support:
        return
    for addr in netlink.find_address(cfg.ip):
        link = netlink.link_by_index(addr.index)
        if link and link.name.startswith("lo") and addr.prefixlen == 32:
            ctx.state.write(cfg.ip, f"{link.name}\n{addr.label}\n", 0o644)
            netlink.del_address(link.index, cfg.ip, 32)


def _lvs_restore(ctx: Context, cfg: Config) -> None:
    text = ctx.state.read(cfg.ip) if ctx.params.lvs_support else None
    if not text:
        return
    name, label = (text.split("\n") + [""])[:2]
    link = netlink.link_by_name(name)
    if link is not None:
        try:
            netlink.add_address(link.index, cfg.ip, 32, label=label)
        except OSError as exc:
            ctx.log.warning(f"could not restore {cfg.ip}/32 on {name}: {exc}")
    ctx.state.remove(cfg.ip)


def _announce(ctx: Context, cfg: Config, count: int, *, start: bool) -> None:
    """Gratuitous ARP (IPv4) or unsolicited NA (IPv6); failures are only logged."""
    link = cfg.link
    if not count or link is None or link.flags & (netlink.IFF_LOOPBACK | netlink.IFF_NOARP):
        return
    p = ctx.params
    interval = p.arp_interval / 1000.0
    sender = p.arp_sender or "send_arp"
    if sender != "send_arp":
        argv = [sender.replace("iputils_arping", "arping").replace("libnet_arping", "arping")]
        argv += (p.send_arp_opts or "").split()
        if sender == "libnet_arping":
            argv += ["-U", "-c", str(count), "-i", cfg.nic, "-S", cfg.ip, cfg.ip]
        else:
            argv += ["-U", "-c", str(count), "-I", cfg.nic, cfg.ip]
            if sender == "ipoibarping":
                argv.insert(1, "-q")
        ctx.run(argv, timeout=count * interval + 5, quiet=True)
        return
    if len(link.mac) != 6:
        ctx.log.warning(f"{cfg.nic} is not Ethernet; no announcement sent "
                        "(use arp_sender=ipoibarping on InfiniBand)")
        return
    from ocf_lib import announce

    background = p.arp_bg if p.arp_bg is not None else cfg.family == netlink.AF_INET
    try:
        if background and start:
            announce.background(ctx.state.file(f"send_arp-{cfg.ip}"), cfg.nic, link.mac,
                                cfg.ip, count, interval)
        else:
            import time

            end = time.monotonic() + (ctx.deadline.limit(count * interval + 1, soft=True) or 0.0)
            announce.send(cfg.nic, link.mac, cfg.ip, count, interval, end)
    except OSError as exc:
        ctx.log.warning(f"announcing {cfg.ip} on {cfg.nic} failed: {exc}")
