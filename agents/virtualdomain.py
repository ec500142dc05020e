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
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import INTEGER, STRING, Lenient, Param, ParamError, ParamType, Tolerant
from ocf_lib.virt import (
    ERR_NO_CONNECT,
    MIGRATE_FLAGS,
    OWN_CHANNEL,
    SHUTDOWN_MODES,
    DomainConfig,
    Identity,
    Status,
    VirtError,
    Where,
    migration_uris,
)
from ocf_lib.vmparams import SHELL_BOOLEAN
from ocf_lib.vmtools import (
    WORDS,
    forget_utilization,
    run_monitor_scripts,
    sync_utilization,
    wait_until_up,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocf_lib.virt import Libvirt

TRANSPORTS = ("ssh", "tcp", "tls", "unix", "ext", "libssh", "libssh2")
UTILIZATION = ("cpu", "host_memory", "hv_memory")
MIGRATE_IGNORED = ("--verbose",)  # virsh-only cosmetics


# -- parameter types: every value this agent takes is parsed here ---------------

class _URI(ParamType):
    """A libvirt connection URI, ``driver[+transport]://[user@][host][:port]/path[?query]``,
    or an alias from libvirt.conf (refused later: it cannot be checked without libvirt)."""

    doc = "libvirt URI"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if not text.isprintable() or any(c.isspace() for c in text):
            raise ParamError(name, raw, "contains blanks or control characters")
        scheme, sep, _ = text.partition("://")
        allowed = "abcdefghijklmnopqrstuvwxyz0123456789+-."
        if sep and (not scheme or not scheme[0].isalpha()
                    or any(c not in allowed for c in scheme.lower())):
            raise ParamError(name, raw, "is not a libvirt URI (driver[+transport]://host/path)")
        if not text.isascii() or any(c in "\"'<>`|{}^\\" for c in text):
            raise ParamError(name, raw, "has characters no URI holds (RFC 3986)")
        if not sep and not all(c.isalnum() or c in "_.-" for c in text):
            raise ParamError(name, raw, "is neither a libvirt URI (driver[+transport]://"
                                        "host/path) nor an alias name")
        return text


class _ShutdownModes(ParamType):
    """virsh shutdown --mode words, comma-separated.  Upstream never read the parameter
    (a misspelt variable), so a word that is not a mode is dropped with a warning."""

    doc = "comma-separated list of " + ", ".join(SHUTDOWN_MODES)

    def convert(self, raw: str, name: str) -> Any:
        words = [m.strip().lower() for m in raw.replace(",", " ").split()]
        modes = tuple(m for m in words if m in SHUTDOWN_MODES)
        unknown = [m for m in words if m not in SHUTDOWN_MODES]
        if unknown:
            kept = ",".join(modes) or "the hypervisor's default"
            return Lenient(modes, f"has {', '.join(repr(m) for m in unknown)}, not among "
                                  f"{', '.join(SHUTDOWN_MODES)}; shutting down with {kept} "
                                  "(the upstream agent ignored shutdown_mode)")
        return modes


def _split_words(text: str) -> list[str]:
    """Blank-separated words; '...' and "..." group blanks (shlex costs an import of re)."""
    words: list[str] = []
    cur, quote, started = "", "", False
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur += ch
        elif ch in "'\"":
            quote, started = ch, True
        elif ch.isspace():
            if started:
                words.append(cur)
            cur, started = "", False
        else:
            cur += ch
            started = True
    if quote:
        raise ValueError("unbalanced quote")
    if started:
        words.append(cur)
    return words


# virsh migrate options that rename the domain on the target: the agents there
# look for the old name, would answer "not running" and start a second copy.
RENAMING = ("--dname",)


class _MigrateOptions(ParamType):
    """virsh-style migrate options -> (libvirt flags including LIVE, --migrateuri value,
    options the agent cannot honour).  The last are tolerated: upstream passed them to
    virsh unread; here migrate_to fails on them, and Pacemaker stops and starts the
    domain instead.  An option that renames the domain is refused."""

    doc = "virsh migrate options"

    def convert(self, raw: str, name: str) -> Any:
        try:
            words = _split_words(raw)
        except ValueError:
            words = raw.split()  # upstream handed virsh the quotes as they were
        flags, uri, unsupported = MIGRATE_FLAGS["--live"], None, []
        while words:
            word = words.pop(0)
            if word.split("=", 1)[0] in RENAMING:
                raise ParamError(name, raw, f"has '{word}', which renames the domain on the "
                                            "target, where the cluster would no longer find it")
            if word.startswith("--migrateuri="):
                uri = word.split("=", 1)[1]
            elif word == "--migrateuri" and words:
                uri = words.pop(0)
            elif word in MIGRATE_FLAGS:
                flags |= MIGRATE_FLAGS[word]
            elif word not in MIGRATE_IGNORED:
                unsupported.append(word)
        if unsupported:
            return Lenient((flags, uri, tuple(unsupported)),
                           f"has {' '.join(unsupported)}, which this agent does not support: "
                           "migrate_to will fail (the domain is then stopped and started "
                           "instead); the upstream agent passed it to virsh")
        return flags, uri, ()


class _Transport(ParamType):
    """A libvirt transport.  One libvirt may know that is not listed is used as given
    (the migration fails if libvirt does not know it, as upstream's did); a value that
    is not a word would change which host the URI names, and is refused."""

    doc = "one of " + ", ".join(TRANSPORTS)

    def choices(self) -> tuple[str, ...]:
        return TRANSPORTS

    def convert(self, raw: str, name: str) -> Any:
        word = raw.strip().lower()
        if word in TRANSPORTS:
            return word
        if word.isascii() and word.isalnum():
            return Lenient(word, f"is not one of {', '.join(TRANSPORTS)}; used as given, as "
                                 "the upstream agent does (libvirt refuses a transport it "
                                 "does not know when migrating)")
        raise ParamError(name, raw, "is not a transport name (letters and digits), so the "
                                    "remote URI would name another host")


class _UserName(ParamType):
    """A login name for the generated remote URI (upstream silently dropped others)."""

    doc = "user name"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if not (text[:1].isascii() and text[:1].isalpha()
                and text.replace("-", "").replace("_", "").isalnum() and text.isascii()):
            raise ParamError(name, raw, "is not a user name (a letter, then letters, "
                                        "digits, '-' or '_')")
        return text


def _util_params() -> list[Param]:
    out = []
    for attr in UTILIZATION:
        out.append(Param(f"autoset_utilization_{attr}", SHELL_BOOLEAN, default="true",
                         shortdesc=f"Set {attr} utilization",
                         longdesc=f"Keep the resource's '{attr}' utilization equal to the "
                                  "domain's (vCPUs, or maximum memory in MiB); written only "
                                  "when it changes."))
    for attr in UTILIZATION:
        out.append(Param(f"unset_utilization_{attr}", SHELL_BOOLEAN, default="false",
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
        Param("hypervisor", _URI(), shortdesc="Hypervisor URI",
              longdesc="libvirt connection URI (e.g. qemu:///system). Default: libvirt's, "
                       "for the driver of the domain's type. A local URI must name a "
                       "driver whose domains can be found while libvirtd is down (qemu, "
                       "lxc, xen); aliases are refused (see docs/virtualdomain.md)."),
        Param("force_stop", SHELL_BOOLEAN, default="0", shortdesc="Always force stop",
              longdesc="Destroy the domain on stop instead of shutting it down gracefully."),
        Param("migration_transport", _Transport(), shortdesc="Migration transport",
              longdesc="Transport inserted into the remote URI: ssh, tcp, tls, unix, ext, "
                       "libssh or libssh2."),
        Param("migration_user",
              Tolerant(_UserName(), None, "the upstream agent drops such a name and connects "
                                          "as the default user"), shortdesc="Migration user",
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
        Param("migrate_options", _MigrateOptions(), shortdesc="Extra migrate options",
              longdesc="virsh-style migrate options: --p2p, --tunnelled, --persistent, "
                       "--undefinesource, --compressed, --auto-converge, --migrateuri=... "
                       "(and other flags of virsh migrate)."),
        Param("monitor_scripts", WORDS, default="", shortdesc="Monitor scripts",
              longdesc="Space-separated commands run after a successful status check; "
                       "any failure fails the monitor with its output."),
        *_util_params(),
        Param("migrateport",
              Tolerant(INTEGER(1, 65535), None, "the upstream agent does not check it; a "
                                                "random port 49152-49215 is used"),
              shortdesc="Migration port",
              longdesc="Port of the generated tcp: migrate URI (default: random 49152-49215)."),
        Param("remoteuri", STRING, shortdesc="Remote hypervisor URI",
              longdesc="Destination connection URI for migration; %n is the target node."),
        Param("save_config_on_stop", SHELL_BOOLEAN, shortdesc="Save config on stop",
              longdesc="Write the domain's definition, passwords included, back to config "
                       "on stop and migration (atomically, mode 0600)."),
        Param("sync_config_on_stop", SHELL_BOOLEAN, shortdesc="Sync config with csync2",
              longdesc="Implies save_config_on_stop; then runs 'csync2 -x' on the config."),
        Param("snapshot", STRING, default="", shortdesc="Snapshot directory",
              longdesc="Stop saves the domain's memory to <dir>/<name>.state; start restores "
                       "it. Cannot be combined with force_stop."),
        Param("backingfile", STRING, default="", shortdesc="Backing image",
              longdesc="qcow2 backing file; the domain runs on an overlay next to config."),
        Param("stateless", SHELL_BOOLEAN, default="false", shortdesc="Stateless overlay",
              longdesc="Recreate the overlay on every start (needs backingfile)."),
        Param("copyindirs", WORDS, default="", shortdesc="Directories copied in",
              longdesc="Stateless mode: directories copied into the image with virt-copy-in."),
        Param("shutdown_mode", _ShutdownModes(), default="", shortdesc="Shutdown mode",
              longdesc="Comma-separated virsh shutdown modes: acpi, agent, initctl, signal, "
                       "paravirt. Empty: the hypervisor's default."),
        Param("start_resources", SHELL_BOOLEAN, default="false",
              shortdesc="Start pools and networks",
              longdesc="Start (or refresh) storage pools and networks the domain uses."),
    ],
)


def read_config(ctx: Context) -> DomainConfig:
    path = ctx.params.config
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        ctx.fail(codes.ERR_INSTALLED, f"cannot read config {path}: {exc.strerror}")
    except UnicodeDecodeError:
        ctx.fail(codes.ERR_CONFIGURED, f"config {path} is not UTF-8 text")
    if not text.strip():
        ctx.fail(codes.ERR_CONFIGURED, f"config {path} is empty")
    try:
        return DomainConfig(path, text)
    except ValueError as exc:
        ctx.fail(codes.ERR_CONFIGURED, str(exc))


def _id_file(ctx: Context) -> str:
    return f"VirtualDomain-{ctx.instance}.identity"


def remember(ctx: Context, ident: Identity) -> None:
    ctx.state.write(_id_file(ctx), ident.text())


def forget(ctx: Context) -> None:
    ctx.state.remove(_id_file(ctx))
    forget_utilization(ctx, "VirtualDomain")


def recorded(ctx: Context) -> Identity | None:
    return Identity.parse(ctx.state.read(_id_file(ctx)))


def known_identity(ctx: Context) -> Identity | None:
    """The recorded identity, else the config's; None when neither can be read."""
    ident = recorded(ctx)
    if ident is not None:
        return ident
    if not ctx.params.config:
        return None
    try:
        return read_config(ctx).identity
    except Exception as exc:  # noqa: BLE001 - reported by the caller
        ctx.log.warning(f"no recorded identity and {exc}")
        return None


def configured_uri(ctx: Context) -> str | None:
    """The URI libvirt will be opened with: the parameter, else LIBVIRT_DEFAULT_URI."""
    return ctx.params.hypervisor or ctx.env.get("LIBVIRT_DEFAULT_URI") or None


def where(ctx: Context, ident: Identity) -> Where | None:
    """The hypervisor of this domain: as recorded at start, else as configured now.

    None when the hypervisor parameter is invalid and nothing was recorded.
    """
    if ident.uri is not None:
        return Where(ident.uri or None, ident.driver)
    if ctx.params.given("hypervisor") and ctx.params.hypervisor is None:
        return None
    return Where(configured_uri(ctx), ident.driver)


def connect(ctx: Context, at: Where | None = None) -> Libvirt:
    from ocf_lib.virt import Libvirt

    return Libvirt(at.uri if at is not None else configured_uri(ctx), ctx.deadline, ctx.log)


def check_verifiable(ctx: Context, cfg: DomainConfig) -> Where:
    """Refuse a hypervisor whose domains could not be found while libvirtd is down.

    Such a resource would fail every probe made before libvirtd is up (at
    every boot, when libvirtd is a cluster resource), and the failed probe
    leads to a failed stop and fencing.
    """
    at = Where(configured_uri(ctx), cfg.driver)
    if at.alias:
        ctx.fail(codes.ERR_CONFIGURED, f"hypervisor '{at.uri}' is an alias: give the full "
                                       "URI, so that the domain can be checked while libvirt "
                                       "is down")
    if at.local and at.driver not in OWN_CHANNEL:
        ctx.fail(codes.ERR_CONFIGURED,
                 f"{at!r}: domains of the '{at.driver or cfg.driver or 'unknown'}' driver "
                 "cannot be checked while libvirtd is down; supported locally: "
                 f"{', '.join(OWN_CHANNEL)} (or use a remote URI)")
    if cfg.driver and at.driver and cfg.driver != at.driver:
        ctx.fail(codes.ERR_CONFIGURED, f"config {cfg.path} is a '{cfg.driver}' domain but "
                                       f"hypervisor {at!r} is the '{at.driver}' driver")
    return at


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
    cfg = read_config(ctx)
    at = check_verifiable(ctx, cfg)
    if cfg.emulator and not os.access(cfg.emulator, os.X_OK):
        ctx.fail(codes.ERR_INSTALLED, f"emulator {cfg.emulator} (from {cfg.path}) is not "
                                      "installed or not executable")
    if p.snapshot and not os.path.isdir(p.snapshot):
        ctx.fail(codes.ERR_INSTALLED, f"snapshot directory {p.snapshot} does not exist")
    return cfg, at


def virt_failure(ctx: Context, exc: VirtError, what: str) -> None:
    rc = codes.ERR_INSTALLED if exc.code == ERR_NO_CONNECT else codes.ERR_GENERIC
    ctx.fail(rc, f"{what}: {exc}")


def emulator_of(ctx: Context) -> str | None:
    """The config's <emulator> (a custom QEMU path), if the config can be read."""
    try:
        return read_config(ctx).emulator
    except Exception:  # noqa: BLE001 - only a hint for finding the process
        return None


def query(ctx: Context, lv: Libvirt, ident: Identity, at: Where | None,
          want: float | None = None) -> Status:
    """libvirt's answer; when libvirt cannot be asked, the driver's own channel's.

    A Status from the local channel has ``local`` set (no sizes, no UUID).
    When neither can tell, libvirt is asked again until the deadline, then
    the action fails (1): "cannot tell" never becomes "not running".
    """
    from ocf_lib.virt import local_state

    try:
        return lv.status(ident, soft=True, want=want)
    except VirtError as exc:
        first = exc
    emulator = emulator_of(ctx)
    while True:
        if at is None:
            why = "the hypervisor parameter is invalid and no URI was recorded at start"
        else:
            local = local_state(at, ident, ctx.run, emulator)
            if local.running is not None:
                ctx.log.warning(f"{first}; {local.why}")
                return Status("running" if local.running else None, local=local.why)
            why = local.why
        if ctx.deadline.soft_remaining() < 1.5:
            ctx.fail(codes.ERR_GENERIC, f"{first}; {why}: cannot tell whether domain "
                                        f"{ident.name} runs")
        ctx.log.debug(f"{first}; {why}: asking libvirt again")
        ctx.deadline.sleep(1.0)
        try:
            return lv.status(ident, soft=True, want=max(1.0, ctx.deadline.soft_remaining() / 4))
        except VirtError as exc:
            first = exc


def first_query_limit(ctx: Context) -> float:
    """A healthy libvirtd answers in milliseconds; keep time to act without it."""
    return max(2.0, ctx.deadline.remaining() / 4)


# -- actions ------------------------------------------------------------------

@agent.action("start", timeout="90s")
def start(ctx: Context) -> int:
    p = ctx.params
    cfg, at = validate(ctx)
    lv = connect(ctx, at)
    ident = recorded(ctx) or cfg.identity
    status = query(ctx, lv, ident, where(ctx, ident), want=first_query_limit(ctx))
    here = Identity(cfg.name, cfg.uuid, at.uri or "", at.driver)
    if status.state == "crashed":  # kept by on_crash=preserve
        ctx.log.warning(f"domain {ident.name} crashed earlier: destroying it before start")
        try:
            lv.destroy(ident)
        except VirtError as exc:
            virt_failure(ctx, exc, f"cannot clear crashed domain {ident.name}")
    elif status.active:
        if status.uuid:
            here.uuid = status.uuid
        remember(ctx, here)
        ctx.log.info(f"domain {ident.name} is already running")
        return codes.SUCCESS
    remember(ctx, here)  # before creating: a stop after a failed start finds it
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
            overlay(ctx, cfg)
            made = lv.define_and_start(cfg.xml)
        else:
            if lv.is_defined(cfg.name):
                undefine_keeping_config(ctx, lv, cfg)
            made = lv.create(cfg.xml)
    except VirtError as exc:
        virt_failure(ctx, exc, f"failed to start domain {cfg.name}")
    if made is not None:
        here.uuid = made.uuid
        remember(ctx, here)
    return wait_until_up(ctx, monitor, cfg.name)


def undefine_keeping_config(ctx: Context, lv: Libvirt, cfg: DomainConfig) -> None:
    """Upstream's rule: the domain runs transient, so drop a persistent definition
    of the same name; libvirt deletes files it manages, so put the config back."""
    from ocf_lib.virt import write_private

    ctx.log.info(f"undefining persistent domain {cfg.name} to run it from {cfg.path}")
    lv.undefine(cfg.name)
    if not os.path.exists(cfg.path):
        write_private(cfg.path, cfg.xml)


def overlay(ctx: Context, cfg: DomainConfig) -> None:
    image = os.path.splitext(cfg.path)[0] + ".qcow2"
    if ctx.params.stateless or not os.path.exists(image) or os.path.getsize(image) == 0:
        res = ctx.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                       "-b", ctx.params.backingfile, image])
        if not res.ok:
            ctx.fail(codes.ERR_GENERIC, f"qemu-img create {image} failed: {res.reason()}")
    for directory in ctx.params.copyindirs or ():
        res = ctx.run(["virt-copy-in", "-a", image, directory, "/"])
        if not res.ok:
            ctx.fail(codes.ERR_GENERIC, f"virt-copy-in {directory} failed: {res.reason()}")


@agent.action("stop", timeout="90s")
def stop(ctx: Context) -> int:
    p = ctx.params
    ident = known_identity(ctx)
    if ident is None:
        # The record is written before every start, and by every monitor that
        # finds the domain running (a domain another agent started), and
        # HA_RSCTMP is emptied at boot: without it, no agent run here has seen
        # the domain run on this node since boot.
        ctx.log.warning("no domain identity recorded on this node and config unreadable: "
                        "this agent has not started it here")
        return codes.SUCCESS
    at = where(ctx, ident)
    if at is None:  # an invalid hypervisor and no URI recorded: never guess one
        if recorded(ctx) is None:
            ctx.log.warning("hypervisor parameter invalid and no start recorded on this "
                            "node: this agent has not started the domain here")
            return codes.SUCCESS
        ctx.fail(codes.ERR_GENERIC, f"hypervisor parameter invalid and the URI domain "
                                    f"{ident.name} was started with is not recorded: "
                                    "cannot tell whether it runs")
    lv = connect(ctx, at)
    try:
        status = lv.status(ident, want=first_query_limit(ctx))
    except VirtError as exc:
        ctx.log.warning(f"{exc}: looking for {ident.name} without libvirt")
        found = stop_without_libvirt(ctx, lv, ident, at)
        if isinstance(found, int):
            return found
        status = found
    if not status.active:
        forget(ctx)
        return codes.SUCCESS
    ident.uuid = status.uuid or ident.uuid
    total = ctx.deadline.remaining()
    graceful_end = time.monotonic() + total - max(ctx.deadline.reserve, min(8.0, total / 3))
    if p.save_config_on_stop or p.sync_config_on_stop:
        save_config(ctx, lv, ident)
    if not p.force_stop and p.snapshot and save_snapshot(ctx, lv, ident):
        forget(ctx)
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
                    forget(ctx)
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
    forget(ctx)
    return codes.SUCCESS


def stop_without_libvirt(ctx: Context, lv: Libvirt, ident: Identity,
                         at: Where) -> int | Status:
    """libvirt is unreachable: stop the domain through its driver's own channel.

    Returns the exit code, or libvirt's Status when libvirt answers again
    while the local channel cannot tell.
    """
    from ocf_lib.virt import end_qemu, local_state

    emulator = emulator_of(ctx)
    while True:
        local = local_state(at, ident, ctx.run, emulator)
        if local.running is False:
            ctx.log.info(f"{local.why}: domain {ident.name} is stopped")
            forget(ctx)
            return codes.SUCCESS
        if local.running:
            ctx.log.warning(f"{local.why}: ending it without libvirt")
            if at.driver == "qemu":
                if not end_qemu(ident, ctx.deadline, ctx.log, emulator):
                    ctx.fail(codes.ERR_GENERIC, f"libvirt unreachable and QEMU of "
                                                f"{ident.name} survives SIGKILL")
            elif at.driver == "xen":
                xen_destroy(ctx, ident.name)
            else:
                ctx.fail(codes.ERR_GENERIC, f"libvirt unreachable and {local.why}: a "
                                            f"{at.driver} domain cannot be stopped without "
                                            "libvirt")
            forget(ctx)
            return codes.SUCCESS
        if ctx.deadline.remaining() < 1.5:
            ctx.fail(codes.ERR_GENERIC, f"libvirt unreachable and {local.why}: cannot tell "
                                        f"whether domain {ident.name} runs")
        ctx.deadline.sleep(1.0)
        try:
            return lv.status(ident, want=max(1.0, ctx.deadline.remaining() / 4))
        except VirtError:
            continue


def xen_destroy(ctx: Context, name: str) -> None:
    """``xl destroy``, then the domain list until it is gone (within the deadline)."""
    from ocf_lib.xentool import Toolstack, ToolstackError, wait_gone

    tools = Toolstack.find(ctx.run)
    if tools is None:
        ctx.fail(codes.ERR_GENERIC, f"cannot destroy Xen domain {name}: no xl or xm")
    try:
        tools.destroy(name)
        wait_gone(tools, name, ctx.deadline)
    except ToolstackError as exc:
        ctx.fail(codes.ERR_GENERIC, f"forced stop of Xen domain {name} failed: {exc}")


def save_snapshot(ctx: Context, lv: Libvirt, ident: Identity) -> bool:
    path = os.path.join(ctx.params.snapshot, f"{ident.name}.state")
    try:
        lv.save(ident, path)
        os.chmod(path, 0o600)
        return not lv.status(ident).active
    except (VirtError, OSError) as exc:
        ctx.log.warning(f"saving {ident.name} to {path} failed ({exc}); shutting down instead")
        return False


def save_config(ctx: Context, lv: Libvirt, ident: Identity) -> None:
    """Write the definition back to config, passwords included, only when it changed."""
    from ocf_lib.virt import write_private

    path = ctx.params.config
    if not path:
        return
    try:
        xml = lv.xml(ident, inactive=True)
        with open(path, encoding="utf-8") as handle:
            if handle.read() == xml:
                return
    except FileNotFoundError:
        pass
    except (VirtError, OSError) as exc:
        ctx.log.warning(f"not saving config of {ident.name}: {exc}")
        return
    if not xml.strip():
        return
    try:
        write_private(path, xml)
    except OSError as exc:
        ctx.log.warning(f"cannot save the definition of {ident.name} to {path}: {exc}")
        return
    ctx.log.info(f"saved the definition of {ident.name} to {path}")
    if ctx.params.sync_config_on_stop:
        res = ctx.run(["csync2", "-x", path])
        if not res.ok:
            ctx.log.warning(f"csync2 -x {path} failed: {res.reason()}")


@agent.action("monitor", timeout="30s", interval="10s", depth=0)
def monitor(ctx: Context) -> int:
    ident = known_identity(ctx)
    if ident is None:
        ctx.fail(codes.ERR_INSTALLED if ctx.is_probe else codes.ERR_GENERIC,
                 f"config {ctx.params.config} unreadable and no domain identity recorded "
                 "on this node: cannot tell whether it runs")
    at = where(ctx, ident)
    status = query(ctx, connect(ctx, at), ident, at, want=first_query_limit(ctx))
    if status.state in (None, "shutoff"):
        return codes.NOT_RUNNING
    if status.state in ("crashed", "nostate"):
        ctx.fail(codes.ERR_GENERIC, f"domain {ident.name} is in state '{status.state}'")
    if at is not None and status.local is None and recorded(ctx) is None:
        # Running here, started by another agent (upstream, before a switch): from
        # now on stop knows it even if the config becomes unreadable.
        remember(ctx, Identity(ident.name, status.uuid or ident.uuid, at.uri or "",
                               at.driver))
    run_monitor_scripts(ctx, ctx.params.monitor_scripts)
    if ctx.action == "monitor" and status.local is None:  # sizes come from libvirt only
        update_utilization(ctx, status)
    return codes.SUCCESS


def update_utilization(ctx: Context, status: Status) -> None:
    p = ctx.params
    values = {"cpu": str(status.vcpus), "host_memory": str(status.max_mem_kib // 1024),
              "hv_memory": str(status.max_mem_kib // 1024)}
    sync_utilization(ctx, "VirtualDomain",
                     {a: v for a, v in values.items() if p[f"autoset_utilization_{a}"]},
                     [a for a in UTILIZATION if not p[f"autoset_utilization_{a}"]
                      and p[f"unset_utilization_{a}"]])


# -- migration ------------------------------------------------------------------

@agent.action("migrate_to", timeout="120s")
def migrate_to(ctx: Context) -> int:
    p = ctx.params
    target = ctx.migrate_target
    if not target:
        ctx.fail(codes.ERR_CONFIGURED, "migrate_to needs the target node "
                                       "(OCF_RESKEY_CRM_meta_migrate_target)")
    ident = known_identity(ctx)
    if ident is None:
        ctx.fail(codes.ERR_GENERIC, "domain unknown: config unreadable, nothing recorded")
    flags, option_uri, unsupported = p.migrate_options or (MIGRATE_FLAGS["--live"], None, ())
    if unsupported:
        ctx.fail(codes.ERR_GENERIC, f"migrate_options {' '.join(unsupported)} not supported: "
                                    f"not migrating {ident.name} live")
    at = where(ctx, ident)
    lv = connect(ctx, at)
    status = query(ctx, lv, ident, at)
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
        save_config(ctx, lv, ident)
    ctx.log.info(f"migrating {ident.name} to {target} ({dest}, data {data or 'default'})")
    try:
        if p.start_resources:
            cfg = read_config(ctx)
            connect_to(ctx, dest).ensure_resources(cfg.pools, cfg.networks)
        lv.migrate(ident, dest, data, flags, p.migration_speed, p.migration_downtime)
    except VirtError as exc:
        ctx.fail(codes.ERR_GENERIC, f"live migration of {ident.name} to {target} failed: {exc}")
    forget(ctx)
    return codes.SUCCESS


def connect_to(ctx: Context, uri: str) -> Libvirt:
    from ocf_lib.virt import Libvirt

    return Libvirt(uri, ctx.deadline, ctx.log)


@agent.action("migrate_from", timeout="60s")
def migrate_from(ctx: Context) -> int:
    ident = known_identity(ctx)
    if ident is None:
        ctx.fail(codes.ERR_GENERIC, "domain unknown: config unreadable")
    # The domain now runs on this node's hypervisor, as configured here.
    ident.uri = None
    at = where(ctx, ident)
    lv = connect(ctx, at)
    while True:
        status = query(ctx, lv, ident, at)
        if status.state == "running" and status.local is None:
            break
        if ctx.deadline.soft_expired():
            ctx.fail(codes.ERR_GENERIC, f"domain {ident.name} did not arrive "
                                        f"(state {status.state or 'absent'})")
        ctx.deadline.sleep(0.5)
    uri = at.uri if at is not None else None
    remember(ctx, Identity(ident.name, status.uuid, uri or "",
                           at.driver if at is not None else ident.driver))
    if ctx.params.save_config_on_stop or ctx.params.sync_config_on_stop:
        save_config(ctx, lv, ident)
    return codes.SUCCESS


@agent.action("validate-all", timeout="5s")
def validate_all(ctx: Context) -> int:
    validate(ctx)
    return codes.SUCCESS
