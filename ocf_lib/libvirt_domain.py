"""VirtualDomain's mechanics on top of the libvirt seam (ocf_lib.virt).

* the domain's identity record in ``$HA_RSCTMP`` (name, UUID, URI, driver), written
  before every start, so a lost config never makes a running domain look stopped;
* which hypervisor to ask, and the refusal of one whose domains cannot be found
  while libvirtd is down;
* :func:`query`: libvirt's answer, else the driver's own channel's, else a failure
  (never "not running" for "cannot tell"); :func:`stop_without_libvirt` likewise;
* config handling: reading the XML, saving the definition back, overlays,
  snapshots, a persistent definition of the same name.

Each function takes the action's Context: its parameters, deadline, log and state.
"""

from __future__ import annotations

import os

from . import codes
from .virt import (
    ERR_NO_CONNECT,
    OWN_CHANNEL,
    DomainConfig,
    Identity,
    Status,
    VirtError,
    Where,
)
from .vmtools import forget_utilization, sync_utilization

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .ocf import Context
    from .virt import Libvirt

UTILIZATION = ("cpu", "host_memory", "hv_memory")


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
    from .virt import Libvirt

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
    from .virt import local_state

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


def undefine_keeping_config(ctx: Context, lv: Libvirt, cfg: DomainConfig) -> None:
    """Upstream's rule: the domain runs transient, so drop a persistent definition
    of the same name; libvirt deletes files it manages, so put the config back."""
    from .virt import write_private

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


def stop_without_libvirt(ctx: Context, lv: Libvirt, ident: Identity,
                         at: Where) -> int | Status:
    """libvirt is unreachable: stop the domain through its driver's own channel.

    Returns the exit code, or libvirt's Status when libvirt answers again
    while the local channel cannot tell.
    """
    from .virt import end_qemu, local_state

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
    from .xentool import Toolstack, ToolstackError, wait_gone

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
    from .virt import write_private

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


def update_utilization(ctx: Context, status: Status) -> None:
    p = ctx.params
    values = {"cpu": str(status.vcpus), "host_memory": str(status.max_mem_kib // 1024),
              "hv_memory": str(status.max_mem_kib // 1024)}
    sync_utilization(ctx, "VirtualDomain",
                     {a: v for a, v in values.items() if p[f"autoset_utilization_{a}"]},
                     [a for a in UTILIZATION if not p[f"autoset_utilization_{a}"]
                      and p[f"unset_utilization_{a}"]])


def connect_to(ctx: Context, uri: str) -> Libvirt:
    from .virt import Libvirt

    return Libvirt(uri, ctx.deadline, ctx.log)
