"""The IPMI seam: one small session interface, four implementations.

:class:`IPMISession` is all a fence agent needs from a BMC: read the chassis
power state and send one Chassis Control request, over **one** session that
lives for the whole action.  :func:`open_session` picks the implementation
once, from the configuration and the installed pyghmi, before the first
packet is sent; an action never switches backend half-way.

* :class:`PyghmiCommandSession`: IPMI over LAN in-process through pyghmi's
  public interface (``pyghmi.ipmi.command.Command`` and its ``raw_command``).
  Works with every pyghmi release pyha supports; pyghmi negotiates the cipher
  suite itself (17, else 3).
* :class:`PyghmiSession`: the same protocol through a subclass of pyghmi's
  private session class, used only with the pyghmi releases listed in
  :data:`TUNED_PYGHMI` (each one tested in CI).  It pins the cipher suites,
  keeps login attempts apart, restarts a stalled login within the time
  limit, and imports only pyghmi's session module with :mod:`ocf_lib.aes`
  standing in for cryptography's AES (see docs/design.md, "Fencing: fence_ipmilan").
* :class:`IpmitoolSession`, for ``ipmitool_path``, for cipher suites pyghmi
  does not speak, and for a pinned suite when the tuned session is not
  available.  Each request is one ipmitool run; the password travels in the
  environment (``-E`` / ``IPMI_PASSWORD``), the Kg key likewise (``-K`` /
  ``IPMI_KGKEY``), never as ``-P`` / ``-y``.
* :class:`LoopbackSession`, the test double: an in-memory chassis with
  scripted completion codes, behind the same interface.

Host names are resolved once, in a worker thread under the login deadline
(:func:`resolve`); the backends only ever see a numeric address.

Completion codes and RMCP+ status codes are decoded into words
(:func:`describe_cc`), so an operator reads "insufficient privilege level",
not "0xd4".
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

    from .log import Logger

# Chassis Control (NetFn chassis 0x00, command 0x02) request values.
POWER_DOWN, POWER_UP, POWER_CYCLE, HARD_RESET, DIAG_INTERRUPT, SOFT_OFF = 0, 1, 2, 3, 4, 5
CONTROL_NAMES = {POWER_DOWN: "power down", POWER_UP: "power up", POWER_CYCLE: "power cycle",
                 HARD_RESET: "hard reset", DIAG_INTERRUPT: "diagnostic interrupt",
                 SOFT_OFF: "soft shutdown"}
PRIVILEGES = {"callback": 1, "user": 2, "operator": 3, "administrator": 4}
# Cipher suites that exist in the IPMI 2.0 specification, and the ones pyha's
# native backend speaks (both with AES-CBC-128 confidentiality).  Suite 0 has no
# authentication at all and is never used, whatever the configuration says.
KNOWN_CIPHERS = frozenset(range(0, 18))
NATIVE_CIPHERS = (17, 3)

COMPLETION_CODES = {
    0xC0: "node busy", 0xC1: "invalid command", 0xC2: "command invalid for given LUN",
    0xC3: "timeout while processing command", 0xC4: "out of space",
    0xC5: "reservation cancelled or invalid", 0xC6: "request data truncated",
    0xC7: "request data length invalid", 0xC8: "request data field length limit exceeded",
    0xC9: "parameter out of range", 0xCA: "cannot return number of requested data bytes",
    0xCB: "requested sensor, data or record not present", 0xCC: "invalid data field in request",
    0xCD: "command illegal for specified sensor or record type",
    0xCE: "command response could not be provided", 0xCF: "cannot execute duplicated request",
    0xD0: "SDR repository in update mode", 0xD1: "device in firmware update mode",
    0xD2: "BMC initialization in progress", 0xD3: "destination unavailable",
    0xD4: "insufficient privilege level", 0xD5: "command not supported in present state",
    0xD6: "command sub-function disabled or unavailable", 0xFF: "unspecified error",
}
# What ipmitool prints for the codes that matter to fencing (its backend maps back).
_IPMITOOL_TEXT = {
    "insufficient privilege level": 0xD4,
    "command not supported in present state": 0xD5,
    "invalid data field in request": 0xCC,
    "node busy": 0xC0,
    "invalid command": 0xC1,
    "destination unavailable": 0xD3,
}


def describe_cc(code: int) -> str:
    return f"{COMPLETION_CODES.get(code, 'unknown completion code')} (0x{code:02x})"


class IPMIError(Exception):
    """A BMC request failed; ``code`` is the completion code when the BMC sent one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class IPMITimeout(IPMIError):
    """The BMC did not answer in time (message contains "timed out" for Pacemaker)."""


class IPMIConfig:
    """Everything needed to reach one BMC; ``password`` and ``kg`` are secrets."""

    def __init__(self, host: str, *, port: int = 623, username: str = "", password: str = "",
                 privilege: str = "administrator", kg: bytes | None = None,
                 ciphers: Sequence[int] = NATIVE_CIPHERS, lanplus: bool = True,
                 auth: str | None = None, target: int | None = None,
                 ipmitool: str | None = None, ipmitool_timeout: str = "2",
                 sudo: str | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.privilege = privilege
        self.kg = kg
        self.ciphers = tuple(c for c in ciphers if c != 0)
        self.lanplus = lanplus
        self.auth = auth
        self.target = target
        self.ipmitool = ipmitool
        self.ipmitool_timeout = ipmitool_timeout
        self.sudo = sudo
        self.address = host  # numeric, once open_session has resolved host


class IPMISession:
    """One session with one BMC; ``timeout`` limits each request (seconds)."""

    timeout = 5.0

    def power_state(self) -> str:
        """``"on"`` or ``"off"`` from Get Chassis Status; IPMIError otherwise."""
        raise NotImplementedError

    def chassis_control(self, request: int) -> None:
        """Send Chassis Control; IPMIError (with the completion code) when refused."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# pyghmi releases whose private session class PyghmiSession subclasses: each is
# tested in CI (tests/pyghmi-versions.txt).  Any other release gets the public
# interface.
TUNED_PYGHMI = frozenset({"1.5.34", "1.5.70", "1.6.19"})
_version: list[str | None] = []


def pyghmi_version() -> str | None:
    """The installed pyghmi's version, from its distribution metadata's directory name.

    pyghmi's own ``pyghmi.version`` imports pbr and importlib.metadata, a cost
    every fence action would pay; the ``pyghmi-X.Y.Z.dist-info`` / ``.egg-info``
    entry next to the package says the same.  None when pyghmi is missing or unlabelled.
    """
    if _version:
        return _version[0]
    _version.append(_find_version())
    return _version[0]


def _find_version() -> str | None:
    from .lazy import need

    try:
        pkg = need("pyghmi")
    except ImportError:
        return None
    where = os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__ or "")))
    try:
        names = os.listdir(where)
    except OSError:
        return None
    for name in sorted(names):
        for suffix in (".dist-info", ".egg-info"):
            if name.startswith("pyghmi-") and name.endswith(suffix):
                version = name[len("pyghmi-"):-len(suffix)]
                return version.split("-")[0]  # egg-info may carry "-py3.11"
    return None


def resolve(host: str, timeout: float) -> str:
    """A numeric address for ``host``: literals as they are, names through the
    resolver in a worker thread, abandoned after ``timeout`` seconds (a dead DNS
    server would otherwise hold the action in getaddrinfo for the resolver's
    timeout, per try)."""
    import _socket

    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
            return host
        except (OSError, ValueError):
            pass
    import threading

    found: list[Any] = []

    def lookup() -> None:
        try:
            found.append(_socket.getaddrinfo(host, None, 0, _socket.SOCK_DGRAM))
        except (OSError, UnicodeError, ValueError) as exc:
            found.append(exc)

    worker = threading.Thread(target=lookup, name="resolve", daemon=True)
    worker.start()
    worker.join(max(0.05, timeout))
    if not found:
        raise IPMITimeout(f"resolving {host!r} timed out after {timeout:.1f}s "
                          "(the DNS server does not answer)")
    result = found[0]
    if isinstance(result, Exception):
        why = result.args[-1] if result.args else type(result).__name__
        raise IPMIError(f"cannot resolve {host!r}: {why}")
    addrs = [entry[4][0] for entry in result]
    v4 = [a for a in addrs if ":" not in a]
    return (v4 or addrs)[0]


def choose_backend(cfg: IPMIConfig, version: str | None = None) -> str:
    """``"ipmitool"``, ``"tuned"`` or ``"public"``, decided before any packet is sent.

    ipmitool when the configuration names it, when the cipher suite is one
    pyghmi does not speak, or when a suite is pinned but only pyghmi's public
    interface is available (it proposes 17, then 3, and has no knob).
    ``version`` is the installed pyghmi's unless given.
    """
    if cfg.ipmitool:
        return "ipmitool"
    pinned = tuple(cfg.ciphers) != NATIVE_CIPHERS
    native = all(c in NATIVE_CIPHERS for c in cfg.ciphers)
    if native and version is None:
        version = pyghmi_version()
    if native and version in TUNED_PYGHMI:
        return "tuned"
    if native and not pinned:
        return "public"
    from .proc import which

    tool = which("ipmitool")
    if tool is None:
        suite = cfg.ciphers[0] if cfg.ciphers else 0
        why = ("pyha speaks suites 17 and 3 natively" if not native else
               f"pyghmi {version or '(unknown version)'} cannot be told which suite to use")
        raise IPMIError(f"cipher suite {suite} needs ipmitool ({why}), and ipmitool is not "
                        "installed; install it or set ipmitool_path")
    cfg.ipmitool = tool
    return "ipmitool"


def open_session(cfg: IPMIConfig, timeout: float, log: Logger,
                 patience: float | None = None) -> IPMISession:
    """The backend :func:`choose_backend` names, logged in.

    ``timeout`` bounds the name lookup and the login while the BMC has not
    answered at all; once it has (it is there, the network is only lossy),
    logging in may go on for up to ``patience`` seconds (tuned backend).
    """
    started = time.monotonic()
    backend = choose_backend(cfg)
    cfg.address = resolve(cfg.host, timeout)
    timeout = max(0.05, timeout - (time.monotonic() - started))
    if backend == "ipmitool":
        log.debug(f"IPMI backend: ipmitool ({cfg.ipmitool})")
        return IpmitoolSession(cfg, timeout, log)
    if backend == "tuned":
        return PyghmiSession(cfg, timeout, log, patience, pyghmi_version() or "")
    return PyghmiCommandSession(cfg, timeout, log, patience)


# -- time limits around pyghmi -------------------------------------------------------
# Left alone, pyghmi's own retransmit schedule, not the caller's limit, decides
# how long a dead BMC takes to fail.  A real-time alarm keeps every call inside
# the caller's limit instead; the session is abandoned then.


class _Alarm:
    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = max(0.05, seconds)
        self.what = what

    def _fire(self, signum: int, frame: Any) -> None:
        raise IPMITimeout(f"{self.what}: timed out after {self.seconds:.1f}s")

    def __enter__(self) -> _Alarm:
        import _signal  # the C module: ``signal`` would pull in enum

        self._old = _signal.signal(_signal.SIGALRM, self._fire)
        _signal.setitimer(_signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        import _signal

        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _signal.signal(_signal.SIGALRM, self._old)


def _pyghmi_session_class(version: str, ciphers: Sequence[int], tried: list[int],
                          answered: list[bool]) -> Any:
    """A pyghmi Session (of a release in TUNED_PYGHMI) that proposes exactly
    ``ciphers``, in that order, with fresh session IDs for every attempt.

    pyghmi proposes suite 17 (SHA-256) and falls back to 3 (SHA-1) when the
    BMC refuses; it has no knob for either, so a subclass sets the starting
    suite and stops the fallback when only one suite is allowed.
    """
    from .aes import install
    from .lazy import need

    install()  # AES-CBC from libcrypto instead of cryptography's whole OpenSSL backend
    base = need("pyghmi.ipmi.private.session").Session
    hash_of = {17: 256, 3: 1}
    order = [hash_of[c] for c in ciphers]  # shared by the attempts of one login
    proposed: dict[int, int] = {}  # RMCP+ message tag -> suite proposed with it

    module = sys.modules[base.__module__]

    class Session(base):  # type: ignore[misc, valid-type]
        def _initsession(self) -> None:
            super()._initsession()
            self.attemptedhash = order[0]
            # pyghmi starts every login with the same session ID and tag, so a
            # late reply to an abandoned attempt would pass for the current
            # one; random ones keep attempts apart.
            rnd = int.from_bytes(os.urandom(5), "little")
            self.localsid = rnd & 0x7FFFFFFF
            self.rmcptag = 1 + (rnd >> 32) % 200

        def _got_channel_auth_cap(self, response: Any) -> Any:
            if "error" not in response:
                answered[0] = True  # a BMC is there
            return super()._got_channel_auth_cap(response)

        def _open_rmcpplus_request(self) -> None:
            suite = 17 if self.attemptedhash == 256 else 3
            if not tried or tried[-1] != suite:
                tried.append(suite)
            super()._open_rmcpplus_request()
            proposed[self.rmcptag] = suite

        def _got_rmcp_response(self, data: Any) -> Any:
            if data[1] != 0:
                # A refusal, perhaps late, of a suite: never propose it again.
                if proposed.get(data[0]) == 17 and 256 in order and len(order) > 1:
                    order.remove(256)
                if data[0] == self.rmcptag and not (self.attemptedhash == 256 and 1 in order):
                    self.attemptedhash = -1  # refused, and nothing left to propose
            return super()._got_rmcp_response(data)

    if version == "1.5.34":
        class Session134(Session):
            def awaitresponse(self, retry: Any) -> None:
                # pyghmi's I/O thread may take the reply off the socket before this
                # thread has queued its wait; the reply then sits in pktqueue until
                # the retransmit timer (0.5-1 s) wakes us.  Look at pktqueue first,
                # and wait in short slices.
                while retry and self.lastresponse is None and self.logged:
                    self.process_pktqueue()
                    if self.lastresponse is not None:
                        break
                    left = self.expiration - module._monotonic_time()
                    module._io_wait(max(0.0, min(left, 0.02)), self.sockaddr)
                    while self.iterwaiters:
                        self.iterwaiters.pop()({"success": True})
                    self.process_pktqueue()
                    with module.util.protect(module.WAITING_SESSIONS):
                        if (self in self.waiting_sessions
                                and self.expiration < module._monotonic_time()):
                            self.waiting_sessions.pop(self, None)
                            self._timedout()

        return Session134

    class Session170(Session):
        def awaitresponse(self, retry: Any, netfn: int, command: int) -> Any:
            # As in 1.5.34, a reply the I/O thread queued before this thread
            # registered its wait sits there until the retransmit timer: poll
            # the queue in short slices up to that timer, then let pyghmi's
            # own loop handle retransmits and re-logins.
            clock = module._monotonic_time
            while retry and module.unmatched(self.lastresponse, netfn, command):
                self.process_pktqueue()
                left = self.expiration - clock()
                if not module.unmatched(self.lastresponse, netfn, command) or left <= 0:
                    break
                module._io_wait(min(left, 0.02), self.sockaddr)
            return super().awaitresponse(retry, netfn, command)

    return Session170


def _retryable(text: str) -> bool:
    """A failed login that says nothing about credentials, privilege or ciphers."""
    low = text.lower()
    return "timeout" in low or "timed out" in low or low in ("", "none")


def _lost(text: str) -> bool:
    """pyghmi's words for a session that stopped answering."""
    low = text.lower()
    return "timeout" in low or "no longer connected" in low


def _forget_login(cls: Any, cfg: IPMIConfig) -> None:
    """Drop an abandoned login from pyghmi's per-process session registries.

    pyghmi hands a new Session for the same BMC and credentials the one still
    logging in; a fresh attempt must start from scratch.
    """
    key = (cfg.address, cfg.username, cfg.password, cfg.port, cfg.kg)
    stale = cls.initting_sessions.pop(key, None)
    if stale is not None:
        stale.broken = True
        stale.logging = False
    for addr, ports in list(cls.bmc_handlers.items()):
        for port, sess in list(ports.items()):
            if sess is stale or not getattr(sess, "logged", 0):
                del ports[port]
        if not ports:
            del cls.bmc_handlers[addr]


class _PyghmiBase(IPMISession):
    """What both pyghmi backends share: error wording and reply decoding."""

    cfg: IPMIConfig
    log: Logger
    tried: list[int]
    _exc: type[Exception]  # pyghmi's IpmiException

    def _login_reason(self, text: str) -> str:
        host = f"{self.cfg.host}:{self.cfg.port}"
        low = text.lower()
        if "timeout" in low or "timed out" in low or "no longer connected" in low and \
                not self.tried:
            return f"IPMI login to {host} timed out: the BMC did not answer"
        if "password" in low or "unauthorized name" in low:
            return f"IPMI login to {host} failed: wrong user name or password ({text})"
        if self.tried and ("algorithm" in low or "cipher" in low or "no matching" in low):
            tried = ", ".join(str(c) for c in self.tried)
            return (f"IPMI login to {host} failed: the BMC accepts none of the cipher suites "
                    f"pyha allows (tried {tried}; suite 0 is never used): {text}")
        if "privilege" in low or "role" in low or "no longer connected" in low:
            return (f"IPMI login to {host} failed: the BMC refused privilege level "
                    f"'{self.cfg.privilege}' for user '{self.cfg.username}' ({text})")
        return f"IPMI login to {host} failed: {text}"

    def _login_error(self, exc: Exception) -> IPMIError:
        """The one reason line for a login that raised ``exc`` and is not retried."""
        what = f"IPMI login to {self.cfg.host}:{self.cfg.port}"
        if isinstance(exc, self._exc):
            return IPMIError(self._login_reason(str(exc)))
        if isinstance(exc, OSError):
            return IPMIError(f"{what} failed: {exc}")
        # pyghmi choking on a reply it did not expect
        return IPMIError(f"{what} failed: pyghmi could not handle the BMC's reply "
                         f"({type(exc).__name__}: {exc})")

    def _request_error(self, label: str, exc: Exception) -> IPMIError:
        """A pyghmi exception from a request: a lost session is a timeout."""
        text = str(exc)
        if _lost(text):
            return IPMITimeout(f"{label} timed out ({text})")
        return IPMIError(f"{label} failed: {text}")

    def _check_granted(self, version: float | None) -> None:
        """Refuse a session the configuration does not allow; ``None``: not known."""
        cfg = self.cfg
        if version in (None, 2.0):
            return
        if cfg.lanplus:
            why = f"{cfg.host} offers no IPMI 2.0 (RMCP+) session, but lanplus is set"
        elif cfg.auth not in (None, "md5"):
            why = (f"IPMI 1.5 auth type '{cfg.auth}' is not available natively "
                   "(pyha speaks md5); set ipmitool_path to use ipmitool")
        else:
            return
        self.close()
        raise IPMIError(why)

    def _logout(self, logout: Any) -> None:
        try:
            with _Alarm(min(self.timeout, 2.0), "IPMI logout"):
                logout()
        except Exception as exc:  # noqa: BLE001 - a failed Close Session changes nothing
            self.log.debug(f"IPMI logout from {self.cfg.host}: {exc}")

    def _decode(self, rsp: Any, what: str) -> bytes:
        code = rsp.get("code", 0) if isinstance(rsp, dict) else 0
        if isinstance(rsp, dict) and "error" in rsp and not code:
            raise IPMIError(f"IPMI {what} on {self.cfg.host} failed: {rsp['error']}")
        if code:
            if code == 0xFFFF:
                raise IPMITimeout(f"IPMI {what} on {self.cfg.host} timed out")
            raise IPMIError(f"{self.cfg.host} refused {what}: {describe_cc(code)}", code)
        return bytes(rsp.get("data", b"")) if isinstance(rsp, dict) else b""

    def _request(self, netfn: int, command: int, data: Sequence[int], what: str,
                 idempotent: bool = True) -> bytes:
        raise NotImplementedError

    def power_state(self) -> str:
        data = self._request(0x00, 0x01, (), "Get Chassis Status")
        if not data:
            raise IPMIError(f"{self.cfg.host} sent an empty Get Chassis Status reply")
        return "on" if data[0] & 1 else "off"

    def chassis_control(self, request: int) -> None:
        self._request(0x00, 0x02, (request,), f"Chassis Control ({CONTROL_NAMES[request]})",
                      idempotent=request in (POWER_DOWN, POWER_UP))


class PyghmiCommandSession(_PyghmiBase):
    """pyghmi's public interface: ``Command`` logs in, ``raw_command`` asks.

    Each call runs under a real-time alarm; when it fires the session is
    abandoned (pyghmi retransmits and re-logs in on its own within the call).
    """

    cmd: Any

    def __init__(self, cfg: IPMIConfig, timeout: float, log: Logger,
                 patience: float | None = None) -> None:
        from .lazy import need

        command = need("pyghmi.ipmi.command")
        self._exc = need("pyghmi.exceptions").IpmiException
        self.cfg = cfg
        self.log = log
        self.timeout = timeout
        self.tried = []
        self.cmd = None
        self.bridge: Any = {"addr": cfg.target, "channel": 0} if cfg.target is not None else ()
        self._command = command
        self.patience = patience
        started = time.monotonic()
        self._login(timeout)
        # Read-only, and absent-safe: which IPMI version the BMC granted.
        version = getattr(self.cmd.ipmi_session, "ipmiversion", None)
        self._check_granted(version)
        log.debug(f"IPMI session with {cfg.host}:{cfg.port} as '{cfg.username}' "
                  f"({cfg.privilege}, pyghmi public interface, IPMI {version or '?'}) "
                  f"in {time.monotonic() - started:.3f}s")

    def _login(self, timeout: float) -> None:
        started = time.monotonic()
        end = started + timeout
        cfg, log, patience = self.cfg, self.log, self.patience
        what = f"IPMI login to {cfg.host}:{cfg.port}"
        while True:
            try:
                with _Alarm(end - time.monotonic(), what):
                    self.cmd = self._command.Command(
                        bmc=cfg.address, userid=cfg.username, password=cfg.password,
                        port=cfg.port, kg=cfg.kg, privlevel=PRIVILEGES[cfg.privilege],
                        keepalive=False)
                break
            except IPMITimeout:
                raise IPMITimeout(f"{what}: timed out after {timeout:.1f}s") from None
            except self._exc as exc:
                # pyghmi gave up on a login the BMC had answered (a lost RAKP
                # packet on a lossy network): pyghmi has dropped that session,
                # so a new Command starts afresh, within ``patience``.
                text = str(exc)
                if text in ("", "None") and patience:
                    end = max(end, started + patience)
                if text in ("", "None") and end - time.monotonic() >= 0.5:
                    log.debug(f"{what}: failed without a reason, starting again")
                    continue
                raise self._login_error(exc) from None
            except Exception as exc:  # noqa: BLE001 - every other failure, in words
                raise self._login_error(exc) from None

    def _request(self, netfn: int, command: int, data: Sequence[int], what: str,
                 idempotent: bool = True) -> bytes:
        label = f"IPMI {what} on {self.cfg.host}"
        end = time.monotonic() + self.timeout
        while True:
            if self.cmd is None:
                raise IPMIError("IPMI session is closed")
            try:
                with _Alarm(end - time.monotonic(), label):
                    rsp = self.cmd.raw_command(netfn=netfn, command=command, data=list(data),
                                               bridge_request=self.bridge)
                return self._decode(rsp, what)
            except IPMITimeout:
                self.cmd = None  # interrupted mid-request: never reuse it
                raise IPMITimeout(f"{label}: timed out after {self.timeout:.1f}s") from None
            except self._exc as exc:
                err = self._request_error(label, exc)
                if not isinstance(err, IPMITimeout) or not idempotent \
                        or end - time.monotonic() < 1.0:
                    raise err from None
            # pyghmi dropped the session on a lossy network: log in again and
            # repeat the request, which is safe to do twice.
            self.log.debug(f"{label}: session lost, logging in again")
            self._login(end - time.monotonic())

    def close(self) -> None:
        cmd, self.cmd = self.cmd, None
        if cmd is not None:
            self._logout(cmd.ipmi_session.logout)


class PyghmiSession(_PyghmiBase):
    """The tuned session: a subclass of the private session class of a pyghmi
    release in TUNED_PYGHMI (``version``), see :func:`_pyghmi_session_class`."""

    def __init__(self, cfg: IPMIConfig, timeout: float, log: Logger,
                 patience: float | None, version: str) -> None:
        from .lazy import need

        self.cfg = cfg
        self.log = log
        self.timeout = timeout
        self.sess: Any = None
        self.tried: list[int] = []
        bridge = None
        if cfg.target is not None:
            bridge = {"addr": cfg.target, "channel": 0}
        self.bridge = bridge
        answered = [False]
        cls = _pyghmi_session_class(version, cfg.ciphers, self.tried, answered)
        self._exc = need("pyghmi.exceptions").IpmiException
        started = time.monotonic()
        end = started + timeout
        what = f"IPMI login to {cfg.host}:{cfg.port}"
        # A login is five round trips.  pyghmi retransmits a lost request, but a
        # lost packet in the RAKP exchange often leaves its handshake waiting for
        # good on a lossy network; so a login attempt gets a
        # short, growing share of login_timeout (1 s, 1.5 s, 2 s...: a healthy
        # login takes milliseconds, a slow BMC gets longer tries) and is started
        # afresh while time is left.
        share = 0.5
        while True:
            if answered[0] and patience:
                end = max(end, started + patience)
            left = end - time.monotonic()
            share += 0.5
            try:
                with _Alarm(min(share, left), what):
                    self.sess = cls(cfg.address, cfg.username, cfg.password, port=cfg.port,
                                    kg=cfg.kg, privlevel=PRIVILEGES[cfg.privilege],
                                    keepalive=False)
                break
            except IPMITimeout:
                _forget_login(cls, cfg)
                if end - time.monotonic() < 0.5:
                    raise IPMITimeout(f"{what}: timed out after {timeout:.1f}s") from None
                log.debug(f"{what}: no answer within {min(share, left):.1f}s, starting again")
            except self._exc as exc:
                text = str(exc)
                if _retryable(text) and end - time.monotonic() >= 0.5:
                    _forget_login(cls, cfg)
                    log.debug(f"{what}: {text}, starting again")
                    continue
                raise self._login_error(exc) from None
            except Exception as exc:  # noqa: BLE001 - every other failure, in words
                raise self._login_error(exc) from None
        granted = getattr(self.sess, "ipmiversion", None) or 2.0
        suite = self.tried[-1] if self.tried else None
        self._check_granted(granted)
        kind = f"RMCP+ cipher suite {suite}" if granted == 2.0 else "IPMI 1.5 (MD5)"
        log.debug(f"IPMI session with {cfg.host}:{cfg.port} as '{cfg.username}' "
                  f"({cfg.privilege}, {kind}, tuned pyghmi {version} session) "
                  f"in {time.monotonic() - started:.3f}s")

    def _request(self, netfn: int, command: int, data: Sequence[int], what: str,
                 idempotent: bool = True) -> bytes:
        if self.sess is None:
            raise IPMIError("IPMI session is closed")
        label = f"IPMI {what} on {self.cfg.host}"
        end = time.monotonic() + self.timeout
        while True:
            # pyghmi retransmits a lost request, but a late duplicate reply can
            # cancel its retransmit timer; an idempotent request is then sent
            # again after a slice of the time limit.
            left = end - time.monotonic()
            slice_ = min(left, 2.5) if idempotent else left
            try:
                with _Alarm(slice_, label):
                    rsp = self.sess.raw_command(netfn=netfn, command=command,
                                                data=list(data), bridge_request=self.bridge)
                break
            except IPMITimeout:
                if end - time.monotonic() < 0.2:
                    raise IPMITimeout(f"{label}: timed out after {self.timeout:.1f}s") from None
                self._abandon_request()
                self.log.debug(f"{label}: no reply within {slice_:.1f}s, sending it again")
            except self._exc as exc:
                raise self._request_error(label, exc) from None
        return self._decode(rsp, what)

    def _abandon_request(self) -> None:
        """Forget the request an alarm interrupted, so the session takes a new one."""
        sess = self.sess
        sess.incommand = False
        sess.lastpayload = None
        sess.onlogpayload = None  # 1.5.70+: else a re-login would send it again
        sess.lastresponse = None
        module = next(sys.modules[k.__module__] for k in type(sess).__mro__
                      if k.__module__.startswith("pyghmi."))
        with module.util.protect(module.WAITING_SESSIONS):
            sess.waiting_sessions.pop(sess, None)
        while sess.evq:
            sess.evq.popleft().set()

    def close(self) -> None:
        sess, self.sess = self.sess, None
        if sess is not None:
            self._logout(sess.logout)


# -- ipmitool backend ----------------------------------------------------------------


class IpmitoolSession(IPMISession):
    """One ipmitool run per request; secrets in the child's environment only."""

    def __init__(self, cfg: IPMIConfig, timeout: float, log: Logger) -> None:
        from .proc import which

        if not which(cfg.ipmitool or ""):
            raise IPMIError(f"ipmitool not found or not executable: {cfg.ipmitool}")
        self.cfg = cfg
        self.log = log
        self.timeout = timeout
        self.cipher: int | None = None
        self._fresh = ""
        if cfg.lanplus:
            self.cipher = self._negotiate()

    def _argv(self, cipher: int | None, *command: str) -> list[str]:
        c = self.cfg
        argv = [c.sudo, "-n", "--preserve-env=IPMI_PASSWORD,IPMI_KGKEY"] if c.sudo else []
        argv += [c.ipmitool or "ipmitool", "-I", "lanplus" if c.lanplus else "lan",
                 "-H", c.address, "-p", str(c.port)]
        if c.target is not None:
            argv += ["-t", f"0x{c.target:02x}"]
        if c.username:
            argv += ["-U", c.username]
        if c.auth and not c.lanplus:
            argv += ["-A", c.auth.upper()]
        argv += ["-E"]
        if c.kg is not None:
            argv += ["-K"]
        if cipher is not None:
            argv += ["-C", str(cipher)]
        argv += ["-L", c.privilege.upper(), "-N", str(c.ipmitool_timeout), *command]
        return argv

    def _run(self, cipher: int | None, *command: str) -> tuple[int, str]:
        from .proc import CommandTimeout, run

        env = {"IPMI_PASSWORD": self.cfg.password}
        if self.cfg.kg is not None:
            if b"\0" in self.cfg.kg:
                raise IPMIError("ipmitool cannot take a Kg key containing a zero byte")
            env["IPMI_KGKEY"] = os.fsdecode(self.cfg.kg)
        secrets = [self.cfg.password] if self.cfg.password else []
        try:
            res = run(self._argv(cipher, *command), timeout=self.timeout, extra_env=env,
                      log=self.log, secrets=secrets, quiet=True)
        except CommandTimeout:
            raise IPMITimeout(f"ipmitool {' '.join(command)} on {self.cfg.host} timed out") \
                from None
        return res.rc, (res.out + "\n" + res.err)

    def _negotiate(self) -> int:
        tried = []
        last = ""
        for cipher in self.cfg.ciphers:
            tried.append(str(cipher))
            rc, text = self._run(cipher, "chassis", "power", "status")
            if rc == 0 and "chassis power is" in text.lower():
                self.log.debug(f"ipmitool: cipher suite {cipher} works with {self.cfg.host}")
                self._fresh = text  # the runtime's first status read: no second run
                return cipher
            last = _last_line(text)
            if "cipher" not in text.lower() and "rakp" not in text.lower() \
                    and "algorithm" not in text.lower():
                raise IPMIError(f"IPMI login to {self.cfg.host} failed: {last}")
        raise IPMIError(f"IPMI login to {self.cfg.host} failed: the BMC accepts none of the "
                        f"cipher suites allowed (tried {', '.join(tried)}): {last}")

    def power_state(self) -> str:
        text, self._fresh = self._fresh, ""
        if not text:
            text = self._run(self.cipher, "chassis", "power", "status")[1]
        low = text.lower()
        for state in ("on", "off"):
            if f"chassis power is {state}" in low:
                return state
        raise IPMIError(f"ipmitool could not read the power state of {self.cfg.host}: "
                        f"{_last_line(text)}", _code_from_text(low))

    def chassis_control(self, request: int) -> None:
        word = {POWER_DOWN: "off", POWER_UP: "on", POWER_CYCLE: "cycle", HARD_RESET: "reset",
                DIAG_INTERRUPT: "diag", SOFT_OFF: "soft"}[request]
        rc, text = self._run(self.cipher, "chassis", "power", word)
        if rc != 0 or "chassis power control" not in text.lower():
            code = _code_from_text(text.lower())
            why = describe_cc(code) if code is not None else _last_line(text)
            raise IPMIError(f"{self.cfg.host} refused Chassis Control "
                            f"({CONTROL_NAMES[request]}): {why}", code)


def _code_from_text(text: str) -> int | None:
    for words, code in _IPMITOOL_TEXT.items():
        if words in text:
            return code
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# -- the test double -------------------------------------------------------------------


class LoopbackBMC:
    """An in-memory chassis: ``refuse[request] = completion code`` scripts failures."""

    def __init__(self, power: str = "on", *, stuck: bool = False) -> None:
        self.power = power
        self.stuck = stuck  # accepts power down but never goes off
        self.refuse: dict[int, int] = {}
        self.requests: list[int] = []

    def control(self, request: int) -> None:
        self.requests.append(request)
        if request in self.refuse:
            raise IPMIError(f"loopback refused: {describe_cc(self.refuse[request])}",
                            self.refuse[request])
        if request == POWER_CYCLE and self.power == "off":
            raise IPMIError(f"loopback refused: {describe_cc(0xD5)}", 0xD5)
        if request in (POWER_DOWN, SOFT_OFF) and not self.stuck:
            self.power = "off"
        elif request in (POWER_UP, POWER_CYCLE, HARD_RESET):
            self.power = "on"


class LoopbackSession(IPMISession):
    def __init__(self, bmc: LoopbackBMC) -> None:
        self.bmc = bmc
        self.closed = False

    def power_state(self) -> str:
        if self.closed:
            raise IPMIError("loopback session closed")
        return self.bmc.power

    def chassis_control(self, request: int) -> None:
        if self.closed:
            raise IPMIError("loopback session closed")
        self.bmc.control(request)

    def close(self) -> None:
        self.closed = True


def iter_ciphers(configured: str | None) -> Iterator[int]:
    """The proposal order: the configured suite alone, else 17 then 3."""
    if configured:
        yield int(configured)
    else:
        yield from NATIVE_CIPHERS
