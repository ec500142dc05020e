"""fence_pyhakill: a power switch whose outlets feed the test cluster's nodes.

A namespaced test node has no power cord, so this switch's ``off`` does
what a power cut does to a node: every process of the node (everything in
its network namespace except the namespace holder) is SIGKILLed.  ``status``
is read back from the processes, never from what the switch was told: an
outlet is ``off`` only when none of the node's processes is left.  ``on``
switches the outlet on (as a BMC's chassis power, it reports on at once; the
node's cluster stack is not started again: the test does that if it wants).

The device is a directory (``device`` option) that the test prepares:

* ``plugs.json``: ``{"n1": <holder pid>, ...}``;
* ``on/<plug>``: present while an outlet was switched on after a fence;
* ``hang``: if present, seconds to stall, then fail without switching (a hung device);
* ``log``: one line per switching request, so a test can count them.
"""

from __future__ import annotations

import json
import os
import signal
import time

from ocf_lib.fence import (
    FenceAgent,
    FenceContext,
    FenceError,
    Session,
    opt_action,
    opt_common,
    opt_plug,
)
from ocf_lib.params import PATH, Param


def _netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def node_processes(holder: int) -> list[int]:
    """Live processes in the holder's network namespace, the holder excepted."""
    try:
        target = _netns_inode(holder)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (holder, os.getpid()):
            continue
        try:
            if _netns_inode(int(entry)) != target:
                continue
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                state = handle.read().rpartition(")")[2].split()[:1]
        except OSError:
            continue
        if state and state[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


class Outlets(Session):
    def __init__(self, ctx: FenceContext) -> None:
        self.dir = str(ctx.options.device)
        try:
            with open(os.path.join(self.dir, "plugs.json"), encoding="utf-8") as handle:
                self.plugs: dict[str, int] = json.load(handle)
        except (OSError, ValueError) as exc:
            raise FenceError(f"cannot reach the switch at {self.dir}: {exc}") from None
        self.ctx = ctx

    def _holder(self, plug: str | None) -> int:
        if plug not in self.plugs:
            raise FenceError(f"the switch has no outlet {plug}")
        return int(self.plugs[plug])

    def _record(self, line: str) -> None:
        with open(os.path.join(self.dir, "log"), "a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.3f} {line}\n")

    def status(self, plug: str | None) -> str:
        holder = self._holder(plug)
        if os.path.exists(os.path.join(self.dir, "on", str(plug))):
            return "on"
        return "on" if node_processes(holder) else "off"

    def set_power(self, plug: str | None, state: str) -> None:
        holder = self._holder(plug)
        self._record(f"{state} {plug}")
        try:
            with open(os.path.join(self.dir, "hang"), encoding="utf-8") as handle:
                time.sleep(float(handle.read().strip() or "0"))
            # A hung switch never acts, even if nobody killed us meanwhile.
            raise FenceError("the switch did not answer (timed out)")
        except FileNotFoundError:
            pass
        marker = os.path.join(self.dir, "on", str(plug))
        if state == "on":
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "w", encoding="utf-8"):
                pass
            return
        try:
            os.unlink(marker)
        except FileNotFoundError:
            pass
        for _ in range(3):  # a dying daemon may still fork: sweep again
            pids = node_processes(holder)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                break
            time.sleep(0.1)

    def list(self) -> dict[str, tuple[str, str | None]]:
        return {plug: (plug, self.status(plug)) for plug in self.plugs}


agent = FenceAgent(
    "fence_pyhakill",
    shortdesc="Power switch for pyha's namespaced test nodes (tests only)",
    longdesc="Cuts a namespaced test node's power by killing all of its processes; "
             "status is read back from the node's processes.",
    params=[
        opt_action(),
        Param("device", PATH, required=True, order=1,
              shortdesc="The switch's directory (plugs.json, on/, hang, log)"),
        *opt_plug(required=False),
        *opt_common(power_timeout="10"),
    ],
    connect=Outlets,
    multi_port=True,
    has_list=True,
)
