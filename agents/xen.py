"""ocf:pyha:Xen -- a Xen domU through the xl toolstack (xm as a legacy fallback).

Compatible with ocf:heartbeat:Xen (same parameters and defaults).
Differences from upstream, each deliberate:

* Only xl's own "no such domain" answer means "not running"; any other xl
  failure fails the monitor and the stop (upstream read every failure of
  ``xl list`` as "not running").  Names may hold blanks.  Where the kernel
  shows no Xen control domain, no domain can run: a missing or failing xl
  then means "not running" (docs/xen.md).
* Neither xl nor xm installed: ERR_INSTALLED with a reason (upstream ran an
  empty command word and answered "not running"); on a Xen control domain a
  monitor fails with 1 and stop fails.  Every failure prints an exit reason
  (upstream printed none).
* The domain name used at start is recorded in ``$HA_RSCTMP``; stop and
  monitor use it even when the config file has become unreadable, instead of
  falling back to the resource id and answering "stopped".
* ``allow_mem_management`` passes the new memory size on the ``xl create``
  command line; the user's config file is never rewritten (upstream ran
  ``sed -i`` on it).  ``mem-set`` sizes carry an explicit MiB suffix (xl's
  default unit is KiB; upstream passed bare MiB numbers).
* A crashed or dying domain fails the monitor instead of counting as
  running; a domain that vanishes while rebooting is looked for again for up
  to 5 s (as upstream) but never past the deadline.
* ``shutdown_timeout`` must be a non-negative integer; a bad value fails
  start/validate with 6, while stop still stops (with the default timeout).
* Stop escalates to destroy before the deadline and returns 0 only when the
  domain is gone; it never loops on destroy past the operation timeout.
"""

from __future__ import annotations

import os
import time

from ocf_lib import codes
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import (
    INTEGER,
    LENIENT_BOOLEAN,
    STRING,
    Param,
    ParamError,
    ParamType,
    Tolerant,
    Values,
)
from ocf_lib.vmtools import (
    WORDS,
    forget_utilization,
    run_monitor_scripts,
    sync_utilization,
    wait_until_up,
)
from ocf_lib.xentool import (
    DomInfo,
    Toolstack,
    ToolstackError,
    config_name,
    no_domains_here,
    wait_gone,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

REBOOT_GRACE = 5.0  # seconds a rebooting domain may be missing from the list


class _DomainName(ParamType):
    """A Xen domain name as xl takes it on its command line and in ``name="..."``."""

    doc = "domain name"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if not text:  # the declared default: no name given
            return ""
        if not text.isprintable():
            raise ParamError(name, raw, "contains control characters")
        if text.isdigit():
            raise ParamError(name, raw, "is all digits: xl would read it as a domain id")
        if any(q in text for q in "\"'"):
            raise ParamError(name, raw, "contains a quote, which xl's config syntax cannot hold")
        if text == "Domain-0":
            raise ParamError(name, raw, "is the control domain")
        return text


agent = ResourceAgent(
    "Xen",
    rgmanager_primary="xmfile",
    shortdesc="Manages Xen unprivileged domains (DomUs)",
    longdesc="Starts, stops, monitors and live-migrates a Xen domU with xl (or xm). "
             "Memory of all running domUs can be rebalanced on start and stop.",
    params=[
        Param("xmfile", STRING, required=True, default="/etc/xen/vm/MyDomU",
              shortdesc="Xen control file",
              longdesc="Absolute path to the domU configuration file."),
        Param("name", _DomainName(), default="", shortdesc="Name of the domain",
              longdesc="Domain name; default: the name= entry of xmfile, else the resource "
                       "id."),
        Param("shutdown_timeout", INTEGER(0), shortdesc="Shutdown escalation timeout",
              longdesc="Seconds to wait for a graceful shutdown before destroying the domain. "
                       "Default: 2/3 of the stop timeout; 0 destroys at once."),
        Param("shutdown_acpi", LENIENT_BOOLEAN, default="0",
              shortdesc="Simulate power button event",
              longdesc="Stop with an ACPI power button event (xl trigger power) instead of "
                       "xl shutdown, for HVM guests without PV drivers."),
        Param("allow_mem_management", LENIENT_BOOLEAN, default="0",
              shortdesc="Use dynamic memory management",
              longdesc="On start, stop and migration, share the host memory (minus "
                       "reserved_Dom0_memory) equally among the running domUs."),
        Param("node_ip_attribute", STRING, default="",
              shortdesc="Node attribute holding the migration address",
              longdesc="Name of a node attribute whose value on the target node is the "
                       "address to migrate to; default: the target node name."),
        Param("reserved_Dom0_memory",
              Tolerant(INTEGER(0), "512", "the upstream agent reads it only with "
                                          "allow_mem_management"), default="512",
              shortdesc="Minimum Dom0 memory (MiB)",
              longdesc="Memory kept for Dom0 by allow_mem_management."),
        Param("autoset_utilization_cpu", LENIENT_BOOLEAN, default="false",
              shortdesc="Set cpu utilization",
              longdesc="Keep the resource's 'cpu' utilization equal to the domain's vCPUs."),
        Param("autoset_utilization_hv_memory", LENIENT_BOOLEAN, default="false",
              shortdesc="Set hv_memory utilization",
              longdesc="Keep the resource's 'hv_memory' utilization equal to the domain's "
                       "memory in MiB."),
        Param("monitor_scripts", WORDS, default="", shortdesc="Monitor scripts",
              longdesc="Space-separated commands run after a successful status check; any "
                       "failure fails the monitor with its output."),
    ],
)


@agent.validator
def _memory_management(v: Values) -> Iterator[ParamError]:
    if v.allow_mem_management and v.tolerated("reserved_Dom0_memory"):
        # upstream's shell arithmetic reads a word as 0 (all memory to the domUs) or
        # fails half way: Dom0 could be left without memory
        yield ParamError("reserved_Dom0_memory", v.raw.get("reserved_Dom0_memory"),
                         "is not a number of MiB, and allow_mem_management needs one")


def _name_file(ctx: Context) -> str:
    return f"Xen-{ctx.instance}.name"


def domain_name(ctx: Context) -> str | None:
    """Recorded name, else the parameter, else the config's, else the resource id."""
    recorded = (ctx.state.read(_name_file(ctx)) or "").strip()
    if recorded:
        return recorded
    if ctx.params.name:
        return str(ctx.params.name)
    try:
        return config_name(ctx.params.xmfile) or ctx.instance
    except OSError as exc:
        ctx.log.warning(f"no recorded domain name and {ctx.params.xmfile}: {exc.strerror}")
        return None


def toolstack(ctx: Context) -> Toolstack:
    ts = Toolstack.find(ctx.run)
    if ts is None:
        # Not installed is a truthful "not running" only where no domain can run.
        rc = codes.ERR_GENERIC if ctx.action == "monitor" and not no_domains_here() \
            else codes.ERR_INSTALLED
        ctx.fail(rc, "neither xl nor xm is installed")
    return ts


def lookup(ctx: Context, ts: Toolstack, name: str, retry: bool) -> DomInfo | None:
    """The domain's row; with ``retry``, look again while a reboot may hide it."""
    try:
        info = ts.domain(name)
        end = time.monotonic() + min(REBOOT_GRACE, ctx.deadline.soft_remaining())
        while info is None and retry and time.monotonic() < end:
            ctx.deadline.sleep(0.5)
            info = ts.domain(name)
        return info
    except ToolstackError as exc:
        why = no_domains_here()  # e.g. xl installed on a node booted without Xen
        if why is None:
            ctx.fail(codes.ERR_GENERIC, str(exc))
        ctx.log.warning(f"{exc}; {why}: domain {name} is not running")
        return None


def rebalance(ctx: Context, ts: Toolstack, adding: int, exclude: str = "") -> int | None:
    """Share memory among running domUs (+ ``adding`` new ones); the new size in MiB."""
    if not ctx.params.allow_mem_management:
        return None
    try:
        doms = [d for d in ts.domains() if d.name != exclude]
        count = len(doms) + adding
        if count == 0:
            return None
        size = (ts.total_memory_mib() - ctx.params.reserved_Dom0_memory) // count
        if size <= 0:
            ctx.log.warning("not enough memory to rebalance; leaving sizes alone")
            return None
        for dom in doms:  # by id: a listed name may have lost trailing blanks
            ts.mem_set(str(dom.domid), size)
        return size
    except ToolstackError as exc:
        ctx.log.warning(f"memory management: {exc}")
        return None


# -- actions ------------------------------------------------------------------

@agent.action("start", timeout="60s")
def start(ctx: Context) -> int:
    ts = toolstack(ctx)
    path = ctx.params.xmfile
    if not os.access(path, os.R_OK):
        ctx.fail(codes.ERR_INSTALLED, f"xmfile {path} does not exist or is not readable")
    name = ctx.params.name or config_name(path) or ctx.instance
    info = lookup(ctx, ts, name, retry=False)
    ctx.state.write(_name_file(ctx), name + "\n")
    if info is not None and info.state not in ("crashed", "dying"):
        ctx.log.info(f"domain {name} is already running")
        return codes.SUCCESS
    if info is not None:  # a crashed leftover blocks the name
        destroy_and_wait(ctx, ts, name)
    memory = rebalance(ctx, ts, adding=1, exclude=name)
    try:
        ts.create(path, name, memory)
    except ToolstackError as exc:
        ctx.fail(codes.ERR_GENERIC, f"cannot start domain {name}: {exc}")
    return wait_until_up(ctx, monitor, name)


@agent.action("stop", timeout="40s")
def stop(ctx: Context) -> int:
    name = domain_name(ctx)
    if name is None or (ctx.params.given("name") and ctx.params.name is None
                        and not ctx.state.exists(_name_file(ctx))):
        # The name is recorded before every start, and HA_RSCTMP is emptied at boot.
        ctx.log.warning("domain name unknown and no start recorded on this node: this agent "
                        "has not started it here")
        return codes.SUCCESS
    ts = Toolstack.find(ctx.run)
    if ts is None:
        why = no_domains_here()
        if why is None:
            ctx.fail(codes.ERR_GENERIC, f"neither xl nor xm is installed: cannot tell whether "
                                        f"domain {name} runs")
        ctx.log.warning(f"neither xl nor xm is installed, and {why}: {name} is not running")
        return codes.SUCCESS
    # Only a domain started here can be hiding in a reboot.
    info = lookup(ctx, ts, name, retry=ctx.state.exists(_name_file(ctx)))
    if info is None and ts.tool == "xm":
        info = lookup(ctx, ts, f"migrating-{name}", retry=False)
        name = info.name if info is not None else name
    if info is None:
        return finish_stop(ctx, ts, name)
    timeout = ctx.params.shutdown_timeout
    if timeout is None:
        timeout = (ctx.deadline.total or 60) * 2 / 3
    reserve = max(ctx.deadline.reserve, min(5.0, ctx.deadline.remaining() / 4))
    graceful_end = time.monotonic() + min(timeout, ctx.deadline.remaining() - reserve)
    if timeout > 0 and info.state not in ("crashed", "dying"):
        try:
            ts.shutdown(name, acpi=ctx.params.shutdown_acpi)
            while time.monotonic() < graceful_end:
                ctx.deadline.sleep(min(0.5, max(0.05, graceful_end - time.monotonic())))
                if ts.domain(name) is None:
                    ctx.log.info(f"domain {name} shut down")
                    return finish_stop(ctx, ts, name)
        except ToolstackError as exc:
            ctx.log.warning(f"graceful shutdown of {name}: {exc}")
        ctx.log.warning(f"domain {name} still there: destroying it")
    destroy_and_wait(ctx, ts, name)
    return finish_stop(ctx, ts, name)


def destroy_and_wait(ctx: Context, ts: Toolstack, name: str) -> None:
    try:
        ts.destroy(name)
    except ToolstackError as exc:  # it may have gone by itself meanwhile: look
        ctx.log.warning(str(exc))
    try:
        wait_gone(ts, name, ctx.deadline)
    except ToolstackError as exc:
        ctx.fail(codes.ERR_GENERIC, f"forced stop of {name}: {exc}")


def finish_stop(ctx: Context, ts: Toolstack, name: str) -> int:
    rebalance(ctx, ts, adding=0, exclude=name)
    ctx.state.remove(_name_file(ctx))
    forget_utilization(ctx, "Xen")
    return codes.SUCCESS


@agent.action("monitor", timeout="30s", interval="10s", depth=0)
def monitor(ctx: Context) -> int:
    name = domain_name(ctx)
    if name is None:
        ctx.fail(codes.ERR_INSTALLED if ctx.is_probe else codes.ERR_GENERIC,
                 f"xmfile {ctx.params.xmfile} unreadable and no domain name recorded on this "
                 "node: cannot tell whether it runs")
    ts = toolstack(ctx)
    # A domain started here may be rebooting (briefly unlisted): look again,
    # on probes too, before answering "not running".
    started_here = ctx.state.exists(_name_file(ctx))
    info = lookup(ctx, ts, name, retry=ctx.action == "monitor"
                  and (started_here or not ctx.is_probe))
    if info is None:
        if not ctx.is_probe and ctx.action == "monitor":
            ctx.log.error(f"domain {name} is not running")
        return codes.NOT_RUNNING
    if info.state in ("crashed", "dying"):
        ctx.fail(codes.ERR_GENERIC, f"domain {name} is {info.state}")
    if not started_here:  # running here, started by another agent: stop must find it
        ctx.state.write(_name_file(ctx), name + "\n")
    run_monitor_scripts(ctx, ctx.params.monitor_scripts)
    if ctx.action == "monitor":
        p = ctx.params
        wanted = {"cpu": str(info.vcpus), "hv_memory": str(info.mem_mib)}
        sync_utilization(ctx, "Xen", {a: v for a, v in wanted.items()
                                      if p[f"autoset_utilization_{a}"]})
    return codes.SUCCESS


@agent.action("migrate_to", timeout="120s")
def migrate_to(ctx: Context) -> int:
    target = ctx.migrate_target
    if not target:
        ctx.fail(codes.ERR_CONFIGURED, "migrate_to needs the target node "
                                       "(OCF_RESKEY_CRM_meta_migrate_target)")
    ts = toolstack(ctx)
    name = domain_name(ctx)
    if name is None or lookup(ctx, ts, name, retry=False) is None:
        ctx.fail(codes.ERR_GENERIC, f"domain {name} is not active locally")
    if target == ctx.node:
        ctx.log.info(f"domain {name} already runs on the migration target {target}")
        return codes.SUCCESS
    address = target
    if ctx.params.node_ip_attribute:
        from ocf_lib.cluster import AttributeToolError, NodeAttributes

        try:
            found = NodeAttributes(ctx.run, target, lifetime="forever").get(
                ctx.params.node_ip_attribute)
        except AttributeToolError as exc:
            ctx.log.warning(f"node attribute lookup failed: {exc}")
            found = None
        if found and found != "(null)":
            address = found
        else:
            ctx.log.warning(f"node attribute {ctx.params.node_ip_attribute} of {target} not "
                            "set; migrating to the node name")
    ctx.log.info(f"migrating domain {name} to {target} ({address})")
    try:
        ts.migrate(name, address, timeout=ctx.deadline.limit(soft=True))
    except ToolstackError as exc:
        ctx.fail(codes.ERR_GENERIC, f"live migration of {name} to {target} failed: {exc}")
    return finish_stop(ctx, ts, name)


@agent.action("migrate_from", timeout="120s")
def migrate_from(ctx: Context) -> int:
    ts = toolstack(ctx)
    name = domain_name(ctx)
    if name is None:
        ctx.fail(codes.ERR_GENERIC, "domain name unknown: xmfile unreadable")
    end = time.monotonic() + (ctx.deadline.soft_remaining() * 2 / 3)
    while (info := lookup(ctx, ts, name, retry=False)) is None or info.state == "paused":
        if time.monotonic() >= end:
            ctx.fail(codes.ERR_GENERIC, f"domain {name} did not arrive from "
                                        f"{ctx.migrate_source or 'the source'}")
        ctx.deadline.sleep(0.5)
    ctx.state.write(_name_file(ctx), name + "\n")
    return codes.SUCCESS


@agent.action("validate-all", timeout="5s")
def validate_all(ctx: Context) -> int:
    toolstack(ctx)
    if not os.access(ctx.params.xmfile, os.R_OK):
        ctx.fail(codes.ERR_INSTALLED, f"xmfile {ctx.params.xmfile} does not exist or is not "
                                      "readable")
    return codes.SUCCESS
