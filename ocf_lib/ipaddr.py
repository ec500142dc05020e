"""IPaddr2's mechanics: one address resolved against this node and kept there.

The agent (agents/ipaddr2.py) declares the parameters and runs the actions;
this module does the work they share, always through the rtnetlink seam
(:mod:`ocf_lib.netlink`):

* resolution: the typed parameters and the clone's meta attributes combined
  (:func:`configure`), then placed on an interface and prefix from the
  kernel's routes, in-process ``findif`` (:func:`place`), or taken from what
  start recorded (:func:`resolve`);
* the address's state on the node (:func:`served`), adding and removing it,
  IPv6 duplicate address detection, the ``lvs_support`` loopback copy and the
  ``lvs_ipv6_addrlabel`` label;
* announcements (gratuitous ARP / unsolicited NA, :mod:`ocf_lib.announce`, or
  an external arping) and the cluster-IP firewall (:mod:`ocf_lib.clusterip`);
* ``network_namespace``: the same action re-run inside the namespace.

Failures go through ``ctx.fail`` (one reason line) or raise :class:`Unplaceable`
/ ``ParamError`` for the action to map to its exit code.
"""

from __future__ import annotations

import os

from . import codes, netlink
from .params import FOREVER, ParamError, Tolerant

TYPE_CHECKING = False  # typing costs ~5 ms to import; not on a monitor's path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .ocf import Context


MAX_IFNAME = 15
NETNS_DIR = "/run/netns"  # ip(8)'s NETNS_RUN_DIR (/var/run is /run)


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


def namespace(ctx: Context) -> int | None:
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
            ctx.state.remove(record_name(ctx))
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
    from .proc import which

    ip = which("ip") or "/usr/sbin/ip"
    sys.stdout.flush()
    try:
        os.execve(ip, argv, env)
    except OSError as exc:
        ctx.fail(codes.ERR_INSTALLED, f"cannot run {ip} netns exec: {exc.strerror}")


def record_name(ctx: Context) -> str:
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
            return finish(cfg)
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
    return finish(cfg)


def finish(cfg: Config) -> Config:
    if cfg.label and len(f"{cfg.nic}:{cfg.label}") > MAX_IFNAME:
        raise ParamError("iflabel", cfg.label, f"makes '{cfg.nic}:{cfg.label}' longer than "
                         f"{MAX_IFNAME} characters")
    if cfg.family == netlink.AF_INET and cfg.prefix is not None and cfg.broadcast in ("", "+"):
        cfg.broadcast = netlink.ipv4_broadcast(cfg.ip, cfg.prefix)
    elif cfg.broadcast == "-":
        cfg.broadcast = ""
    return cfg


# -- state: what start did, so that stop and monitor use the same facts ------

def state_name(cfg_ip: str) -> str:
    return "IPaddr2-" + cfg_ip.replace(":", "_")


def save_state(ctx: Context, cfg: Config) -> None:
    ctx.state.write(state_name(cfg.ip), f"{cfg.nic}\n{cfg.prefix}\n{cfg.label}\n", 0o644)
    ctx.state.write(record_name(ctx), f"{cfg.ip}\n", 0o644)  # see _nothing_started


def load_state(ctx: Context, cfg: Config) -> bool:
    text = ctx.state.read(state_name(cfg.ip))
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


def cluster(ctx: Context, cfg: Config) -> Any:
    """The cluster-IP handler in a clone without unique addresses, else None."""
    if cfg.clone_total <= 1 or ctx.params.unique_clone_address:
        return None
    from .clusterip import ClusterIP, derive_mac, derive_seed
    from .proc import which

    p = ctx.params
    stopping = ctx.action == "stop"
    if not stopping:
        # Tolerated outside a clone (upstream ignores them there); in one they matter.
        for name in ("mac", "clusterip_hash", "clusterip_hash_seed"):
            if p.tolerated(name):
                raise ParamError(name, p.raw.get(name), "is invalid for a cluster-IP clone: "
                                 + _strict_problem(ctx, name, p.raw.get(name, "")))
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


def _strict_problem(ctx: Context, name: str, raw: str) -> str:
    """Why the strict type behind a Tolerant parameter refuses ``raw``."""
    param = ctx.agent.param(name)
    if param is not None and isinstance(param.type, Tolerant):
        try:
            param.type.strict.convert(raw, name)
        except ParamError as exc:
            return exc.problem
    return "is invalid"


def resolve(ctx: Context) -> Config:
    cfg = configure(ctx, stopping=ctx.action == "stop")
    if load_state(ctx, cfg) and cfg.link is not None:
        return finish(cfg)
    return place(ctx, cfg)


# -- for the actions ------------------------------------------------------------

def consistent(action: Callable[[Context], int]) -> Callable[[Context], int]:
    """No answer from an inconsistent view of the kernel: a dump interrupted again and
    again by concurrent changes fails the action (1), never reads as "absent"."""

    def run(ctx: Context) -> int:
        try:
            return action(ctx)
        except netlink.DumpInterrupted as exc:
            ctx.fail(codes.ERR_GENERIC, f"{ctx.action}: {exc.strerror}")

    return run


def refuse_strays(ctx: Context, cfg: Config) -> None:
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


# -- the steps ------------------------------------------------------------------

def add(ctx: Context, cfg: Config) -> None:
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


def need_root(ctx: Context) -> None:
    if os.geteuid() != 0:
        ctx.fail(codes.ERR_PERM, f"{ctx.action} must run as root (uid {os.geteuid()})")


def _errno_rc(exc: OSError) -> int:
    return codes.ERR_PERM if exc.errno in (1, 13) else codes.ERR_GENERIC  # EPERM, EACCES


def remove(ctx: Context, cfg: Config) -> None:
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


def wait_dad(ctx: Context, cfg: Config) -> None:
    """Wait (at most 10 s, within the deadline) for IPv6 duplicate address detection."""
    assert cfg.link is not None
    limit = ctx.deadline.limit(10.0, soft=True) or 0.0
    state = netlink.wait_dad(cfg.ip, cfg.link.index, limit)
    if state == "failed":
        remove(ctx, cfg)
        ctx.fail(codes.ERR_GENERIC, f"{cfg.ip} is already used on the network "
                                    "(duplicate address detection failed)")
    if state == "tentative":
        ctx.log.warning(f"{cfg.ip} is still tentative (DAD not finished)")


def check_conflict(ctx: Context, cfg: Config) -> None:
    """run_arping: refuse an IPv4 address that another host already answers for."""
    if not ctx.params.run_arping or cfg.family != netlink.AF_INET:
        return
    res = ctx.run(["arping", "-q", "-c", "2", "-w", "3", "-D", "-I", cfg.nic, cfg.ip],
                  timeout=5, quiet=True)
    if res.rc == 1:
        ctx.fail(codes.ERR_GENERIC, f"IPv4 address collision: {cfg.ip} answers on {cfg.nic}")


def lvs_save(ctx: Context, cfg: Config) -> None:
    """lvs_support: move the same address on a loopback interface aside while we run."""
    if not ctx.params.lvs_support:
        return
    for addr in netlink.find_address(cfg.ip):
        link = netlink.link_by_index(addr.index)
        if link and link.name.startswith("lo") and addr.prefixlen == 32:
            ctx.state.write(cfg.ip, f"{link.name}\n{addr.label}\n", 0o644)
            netlink.del_address(link.index, cfg.ip, 32)


def lvs_restore(ctx: Context, cfg: Config) -> None:
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


def send_announcement(ctx: Context, cfg: Config, count: int, *, start: bool) -> None:
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
    from . import announce

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
