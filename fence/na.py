"""fence_na: the Node Assassin fence device (Alteeve, TNAP v1.1), spoken natively.

A Node Assassin is a network-attached box of relays wired to each node's
power and reset switches, with a sense line on each node's power feed.  Its
protocol (TNAP) is lines over TCP port 238: ``XX:Y`` where ``XX`` is the
zero-padded node and ``Y`` the state; every reply ends with a line ``EOM``.

* ``00:0`` node states (``- Node 01: P0 R0 F1``, with or without commas:
  P/R = power/reset switch closed, F = feed, 1 = the node has power);
* ``00:1`` device information;
* ``NN:1`` fence (reset, then hold power; latched until released),
  ``NN:0`` release, ``NN:2`` press power 1 s, ``NN:3`` hold power until the
  feed drops.

``mode=naos`` speaks the NaOS 1.0.x firmware instead: no ``EOM``, inverted
states (``NN:0`` fences, ``NN:1`` releases) and no feed sense, so "off" there
means the fence relay reports the node "Fenced!".

Differences from the Perl fence_na 1.1.6 (removed upstream in 2013):

* off polls ``00:0`` until the feed drops, for up to ``power_timeout``
  (default 40 s: the device itself may take 30 s), instead of one look after
  1 s; reboot returns 0 once off is verified even if power-on fails;
* all settings are ordinary options (``ipaddr``, ``ipport``, ``max_nodes``,
  ``aliases``; the 1.1.6 name ``tcp_port`` is accepted for ``ipport``);
  ``fence_na.conf`` is still read when present, but a missing file is not
  an error, and the log file is never truncated;
* the password is never printed (the device has no authentication: login
  and password are only compared with ``fence_na.conf`` when it sets them).
"""

from __future__ import annotations

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
from ocf_lib.params import INTEGER, STRING, Choice, Param, ParamError, ParamType
from ocf_lib.transport import LineTransport, TransportError

DEFAULT_CONF = "/etc/cluster/fence_na.conf"
NODES_MAX = 99  # node numbers are two digits in TNAP
ERROR_WORDS = ("bad command", "message too", "invalid state", "only supports", "error")

class _NodeNames(ParamType):
    """``1=an-node01,2=an-node02`` (``;`` works too) into ``{1: "an-node01", ...}``."""

    doc = "node=name pairs, e.g. 1=an-node01,2=an-node02"

    def convert(self, raw: str, name: str) -> dict[int, str]:
        out: dict[int, str] = {}
        for item in raw.replace(";", ",").split(","):
            if not item.strip():
                continue
            num, eq, alias = item.partition("=")
            num, alias = num.strip(), alias.strip()
            if not (eq and num.isdigit() and alias and 1 <= int(num) <= NODES_MAX):
                raise ParamError(name, raw, f"has '{item.strip()}', not NUMBER=NAME "
                                            f"with a number from 1 to {NODES_MAX}")
            out[int(num)] = alias
        return out


NODE_NAMES: ParamType = _NodeNames()

PARAMS = [
    opt_action(),
    opt_ip(required=True),
    opt_ipport("238", aliases=("tcp_port",)),
    opt_login(),
    *opt_password(),
    *opt_plug(required=False),
    Param("max_nodes", INTEGER(1, 99), order=1,
          shortdesc="Number of nodes wired to the device (default: as the device reports)"),
    Param("aliases", NODE_NAMES, order=1,
          shortdesc="Node names per port, e.g. '1=an-node01,2=an-node02'; a name works as plug"),
    Param("mode", Choice("tnap", "naos"), default="tnap", order=1,
          shortdesc="Protocol: tnap (v1.1, EOM-terminated) or naos (NaOS 1.0.x firmware)"),
    Param("config_file", STRING, default=DEFAULT_CONF, order=1,
          shortdesc="Legacy fence_na.conf, read when present"),
    *opt_common(power_timeout="40"),
]


# -- fence_na.conf ------------------------------------------------------------------


def read_conf(path: str) -> dict[str, str]:
    """``key = value`` lines (``na::1::ipaddr = ...``); ``#`` starts a comment."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                line = line.split("#", 1)[0].strip()
                if "=" in line:
                    key, value = line.split("=", 1)
                    out[key.strip()] = value.strip()
    except FileNotFoundError:
        pass
    return out


def conf_device(conf: dict[str, str], ip: str) -> dict[str, str]:
    """The ``na::N::*`` settings of the device whose ipaddr is ``ip``."""
    for key, value in conf.items():
        parts = key.split("::")
        if len(parts) == 3 and parts[0] == "na" and parts[2] == "ipaddr" \
                and value.lower() == ip.lower():
            prefix = f"na::{parts[1]}::"
            return {k[len(prefix):]: v for k, v in conf.items() if k.startswith(prefix)}
    return {}


class Settings:
    """Options merged with fence_na.conf (given options win)."""

    def __init__(self, ctx: FenceContext) -> None:
        o = ctx.options
        conf = read_conf(o.config_file)
        dev = conf_device(conf, o.ip) if o.ip is not None else {}
        self.conf = conf
        self.port = o.ipport
        if not o.given("ipport") and dev.get("tcp_port", "").isdigit():
            self.port = int(dev["tcp_port"])
        self.max_nodes = o.get("max_nodes")
        if self.max_nodes is None and dev.get("max_nodes", "").isdigit():
            self.max_nodes = int(dev["max_nodes"])
        self.aliases: dict[int, str] = {}
        for key, value in dev.items():
            if key.startswith("alias::") and key[7:].isdigit() and value:
                self.aliases[int(key[7:])] = value
        if o.aliases is not None:
            self.aliases.update(o.aliases)
        self.naos = o.mode == "naos"

    def node(self, plug: str | None) -> int:
        """The node number for a plug: ``1``, ``01`` or an alias."""
        text = (plug or "").strip()
        if text.isdigit():
            num = int(text)
        else:
            names = {v.lower(): k for k, v in self.aliases.items()}
            if text.lower() not in names:
                raise FenceError(f"plug '{text}' is neither a node number nor a known alias")
            num = names[text.lower()]
        top = NODES_MAX if self.max_nodes is None else self.max_nodes
        if not 1 <= num <= top:
            raise FenceError(f"plug '{text}' is out of range (1-{top})")
        return num


def validate(ctx: FenceContext) -> list[str]:
    out = []
    try:
        settings = Settings(ctx)
    except OSError as exc:
        return [f"cannot read {ctx.options.config_file}: {exc}"]
    if ctx.plug is not None and ctx.action not in ("list", "list-status", "monitor"):
        try:
            settings.node(ctx.plug)
        except FenceError as exc:
            out.append(str(exc))
    user = settings.conf.get("system::username")
    password = settings.conf.get("system::password")
    if user and ctx.options.username != user:
        out.append("login does not match system::username in fence_na.conf")
    if password and not ctx.options.get("password_script") \
            and ctx.options.password != password:
        out.append("password does not match system::password in fence_na.conf")
    return out


# -- the device session -------------------------------------------------------------


def parse_states(lines: list[str]) -> dict[int, dict[str, int]]:
    """``- Node 01: P0 R0 F1`` (or ``P0, R0, F1``) into ``{1: {"P": 0, "R": 0, "F": 1}}``.

    NaOS lines (``- Node 01: Running`` / ``Fenced!``) become ``{"F": 1|0, "naos": 1}``.
    """
    out: dict[int, dict[str, int]] = {}
    for line in lines:
        text = line.strip()
        if not text.startswith("- Node ") or ":" not in text:
            continue
        head, _, rest = text[7:].partition(":")
        if not head.strip().isdigit():
            continue
        values: dict[str, int] = {}
        for token in rest.replace(",", " ").split():
            if len(token) >= 2 and token[0] in "PRF" and token[1:].isdigit():
                values[token[0]] = int(token[1:])
        word = rest.strip().lower()
        if not values and word in ("running", "fenced!", "fenced"):
            values = {"F": 1 if word == "running" else 0, "naos": 1}
        if "F" in values:
            out[int(head)] = values
    return out


class Assassin(Session):
    def __init__(self, ctx: FenceContext, settings: Settings, link: LineTransport) -> None:
        self.ctx = ctx
        self.settings = settings
        self.link = link

    def _exchange(self, command: str, *, states: bool = False) -> list[str]:
        """Send one command and read its whole reply (to EOM, or NaOS's last line)."""
        timeout = self.ctx.limit(self.ctx.options.shell_timeout)
        self.ctx.log.debug(f"sending {command}")
        try:
            self.link.send(command)
            if not self.settings.naos:
                lines = self.link.read_until("EOM", timeout)
            elif states:
                lines = self.link.read_until("End Message.", timeout)
            else:
                lines = [self.link.read_line(timeout)]
        except TransportError as exc:
            raise FenceError(f"Node Assassin {command}: {exc}") from None
        for line in lines:
            if any(word in line.lower() for word in ERROR_WORDS):
                raise FenceError(f"Node Assassin refused {command}: {line.strip()}")
        return lines

    def states(self) -> dict[int, dict[str, int]]:
        lines = self._exchange("00:0", states=True)
        found = parse_states(lines)
        if not found:
            raise FenceError("Node Assassin sent no node states in reply to 00:0")
        return found

    def _node_state(self, plug: str | None) -> dict[str, int]:
        num = self.settings.node(plug)
        state = self.states().get(num)
        if state is None:
            raise FenceError(f"Node Assassin reports no node {num:02d}")
        return state

    def status(self, plug: str | None) -> str:
        # Only an explicit F0 is off: anything else may be a running node.
        feed = self._node_state(plug).get("F")
        if feed == 1:
            return "on"
        if feed == 0:
            return "off"
        raise FenceError(f"Node Assassin reports feed F{feed} for node "
                         f"{self.settings.node(plug):02d}: neither on (F1) nor off (F0)")

    def set_power(self, plug: str | None, state: str) -> None:
        num = self.settings.node(plug)
        if self.settings.naos:  # 1.0.x: 0 fences, 1 releases, nothing else
            self._exchange(f"{num:02d}:{0 if state == 'off' else 1}")
            return
        if state == "off":
            self._exchange(f"{num:02d}:1")
            return
        now = self._node_state(plug)
        if now.get("P") or now.get("R"):  # latched by a fence: release first
            self._exchange(f"{num:02d}:0")
        self._exchange(f"{num:02d}:2")

    def list(self) -> dict[str, tuple[str, str | None]]:
        found = self.states()
        count = self.settings.max_nodes or max(found)
        out: dict[str, tuple[str, str | None]] = {}
        for num in range(1, count + 1):
            state = found.get(num)
            power = None if state is None else {1: "on", 0: "off"}.get(state.get("F", -1))
            out[f"{num:02d}"] = (self.settings.aliases.get(num, ""), power)
        return out

    def info(self) -> dict[str, str]:
        """Build Date, Serial Number and NAOS Version from ``00:1``."""
        out = {}
        for line in self._exchange("00:1"):
            for key in ("Build Date", "Serial Number", "NAOS Version"):
                if key in line and line.split():
                    out[key] = line.split()[-1]
        return out

    def close(self) -> None:
        self.link.close()


def connect(ctx: FenceContext) -> Session:
    from ocf_lib.transport import TCPLineTransport

    settings = Settings(ctx)
    timeout = ctx.limit(ctx.options.login_timeout)
    try:
        link = TCPLineTransport(ctx.options.ip, settings.port, timeout)
    except TransportError as exc:
        raise FenceError(f"cannot reach the Node Assassin: {exc}") from None
    session = Assassin(ctx, settings, link)
    if ctx.log.debug_on and not settings.naos:
        ctx.log.debug(f"Node Assassin {ctx.options.ip}: {session.info()}")
    return session


agent = FenceAgent(
    "fence_na",
    shortdesc="Fence agent for Node Assassin over telnet",
    longdesc=(
        "fence_na controls a Node Assassin (Alteeve), a network fence device of relays on "
        "each node's power and reset switches with a sense line on its power feed. It speaks "
        "the TNAP v1.1 protocol on TCP port 238 (or NaOS 1.0.x with mode=naos) and reports a "
        "node off only once the device shows its feed gone."
    ),
    vendor_url="https://alteeve.com/w/Node_Assassin",
    params=PARAMS,
    connect=connect,
    multi_port=True,
    has_list=True,
    validate=validate,
)
