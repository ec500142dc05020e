"""fence_ipmilan and fence_ilo_mp against upstream, on the same simulators.

fence_ipmilan: OpenIPMI's ipmi_sim on 127.0.0.1:9630 (tests/sim/ipmisim.py);
both sides get the same options, with ``--cipher=3`` because ipmi_sim lacks
"Get Channel Cipher Suites" (without it upstream's ipmitool stalls for seconds).
fence_ilo_mp: the MP/SMASH CLP simulator over telnet on 127.0.0.1:2321.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.cases import FENCE, ROOT, Case, Side, Workspace

UPSTREAM = Path("/usr/sbin")
IPMI_PORT, TELNET_PORT = 9630, 2321
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
IPMI = ["-a", "127.0.0.1", "-u", str(IPMI_PORT), "-l", "admin", "-p", "secret", "-P", "-C", "3"]
ILO = ["-a", "127.0.0.1", "-u", str(TELNET_PORT), "-l", "admin", "-p", "secret"]


def _ipmi_up(ws: Workspace) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from sim.ipmisim import IpmiSim

    ws.data["sim"] = IpmiSim(IPMI_PORT).start()


def _ipmi_down(ws: Workspace) -> None:
    sim = ws.data.get("sim")
    if sim is not None:
        sim.stop()  # type: ignore[attr-defined]


def _ilo_up(ws: Workspace) -> None:
    folder = Path(f"/tmp/pyha-fence-ilo-{TELNET_PORT}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "power").write_text("on\n")
    ws.data["ilo"] = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tests/sim/ilosim.py"), "--telnet", str(TELNET_PORT),
         str(folder)])
    time.sleep(0.5)


def _ilo_down(ws: Workspace) -> None:
    proc = ws.data.get("ilo")
    if isinstance(proc, subprocess.Popen):
        proc.terminate()
        proc.wait(5)
    shutil.rmtree(f"/tmp/pyha-fence-ilo-{TELNET_PORT}", ignore_errors=True)


def _pair(name: str, agent: str, args: list[str], rc: int, ratio: float | None,
          up: object, down: object) -> Case:
    return Case(
        name,
        Side(f"pyha {agent}", [[str(FENCE / agent), *args]], env=ENV, expect_rc=(rc,)),
        Side(f"upstream {agent}", [[str(UPSTREAM / agent), *args]], env=ENV, expect_rc=(rc,)),
        setup=up, teardown=down, target_ratio=ratio)  # type: ignore[arg-type]


# pyha's fence_ipmilan with cryptography's AES instead of ocf_lib.aes's stand-in:
# the same launcher, with the stand-in's install() made a no-op.
_NO_STANDIN = ("import sys; sys.argv = ['fence_ipmilan', *sys.argv[1:]]; "
               f"sys.path.insert(0, {str(ROOT)!r}); import ocf_lib.aes as a; "
               "a.install = lambda: False; from ocf_lib.launch import fence; "
               "fence('fence.ipmilan')")

CASES = [
    _pair("fence_ipmilan/status", "fence_ipmilan", [*IPMI, "-o", "status"], 0, 1.0,
          _ipmi_up, _ipmi_down),
    _pair("fence_ipmilan/monitor", "fence_ipmilan", [*IPMI, "-o", "monitor"], 0, 1.0,
          _ipmi_up, _ipmi_down),
    _pair("fence_ipmilan/reboot", "fence_ipmilan", [*IPMI, "-o", "reboot"], 0, 0.7,
          _ipmi_up, _ipmi_down),
    Case("fence_ipmilan/status aes-stand-in vs cryptography",
         Side("pyha, AES stand-in", [[str(FENCE / "fence_ipmilan"), *IPMI, "-o", "status"]],
              env=ENV, expect_rc=(0,)),
         Side("pyha, cryptography", [["/usr/bin/python3", "-IS", "-c", _NO_STANDIN, *IPMI,
                                      "-o", "status"]], env=ENV, expect_rc=(0,)),
         setup=_ipmi_up, teardown=_ipmi_down),
    _pair("fence_ilo_mp/status", "fence_ilo_mp", [*ILO, "-o", "status"], 0, 0.7,
          _ilo_up, _ilo_down),
    _pair("fence_ilo_mp/reboot", "fence_ilo_mp", [*ILO, "-o", "reboot"], 0, 0.7,
          _ilo_up, _ilo_down),
]
