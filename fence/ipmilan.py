"""fence_ipmilan (and fence_ipmilanplus, fence_idrac, fence_ilo3/4/5, fence_imm).

Power fencing through a server's BMC with IPMI over LAN, spoken in-process
(:mod:`ocf_lib.ipmi`, through pyghmi), so no ipmitool process unless a
cipher suite or ``ipmitool_path`` asks for one, and no password in any argv.
One IPMI session carries the whole action: status, off, poll until off, on,
poll.  Options, names and defaults are fence-agents' (the metadata lists the
same parameters in the same order).

Deliberate differences from upstream fence_ipmilan 4.12:

* cipher suites are proposed in a fixed order: the configured one alone,
  else 17 then 3; suite 0 (no authentication) is refused even when asked for,
  and a BMC that accepts none of them gets a clear error instead of a stall;
* ``method=cycle`` on a node that is already off powers it on (upstream
  issue #596: the cycle was refused and reported as "Connection timed out");
  a cycle refused with "not supported in present state" is re-checked the
  same way;
* completion codes are reported in words ("insufficient privilege level
  (0xd4)"), never as a generic failure;
* the state is polled during ``power_wait`` over the open session (each
  poll costs milliseconds), so ``off`` returns as soon as the BMC reports off;
* ``diag`` sends the diagnostic interrupt (NMI, for kdump) and says so: it
  never reports a node as fenced, because it does not power it off;
* ``lanplus=0`` lets the BMC choose (RMCP+ when it has it, else IPMI 1.5 with
  MD5); ``lanplus=1`` insists on RMCP+;
* ``ipmitool_path`` selects an ipmitool backend for quirky BMCs; it gets the
  password through ``IPMI_PASSWORD`` and ``-E`` (the Kg key through ``-K``),
  never ``-P`` / ``-y`` on its command line;
* ``list`` and ``list-status`` print upstream's notice and exit 0 without
  contacting the BMC, as upstream does, but are not advertised in the
  metadata (so Pacemaker checks targets with ``status``, not with a "list"
  that names no node);
* cipher suites other than 17 and 3 go to ipmitool (found on PATH unless
  ``ipmitool_path`` says where), decided before the session starts.
"""

from __future__ import annotations

import sys

from ocf_lib import codes, ipmi
from ocf_lib.fence import (
    FenceAgent,
    FenceContext,
    FenceError,
    Session,
    opt_action,
    opt_common,
    opt_ip,
    opt_ipport,
    opt_login,
    opt_password,
    opt_plug,
)
from ocf_lib.params import BOOLEAN, STRING, Choice, Param, ParamError, ParamType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


class CipherSuite(ParamType):
    """An IPMI 2.0 cipher suite number, 1-17 (suite 0 has no authentication)."""

    fence_type = "string"  # upstream's declaration
    doc = "IPMI cipher suite, 1-17"

    def convert(self, raw: str, name: str) -> int:
        text = raw.strip()
        if not text or not set(text) <= _DIGITS or len(text) > 2 \
                or int(text) not in ipmi.KNOWN_CIPHERS:
            raise ParamError(name, raw, "is not an IPMI cipher suite (0-17)")
        if int(text) == 0:
            raise ParamError(name, raw, "is suite 0 (no authentication), which is never used")
        return int(text)


class HexKey(ParamType):
    """The BMC key Kg as hexadecimal digits: an even number, at most 40 (20 bytes)."""

    doc = "hexadecimal digits, an even number, at most 40"

    def convert(self, raw: str, name: str) -> bytes:
        text = raw.strip()
        if len(text) % 2 or len(text) > 40 or not set(text) <= _HEX:
            raise ParamError(name, raw, "is not an even number of hex digits (at most 40)")
        return bytes.fromhex(text)


class IPMBAddress(ParamType):
    """A 7-bit-shifted IPMB slave address as ipmitool -t takes it: 0x20, 32."""

    doc = "IPMB address, 0x00-0xff or 0-255"

    def convert(self, raw: str, name: str) -> int:
        text = raw.strip()
        digits, base = (text[2:], 16) if text[:2].lower() == "0x" else (text, 10)
        ok = _HEX if base == 16 else _DIGITS
        if not digits or not set(digits) <= ok or len(digits) > 3 or int(digits, base) > 0xFF:
            raise ParamError(name, raw, "is not an IPMB address such as 0x20")
        return int(digits, base)


CIPHER, HEXKEY, IPMB = CipherSuite(), HexKey(), IPMBAddress()

LONGDESC = (
    "fence_ipmilan is a Power Fencing agent which can be used with machines controlled by IPMI. "
    "pyha speaks IPMI over LAN itself (RMCP+ with cipher suite 17 or 3, one session per "
    "action); set ipmitool_path to use ipmitool (http://ipmitool.sf.net/) instead.\n\n"
    "WARNING! This fence agent might report success before the node is powered off, with "
    "method cycle. You should use -m/method onoff if your fence device works correctly with "
    "that option."
)

PARAMS = [
    opt_action(),
    Param("auth", Choice("md5", "password", "none"), getopt="A",
          shortdesc="IPMI Lan Auth type."),
    Param("cipher", CIPHER, getopt="C",
          shortdesc="Ciphersuite to use (same as ipmitool -C parameter)"),
    Param("hexadecimal_kg", HEXKEY, secret=True,
          shortdesc="Hexadecimal-encoded Kg key for IPMIv2 authentication"),
    opt_ip(required=False),
    opt_ipport("623"),
    Param("lanplus", BOOLEAN, default="0", getopt="P",
          shortdesc="Use Lanplus to improve security of connection"),
    Param("method", Choice("onoff", "cycle"), default="onoff", getopt="m",
          shortdesc="Method to fence"),
    *opt_password(),
    *opt_plug(required=False, port_as_ip=True),
    Param("privlvl", Choice("callback", "user", "operator", "administrator"),
          default="administrator", getopt="L", shortdesc="Privilege level on IPMI device"),
    Param("target", IPMB, shortdesc="Bridge IPMI requests to the remote target address"),
    opt_login(),
    *opt_common(power_wait="2"),
    Param("ipmitool_path", STRING, order=200,
          shortdesc="Path to ipmitool binary (unset: pyha speaks IPMI itself)"),
    Param("ipmitool_timeout", STRING, default="2", order=201,
          shortdesc="Timeout (sec) for IPMI operation (ipmitool backend)"),
    Param("use_sudo", BOOLEAN, aliases=("sudo",), order=205,
          shortdesc="Use sudo (without password) when calling 3rd party software"),
    Param("sudo_path", STRING, default="/usr/bin/sudo", order=206,
          shortdesc="Path to sudo binary"),
]


def validate(ctx: FenceContext) -> list[str]:
    o = ctx.options
    out = []
    ip = o.get("ip")
    if not ip:
        out.append("You have to enter fence address")
    elif not ip.isprintable() or " " in ip:
        out.append(f"parameter 'ip': value {ip!r} contains spaces or control characters")
    user = o.get("username", "")
    if len(user.encode()) > 16 or not user.isprintable():
        out.append("parameter 'username': at most 16 printable bytes (IPMI limit)")
    if len(o.get("password", "").encode()) > 20:
        out.append("parameter 'password': longer than 20 bytes (IPMI limit)")
    path = o.get("ipmitool_path")
    if path:
        from ocf_lib.proc import which

        if not path.startswith("/") or not which(path):
            out.append(f"Ipmitool not found or not accessible: {path}")
    elif ip and o.get("cipher") is not None and not ctx.errors:
        try:  # the backend a pinned or foreign suite needs must be there
            ipmi.choose_backend(config(ctx))
        except ipmi.IPMIError as exc:
            out.append(f"parameter 'cipher': {exc}")
    return out


def config(ctx: FenceContext) -> ipmi.IPMIConfig:
    o = ctx.options
    cipher = o.get("cipher")
    ciphers: Sequence[int] = (cipher,) if cipher is not None else ipmi.NATIVE_CIPHERS
    return ipmi.IPMIConfig(
        o.get("ip"), port=o.get("ipport"), username=o.get("username", ""),
        password=o.get("password", ""), privilege=o.get("privlvl"),
        kg=o.get("hexadecimal_kg"), ciphers=ciphers, lanplus=o.get("lanplus"),
        auth=o.get("auth"), target=o.get("target"), ipmitool=o.get("ipmitool_path"),
        ipmitool_timeout=o.get("ipmitool_timeout"),
        sudo=o.get("sudo_path") if o.get("use_sudo") else None)


class IPMIFence(Session):
    """The runtime's seam, carried by one IPMI session."""

    def __init__(self, ctx: FenceContext, session: ipmi.IPMISession) -> None:
        self.ctx = ctx
        self.ipmi = session
        # A request to a BMC that has answered may need several retransmits on a
        # lossy network: give it as long as a power change may take.
        o = ctx.options
        self.request_timeout = ctx.limit(max(o.get("shell_timeout"), o.get("login_timeout"),
                                             o.get("power_timeout")))

    def _limit(self) -> None:
        self.ipmi.timeout = self.ctx.limit(self.request_timeout)

    def status(self, plug: str | None) -> str:
        self._limit()
        try:
            return self.ipmi.power_state()
        except ipmi.IPMIError as exc:
            raise FenceError(str(exc)) from None

    def control(self, request: int) -> None:
        self._limit()
        try:
            self.ipmi.chassis_control(request)
        except ipmi.IPMIError as exc:
            raise FenceError(str(exc)) from None

    def set_power(self, plug: str | None, state: str) -> None:
        self.control(ipmi.POWER_UP if state == "on" else ipmi.POWER_DOWN)

    def cycle(self, plug: str | None) -> bool:
        self._limit()
        try:
            self.ipmi.chassis_control(ipmi.POWER_CYCLE)
        except ipmi.IPMIError as exc:
            if exc.code != 0xD5:
                raise FenceError(str(exc)) from None
            # "Not supported in present state": most BMCs say this when the node
            # is off.  Off is what fencing wants; check it, then power on.
            if self.status(plug) != "off":
                raise FenceError(str(exc)) from None
            self.ctx.log.info("power cycle refused on a node that is off: powering it on")
            try:
                self.set_power(plug, "on")
            except FenceError as on_exc:
                self.ctx.log.warning(f"node is off, but powering it on failed: {on_exc}")
            return True
        self.ctx.log.info("power cycle accepted by the BMC (its completion is not observable)")
        return True

    def close(self) -> None:
        self.ipmi.close()


class _Unlisted(Session):
    """``list`` on a single-target device talks to nothing (as upstream)."""


def connect(ctx: FenceContext) -> Session:
    if ctx.action in UNLISTED:
        return _Unlisted()
    cfg = config(ctx)
    ctx.log.add_secret(cfg.password)
    login = ctx.options.get("login_timeout")
    # An answering BMC on a lossy network may take longer than login_timeout
    # (pyghmi restarts the whole handshake on a lost packet): power_timeout more.
    patience = ctx.limit(login + ctx.options.get("power_timeout"))
    try:
        session = ipmi.open_session(cfg, ctx.limit(login), ctx.log, patience)
    except ipmi.IPMIError as exc:
        raise FenceError(str(exc)) from None
    return IPMIFence(ctx, session)


def diag(ctx: FenceContext, session: Session) -> int:
    """Pulse the diagnostic interrupt (NMI): a crash dump, not a verified fence."""
    assert isinstance(session, IPMIFence)
    if session.status(ctx.plug) != "on":
        raise FenceError("the node is off: a diagnostic interrupt needs a running node")
    session.control(ipmi.DIAG_INTERRUPT)
    sys.stdout.write("Success: Diagnostic interrupt sent (the node was not powered off)\n")
    return codes.FENCE_OK


UNLISTED = ("list", "list-status")


def list_notice(ctx: FenceContext, session: Session) -> int:
    """Upstream's answer to ``list`` on a device without plugs: a notice and 0."""
    sys.stdout.write("NOTICE: List option is not working on this device yet\n")
    return codes.FENCE_OK


agent = FenceAgent(
    "fence_ipmilan",
    shortdesc="Fence agent for IPMI",
    longdesc=LONGDESC,
    params=PARAMS,
    connect=connect,
    aliases={
        "fence_ilo3": "Fence agent for HP iLO3",
        "fence_ilo4": "Fence agent for HP iLO4",
        "fence_ilo5": "Fence agent for HP iLO5",
        "fence_ipmilanplus": "Fence agent for IPMIv2 lanplus",
        "fence_imm": "Fence agent for IBM Integrated Management Module",
        "fence_idrac": "Fence agent for Dell iDRAC",
    },
    alias_defaults={
        "fence_ilo3": {"lanplus": "1", "power_wait": "4"},
        "fence_ilo4": {"lanplus": "1"},
        "fence_ilo5": {"lanplus": "1"},
        "fence_ipmilanplus": {"lanplus": "1"},
    },
    cycle_param="method",
    validate=validate,
    extra_actions={"diag": diag},
    # Advertised, Pacemaker would take the notice for a list of targets.
    unadvertised_actions={"list": list_notice, "list-status": list_notice},
    poll_during_wait=True,
)
