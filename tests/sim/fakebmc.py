#!/usr/bin/python3
"""A BMC built on pyghmi's server side (RMCP+, cipher suite 3) that, like most
real BMCs, refuses a power cycle on a node that is off with completion code
0xD5 "not supported in present state" (fence-agents issue #596).  ipmi_sim
accepts that cycle, so it cannot show the bug.

    fakebmc.py PORT STATEFILE        (admin/secret; SIGTERM to stop)
Every request is appended to STATEFILE.log.
"""

import sys
import time

import pyghmi.ipmi.bmc as bmc


class CycleRefusingBmc(bmc.Bmc):
    def __init__(self, port: int, state: str) -> None:
        super().__init__({"admin": "secret"}, port=port, address="127.0.0.1")
        self.state = state

    def _log(self, what: str) -> None:
        with open(self.state + ".log", "a") as log:
            log.write(f"{time.time():.6f} {what}\n")

    def _set(self, state: str) -> None:
        with open(self.state, "w") as f:
            f.write(state + "\n")
        self._log(state)

    def get_power_state(self) -> str:
        with open(self.state) as f:
            return f.read().strip()

    def power_off(self) -> None:
        self._set("off")

    def power_on(self) -> None:
        self._set("on")

    def power_cycle(self) -> int:
        if self.get_power_state() == "off":
            self._log("cycle-refused")
            return 0xD5
        self._set("off")
        self._set("on")
        return 0

    def power_reset(self) -> None:
        self._log("reset")


if __name__ == "__main__":
    CycleRefusingBmc(int(sys.argv[1]), sys.argv[2]).listen()
