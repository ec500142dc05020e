"""OpenIPMI's ``ipmi_sim`` (a real BMC implementation) with an observable chassis.

ipmi_sim runs its ``chassis_control`` program for every power request and
status read (``PROG 0x20 get power`` must print ``power:0|1``;
``PROG 0x20 set power 0|1``), so the chassis lives in a file that tests read
and flip.  Faults: a ``stuck`` file makes the chassis accept power-down but
stay on (a node that never goes off); SIGSTOP on ipmi_sim makes a BMC that
does not answer.  Users: admin/secret (administrator), oper/operpw
(operator), viewer/viewpw (user: Chassis Control needs operator).

The loopback is shared with every other test run on the machine (the Debian
13 root of .ci/debroot included), and ipmi_sim binds its port with
SO_REUSEADDR: a second simulator on the same port binds too and silently
takes the traffic, answering from its own chassis file.  So a simulator
starts only on a port nobody holds, and counts as started only once its own
process holds it (``free_udp_ports`` hands out such ports).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HOOK = """#!/bin/sh
# ipmi_sim's chassis_control program: MCADDR get NAME... | set NAME VALUE...
D={dir}
mc=$1; op=$2; shift 2
echo "$(date +%s.%N) $op $*" >> "$D/chassis.log"
node_pids() {{  # the processes in the network namespace of the node's holder, but it
  h=$(cat "$D/holder"); ns=$(stat -L -c %i "/proc/$h/ns/net" 2>/dev/null) || return 0
  for d in /proc/[0-9]*; do
    p=${{d#/proc/}}; [ "$p" = "$h" ] && continue
    [ "$(stat -L -c %i "$d/ns/net" 2>/dev/null)" = "$ns" ] || continue
    case "$(cut -d' ' -f3 "$d/stat" 2>/dev/null)" in Z|X|"") ;; *) echo "$p" ;; esac
  done
}}
while [ $# -gt 0 ]; do
  name=$1; shift
  if [ "$op" = get ]; then
    case $name in
      power)
        if [ -s "$D/holder" ]; then  # wired to a test node: power = its processes
          [ -n "$(node_pids)" ] && echo power:1 || echo power:0
        else
          [ "$(cat "$D/power")" = on ] && echo power:1 || echo power:0
        fi ;;
      boot) echo boot:default ;;
      *) echo "$name:0" ;;
    esac
  else
    val=$1; shift
    case $name in
      power)
        if [ "$val" = 1 ]; then st=on; else st=off; fi
        if [ "$st" = off ] && [ -e "$D/stuck" ]; then
          echo "ignored-off $(date +%s.%N)" >> "$D/power.log"
        elif [ "$st" = off ] && [ -s "$D/holder" ]; then  # the power cut: kill the node
          for i in 1 2 3; do for p in $(node_pids); do kill -9 "$p" 2>/dev/null; done; done
          echo off > "$D/power"; echo "off $(date +%s.%N)" >> "$D/power.log"
        else
          echo $st > "$D/power"; echo "$st $(date +%s.%N)" >> "$D/power.log"
        fi ;;
      reset) echo "reset $(date +%s.%N)" >> "$D/power.log" ;;
    esac
  fi
done
exit 0
"""

LAN_CONF = """name "pyhabmc"
set_working_mc 0x20
  startlan 1
    addr {addr} {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{dir}/chassis-control.sh 0x20"
  user 1 true  ""       "test"    user     10 none md2 md5 straight
  user 2 true  "admin"  "secret"  admin    10 none md2 md5 straight
  user 3 true  "oper"   "operpw"  operator 10 none md2 md5 straight
  user 4 true  "viewer" "viewpw"  user     10 none md2 md5 straight
"""

EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


def free_udp_ports(count: int, addr: str = "127.0.0.1") -> list[int]:
    """``count`` distinct udp ports on ``addr`` that nothing holds right now."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((addr, 0))  # all bound at once: the kernel hands out distinct ports
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def udp_holders(port: int, addr: str = "127.0.0.1", prefix: list[str] | None = None) -> list[int]:
    """The pids holding a udp socket that receives ``addr:port`` (in the
    namespace ``prefix`` enters); 0 stands for a holder we cannot see (a
    process of another PID namespace, e.g. the host's seen from .ci/debroot).

    ss maps sockets to pids from a scan of /proc made before its netlink dump,
    so a socket bound in between is listed without a pid.  A pid-less holder
    counts only when a second look, made after it surely existed, still shows it."""
    holders = _udp_holders_once(port, addr, prefix)
    if 0 in holders:
        time.sleep(0.05)
        holders = _udp_holders_once(port, addr, prefix)
    return holders


def _udp_holders_once(port: int, addr: str, prefix: list[str] | None) -> list[int]:
    out = subprocess.run([*(prefix or []), "ss", "-Huanp", f"sport = :{port}"],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    wanted = {addr, "0.0.0.0", "*", "[::]", f"[::ffff:{addr}]"}
    holders: list[int] = []
    for line in out.splitlines():
        local = line.split()[3].rsplit(":", 1)[0].split("%", 1)[0]
        if local in wanted:
            holders.extend([int(m) for m in re.findall(r"pid=(\d+)", line)] or [0])
    return holders


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def wait_udp_owner(proc: subprocess.Popen[bytes], port: int, addr: str = "127.0.0.1",
                   prefix: list[str] | None = None, timeout: float = 5.0) -> None:
    """Wait until ``proc`` holds udp ``port``, and only it (or a child it forked)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before it held "
                               f"udp port {port}")
        holders = udp_holders(port, addr, prefix)
        others = [p for p in holders if p != proc.pid and _parent(p) != proc.pid]
        if others:
            raise RuntimeError(f"udp port {port} is shared with pids {others} (0: not visible "
                               f"here): they could answer for {proc.args[0]!r}")
        if proc.pid in holders:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} does not hold udp port {port} after {timeout}s")


class IpmiSim:
    def __init__(self, port: int, addr: str = "127.0.0.1", power: str = "on", *,
                 prefix: list[str] | None = None, holder: int | None = None) -> None:
        """``prefix`` runs ipmi_sim through e.g. nsenter (inside a test node);
        ``holder`` wires the chassis to the test node of that namespace holder:
        power is "on" while the node has processes, and power-off kills them."""
        self.port = port
        self.addr = addr
        self.dir = Path(f"/tmp/pyha-fence-ipmi-{port}")
        self.initial = power
        self.prefix = list(prefix or [])
        self.holder = holder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IpmiSim:
        # Before touching the directory: it may be the holder's own.
        holders = udp_holders(self.port, self.addr, self.prefix)
        if holders:
            raise RuntimeError(f"udp port {self.port} is already held by pids {holders} (0: not "
                               "visible here); a second ipmi_sim would bind it too "
                               "(SO_REUSEADDR) and take its traffic")
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "state").mkdir(parents=True)
        self.power = self.initial
        (self.dir / "power.log").write_text("")
        hook = self.dir / "chassis-control.sh"
        hook.write_text(HOOK.format(dir=self.dir))
        hook.chmod(0o755)
        (self.dir / "lan.conf").write_text(LAN_CONF.format(addr=self.addr, port=self.port,
                                                           dir=self.dir))
        (self.dir / "bmc.emu").write_text(EMU)
        (self.dir / "holder").write_text(str(self.holder) if self.holder else "")
        log = open(self.dir / "ipmi_sim.log", "wb")
        self.proc = subprocess.Popen(
            [*self.prefix, "ipmi_sim", "-n", "-c", str(self.dir / "lan.conf"),
             "-f", str(self.dir / "bmc.emu"), "-s", str(self.dir / "state")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            wait_udp_owner(self.proc, self.port, self.addr, self.prefix)
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def power(self) -> str:
        return (self.dir / "power").read_text().strip()

    @power.setter
    def power(self, state: str) -> None:
        (self.dir / "power").write_text(state + "\n")

    def set_stuck(self, stuck: bool) -> None:
        flag = self.dir / "stuck"
        if stuck:
            flag.write_text("1\n")
        elif flag.exists():
            flag.unlink()

    def power_log(self) -> list[str]:
        return [line.split()[0] for line in (self.dir / "power.log").read_text().splitlines()]

    def clear_log(self) -> None:
        (self.dir / "power.log").write_text("")

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
