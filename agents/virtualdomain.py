"""ocf:pyha:VirtualDomain -- a libvirt domain, with graceful stop and live migration.

Compatible with ocf:heartbeat:VirtualDomain (same parameters and defaults).
Differences from upstream, each deliberate:

* The domain's identity (name and UUID) is recorded in ``$HA_RSCTMP`` at
  start.  When the XML config is unreadable (shared storage gone), stop and
  monitor ask libvirt by that identity; upstream answered "stopped" without
  asking (a double-start risk).
* ``shutdown_mode`` is honoured (upstream read a misspelt variable).
* Every libvirt call is time-bounded (ocf_lib.virt): a hung libvirtd is a
  clear failure, not a stop timeout and fencing (upstream #546, #385).
* When libvirt cannot be reached, the domain is looked for through its
  driver's own channel (QEMU process, libvirt_lxc controller, Xen's domain
  list, or the proven absence of Xen); a remote URI has none, so there the
  agent retries libvirt until its deadline and fails, never answering 7.  A
  local URI whose driver has no such channel, or a libvirt.conf alias, is
  refused at validate-all and start.  The URI and driver are recorded at
  start, so stop and monitor ask the hypervisor the domain was started on.
  docs/virtualdomain.md has the table.
* Graceful stop escalates to destroy before the deadline; stop returns 0
  only when the domain is verifiably inactive.
* monitor makes one libvirt call (state, vCPUs and memory together) and
  writes utilization through crm_resource only when a value changed.
* save_config_on_stop dumps the inactive definition with its secure
  information (VNC/SPICE passwords, as upstream's ``--inactive
  --security-info``) and writes it atomically, mode 0600, only when it
  changed.  It runs on stop and migration, not on every monitor.
* backingfile overlays are created with an explicit backing format, next to
  the config with its extension replaced (upstream cut the path at the first dot).
"""

from __future__ import annotations

import os
import time

from ocf_lib import codes
from ocf_lib import libvirt_domain as dom
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import INTEGER, LENIENT_BOOLEAN, STRING, Param
from ocf_lib.virt import MIGRATE_FLAGS, DomainConfig, Identity, VirtError, Where, migration_uris
from ocf_lib.vmparams import (
    MIGRATE_OPTIONS,
    MIGRATE_PORT,
    MIGRATION_USER,
    SHUTDOWN_MODE_LIST,
    TRANSPORT,
    URI,
)
from ocf_lib.vmtools import WORDS, run_monitor_scripts, wait_until_up


def _util_params() -> list[Param]:
    out = []
    for attr in dom.UTILIZATION:
        out.append(Param(f"autoset_utilization_{attr}", LENIENT_BOOLEAN, default="true",
                         shortdesc=f"Set {attr} utilization",
                         longdesc=f"Keep the resource's '{attr}' utilization equal to the "
                                  "domain's (vCPUs, or maximum memory in MiB); written only "
                                  "when it changes."))
    for attr in dom.UTILIZATION:
        out.append(Param(f"unset_utilization_{attr}", LENIENT_BOOLEAN, default="false",
                         shortdesc=f"Remove {attr} utilization",
                         longdesc=f"Delete the '{attr}' utilization attribute when "
                                  f"autoset_utilization_{attr} is false."))
    return out


agent = ResourceAgent(
    "VirtualDomain",
    rgmanager_primary="config",
    version="1.1",
    shortdesc="Manages virtual domains through libvirt",
    longdesc="Starts a libvirt domain from its XML definition, stops it gracefully (then by "
             "force), monitors it with one libvirt call, and migrates it live. The domain's "
             "name and UUID are remembered from start, so a lost config file never makes a "
             "running domain look stopped.",
    params=[
        Param("config", STRING, required=True, unique=True, shortdesc="Domain XML file",
              longdesc="Absolute path to the libvirt XML file describing the domain."),
        Param("hypervisor", URI, shortdesc="Hypervisor URI",
              longdesc="libvirt connection URI (e.g. qemu:///system). Default: libvirt's, "
                       "for the driver of the domain's type. A local URI must name a "
                       "driver whose domains can be found while libvirtd is down (qemu, "
                       "lxc, xen); aliases are refused (see docs/virtualdomain.md)."),
        Param("force_stop", LENIENT_BOOLEAN, default="0", shortdesc="Always force stop",
              longdesc="Destroy the domain on stop instead of shutting it down gracefully."),
        Param("migration_transport", TRANSPORT, shortdesc="Migration transport",
              longdesc="Transport inserted into the remote URI: ssh, tcp, tls, unix, ext, "
                       "libssh or libssh2."),
        Param("migration_user", MIGRATION_USER, shortdesc="Migration user",
              longdesc="User name put into the generated remote URI."),
        Param("migration_downtime", INTEGER(0), default="0", shortdesc="Maximum downtime (ms)",
              longdesc="Maximum tolerable downtime of a live migration, in milliseconds."),
        Param("migration_speed", INTEGER(0), default="0", shortdesc="Migration speed (MiB/s)",
              longdesc="Maximum migration bandwidth in MiB/s; 0 leaves libvirt's default."),
        Param("migration_network_suffix", STRING, default="",
              shortdesc="Migration network host name suffix",
              longdesc="Appended to the first label of the target node name to reach its "
                       "migration network (node1 -> node1-mig). Also generates a tcp: "
                       "migrate URI for QEMU."),
        Param("migrateuri", STRING, shortdesc="Migration URI",
              longdesc="Explicit migrate URI (data connection); %n is the target node."),
        Param("migrate_options", MIGRATE_OPTIONS, shortdesc="Extra migrate options",
              longdesc="virsh-style migrate options: --p2p, --tunnelled, --persistent, "
                       "--undefinesource, --compressed, --auto-converge, --migrateuri=... "
                       "(and other flags of virsh migrate)."),
        Param("monitor_scripts", WORDS, default="", shortdesc="Monitor scripts",
              longdesc="Space-separated commands run after a successful status check; "
                       "any failure fails the monitor with its output."),
        *_util_params(),
        Param("migrateport", MIGRATE_PORT,
              shortdesc="Migration port",
              longdesc="Port of the generated tcp: migrate URI (default: random 49152-49215)."),
        Param("remoteuri", STRING, shortdesc="Remote hypervisor URI",
              longdesc="Destination connection URI for migration; %n is the target node."),
        Param("save_config_on_stop", LENIENT_BOOLEAN, shortdesc="Save config on stop",
              longdesc="Write the domain's definition, passwords included, back to config "
                       "on stop and migration (atomically, mode 0600)."),
        Param("sync_config_on_stop", LENIENT_BOOLEAN, shortdesc="Sync config with csync2",
              longdesc="Implies save_config_on_stop; then runs 'csync2 -x' on the config."),
        Param("snapshot", STRING, default="", shortdesc="Snapshot directory",
              longdesc="Stop saves the domain's memory to <dir>/<name>.state; start restores "
                       "it. Cannot be combined with force_stop."),
        Param("backingfile", STRING, default="", shortdesc="Backing image",
              longdesc="qcow2 backing file; the domain runs on an overlay next to config."),
        Param("stateless", LENIENT_BOOLEAN, default="false", shortdesc="Stateless overlay",
              longdesc="Recreate the overlay on every start (needs backingfile)."),
        Param("copyindirs", WORDS, default="", shortdesc="Directories copied in",
              longdesc="Stateless mode: directories copied into the image with virt-copy-in."),
        Param("shutdown_mode", SHUTDOWN_MODE_LIST, default="", shortdesc="Shutdown mode",
              longdesc="Comma-separated virsh shutdown modes: acpi, agent, initctl, signal, "
                       "paravirt. Empty: the hypervisor's default."),
        Param("start_resources", LENIENT_BOOLEAN, default="false",
              shortdesc="Start pools and networks",
              longdesc="Start (or refresh) storage pools and networks the domain uses."),
    ],
)


def validate(ctx: Context) -> tuple[DomainConfig, Where]:
    """Everything start and validate-all check; raises with the right code."""
    p = ctx.params
    if p.sync_config_on_stop:
        p.set("save_config_on_stop", True)
    if p.force_stop and p.snapshot:
        ctx.fail(codes.ERR_CONFIGURED, "force_stop and snapshot cannot be used together")
    if p.stateless and not p.backingfile:
        ctx.fail(codes.ERR_CONFIGURED, "stateless needs backingfile")
    from ocf_lib.proc import which

    for tool, needed in (("csync2", p.sync_config_on_stop), ("qemu-img", p.backingfile),
                         ("virt-copy-in", p.copyindirs)):
        if needed and which(tool) is None:
            ctx.fail(codes.ERR_INSTALLED, f"{tool} is needed but not installed")
    cfg = dom.read_config(ctx)
    at = dom.check_verifiable(ctx, cfg)
    if cfg.emulator and not os.access(cfg.emulator, os.X_OK):
        ctx.fail(codes.ERR_INSTALLED, f"emulator {cfg.emulator} (from {cfg.path}) is not "
                                      "installed or not executable")
    if p.snapshot and not os.path.isdir(p.snapshot):
        ctx.fail(codes.ERR_INSTALLED, f"snapshot directory {p.snapshot} does not exist")
    return cfg, at


# -- actions ------------------------------------------------------------------

@agent.action("start", timeout="90s")
def start(ctx: Context) -> int:
    p = ctx.params
    cfg, at = validate(ctx)
    lv = dom.connect(ctx, at)
    ident = dom.recorded(ctx) or cfg.identity
    status = dom.query(ctx, lv, ident, dom.where(ctx, ident), want=dom.first_query_limit(ctx))
    here = Identity(cfg.name, cfg.uuid, at.uri or "", at.driver)
    if status.state == "crashed":  # kept by on_crash=preserve
        ctx.log.warning(f"domain {ident.name} crashed earlier: destroying it before start")
        try:
            lv.destroy(ident)
        except VirtError as exc:
            dom.virt_failure(ctx, exc, f"cannot clear crashed domain {ident.name}")
    elif status.active:
        if status.uuid:
            here.uuid = status.uuid
        dom.remember(ctx, here)
        ctx.log.info(f"domain {ident.name} is already running")
        return codes.SUCCESS
    dom.remember(ctx, here)  # before creating: a stop after a failed start finds it
    saved = os.path.join(p.snapshot, f"{cfg.name}.state") if p.snapshot else ""
    try:
        if p.start_resources:
            lv.ensure_resources(cfg.pools, cfg.networks)
        if saved and os.path.exists(saved):
            ctx.log.info(f"restoring domain {cfg.name} from {saved}")
            lv.restore(saved)
            os.unlink(saved)
            made = None
        elif p.backingfile:
            dom.overlay(ctx, cfg)
            made = lv.define_and_start(cfg.xml)
        else:
            if lv.is_defined(cfg.name):
                dom.undefine_keeping_config(ctx, lv, cfg)
            made = lv.create(cfg.xml)
    except VirtError as exc:
        dom.virt_failure(ctx, exc, f"failed to start domain {cfg.name}")
    if made is not None:
        here.uuid = made.uuid
        dom.remember(ctx, here)
    return wait_until_up(ctx, monitor, cfg.name)


@agent.action("stop", timeout="90s")
def stop(ctx: Context) -> int:
    p = ctx.params
    ident = dom.known_identity(ctx)
    if ident is None:
        # The record is written before every start, and by every monitor that
        # finds the domain running (a domain another agent started), and
        # HA_RSCTMP is emptied at boot: without it, no agent run here has seen
        # the domain run on this node since boot.
        ctx.log.warning("no domain identity recorded on this node and config unreadable: "
                        "this agent has not started it here")
        return codes.SUCCESS
    at = dom.where(ctx, ident)
    if at is None:  # an invalid hypervisor and no URI recorded: never guess one
        if dom.recorded(ctx) is None:
            ctx.log.warning("hypervisor parameter invalid and no start recorded on this "
                            "node: this agent has not started the domain here")
            return codes.SUCCESS
        ctx.fail(codes.ERR_GENERIC, f"hypervisor parameter invalid and the URI domain "
                                    f"{ident.name} was started with is not recorded: "
                                    "cannot tell whether it runs")
    lv = dom.connect(ctx, at)
    try:
        status = lv.status(ident, want=dom.first_query_limit(ctx))
    except VirtError as exc:
        ctx.log.warning(f"{exc}: looking for {ident.name} without libvirt")
        found = dom.stop_without_libvirt(ctx, lv, ident, at)
        if isinstance(found, int):
            return found
        status = found
    if not status.active:
        dom.forget(ctx)
        return codes.SUCCESS
    ident.uuid = status.uuid or ident.uuid
    total = ctx.deadline.remaining()
    graceful_end = time.monotonic() + total - max(ctx.deadline.reserve, min(8.0, total / 3))
    if p.save_config_on_stop or p.sync_config_on_stop:
        dom.save_config(ctx, lv, ident)
    if not p.force_stop and p.snapshot and dom.save_snapshot(ctx, lv, ident):
        dom.forget(ctx)
        return codes.SUCCESS
    # A paused or crashed guest cannot react to a shutdown request: no point waiting.
    if not p.force_stop and status.state not in ("paused", "crashed"):
        try:
            lv.shutdown(ident, p.shutdown_mode or ())
            while time.monotonic() < graceful_end:
                ctx.deadline.sleep(min(0.5, max(0.05, graceful_end - time.monotonic())))
                status = lv.status(ident, soft=True)
                if not status.active:
                    ctx.log.info(f"domain {ident.name} shut down gracefully")
                    dom.forget(ctx)
                    return codes.SUCCESS
        except VirtError as exc:
            ctx.log.warning(f"graceful shutdown of {ident.name}: {exc}")
        ctx.log.warning(f"domain {ident.name} still running: destroying it")
    try:
        lv.destroy(ident)
        while lv.status(ident).active:
            if ctx.deadline.expired():
                ctx.fail(codes.ERR_GENERIC, f"domain {ident.name} still active after destroy")
            ctx.deadline.sleep(0.2)
    except VirtError as exc:
        ctx.fail(codes.ERR_GENERIC, f"forced stop of {ident.name} failed: {exc}")
    dom.forget(ctx)
    return codes.SUCCESS


@agent.action("monitor", timeout="30s", interval="10s", depth=0)
def monitor(ctx: Context) -> int:
    ident = dom.known_identity(ctx)
    if ident is None:
        ctx.fail(codes.ERR_INSTALLED if ctx.is_probe else codes.ERR_GENERIC,
                 f"config {ctx.params.config} unreadable and no domain identity recorded "
                 "on this node: cannot tell whether it runs")
    at = dom.where(ctx, ident)
    status = dom.query(ctx, dom.connect(ctx, at), ident, at, want=dom.first_query_limit(ctx))
    if status.state in (None, "shutoff"):
        return codes.NOT_RUNNING
    if status.state in ("crashed", "nostate"):
        ctx.fail(codes.ERR_GENERIC, f"domain {ident.name} is in state '{status.state}'")
    if at is not None and status.local is None and dom.recorded(ctx) is None:
        # Running here, started by another agent (upstream, before a switch): from
        # now on stop knows it even if the config becomes unreadable.
        dom.remember(ctx, Identity(ident.name, status.uuid or ident.uuid, at.uri or "",
                               at.driver))
    run_monitor_scripts(ctx, ctx.params.monitor_scripts)
    if ctx.action == "monitor" and status.local is None:  # sizes come from libvirt only
        dom.update_utilization(ctx, status)
    return codes.SUCCESS


# -- migration ------------------------------------------------------------------

@agent.action("migrate_to", timeout="120s")
def migrate_to(ctx: Context) -> int:
    p = ctx.params
    target = ctx.migrate_target
    if not target:
        ctx.fail(codes.ERR_CONFIGURED, "migrate_to needs the target node "
                                       "(OCF_RESKEY_CRM_meta_migrate_target)")
    ident = dom.known_identity(ctx)
    if ident is None:
        ctx.fail(codes.ERR_GENERIC, "domain unknown: config unreadable, nothing recorded")
    flags, option_uri, unsupported = p.migrate_options or (MIGRATE_FLAGS["--live"], None, ())
    if unsupported:
        ctx.fail(codes.ERR_GENERIC, f"migrate_options {' '.join(unsupported)} not supported: "
                                    f"not migrating {ident.name} live")
    at = dom.where(ctx, ident)
    lv = dom.connect(ctx, at)
    status = dom.query(ctx, lv, ident, at)
    if not status.active:
        ctx.fail(codes.ERR_GENERIC, f"domain {ident.name} is not active locally")
    if status.local is not None:
        ctx.fail(codes.ERR_GENERIC, f"cannot migrate {ident.name}: libvirt unreachable")
    ident.uuid = status.uuid or ident.uuid
    if target == ctx.node:  # libvirt refuses a same-host migration; nothing to move
        ctx.log.info(f"{ident.name} already runs on the migration target {target}")
        return codes.SUCCESS
    try:
        local = lv.uri or str(lv.call("uri", lambda conn: conn.getURI(), soft=True))
    except VirtError as exc:
        ctx.fail(codes.ERR_GENERIC, f"cannot tell the local hypervisor URI: {exc}")
    dest, data = migration_uris(local, target, remoteuri=p.remoteuri,
                                migrateuri=p.migrateuri or option_uri,
                                transport=p.migration_transport, user=p.migration_user,
                                suffix=p.migration_network_suffix, port=p.migrateport)
    if p.save_config_on_stop or p.sync_config_on_stop:
        dom.save_config(ctx, lv, ident)
    ctx.log.info(f"migrating {ident.name} to {target} ({dest}, data {data or 'default'})")
    try:
        if p.start_resources:
            cfg = dom.read_config(ctx)
            dom.connect_to(ctx, dest).ensure_resources(cfg.pools, cfg.networks)
        lv.migrate(ident, dest, data, flags, p.migration_speed, p.migration_downtime)
    except VirtError as exc:
        ctx.fail(codes.ERR_GENERIC, f"live migration of {ident.name} to {target} failed: {exc}")
    dom.forget(ctx)
    return codes.SUCCESS


@agent.action("migrate_from", timeout="60s")
def migrate_from(ctx: Context) -> int:
    ident = dom.known_identity(ctx)
    if ident is None:
        ctx.fail(codes.ERR_GENERIC, "domain unknown: config unreadable")
    # The domain now runs on this node's hypervisor, as configured here.
    ident.uri = None
    at = dom.where(ctx, ident)
    lv = dom.connect(ctx, at)
    while True:
        status = dom.query(ctx, lv, ident, at)
        if status.state == "running" and status.local is None:
            break
        if ctx.deadline.soft_expired():
            ctx.fail(codes.ERR_GENERIC, f"domain {ident.name} did not arrive "
                                        f"(state {status.state or 'absent'})")
        ctx.deadline.sleep(0.5)
    uri = at.uri if at is not None else None
    dom.remember(ctx, Identity(ident.name, status.uuid, uri or "",
                           at.driver if at is not None else ident.driver))
    if ctx.params.save_config_on_stop or ctx.params.sync_config_on_stop:
        dom.save_config(ctx, lv, ident)
    return codes.SUCCESS


@agent.action("validate-all", timeout="5s")
def validate_all(ctx: Context) -> int:
    validate(ctx)
    return codes.SUCCESS
