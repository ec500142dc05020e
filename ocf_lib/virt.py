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
    """Which domain: its name and, once known, its UUID."""

    __slots__ = ("name", "uuid")

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self.name = name
        self.uuid = uuid or None

    def text(self) -> str:
        return f"{self.name}\n{self.uuid or ''}\n"

    @classmethod
    def parse(cls, text: str | None) -> Identity | None:
        lines = (text or "").splitlines()
        if not lines or not lines[0].strip():
            return None
        return cls(lines[0].strip(), lines[1].strip() if len(lines) > 1 else None)

    def __repr__(self) -> str:
        return f"{self.name} ({self.uuid or 'uuid unknown'})"


class Status:
    """What libvirt says about a domain: ``state`` is None when it does not exist."""

    __slots__ = ("state", "vcpus", "max_mem_kib", "uuid", "persistent")

    def __init__(self, state: str | None, vcpus: int = 0, max_mem_kib: int = 0,
                 uuid: str | None = None, persistent: bool = False) -> None:
        self.state = state
        self.vcpus = vcpus
        self.max_mem_kib = max_mem_kib
        self.uuid = uuid
        self.persistent = persistent

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
        self.emulator = (root.findtext("devices/emulator") or "").strip() or None
        sources = root.findall("devices/*/source")
        self.pools = sorted({s.get("pool", "") for s in sources} - {""})
        self.networks = sorted({s.get("network", "") for s in sources} - {""})

    @property
    def identity(self) -> Identity:
        return Identity(self.name, self.uuid)


def parse_shutdown_modes(text: str | None) -> list[str]:
    """``acpi,agent`` -> ["acpi", "agent"]; an unknown word is a ValueError."""
    modes = [m.strip() for m in (text or "").split(",") if m.strip()]
    for mode in modes:
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"'{mode}' is not one of {', '.join(SHUTDOWN_MODES)}")
    return modes


def parse_migrate_options(text: str | None) -> tuple[int, str | None]:
    """virsh-style migrate options -> (libvirt flags incl. LIVE, --migrateuri value)."""
    import shlex

    flags, uri = MIGRATE_FLAGS["--live"], None
    words = shlex.split(text or "")
    while words:
        word = words.pop(0)
        if word.startswith("--migrateuri="):
            uri = word.split("=", 1)[1]
        elif word == "--migrateuri" and words:
            uri = words.pop(0)
        elif word in MIGRATE_FLAGS:
            flags |= MIGRATE_FLAGS[word]
        elif word not in MIGRATE_IGNORED:
            raise ValueError(f"unsupported option '{word}'")
    return flags, uri


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
        login = user or ""
        valid = login[:1].isalpha() and login.replace("-", "").isalnum()
        login = f"{login}@" if valid else ""
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

def uri_is_local(uri: str | None) -> bool:
    """True when the URI names this host's hypervisor (no remote host part)."""
    if not uri:
        return True
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    host = rest.split("/", 1)[0]
    return host in ("", "localhost")


def qemu_processes(ident: Identity, proc: str = "/proc") -> list[int]:
    """PIDs of QEMU processes running this domain (by ``-uuid``, else ``guest=<name>``).

    Used only when libvirt cannot be asked, to prove a local domain is gone
    (or that it is not).
    """
    found = []
    want_uuid = (ident.uuid or "").lower()
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        if not args or b"qemu" not in os.path.basename(args[0]):
            continue
        words = [a.decode("utf-8", "replace") for a in args]
        if want_uuid and "-uuid" in words:
            i = words.index("-uuid")
            if i + 1 < len(words) and words[i + 1].lower() == want_uuid:
                found.append(int(entry))
            continue
        if "-name" in words:
            i = words.index("-name")
            value = words[i + 1] if i + 1 < len(words) else ""
            parts = value.split(",")
            names = [p[len("guest="):] for p in parts if p.startswith("guest=")] or parts[:1]
            if ident.name in names:
                found.append(int(entry))
    return found


def end_qemu(ident: Identity, deadline: Deadline, log: Logger | None = None) -> bool:
    """SIGTERM, then SIGKILL, this domain's QEMU processes; True once none is left."""
    import signal
    import time

    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        pids = qemu_processes(ident)
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
        while qemu_processes(ident) and time.monotonic() < end:
            time.sleep(0.1)
    return not qemu_processes(ident)


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
