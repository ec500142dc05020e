"""The libvirt seam: every call an agent makes to libvirt, each under a time bound.

libvirt calls can block forever (a stopped or wedged libvirtd accepts the
connection, then never answers).  So each public method runs its libvirt work
in a daemon worker thread and waits at most the time the caller allows; a
call that does not come back raises :class:`VirtTimeout` with a clear reason
instead of eating the whole operation timeout.  The abandoned thread dies
with the process.

The module imports neither libvirt nor threading until a method is called:
``meta-data`` and validation paths stay cheap.  ``libvirt`` comes through
:func:`ocf_lib.lazy.need` (agents run with ``python3 -IS``).

Errors are reported as :class:`VirtError` (one-line reason, optional libvirt
error code), never as libvirt exceptions, so callers do not import libvirt.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .deadline import Deadline
    from .log import Logger

# <domain type=...> -> the libvirt driver that runs it.
DOMAIN_TYPES = {"kvm": "qemu", "qemu": "qemu", "kqemu": "qemu", "xen": "xen", "lxc": "lxc"}
# Drivers whose domains outlive libvirtd and can be checked without it (see
# local_state); any other driver can only be asked through libvirt.
OWN_CHANNEL = ("qemu", "lxc", "xen")
LOOPBACK = ("", "localhost", "localhost.localdomain", "127.0.0.1", "::1", "[::1]")

# virDomainState numbers -> the words virsh prints.
STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed",
          "pmsuspended")
# States of a domain that still exists as a process (crashed: kept by on_crash=preserve).
ACTIVE = ("running", "blocked", "paused", "shutdown", "pmsuspended", "crashed")

ERR_NO_CONNECT = 5      # VIR_ERR_NO_CONNECT: no driver for this URI
ERR_NO_DOMAIN = 42      # VIR_ERR_NO_DOMAIN
ERR_OPERATION_INVALID = 55  # e.g. "domain is not running"
XML_SECURE = 1          # VIR_DOMAIN_XML_SECURE: include passwords
XML_INACTIVE = 2        # VIR_DOMAIN_XML_INACTIVE: the definition for the next boot

# virsh shutdown --mode words -> virDomainShutdownFlags bits.
SHUTDOWN_MODES = {"acpi": 1, "agent": 2, "initctl": 4, "signal": 8, "paravirt": 16}

# virsh migrate options the agent understands -> virDomainMigrateFlags bits.
MIGRATE_FLAGS = {
    "--live": 1, "--p2p": 2, "--tunnelled": 4, "--persistent": 8, "--undefinesource": 16,
    "--suspend": 32, "--copy-storage-all": 64, "--copy-storage-inc": 128,
    "--change-protection": 256, "--unsafe": 512, "--offline": 1024, "--compressed": 2048,
    "--abort-on-error": 4096, "--auto-converge": 8192, "--postcopy": 32768, "--tls": 65536,
    "--parallel": 131072,
}
MIGRATE_IGNORED = ("--verbose",)  # virsh-only cosmetics


class VirtError(Exception):
    """A libvirt operation failed; ``str()`` is a one-line reason."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(" ".join(reason.split()))
        self.code = code


class VirtTimeout(VirtError):
    """libvirt did not answer in time (libvirtd hung or overloaded)."""


class Identity:
    """Which domain: its name, its UUID once known, and where it runs.

    ``uri`` is the connection URI the domain was started through ("" for
    libvirt's default) and ``driver`` the hypervisor driver (qemu, lxc, xen,
    ...): recorded at start, so stop and monitor ask the same hypervisor even
    when the parameters changed or became invalid since.
    """

    __slots__ = ("name", "uuid", "uri", "driver")

    def __init__(self, name: str, uuid: str | None = None, uri: str | None = None,
                 driver: str | None = None) -> None:
        self.name = name
        self.uuid = uuid or None
        self.uri = uri
        self.driver = driver or None

    def text(self) -> str:
        uri = "" if self.uri is None else self.uri
        return f"{self.name}\n{self.uuid or ''}\n{uri}\n{self.driver or ''}\n"

    @classmethod
    def parse(cls, text: str | None) -> Identity | None:
        lines = (text or "").split("\n")
        if not lines or not lines[0].strip():
            return None
        more = [line.strip() for line in lines[1:4]] + ["", "", ""]
        # A file of the two-line format has no URI: None, not libvirt's default.
        uri = more[1] if len(lines) > 3 else None
        return cls(lines[0].strip(), more[0], uri, more[2])

    def __repr__(self) -> str:
        return f"{self.name} ({self.uuid or 'uuid unknown'})"


class Status:
    """What libvirt says about a domain: ``state`` is None when it does not exist."""

    __slots__ = ("state", "vcpus", "max_mem_kib", "uuid", "persistent", "local")

    def __init__(self, state: str | None, vcpus: int = 0, max_mem_kib: int = 0,
                 uuid: str | None = None, persistent: bool = False,
                 local: str | None = None) -> None:
        self.state = state
        self.vcpus = vcpus
        self.max_mem_kib = max_mem_kib
        self.uuid = uuid
        self.persistent = persistent
        self.local = local  # set (the evidence) when libvirt was not asked

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def bounded(what: str, fn: Callable[[], Any], limit: float | None) -> Any:
    """Run ``fn`` in a worker thread; raise VirtTimeout if it is not done in ``limit`` s."""
    import threading

    if limit is not None and limit <= 0:
        raise VirtTimeout(f"no time left for libvirt {what}")
    box: list[Any] = []

    def work() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append((False, exc))

    worker = threading.Thread(target=work, name=f"libvirt-{what}", daemon=True)
    worker.start()
    worker.join(limit)
    if not box:
        raise VirtTimeout(f"libvirt did not answer '{what}' within {limit:.1f}s "
                          "(libvirtd hung or overloaded)")
    ok, value = box[0]
    if ok:
        return value
    raise _translate(value, what)


def _translate(exc: BaseException, what: str) -> BaseException:
    if isinstance(exc, VirtError):
        return exc
    get_code = getattr(exc, "get_error_code", None)
    if get_code is not None:  # libvirt.libvirtError
        message = getattr(exc, "get_error_message", lambda: None)() or str(exc)
        return VirtError(f"{what}: {message}", get_code())
    return exc


class Libvirt:
    """One connection URI, opened lazily; every method is bounded by the deadline.

    ``soft=True`` calls keep the deadline's escalation reserve (graceful steps);
    the others may use all the time that is left.
    """

    def __init__(self, uri: str | None, deadline: Deadline, log: Logger | None = None,
                 per_call: float | None = None) -> None:
        self.uri = uri or None
        self.deadline = deadline
        self.log = log
        self.per_call = per_call
        self._conn: Any = None
        self._lv: Any = None

    # -- mechanics ------------------------------------------------------------

    def _libvirt(self) -> Any:
        if self._lv is None:
            from .lazy import need

            lv = need("libvirt")
            lv.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr noise
            self._lv = lv
        return self._lv

    def _limit(self, soft: bool, want: float | None = None) -> float | None:
        if want is None:
            want = self.per_call
        return self.deadline.limit(want, soft=soft)

    def call(self, what: str, fn: Callable[[Any], Any], *, soft: bool = False,
             want: float | None = None) -> Any:
        """``fn(connection)`` under a time bound; the connection is opened inside it."""
        lv = self._libvirt()

        def work() -> Any:
            if self._conn is None:
                try:
                    self._conn = lv.open(self.uri)
                except lv.libvirtError as exc:
                    raise VirtError(f"cannot connect to libvirt at {self.uri or 'default URI'}: "
                                    f"{exc.get_error_message() or exc}",
                                    exc.get_error_code()) from None
            return fn(self._conn)

        if self.log is not None:
            self.log.debug(f"libvirt {what} ({self.uri})")
        return bounded(what, work, self._limit(soft, want))

    def _lookup(self, conn: Any, ident: Identity) -> Any:
        """The domain object, by UUID first, then by name; None when absent."""
        lv = self._lv
        for how, key in (("UUID", ident.uuid), ("name", ident.name)):
            if not key:
                continue
            try:
                return conn.lookupByUUIDString(key) if how == "UUID" else conn.lookupByName(key)
            except lv.libvirtError as exc:
                if exc.get_error_code() != ERR_NO_DOMAIN:
                    raise
        return None

    def _need(self, conn: Any, ident: Identity) -> Any:
        dom = self._lookup(conn, ident)
        if dom is None:
            raise VirtError(f"domain {ident.name} not found", ERR_NO_DOMAIN)
        return dom

    # -- queries ----------------------------------------------------------------

    def status(self, ident: Identity, *, soft: bool = False, want: float | None = None
               ) -> Status:
        """State, vCPUs and memory in one round trip (virDomainGetInfo)."""

        def work(conn: Any) -> Status:
            dom = self._lookup(conn, ident)
            if dom is None:
                return Status(None)
            try:
                state, max_mem, _mem, vcpus, _cpu = dom.info()
            except self._lv.libvirtError as exc:
                if exc.get_error_code() == ERR_NO_DOMAIN:  # vanished since the lookup
                    return Status(None)
                raise
            name = STATES[state] if 0 <= state < len(STATES) else f"state{state}"
            return Status(name, vcpus, max_mem, dom.UUIDString())

        return self.call("status", work, soft=soft, want=want)

    def is_defined(self, name: str) -> bool:
        """A persistent domain of that name exists (active or not)."""

        def work(conn: Any) -> bool:
            dom = self._lookup(conn, Identity(name))
            return bool(dom is not None and dom.isPersistent())

        return bool(self.call("lookup", work, soft=True))

    def xml(self, ident: Identity, inactive: bool = True) -> str:
        """The domain XML with secure information (VNC/SPICE passwords).

        The caller writes it back over the administrator's file: without
        VIR_DOMAIN_XML_SECURE libvirt leaves the passwd attributes out, and the
        next start would run the console without a password.
        """
        flags = XML_SECURE | (XML_INACTIVE if inactive else 0)
        return str(self.call("dumpxml", lambda c: self._need(c, ident).XMLDesc(flags), soft=True))

    # -- lifecycle --------------------------------------------------------------

    def create(self, xml: str) -> Identity:
        """Start a transient domain from XML."""

        def work(conn: Any) -> Identity:
            dom = conn.createXML(xml, 0)
            return Identity(dom.name(), dom.UUIDString())

        return self.call("create", work)

    def define_and_start(self, xml: str) -> Identity:
        def work(conn: Any) -> Identity:
            dom = conn.defineXML(xml)
            dom.create()
            return Identity(dom.name(), dom.UUIDString())

        return self.call("define+start", work)

    def undefine(self, name: str) -> None:
        self.call("undefine", lambda c: self._need(c, Identity(name)).undefine(), soft=True)

    def shutdown(self, ident: Identity, modes: Iterable[str] = ()) -> None:
        flags = 0
        for mode in modes:
            flags |= SHUTDOWN_MODES[mode]
        self.call("shutdown", lambda c: self._need(c, ident).shutdownFlags(flags), soft=True)

    def destroy(self, ident: Identity) -> None:
        """Hard power-off; a domain that is already gone is not an error."""

        def work(conn: Any) -> None:
            dom = self._lookup(conn, ident)
            if dom is None:
                return
            try:
                dom.destroy()
            except self._lv.libvirtError as exc:
                if exc.get_error_code() not in (ERR_NO_DOMAIN, ERR_OPERATION_INVALID):
                    raise

        self.call("destroy", work)

    def save(self, ident: Identity, path: str) -> None:
        self.call("save", lambda c: self._need(c, ident).save(path), soft=True)

    def restore(self, path: str) -> None:
        self.call("restore", lambda c: c.restore(path))

    def ensure_resources(self, pools: Iterable[str], networks: Iterable[str]) -> None:
        """Start (or refresh) the storage pools and networks a domain uses."""

        def work(conn: Any) -> None:
            for name in pools:
                pool = conn.storagePoolLookupByName(name)
                if pool.isActive():
                    pool.refresh(0)
                else:
                    pool.create(0)
            for name in networks:
                net = conn.networkLookupByName(name)
                if not net.isActive():
                    net.create()

        self.call("start-resources", work, soft=True)

    # -- migration --------------------------------------------------------------

    def migrate(self, ident: Identity, dest_uri: str, migrate_uri: str | None, flags: int,
                speed: int = 0, downtime_ms: int = 0) -> None:
        """Migrate to ``dest_uri``; abort the job if the deadline comes first.

        With ``--p2p`` the source libvirtd talks to the destination; otherwise
        this process opens the destination connection itself (as virsh does).
        ``downtime_ms`` is applied once the migration job is running.
        """
        lv = self._libvirt()
        params: dict[str, Any] = {}
        if migrate_uri:
            params[lv.VIR_MIGRATE_PARAM_URI] = migrate_uri
        if speed:
            params[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = speed
        p2p = bool(flags & MIGRATE_FLAGS["--p2p"])
        dom = self.call("lookup", lambda c: self._need(c, ident), soft=True)
        dest: Any = None
        if not p2p:
            dest_lv = Libvirt(dest_uri, self.deadline, self.log, self.per_call)
            dest = dest_lv.call("connect", lambda c: c, soft=True)

        def work() -> None:
            try:
                if p2p:
                    dom.migrateToURI3(dest_uri, params, flags)
                else:
                    dom.migrate3(dest, params, flags)
            except lv.libvirtError as exc:
                raise VirtError(f"migration failed: {exc.get_error_message() or exc}",
                                exc.get_error_code()) from None

        import threading

        box: list[BaseException | None] = []

        def runner() -> None:
            try:
                work()
                box.append(None)
            except BaseException as exc:  # noqa: BLE001
                box.append(exc)

        worker = threading.Thread(target=runner, name="libvirt-migrate", daemon=True)
        worker.start()
        if downtime_ms:
            worker.join(min(2.0, self.deadline.soft_remaining()))
            if worker.is_alive():
                try:
                    bounded("setmaxdowntime", lambda: dom.migrateSetMaxDowntime(downtime_ms, 0),
                            self.deadline.limit(10.0, soft=True))
                except VirtError as exc:
                    if self.log is not None:
                        self.log.warning(f"could not set migration downtime: {exc}")
        worker.join(self.deadline.soft_remaining())
        if worker.is_alive():
            try:
                bounded("abortjob", dom.abortJob, self.deadline.limit(5.0))
            except VirtError:
                pass
            raise VirtTimeout("migration did not finish before the operation timeout; "
                              "job aborted")
        if box and box[0] is not None:
            raise _translate(box[0], "migrate")


# -- parsing the agent's inputs (no libvirt needed) ------------------------------

class DomainConfig:
    """What an agent needs from a domain XML file, parsed once (ValueError if unusable)."""

    def __init__(self, path: str, xml: str) -> None:
        import xml.etree.ElementTree as ET

        self.path = path
        self.xml = xml
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise ValueError(f"config {path} is not valid XML: {exc}") from None
        if root.tag != "domain":
            raise ValueError(f"config {path} is not a libvirt domain (root <{root.tag}>)")
        self.name = (root.findtext("name") or "").strip()
        if not self.name:
            raise ValueError(f"config {path} has no domain <name>")
        self.uuid = (root.findtext("uuid") or "").strip() or None
        self.driver = DOMAIN_TYPES.get(root.get("type", ""), root.get("type", ""))
        self.emulator = (root.findtext("devices/emulator") or "").strip() or None
        sources = root.findall("devices/*/source")
        self.pools = sorted({s.get("pool", "") for s in sources} - {""})
        self.networks = sorted({s.get("network", "") for s in sources} - {""})

    @property
    def identity(self) -> Identity:
        return Identity(self.name, self.uuid, driver=self.driver)


def migration_uris(local_uri: str, target: str, *, remoteuri: str | None = None,
                   migrateuri: str | None = None, transport: str | None = None,
                   user: str | None = None, suffix: str | None = None,
                   port: int | None = None) -> tuple[str, str | None]:
    """(destination connection URI, data migration URI) by upstream VirtualDomain's rules.

    ``%n`` in the explicit URIs is the target node.  Otherwise the local URI is
    rewritten to the target (``qemu:///system`` -> ``qemu+ssh://node2/system``)
    with ``suffix`` added to the target's first label (``node2-mig.example``);
    with a suffix and no explicit data URI, QEMU gets ``tcp:<host>:<port>``.
    """
    first, dot, rest = target.partition(".")
    host = f"{first}{suffix or ''}{dot}{rest}"
    if remoteuri:
        dest = remoteuri.replace("%n", target)
    else:
        scheme, _, tail = local_uri.partition("://")
        hostport, _, path = tail.partition("/")
        old_port = hostport.rsplit(":", 1)[1] if ":" in hostport.split("@")[-1] else ""
        if transport:
            scheme = scheme.split("+")[0] + "+" + transport
        login = f"{user}@" if user else ""  # the parameter type admits only user names
        dest = f"{scheme}://{login}{host}{':' + old_port if old_port else ''}/{path}"
    if migrateuri:
        return dest, migrateuri.replace("%n", target)
    if not suffix:
        return dest, None
    if local_uri.lower().startswith("qemu"):
        import random

        chosen = port or random.randint(49152, 49215)  # noqa: S311 - not security
        return dest, f"tcp:{host}:{chosen}"
    if local_uri.lower().startswith("xen"):
        return dest, host
    return dest, None




# -- libvirt-less checks -------------------------------------------------------
#
# Domains outlive libvirtd under every driver.  When libvirt cannot be asked,
# each driver is checked through its own channel: the QEMU process, the
# libvirt_lxc controller, the Xen hypervisor's domain list.  Nothing else is
# proof; a remote URI has no local channel at all.

class Where:
    """A connection URI taken apart: which driver, and whether it is this host's."""

    __slots__ = ("uri", "driver", "local", "alias")

    def __init__(self, uri: str | None, default_driver: str | None = None) -> None:
        self.uri = uri or None
        self.alias = False
        if not uri:  # libvirt's default URI: the domain's own type says which driver
            self.driver = default_driver or ""
            self.local = True
            return
        scheme, sep, rest = uri.partition("://")
        if not sep:  # an alias from libvirt.conf: nothing to go by without libvirt
            self.driver, self.local, self.alias = "", False, True
            return
        driver, _, transport = scheme.lower().partition("+")
        self.driver = "qemu" if driver == "kvm" else driver
        host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1].lower()
        if host.startswith("["):
            host = host.split("]", 1)[0] + "]"
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        self.local = transport == "unix" or (transport != "ext" and host in LOOPBACK)

    @property
    def verifiable(self) -> bool:
        """Whether the domain can be found without libvirt (local URI, own channel)."""
        return self.local and self.driver in OWN_CHANNEL

    def __repr__(self) -> str:
        return self.uri or f"libvirt's default URI ({self.driver or 'unknown'} driver)"


class Local:
    """What a driver's own channel says: ``running`` True/False, or None (cannot tell)."""

    __slots__ = ("running", "why", "pids")

    def __init__(self, running: bool | None, why: str, pids: Iterable[int] = ()) -> None:
        self.running = running
        self.why = why
        self.pids = list(pids)


def _processes(proc: str = "/proc") -> Iterable[tuple[int, str, list[str]]]:
    """(pid, real executable, argv) of every process; the executable from
    /proc/PID/exe, which, unlike argv[0], no process can choose."""
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"{proc}/{entry}/exe")
            with open(f"{proc}/{entry}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:  # gone, or a kernel thread
            continue
        if exe.endswith(" (deleted)"):  # the package was upgraded under a running guest
            exe = exe[: -len(" (deleted)")]
        yield int(entry), exe, [a.decode("utf-8", "replace") for a in args]


def _is_qemu(exe: str, emulator: str | None) -> bool:
    base = os.path.basename(exe)
    if base.startswith(("qemu-system-", "qemu-kvm")) or base in ("kvm", "qemu-dm"):
        return True
    return bool(emulator) and exe == os.path.realpath(str(emulator))


def qemu_processes(ident: Identity, emulator: str | None = None,
                   proc: str = "/proc") -> list[int]:
    """PIDs of QEMU processes running this domain: a QEMU executable whose
    ``-uuid`` is the domain's (when known), else whose ``-name`` is
    ``guest=<name>`` (or, for old QEMU, ``<name>``)."""
    found = []
    want_uuid = (ident.uuid or "").lower()
    for pid, exe, words in _processes(proc):
        if not _is_qemu(exe, emulator):
            continue
        if want_uuid and "-uuid" in words:
            i = words.index("-uuid")
            if i + 1 < len(words) and words[i + 1].lower() == want_uuid:
                found.append(pid)
            continue
        if "-name" in words:
            i = words.index("-name")
            value = words[i + 1] if i + 1 < len(words) else ""
            if _qemu_name(value) == ident.name:
                found.append(pid)
    return found


def _qemu_name(value: str) -> str:
    """The guest name in QEMU's ``-name`` value (``guest=a,,b,debug-threads=on``:
    a doubled comma is a literal one)."""
    parts, cur, i = [], "", 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += value[i]
        i += 1
    parts.append(cur)
    for part in parts:
        if part.startswith("guest="):
            return part[len("guest="):]
    return parts[0] if parts and "=" not in parts[0] else ""


def lxc_controllers(name: str, proc: str = "/proc") -> list[int]:
    """PIDs of libvirt_lxc controller processes of container ``name`` (``--name NAME``)."""
    found = []
    for pid, exe, words in _processes(proc):
        if os.path.basename(exe) != "libvirt_lxc":
            continue
        for i, word in enumerate(words):
            if (word == "--name" and words[i + 1:i + 2] == [name]) or word == f"--name={name}":
                found.append(pid)
                break
    return found


def xen_present() -> bool | None:
    """True on a Xen control domain, False where no Xen domain can exist, None if unclear.

    The kernel says it runs on Xen in /sys/hypervisor/type; without that, no
    hypervisor means no domains.  A guest of Xen (no ``control_d`` in
    /proc/xen/capabilities) hosts no domains either.
    """
    from . import sysroot

    try:
        with open(sysroot.path("/sys/hypervisor/type"), encoding="ascii") as handle:
            if handle.read().strip() != "xen":
                return False
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return None
    try:
        with open(sysroot.path("/proc/xen/capabilities"), encoding="ascii") as handle:
            return "control_d" in handle.read()
    except FileNotFoundError:
        return None  # xenfs not mounted: a control domain cannot be told from a guest
    except (OSError, ValueError):
        return None


def local_state(where: Where, ident: Identity, run: Callable[..., Any],
                emulator: str | None = None) -> Local:
    """Whether the domain runs, from its driver's own channel (libvirt not asked)."""
    if not where.local:
        return Local(None, f"{where!r} is remote: no local check can tell")
    if where.driver == "qemu":
        pids = qemu_processes(ident, emulator)
        if pids:
            return Local(True, f"QEMU process {pids[0]} runs domain {ident.name}", pids)
        return Local(False, f"no QEMU process runs domain {ident.name}")
    if where.driver == "lxc":
        pids = lxc_controllers(ident.name)
        if pids:
            return Local(True, f"libvirt_lxc controller {pids[0]} runs container "
                               f"{ident.name}", pids)
        return Local(False, f"no libvirt_lxc controller runs container {ident.name}")
    if where.driver == "xen":
        present = xen_present()
        if present is False:
            return Local(False, "no Xen hypervisor (or not its control domain) on this host")
        from .xentool import Toolstack, ToolstackError

        tools = Toolstack.find(run)
        if tools is None:
            return Local(None, "Xen is present but neither xl nor xm is installed")
        try:
            info = tools.domain(ident.name)
        except ToolstackError as exc:
            return Local(None, str(exc))
        if info is None:
            return Local(False, f"{tools.tool} list: no domain {ident.name}")
        return Local(True, f"{tools.tool} list shows domain {ident.name} "
                           f"(id {info.domid}, {info.state})")
    return Local(None, f"the {where.driver or 'unknown'} driver has no check without libvirt")


def end_qemu(ident: Identity, deadline: Deadline, log: Logger | None = None,
             emulator: str | None = None) -> bool:
    """SIGTERM, then SIGKILL, this domain's QEMU processes; True once none is left."""
    import signal
    import time

    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        pids = qemu_processes(ident, emulator)
        if not pids:
            return True
        if log is not None:
            log.warning(f"libvirt unreachable: sending {sig.name} to QEMU {pids}")
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + min(wait, deadline.remaining())
        while qemu_processes(ident, emulator) and time.monotonic() < end:
            time.sleep(0.1)
    return not qemu_processes(ident, emulator)


def write_private(path: str, text: str) -> None:
    """Replace ``path`` in one rename by a file of mode 0600 (it may hold passwords).

    The temporary file has an unpredictable name and is created with O_EXCL
    and O_NOFOLLOW in the target's directory, so nobody can plant a link there.
    """
    directory = os.path.dirname(path) or "."
    data = text.encode("utf-8")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
