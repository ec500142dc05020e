"""pyha-fence-node: cluster.conf in, libfence's agent calls out.

The seeds' cluster.conf files (tests/data/cluster-conf/) check the stdin
byte for byte; the method/device semantics run real pyha fence agents:
``fence_pyhatest`` (tests/data/fencedev.py, a power switch model behind the
real fence runtime).  The seeds' configs also run unchanged: IPMI against
OpenIPMI's ipmi_sim, Node Assassin against the TNAP simulator, and the
fence_pcmk redirect against a real cluster (tests/test_fence_pcmk.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

DATA = ROOT / "tests" / "data"
CONFS = DATA / "cluster-conf"
TOOL = [str(ROOT / ".venv" / "bin" / "python"), "-m", "ocf_lib.fencenode"]


def fence_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOOL, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_seed_fence_na_stdin_is_libfences():
    res = fence_node("-c", str(CONFS / "an-cluster-fence_na.conf"), "--dry-run",
                     "an-node02.alteeve.com")
    assert res.returncode == 0, res.stderr
    assert res.stdout == (
        "# method node_assassin, device batou: fence_na\n"
        "port=02\naction=reboot\nnodename=an-node02.alteeve.com\nagent=fence_na\n"
        "ipaddr=batou.alteeve.com\nlogin=username\npasswd=****\nquiet=1\n\n")
    assert "secret" not in res.stdout


def test_seed_motoko_and_ipmi_and_pcmk_stdin():
    res = fence_node("-c", str(CONFS / "an-cluster-motoko.conf"), "-n", "an-node02.alteeve.com")
    assert "port=02\naction=off\nnodename=an-node02.alteeve.com\nagent=fence_na\nquiet=true\n" \
           "ipaddr=motoko.alteeve.com\nlogin=motoko\npasswd=****\n" in res.stdout
    res = fence_node("-c", str(CONFS / "an-cluster-ipmi.conf"), "-n", "an-node01.alteeve.com")
    assert "action=reboot\nnodename=an-node01.alteeve.com\nagent=fence_ipmilan\n" \
           "ipaddr=192.168.3.61\nlogin=admin\npasswd=****\n" in res.stdout
    res = fence_node("-c", str(CONFS / "magma-pcmk.conf"), "-n", "magma2-hb")
    assert res.stdout.endswith("port=magma2-hb\nnodename=magma2-hb\nagent=fence_pcmk\n\n")
    # An altname finds the node; the victim stays the clusternode name.
    res = fence_node("-c", str(CONFS / "magma-pcmk.conf"), "-n", "magma1")
    assert "nodename=magma1-hb\n" in res.stdout


def test_unknown_node_and_broken_config_are_usage_errors(tmp_path):
    res = fence_node("-c", str(CONFS / "magma-pcmk.conf"), "nobody")
    assert res.returncode == 2 and "not a clusternode" in res.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("<cluster><clusternodes>")
    assert fence_node("-c", str(bad), "n1").returncode == 2


# -- methods and devices, with the switch model --------------------------------------


def switch(path: Path, **state: object) -> Path:
    base = {"user": "admin", "password": "pw-s3cret", "plugs": {"n1": "on", "n2": "on"}}
    base.update(state)
    path.write_text(json.dumps(base))
    return path


def plugs(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())["plugs"]


def conf(tmp_path: Path, methods: str, devices: str, unfence: str = "") -> Path:
    path = tmp_path / "cluster.conf"
    path.write_text(f"""<cluster name="t" config_version="1"><clusternodes>
  <clusternode name="n2" nodeid="2"><fence>{methods}</fence>{unfence}</clusternode>
</clusternodes><fencedevices>{devices}</fencedevices></cluster>""")
    return path


def fencedevice(name: str, device: Path, agent: str = "fence_pyhatest") -> str:
    return (f'<fencedevice name="{name}" agent="{agent}" device="{device}" login="admin" '
            f'passwd="pw-s3cret" power_timeout="2"/>')


def run(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return fence_node("-c", str(cfg), "--agent-path", f"{DATA}:/usr/sbin:/usr/bin", "-v",
                      *extra, "n2")


def test_first_method_fails_second_fences(tmp_path):
    dead = switch(tmp_path / "dead.json", unreachable=True)
    good = switch(tmp_path / "good.json")
    cfg = conf(tmp_path,
               '<method name="one"><device name="dead" port="n2" action="off"/></method>'
               '<method name="two"><device name="good" port="n2" action="off"/></method>',
               fencedevice("dead", dead) + fencedevice("good", good))
    res = run(cfg)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "fence n2 success\n"
    assert "method one: device dead" in res.stderr and "method two succeeded" in res.stderr
    assert plugs(good)["n2"] == "off"
    assert "pw-s3cret" not in res.stdout + res.stderr


def test_a_method_needs_every_device(tmp_path):
    psu_a = switch(tmp_path / "a.json")
    psu_b = switch(tmp_path / "b.json", unreachable=True)
    cfg = conf(tmp_path,
               '<method name="dual"><device name="a" port="n2" action="off"/>'
               '<device name="b" port="n2" action="off"/></method>',
               fencedevice("a", psu_a) + fencedevice("b", psu_b))
    res = run(cfg)
    assert res.returncode == 1
    assert res.stdout == "fence n2 failed\n"
    assert "method dual: device b" in res.stderr
    assert plugs(psu_a)["n2"] == "off"  # the first device did act: libfence does not undo


def test_missing_agent_or_fencedevice_fails_that_method(tmp_path):
    good = switch(tmp_path / "good.json")
    cfg = conf(tmp_path,
               '<method name="m1"><device name="nosuch" port="n2"/></method>'
               '<method name="m2"><device name="ghost" port="n2"/></method>'
               '<method name="m3"><device name="good" port="n2" action="off"/></method>',
               fencedevice("ghost", good, agent="fence_does_not_exist")
               + fencedevice("good", good))
    res = run(cfg)
    assert res.returncode == 0, res.stderr
    assert "no fencedevice named 'nosuch'" in res.stderr
    assert "fence_does_not_exist not found" in res.stderr


def test_unfence_adds_action_on_and_tries_every_device(tmp_path):
    a = switch(tmp_path / "a.json", plugs={"n2": "off"})
    b = switch(tmp_path / "b.json", plugs={"n2": "off"})
    cfg = conf(tmp_path, "", fencedevice("a", a) + fencedevice("b", b),
               unfence='<unfence><device name="a" port="n2"/>'
                       '<device name="b" port="n2" action="on"/></unfence>')
    dry = fence_node("-c", str(cfg), "--unfence", "--dry-run", "n2").stdout
    assert dry.count("action=on") == 2
    res = run(cfg, "--unfence")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "unfence n2 success\n"
    assert plugs(a)["n2"] == "on" and plugs(b)["n2"] == "on"
    log = json.loads(a.read_text())["log"]
    assert not any(entry.startswith("SET n2 off") for entry in log)  # never a reboot


def test_dry_run_masks_what_the_agents_declare_secret(tmp_path):
    """pyha agents: their declared secrets (fence_ipmilan's hexadecimal_kg too); an agent
    pyha has no declarations for: every value but libfence's own fields."""
    cfg = conf(tmp_path,
               '<method name="ipmi"><device name="bmc"/></method>'
               '<method name="cloud"><device name="aws" port="i-0abc"/></method>',
               '<fencedevice name="bmc" agent="fence_ipmilan" ipaddr="192.0.2.9" login="admin" '
               'passwd="x" hexadecimal_kg="0A1B2C3D4E" cipher="17"/>'
               '<fencedevice name="aws" agent="fence_aws" region="eu-west-1" '
               'access_key="AKIAEXAMPLEKEY" secret_key="wJalrXUtnFEMIEXAMPLE" token="tok123"/>')
    res = fence_node("-c", str(cfg), "--dry-run", "n2")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for secret in ("0A1B2C3D4E", "AKIAEXAMPLEKEY", "wJalrXUtnFEMIEXAMPLE", "tok123"):
        assert secret not in out
    assert "passwd=****\n" in out and "hexadecimal_kg=****\n" in out
    assert "ipaddr=192.0.2.9\n" in out and "cipher=17\n" in out  # declared, not secret
    assert "token=****\n" in out and "region=****\n" in out  # undeclared agent: all hidden
    assert "port=i-0abc\nnodename=n2\nagent=fence_aws\n" in out


def test_verbose_output_is_masked_whole_tokens(tmp_path):
    """-v shows the agent's output with its secret values masked, and only whole values:
    a one-character password does not garble the message around it."""
    agent = tmp_path / "fence_chatty"
    agent.write_text("#!/bin/sh\nwhile read -r line; do echo \"got $line\" >&2; done\n"
                     "echo 'Unable to connect to the device' >&2\nexit 1\n")
    agent.chmod(0o755)
    cfg = conf(tmp_path, '<method name="m"><device name="c" port="n2"/></method>',
               '<fencedevice name="c" agent="fence_chatty" passwd="b" lanplus="1" '
               'secret_key="wJalrXUtnFEMIEXAMPLE"/>')
    res = fence_node("-c", str(cfg), "--agent-path", str(tmp_path), "-v", "n2")
    assert res.returncode == 1
    assert "wJalrXUtnFEMIEXAMPLE" not in res.stderr and "got passwd=b" not in res.stderr
    assert "got passwd=****" in res.stderr and "got secret_key=****" in res.stderr
    assert "Unable to connect to the device" in res.stderr
    assert "got lanplus=1" in res.stderr  # a switch, not a secret


def test_agent_time_limit(tmp_path):
    slow = tmp_path / "fence_slow"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    cfg = conf(tmp_path, '<method name="m"><device name="s" port="n2"/></method>',
               f'<fencedevice name="s" agent="{slow}"/>')
    res = fence_node("-c", str(cfg), "--timeout", "1", "n2")
    assert res.returncode == 1
    assert "did not finish" in res.stderr


@pytest.mark.parametrize("conf_name", sorted(p.name for p in CONFS.glob("*.conf")))
def test_every_seed_node_has_a_working_plan(conf_name):
    import xml.etree.ElementTree as ET

    root = ET.parse(CONFS / conf_name).getroot()
    for node in root.iterfind("clusternodes/clusternode"):
        res = fence_node("-c", str(CONFS / conf_name), "-n", node.get("name", ""))
        assert res.returncode == 0 and "agent=fence_" in res.stdout
        assert "no fencedevice" not in res.stdout


# -- the IPMI seed, unchanged, against a simulated BMC -------------------------------

IPMI_DRIVER = """
import subprocess, sys
sys.path[:0] = [{tests!r}, {root!r}]
from sim.ipmisim import IpmiSim
bmc = IpmiSim(623, addr="192.168.3.62", power="on")
bmc.dir = __import__("pathlib").Path({bmcdir!r})
bmc.start()
try:
    proc = subprocess.run([sys.executable, "-m", "ocf_lib.fencenode", "-c", {conf!r},
                           "--agent-path", {fence!r}, "an-node02.alteeve.com"],
                          capture_output=True, text=True, cwd={root!r}, timeout=120)
    print(proc.returncode)
    print(proc.stdout.strip())
    print(" ".join(bmc.power_log()))
    print(bmc.power)
    sys.stderr.write(proc.stderr)
finally:
    bmc.stop()
"""


def test_seed_ipmi_config_fences_a_simulated_bmc(tmp_path):
    """The seed's IPMI cluster.conf as written (ipaddr 192.168.3.62, admin/secret):
    pyha-fence-node runs pyha's fence_ipmilan against OpenIPMI's ipmi_sim, which
    listens on that address inside a private network namespace."""
    ns = "pyhaf-ipmi"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "192.168.3.62/32", "dev", "lo"],
                       check=True)
        code = IPMI_DRIVER.format(tests=str(ROOT / "tests"), root=str(ROOT),
                                  bmcdir=str(tmp_path / "bmc"),
                                  conf=str(CONFS / "an-cluster-ipmi.conf"),
                                  fence=str(ROOT / "fence"))
        proc = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code],
                              capture_output=True, text=True, timeout=180)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    rc, out, log, power = proc.stdout.splitlines()[:4]
    assert rc == "0", proc.stdout + proc.stderr
    assert out == "fence an-node02.alteeve.com success"
    assert log.split()[:2] == ["off", "on"]  # the seed says action="reboot"
    assert power == "on"
    assert "secret" not in proc.stdout + proc.stderr


# -- the Node Assassin seeds, unchanged, against the TNAP simulator ------------------

NA_DRIVER = """
import socket, subprocess, sys, time
from pathlib import Path
state = Path({state!r})
sim = subprocess.Popen([sys.executable, {nasim!r}, "238", str(state), "--scale", "0.05"])
try:
    end = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("batou.alteeve.com", 238), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    for conf in {confs!r}:
        proc = subprocess.run([sys.executable, "-m", "ocf_lib.fencenode", "-c", conf,
                               "--agent-path", {fence!r}, "an-node02.alteeve.com"],
                              capture_output=True, text=True, cwd={root!r}, timeout=120)
        node2 = [l for l in state.read_text().splitlines() if l.startswith("02 ")][0]
        print(proc.returncode, proc.stdout.strip(), "|", node2)
        sys.stderr.write(proc.stderr)
finally:
    sim.terminate()
    sim.wait(5)
"""


def test_seed_node_assassin_configs_fence_the_simulator(tmp_path):
    """Both AN!Cluster fence_na configs as written (ipaddr batou/motoko.alteeve.com,
    TNAP port 238): the names resolve to the simulator inside a private network
    and mount namespace (/etc/hosts bind-mounted there only)."""
    ns = "pyhaf-na"
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost batou.alteeve.com motoko.alteeve.com\n")
    code = NA_DRIVER.format(state=str(tmp_path / "na-state"),
                            nasim=str(ROOT / "tests" / "sim" / "nasim.py"),
                            confs=[str(CONFS / "an-cluster-fence_na.conf"),
                                   str(CONFS / "an-cluster-motoko.conf")],
                            fence=str(ROOT / "fence"), root=str(ROOT))
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", 'mount --bind "$0" /etc/hosts && exec /usr/bin/python3 -c "$1"',
             str(hosts), code], capture_output=True, text=True, timeout=240)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr
    # batou: action="reboot" -> fenced, then powered back on (feed 1, latch released)
    assert lines[0].startswith("0 fence an-node02.alteeve.com success |"), proc.stderr
    assert lines[0].endswith("F1 L0")
    # motoko: action="off" -> the feed is down and the fence latch holds
    assert lines[1].startswith("0 fence an-node02.alteeve.com success |"), proc.stderr
    assert lines[1].endswith("F0 L1")
    assert "secret" not in proc.stdout + proc.stderr
