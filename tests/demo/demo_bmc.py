"""The machine behind one demo BMC: ipmi_sim's ``chassis_control`` program.

ipmi_sim (a real IPMI BMC implementation) runs ``chassis-control.sh MCADDR get
power`` for every status read and ``MCADDR set power 0|1`` for every Chassis
Control request; the wrapper execs this file with the BMC's directory first.
The "server" is one namespaced cluster node (tests/lib/cluster.py), described in
``node.json`` by the demo: its netns, its holder PID, its base address.

Power off does to the node what pulling the plug does to a real server:

* every process in the node's network namespace dies (SIGKILL): Corosync,
  Pacemaker, libvirtd, QEMU and the guest in it, agents;
* the filesystems it mounted at run time are gone (lazily unmounted in its
  mount namespace), and so is the floating IP: the NIC loses its addresses
  and its link;
* what its tmpfs held is gone (``volatile_dirs``: agent state in
  /run/resource-agents, libqb's /dev/shm, libvirt's run directory).

Power on "boots" the node: the NIC comes back with only its own address (a
hard reset is both at once).  The cluster stack is not started at boot, as
seed 001 advises ("disable corosync and pacemaker at boot to avoid a fence
death match"), so a fenced node stays out of the cluster until an operator
lets it back in.

Standard library only: ipmi_sim starts this for every status poll.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rpartition(")")[2].split()[:1]
    except OSError:
        return False
    return bool(state) and state[0] not in ("Z", "X")


def _pids_in_netns(holder: int) -> list[int]:
    try:
        target = os.stat(f"/proc/{holder}/ns/net").st_ino
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != holder:
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _run(*argv: str) -> None:
    subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10, check=False)


def power_off(node: dict[str, Any]) -> None:
    holder = int(node["holder"])
    for _ in range(5):  # a dying parent may still spawn a child: repeat until empty
        pids = _pids_in_netns(holder)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        end = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.02)
    prefix = str(node["volatile_mounts"])
    try:
        with open(f"/proc/{holder}/mountinfo", encoding="utf-8") as handle:
            points = [line.split()[4] for line in handle]
    except OSError:
        points = []
    for point in reversed([p for p in points if p.startswith(prefix)]):
        _run("nsenter", "-t", str(holder), "-m", "--", "umount", "-l", point)
    _run("ip", "-n", str(node["netns"]), "addr", "flush", "dev", "eth0")
    _run("ip", "-n", str(node["netns"]), "link", "set", "eth0", "down")
    for directory in node.get("volatile_dirs", []):
        # tmpfs contents (/run, /dev/shm) do not survive a power cut either
        for entry in Path(str(directory)).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def power_on(node: dict[str, Any]) -> None:
    _run("ip", "-n", str(node["netns"]), "addr", "add", str(node["address"]), "dev", "eth0")
    _run("ip", "-n", str(node["netns"]), "link", "set", "eth0", "up")


def main(argv: list[str]) -> int:
    base, op, names = Path(argv[0]), argv[2], argv[3:]
    state_file = base / "power"
    state = state_file.read_text().strip()
    if op == "get":
        for name in names:
            if name == "power":
                print("power:1" if state == "on" else "power:0")
            else:
                print(f"{name}:0")
        return 0
    node = json.loads((base / "node.json").read_text())
    while len(names) >= 2:
        name, value = names[0], names[1]
        names = names[2:]
        if name == "reset" and value == "1" and state == "on":
            # A hard reset reboots the OS: everything it ran is gone, the NIC comes back.
            power_off(node)
            power_on(node)
            with open(base / "power.log", "a", encoding="utf-8") as log:
                log.write(f"{time.time():.3f} reset\n")
            continue
        if name != "power":
            continue
        want = "on" if value == "1" else "off"
        if want == state:
            continue
        if want == "off":
            power_off(node)
        else:
            power_on(node)
        state_file.write_text(want + "\n")
        state = want
        with open(base / "power.log", "a", encoding="utf-8") as log:
            log.write(f"{time.time():.3f} {want}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
