"""fence_pyhatest: a multi-port power switch model behind the real fence seam.

The *device* is :class:`PowerSwitch`, a small model of a networked power
switch that speaks a line protocol (``LOGIN user pass``, ``STATUS plug``,
``SET plug on|off``, ``LIST`` ... ``END``).  Its state lives in a JSON file
(the ``device`` option) so that separate executions of the agent, as the
cluster makes them, see one device.  Like real switches it can be slow
(``lag``: status polls before a change shows), refuse power-on
(``on_fails``), accept a command and ignore it (``ignore_off``), or be
unreachable, or refuse a power cycle (``no_cycle``).  The *agent* side is an
ordinary :class:`Session` over a :class:`LoopbackTransport`: the runtime under
test cannot tell it from a real device.
"""

from __future__ import annotations

import json

from ocf_lib.fence import (
    FenceAgent,
    FenceContext,
    FenceError,
    Session,
    opt_action,
    opt_common,
    opt_login,
    opt_password,
    opt_plug,
)
from ocf_lib.params import PATH, Choice, Param
from ocf_lib.transport import LoopbackTransport, TransportError


class PowerSwitch:
    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, encoding="utf-8") as handle:
            self.state = json.load(handle)
        self.authed = False

    def save(self) -> None:
        with open(self.path, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle)

    def handle(self, line: str) -> list[str]:
        """One request line in, the reply lines out."""
        s = self.state
        s.setdefault("log", []).append(line.split(" ")[0] if line.startswith("LOGIN") else line)
        words = line.split()
        try:
            if not words:
                return ["ERR empty"]
            if words[0] == "LOGIN":
                self.authed = words[1:] == [s.get("user", "admin"), s.get("password", "")]
                return ["OK" if self.authed else "DENIED"]
            if not self.authed:
                return ["DENIED"]
            if words[0] == "LIST":
                return [f"{p} {p}-alias {self._shown(p)}" for p in sorted(s["plugs"])] + ["END"]
            plug = words[1]
            if plug not in s["plugs"]:
                return ["ERR no such plug"]
            if words[0] == "STATUS":
                return [self._shown(plug).upper()]
            if words[0] == "CYCLE":
                if s.get("no_cycle"):
                    return ["ERR cycle not supported"]
                s.setdefault("pending", {})[plug] = ["on", int(s.get("lag", 0))]
                s["plugs"][plug] = "off"
                s["cycles"] = s.get("cycles", 0) + 1
                return ["OK"]
            if words[0] == "SET" and words[2] in ("on", "off"):
                if words[2] == "on" and s.get("on_fails"):
                    return ["ERR power on failed"]
                if words[2] == "off" and s.get("ignore_off"):
                    return ["OK"]
                s.setdefault("pending", {})[plug] = [words[2], int(s.get("lag", 0))]
                return ["OK"]
            return ["ERR bad command"]
        finally:
            self.save()

    def _shown(self, plug: str) -> str:
        """What a status query reports: the old state until ``lag`` polls have passed."""
        s = self.state
        pending = s.get("pending", {}).get(plug)
        if pending:
            if pending[1] <= 0:
                s["plugs"][plug] = pending[0]
                del s["pending"][plug]
            else:
                pending[1] -= 1
        return str(s["plugs"][plug])


class SwitchSession(Session):
    def __init__(self, ctx: FenceContext) -> None:
        self.ctx = ctx
        device = PowerSwitch(ctx.options.device)
        if device.state.get("unreachable"):
            raise FenceError("Unable to connect to the switch (connection timed out)")
        self.link = LoopbackTransport(device.handle)
        user = ctx.options.get("username") or ""
        if self.ask(f"LOGIN {user} {ctx.options.get('password') or ''}") != ["OK"]:
            raise FenceError("Unable to log in to the switch: login denied")

    def ask(self, line: str) -> list[str]:
        try:
            self.link.send(line)
            if line == "LIST":
                return self.link.read_until("END", self.ctx.limit(3.0))[:-1]
            return [self.link.read_line(self.ctx.limit(3.0))]
        except TransportError as exc:
            raise FenceError(str(exc)) from None

    def status(self, plug: str | None) -> str:
        reply = self.ask(f"STATUS {plug}")[0]
        if reply not in ("ON", "OFF"):
            raise FenceError(f"switch said: {reply}")
        return reply.lower()

    def set_power(self, plug: str | None, state: str) -> None:
        reply = self.ask(f"SET {plug} {state}")[0]
        if reply != "OK":
            raise FenceError(f"switch said: {reply}")

    def cycle(self, plug: str | None) -> bool:
        return self.ask(f"CYCLE {plug}")[0] == "OK"

    def list(self) -> dict[str, tuple[str, str | None]]:
        out: dict[str, tuple[str, str | None]] = {}
        for line in self.ask("LIST"):
            plug, alias, state = line.split()
            out[plug] = (alias, state)
        return out

    def close(self) -> None:
        self.link.close()


agent = FenceAgent(
    "fence_pyhatest",
    shortdesc="Fence agent for pyha's power switch model (tests only)",
    longdesc="Drives the PowerSwitch model in tests/data/fencedev.py through the pyha "
             "fence runtime, exactly as a real agent drives its device. <not for production> & "
             "\"quoted\"",
    params=[
        opt_action(),
        Param("device", PATH, required=True, order=1, shortdesc="The switch model's state file"),
        opt_login(),
        *opt_password(),
        *opt_plug(required=True),
        Param("method", Choice("onoff", "cycle"), default="onoff", getopt="m", order=1,
              shortdesc="Method to fence (onoff or cycle)"),
        *opt_common(power_timeout="3", login_timeout="2", shell_timeout="2"),
    ],
    connect=SwitchSession,
    vendor_url="https://example.invalid/pyha",
    multi_port=True,
    has_list=True,
    needs_password=True,
    cycle_param="method",
)
