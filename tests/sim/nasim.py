#!/usr/bin/python3
"""A Node Assassin over real TCP, modelled on TNAP v1.1 and NaOS 1.0.2.

    nasim.py PORT STATEFILE [--nodes 4] [--scale 0.05] [--naos] [--commas]
             [--stuck 02] [--late 04] [--off 03] [--odd-feed 02] [--no-eom]
             [--drop-mid-reply]

Per node: power switch P, reset switch R, feed F (1 = the node has power) and
a fence latch.  ``NN:1`` runs the fence sequence: reset closed 1 s, open 1 s,
then power held (latched); the feed drops 4 s into the hold; the device checks
it after 5 s and again 25 s later.  ``--scale`` multiplies every one of those
times (0.05 makes a 30 s device take 1.5 s).  ``NN:0`` releases,
``NN:2`` presses power 1 s (boots an off node), ``NN:3`` holds power until the
feed drops, without latching.  The device has no authentication.

Faults: ``--stuck NN`` a node whose feed never drops; ``--late NN`` one whose
feed drops only at the device's second check (27 s, scaled); ``--odd-feed NN``
a node whose feed sense reads neither 0 nor 1 (``F2``: a sensor fault, the
node may well be running); ``--no-eom`` replies
without the EOM line; ``--drop-mid-reply`` closes the connection in the middle
of the first 00:0 reply.  ``--naos``: NaOS 1.0.2 (no EOM; 0 fences, 1
releases; ``Running``/``Fenced!``; at most 5 nodes).

Every command received is appended to STATEFILE.log; after each change the
node states are written to STATEFILE as ``01 P0 R0 F1 L0`` lines.
"""

from __future__ import annotations

import argparse
import socketserver
import subprocess
import threading
import time

LOCK = threading.Lock()
FORMAT_HELP = ("Format is 'XX:Y' where 'XX' is the zero-padded node number and Y is the state "
               "to set.")


class Node:
    def __init__(self, num: int, powered: bool, stuck: bool, late: bool = False) -> None:
        self.num = num
        self.late = late
        self.powered = powered
        self.stuck = stuck
        self.latched = False
        self.p_until = 0.0  # power switch closed until (inf while latched)
        self.r_until = 0.0
        self.off_at: float | None = None  # the feed drops at
        self.on_at: float | None = None  # the node has booted at

    def settle(self, now: float) -> None:
        if self.off_at is not None and now >= self.off_at:
            self.powered, self.off_at = False, None
        if self.on_at is not None and now >= self.on_at:
            self.powered, self.on_at = True, None

    def line(self, now: float) -> tuple[int, int, int]:
        self.settle(now)
        p = 1 if self.latched or now < self.p_until else 0
        r = 1 if now < self.r_until else 0
        return p, r, 1 if self.powered else 0


class Device:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = args.scale
        self.nodes = {n: Node(n, f"{n:02d}" not in args.off, f"{n:02d}" in args.stuck,
                              f"{n:02d}" in args.late)
                      for n in range(1, args.nodes + 1)}
        self.dropped = False

    def wire(self, node: Node) -> None:
        """``--off-hook NN=PROG``: run PROG when node NN's feed drops (a real power cut)."""
        for item in self.args.off_hook:
            num, _, prog = item.partition("=")
            if int(num) == node.num and node.off_at is not None:
                delay = max(0.0, node.off_at - time.monotonic())
                node.off_at = None  # the feed drops once the hook has cut the power

                def cut(node: Node = node, prog: str = prog) -> None:
                    subprocess.run([prog])
                    with LOCK:
                        node.powered = False
                        self.save()

                threading.Timer(delay, cut).start()

    def save(self) -> None:
        now = time.monotonic()
        rows = []
        for n, node in self.nodes.items():
            p, r, f = node.line(now)
            rows.append(f"{n:02d} P{p} R{r} F{f} L{int(node.latched)}\n")
        with open(self.args.state, "w") as out:
            out.write("".join(rows))

    def log(self, text: str) -> None:
        with open(self.args.state + ".log", "a") as out:
            out.write(f"{time.time():.3f} {text}\n")

    # -- TNAP v1.1 ----------------------------------------------------------------

    def tnap(self, cmd: str) -> list[str]:
        now = time.monotonic()
        s = self.scale
        if cmd == "00:0":
            out = ["Node states:", f"- Node Count: {len(self.nodes):02d}"]
            sep = ", " if self.args.commas else " "
            for n, node in self.nodes.items():
                p, r, f = node.line(now)
                if f"{n:02d}" in self.args.odd_feed:
                    f = 2
                out.append(f"- Node {n:02d}: P{p}{sep}R{r}{sep}F{f}")
            return out + ["End Message."]
        if cmd == "00:1":
            return ["Node Assassin information:", "- Build Date: 2010-11-01",
                    "- Serial Number: NA-SIM-0001", "- NAOS Version: 1.1.4",
                    f"- Node Count: {len(self.nodes):02d}"]
        bad = self.check(cmd, 3)
        if bad:
            return bad
        node = self.nodes[int(cmd[:2])]
        state = int(cmd[3])
        node.settle(now)
        if state == 1:  # fence: reset 1 s, release 1 s, then hold power (latched)
            node.r_until = now + 1 * s
            node.latched = True
            if node.powered and not node.stuck:
                # 4 s into the hold; a --late node only at the device's 25 s re-check
                node.off_at = now + (27 if node.late else 6) * s
                self.wire(node)
            node.on_at = None
            return [f"Node {cmd[:2]}: Fencing; the feed is checked after {5 * s:g}s and "
                    f"{30 * s:g}s."]
        if state == 0:
            node.latched = False
            node.p_until = node.r_until = 0.0
            return [f"Node {cmd[:2]}: Released."]
        if state == 2:
            if node.latched:
                return [f"Node {cmd[:2]}: Fenced; release it first. Button locked out."]
            node.p_until = now + 1 * s
            if not node.powered and node.on_at is None:
                node.on_at = now + 1.5 * s
            elif node.powered and not node.stuck:
                node.off_at = now + 3 * s  # ACPI shutdown
            return [f"Node {cmd[:2]}: Power button pressed."]
        node.p_until = now + 5 * s  # 3: hold power until the feed drops
        if node.powered and not node.stuck:
            node.off_at = now + 4 * s
        return [f"Node {cmd[:2]}: Holding power button."]

    def check(self, cmd: str, top: int) -> list[str] | None:
        if len(cmd) < 4:
            return [f"Message too short. {FORMAT_HELP}"]
        if len(cmd) > 4:
            return [f"Message too long. {FORMAT_HELP}"]
        if cmd[2] != ":" or not (cmd[:2].isdigit() and cmd[3].isdigit()):
            return [f"Bad command: [{cmd}]"]
        if int(cmd[:2]) > len(self.nodes) or int(cmd[:2]) == 0:
            return [f"This fence only supports up to {len(self.nodes):02d}nodes."]
        if int(cmd[3]) > top:
            return ["Invalid state received. Send 'XX:0' to release a node, XX:1 to fence a "
                    "node, XX:2 to press power, XX:3 to hold power."]
        return None

    # -- NaOS 1.0.2 ------------------------------------------------------------------

    def naos(self, cmd: str) -> list[str]:
        now = time.monotonic()
        if cmd == "00:0":
            out = ["Node states: ", f"- Max Node: {len(self.nodes):02d}"]
            for n, node in self.nodes.items():
                out.append(f"- Node {n:02d}: {'Fenced!' if node.latched else 'Running'}")
            return out + ["End Message."]
        bad = self.check(cmd, 1)
        if bad:
            if bad[0].startswith("Invalid state"):
                bad = ["Invalid state received. Send 'XX:0' to kill a node, XX:1 to release "
                       "a node"]
            return bad
        node = self.nodes[int(cmd[:2])]
        node.settle(now)
        if cmd[3] == "0":
            node.latched = True
            if node.powered and not node.stuck:
                node.off_at = now + 4 * self.scale
            return [f"Node {cmd}: Now Fenced!"]
        node.latched = False
        return [f"Node {cmd}: Now running."]


class Handler(socketserver.StreamRequestHandler):
    device: Device

    def handle(self) -> None:
        dev = self.device
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            cmd = raw.decode(errors="replace").strip()
            if not cmd:
                continue
            with LOCK:
                dev.log(cmd)
                lines = dev.naos(cmd) if dev.args.naos else dev.tnap(cmd)
                dev.save()
                if cmd == "00:0" and dev.args.drop_mid_reply and not dev.dropped:
                    dev.dropped = True
                    self.wfile.write(("\n".join(lines[:2]) + "\n").encode())
                    self.wfile.flush()
                    return
            if not dev.args.naos and not dev.args.no_eom:
                lines = lines + ["EOM"]
            self.wfile.write(("\n".join(lines) + "\n").encode())
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("state")
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--naos", action="store_true")
    ap.add_argument("--commas", action="store_true")
    ap.add_argument("--stuck", action="append", default=[])
    ap.add_argument("--off", action="append", default=[])
    ap.add_argument("--late", action="append", default=[])
    ap.add_argument("--odd-feed", action="append", default=[])
    ap.add_argument("--off-hook", action="append", default=[])
    ap.add_argument("--no-eom", action="store_true")
    ap.add_argument("--drop-mid-reply", action="store_true")
    args = ap.parse_args()
    Handler.device = Device(args)
    Handler.device.save()
    with Server((args.addr, args.port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
