"""fence_ilo_mp through its real executable against an iLO MP simulator.

Telnet: tests/sim/ilosim.py serves the MP login and SMASH CLP on 127.0.0.1:2320.
SSH: Debian's real sshd on 127.0.0.1:2220 (own config, keys and known_hosts in
/tmp/pyha-fence-ilo-*) with ForceCommand running the same CLI; root logs in
with a key listed in a private AuthorizedKeysFile, so no host account changes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import METADATA, ROOT, run_fence
from test_transport import DEAD_NAME, dead_dns  # noqa: F401 - the fixture

AGENT = "fence_ilo_mp"
TELNET_PORT, SSH_PORT, SSH_PW_PORT, SSH_RAW_PORT = 2320, 2220, 2221, 2222
RNG = "/usr/share/cluster/relaxng/metadata.rng"
SIM = ROOT / "tests/sim/ilosim.py"


def wait_tcp(port: int) -> None:
    end = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


class Device:
    def __init__(self, folder: Path, port: int = 0) -> None:
        self.dir = folder
        self.port = port

    @property
    def power(self) -> str:
        return (self.dir / "power").read_text().strip()

    @power.setter
    def power(self, state: str) -> None:
        (self.dir / "power").write_text(state + "\n")

    def mode(self, mode: str) -> None:
        (self.dir / "mode").write_text(mode + "\n")

    def commands(self) -> list[str]:
        log = self.dir / "commands.log"
        return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] \
            if log.exists() else []

    def reset(self) -> None:
        self.power = "on"
        self.mode("normal")
        (self.dir / "commands.log").write_text("")


@pytest.fixture(scope="module")
def telnet_dev():
    folder = Path(f"/tmp/pyha-fence-ilo-{TELNET_PORT}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    dev = Device(folder)
    dev.reset()
    proc = subprocess.Popen(["/usr/bin/python3", str(SIM), "--telnet", str(TELNET_PORT),
                             str(folder)])
    wait_tcp(TELNET_PORT)
    yield dev
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dev(telnet_dev):
    telnet_dev.reset()
    return telnet_dev


def args(*extra: str, password: str = "secret") -> list[str]:
    return ["-a", "127.0.0.1", "-u", str(TELNET_PORT), "-l", "admin", "-p", password,
            "--power-wait=0", *extra]


def test_metadata(tmp_path):
    res = run_fence(AGENT, args=["-o", "metadata"])
    assert res.rc == 0 and res.out == (METADATA / "fence_ilo_mp.xml").read_text()
    assert 'name="login" unique="0" required="1" deprecated="1"' in res.out
    assert 'name="secure" unique="0" required="0" deprecated="1"' in res.out
    assert 'default="MP&gt;|hpiLO-&gt;"' in res.out
    path = tmp_path / "m.xml"
    path.write_text(res.out)
    subprocess.run(["xmllint", "--noout", "--relaxng", RNG, str(path)], check=True,
                   capture_output=True)


def test_status_off_on_reboot_over_telnet(dev):
    res = run_fence(AGENT, args=args("-o", "status"))
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    assert dev.commands()[:3] == ["login admin", "SMCLP", "show /system1"]
    res = run_fence(AGENT, args=args("-o", "off"))
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n"), res.err
    assert dev.power == "off" and "stop -f /system1" in dev.commands()
    res = run_fence(AGENT, args=args("-o", "status"))
    assert (res.rc, res.out) == (2, "Status: OFF\n")
    res = run_fence(AGENT, args=args("-o", "on"))
    assert (res.rc, res.out) == (0, "Success: Powered ON\n")
    dev.reset()
    res = run_fence(AGENT, args=args("-o", "reboot"))
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    cmds = dev.commands()
    assert cmds.index("stop -f /system1") < cmds.index("start /system1")
    assert run_fence(AGENT, args=args("-o", "monitor")).rc == 0


def test_pacemaker_and_cman_stdin(dev):
    text = ("action=off\nip=127.0.0.1\nipport=2320\nusername=admin\npassword=secret\n"
            "plug=magma1-hb\nnodename=magma1-hb\npower_wait=0\n")
    res = run_fence(AGENT, stdin=text, env={"PATH": "/usr/bin:/bin",
                                           "PCMK_service": "pacemaker-fenced"})
    assert res.rc == 0 and dev.power == "off", res.err
    dev.reset()
    text = ("agent=fence_ilo_mp\nipaddr=127.0.0.1\nipport=2320\nlogin=admin\npasswd=secret\n"
            "option=status\n")
    res = run_fence(AGENT, stdin=text)
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    assert "stop -f /system1" not in dev.commands()


def test_port_as_ip_without_ip(dev):
    """ip is not required (pcs accepts port_as_ip=1 configurations without it)."""
    meta = run_fence(AGENT, args=["-o", "metadata"]).out
    assert '<parameter name="ip" unique="0" required="0" obsoletes="ipaddr">' in meta
    text = (f"action=off\nport=127.0.0.1\nport_as_ip=1\nipport={TELNET_PORT}\n"
            "username=admin\npassword=secret\npower_wait=0\n")
    res = run_fence(AGENT, stdin=text)
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n"), res.err
    assert dev.power == "off"
    dev.reset()
    res = run_fence(AGENT, stdin=text.replace("port_as_ip=1\n", ""))
    assert res.rc == 1 and "You have to enter fence address" in res.err
    res = run_fence(AGENT, stdin=text.replace("action=off", "action=validate-all")
                    .replace("port_as_ip=1\n", ""))
    assert res.rc == 1 and "fence address" in res.err
    assert dev.power == "on" and dev.commands() == []


def test_missing_identity_file_is_a_clear_error(dev):
    res = run_fence(AGENT, args=["-a", "127.0.0.1", "-x", "-u", str(TELNET_PORT), "-l", "admin",
                                 "-k", "/nonexistent/id_ed25519", "-o", "off"])
    assert res.rc == 1 and "Identity file /nonexistent/id_ed25519 does not exist" in res.err
    assert dev.commands() == []


def test_wrong_password_is_a_login_failure(dev):
    res = run_fence(AGENT, args=args("-o", "off", password="Wr0ngPass"))
    assert res.rc == 1 and "Unable to connect/login" in res.err
    assert "Wr0ngPass" not in res.err and dev.power == "on"


@pytest.mark.parametrize("mode, words", [
    ("unknown", "EnabledState=Unknown"),
    ("garbage", "no EnabledState"),
])
def test_unclear_state_is_an_error_never_off(dev, mode, words):
    dev.mode(mode)
    for action in ("status", "off"):
        res = run_fence(AGENT, args=args("-o", action))
        assert res.rc == 1 and words in res.err, res.err
    assert "stop -f /system1" not in dev.commands()


def test_refused_stop_and_stuck_node(dev):
    dev.mode("refuse")
    res = run_fence(AGENT, args=args("-o", "off"))
    assert res.rc == 1 and "refused 'stop -f /system1'" in res.err
    dev.mode("stuck")
    res = run_fence(AGENT, args=args("-o", "off", "--power-timeout=1"))
    assert res.rc == 1 and "Timed out waiting to power OFF" in res.err
    assert dev.power == "on"


def test_unreachable_and_bad_input(dev):
    start = time.monotonic()
    res = run_fence(AGENT, args=["-a", "127.0.0.1", "-u", "2329", "-l", "admin", "-p", "x",
                                 "-o", "status", "--login-timeout=2"])
    assert res.rc == 1 and "Unable to connect/login" in res.err
    assert time.monotonic() - start < 3
    for bad, words in ((["-o", "bogus"], "Unrecognised action"),
                       (["-o", "off", "-a", "127.0.0.1 -oProxyCommand=x"], "not a host name"),
                       (["-o", "off", "-c", "MP>("], "regular expression"),
                       (["-o", "off", "-x", "--ssh-options=-o 'User=x"], "cannot be split")):
        res = run_fence(AGENT, args=args(*bad))
        assert res.rc == 1 and words in res.err, res.err
    res = run_fence(AGENT, stdin="action=off\nip=127.0.0.1\nipport=2320\nusername=admin\n")
    assert res.rc == 1 and "password" in res.err
    assert dev.power == "on" and dev.commands() == []


@pytest.mark.parametrize("argv, words", [
    (["-p", "secret\r\nstop -f /system1"], "'password': value '[hidden]' contains a control"),
    (["-p", "secret\x03"], "'password': value '[hidden]' contains a control"),
    (["-l", "admin\nstop -f /system1"], "'username': value 'admin\\nstop -f /system1' contains"),
    (["-l", "ad min"], "'username': value 'ad min' contains a blank"),
])
def test_control_characters_never_reach_the_cli(dev, argv, words):
    """A line break in a value would type a second command into the device's CLI."""
    for action in ("off", "validate-all"):
        res = run_fence(AGENT, args=args("-o", action, *argv))
        assert res.rc == 1 and words in res.err, res.err
        assert "secret" not in res.err and "Traceback" not in res.err
    assert dev.commands() == [] and dev.power == "on"


def test_password_script_output_is_checked_like_a_password(dev, tmp_path):
    script = tmp_path / "pw"
    script.write_text("#!/bin/sh\nprintf 'secret\\033[Kstop -f /system1\\n'\n")
    script.chmod(0o755)
    res = run_fence(AGENT, args=["-a", "127.0.0.1", "-u", str(TELNET_PORT), "-l", "admin",
                                 "-S", str(script), "-o", "off"])
    assert res.rc == 1 and "the password contains a control character" in res.err, res.err
    assert dev.commands() == [] and dev.power == "on"


def test_ssh_destination_follows_a_double_dash():
    from fence.ilo_mp import ssh_argv

    ctx = loopback_ctx()
    argv = ssh_argv(ctx, 22)
    assert argv[-2:] == ["--", "admin@127.0.0.1"]


def test_password_never_logged(dev, tmp_path):
    debug = tmp_path / "debug.log"
    res = run_fence(AGENT, args=args("-o", "reboot", "-v", "-D", str(debug)))
    assert res.rc == 0, res.err
    text = res.err + res.out + debug.read_text()
    assert "sent: (password, not logged)" in text and "sent: show /system1" in text
    assert "secret" not in text and "****" not in text


# -- SSH, through Debian's sshd ------------------------------------------------------------


def start_sshd(port: int, sim_mode: str = "--stdio", extra: str = "") -> Iterator[Device]:
    """Debian's sshd on 127.0.0.1:port, key login for root, the CLI as ForceCommand."""
    folder = Path(f"/tmp/pyha-fence-ilo-{port}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    for name in ("hostkey", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(folder / name)], check=True)
    shutil.copy(folder / "client.pub", folder / "authorized_keys")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/hostkey\n"
        f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {folder}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowUsers root\n"
        f"PrintMotd no\nPrintLastLog no\n{extra}"
        f"ForceCommand /usr/bin/python3 {SIM} {sim_mode} {folder}\n")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                            stderr=subprocess.DEVNULL)
    wait_tcp(port)
    dev = Device(folder, port)
    dev.reset()
    yield dev
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Device]:
    yield from start_sshd(SSH_PORT)


def ssh_args(dev: Device, *extra: str) -> list[str]:
    return ["-a", "127.0.0.1", "-x", "-u", str(dev.port), "-l", "root",
            "-k", str(dev.dir / "client"), "--power-wait=0",
            f"--ssh-options=-o UserKnownHostsFile={dev.dir}/known_hosts "
            "-o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR", *extra]


def test_ssh_host_key_checking(sshd):
    sshd.reset()
    known = sshd.dir / "known_hosts"
    known.unlink(missing_ok=True)
    # Strict checking on request: an unknown key is refused before any command.
    res = run_fence(AGENT, args=ssh_args(sshd, "-o", "status", "--accept-new-hostkey=0"))
    assert res.rc == 1 and "not in known_hosts" in res.err, res.err
    assert sshd.commands() == [] and not known.exists()
    # By default the first contact succeeds and records the key (OpenSSH's accept-new).
    res = run_fence(AGENT, args=ssh_args(sshd, "-o", "status"))
    assert (res.rc, res.out) == (0, "Status: ON\n"), res.err
    host_key = (sshd.dir / "hostkey.pub").read_text().split()[1]
    assert host_key in known.read_text()
    res = run_fence(AGENT, args=ssh_args(sshd, "-o", "status", "--accept-new-hostkey=0"))
    assert res.rc == 0, res.err  # known now: strict passes
    # A changed key is refused, whatever accept_new_hostkey says.
    other = sshd.dir / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known.write_text(f"[127.0.0.1]:{SSH_PORT} " + (sshd.dir / "other.pub").read_text())
    res = run_fence(AGENT, args=ssh_args(sshd, "-o", "off"))
    assert res.rc == 1 and "host key of 127.0.0.1 has changed" in res.err, res.err
    assert sshd.power == "on" and "stop -f /system1" not in sshd.commands()
    known.unlink()


def test_ssh_actions(sshd):
    sshd.reset()
    base = ssh_args(sshd)
    res = run_fence(AGENT, args=[*base, "-o", "reboot"])
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    cmds = sshd.commands()
    assert cmds[0] == "SMCLP" and "stop -f /system1" in cmds
    res = run_fence(AGENT, args=[*base, "-o", "off"])
    assert res.rc == 0 and sshd.power == "off"
    res = run_fence(AGENT, args=[*base, "-o", "status"])
    assert res.rc == 2


def test_ssh_wrong_key(sshd, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    argv = ssh_args(sshd, "-o", "off")
    argv[argv.index(str(sshd.dir / "client"))] = str(key)
    res = run_fence(AGENT, args=argv)
    assert res.rc == 1 and "login" in res.err.lower(), res.err


@pytest.fixture(scope="module", params=["raw pty", "no pty"])
def sshd_raw(request: pytest.FixtureRequest) -> Iterator[Device]:
    """An embedded SSH CLI: no line discipline on the device side, LF ends a line.

    "raw pty": sshd grants the pty, the CLI puts it in raw mode (the ssh client
    then sends bytes as typed).  "no pty": sshd refuses it (PermitTTY no).
    """
    if request.param == "raw pty":
        yield from start_sshd(SSH_RAW_PORT, "--stdio-raw")
    else:
        yield from start_sshd(SSH_RAW_PORT + 1, "--stdio-raw", "PermitTTY no\n")


def test_ssh_cli_without_line_discipline(sshd_raw):
    """Commands end with CR LF: a CLI that reads LF-terminated lines gets every one.

    The same simulator, served through a real sshd: with CR alone it never sees
    ``SMCLP`` and the action times out.
    """
    sshd_raw.reset()
    base = ssh_args(sshd_raw)
    res = run_fence(AGENT, args=[*base, "-o", "reboot"])
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    cmds = sshd_raw.commands()
    assert cmds[:2] == ["SMCLP", "show /system1"]
    assert cmds.index("stop -f /system1") < cmds.index("start /system1")
    res = run_fence(AGENT, args=[*base, "-o", "off"])
    assert (res.rc, res.out) == (0, "Success: Powered OFF\n"), res.err
    assert sshd_raw.power == "off"
    assert run_fence(AGENT, args=[*base, "-o", "status"]).rc == 2


def test_the_ssh_transport_on_its_own(sshd_raw, tmp_path):
    """The SSH seam without the agent: the real OpenSSH client under pexpect and a real
    sshd.  CR is dropped, a command ends with CR LF and reaches the CLI once, a secret
    line is never logged by the transport, a read has one overall time limit, and the
    end of the session is an error that gives the device's last words."""
    from ocf_lib.log import Logger
    from ocf_lib.transport import SSHTransport, TransportError, TransportTimeout

    sshd_raw.reset()
    logfile = tmp_path / "debug.log"
    log = Logger("seam", {"HA_LOGFILE": str(logfile), "HA_debug": "1"})
    argv = ["/usr/bin/ssh", "-p", str(sshd_raw.port), "-i", str(sshd_raw.dir / "client"),
            "-o", "PasswordAuthentication=no", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={sshd_raw.dir}/known_hosts",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "--", "root@127.0.0.1"]
    cli = SSHTransport(argv, log)
    try:
        index, text = cli.expect(["MP>"], 10)  # after ssh's notice when sshd refuses a pty
        assert index == 0 and text.endswith("MP>")
        cli.send("show /system1")
        lines = cli.read_until("EnabledState=Enabled", 5)
        assert lines[0].strip() == "show /system1"  # the CLI's own echo
        assert "status=0" in lines and not any("\r" in line for line in lines)
        assert cli.expect(["MP>"], 5)[0] == 0
        cli.send_secret("stop -f /system1")
        assert cli.expect(["MP>"], 5)[0] == 0
        started = time.monotonic()
        with pytest.raises(TransportTimeout, match="timed out waiting for nothing"):
            cli.expect(["nothing"], 0.5)
        assert time.monotonic() - started < 1.5
        cli.send("exit")
        with pytest.raises(TransportError, match="^ssh ended: Bye.$"):
            cli.expect(["never"], 5)
    finally:
        cli.close()
    assert sshd_raw.commands() == ["show /system1", "stop -f /system1", "exit"]
    assert sshd_raw.power == "off"
    logged = logfile.read_text()
    assert "sent: show /system1" in logged and "sent: (password, not logged)" in logged
    assert "sent: stop" not in logged


def test_echo_and_extra_prompt_are_not_replies():
    """A device-side pty echoes each command and answers CR LF with a second prompt."""
    from fence.ilo_mp import SmashCLP
    from ocf_lib.transport import LoopbackTransport

    power = {"state": "Enabled"}

    def device(line: str) -> str:
        reply = {"show /system1": f"status=0\n  EnabledState={power['state']}\n",
                 "stop -f /system1": "status=0\n", "SMCLP": ""}.get(line, "bad command\n")
        if line == "stop -f /system1":
            power["state"] = "Disabled"
        # echo, reply, prompt; then the empty line's prompt
        return f"{line}\n{reply}hpiLO-> \nhpiLO-> "

    cli = LoopbackTransport(device, banner="MP> ")
    cli.expect(["MP>"], 1)
    clp = SmashCLP(loopback_ctx(), cli)
    assert clp.status(None) == "on"
    clp.set_power(None, "off")
    assert clp.status(None) == "off"
    assert cli.sent == ["show /system1", "stop -f /system1", "show /system1"]


def loopback_ctx():
    """A real FenceContext of fence_ilo_mp, for the session code on the loopback seam."""
    from fence.ilo_mp import agent

    raw = {"action": "status", "ip": "127.0.0.1", "username": "admin", "password": "x",
           "shell_timeout": "1", "power_timeout": "1"}
    return agent.context(raw, {}, AGENT)


def test_smash_clp_parsing_through_the_loopback_seam():
    """The agent's session code against ocf_lib.transport's test double (same interface)."""
    from fence.ilo_mp import SmashCLP
    from ocf_lib.fence import FenceError
    from ocf_lib.transport import LoopbackTransport

    replies = {"show /system1": "status=0\nEnabledState=Disabled\nhpiLO-> "}
    cli = LoopbackTransport(lambda line: replies.get(line, "Invalid command\nhpiLO-> "))
    clp = SmashCLP(loopback_ctx(), cli)
    assert clp.status(None) == "off"
    replies["show /system1"] = "status=0\nEnabledState=Quiescing\nhpiLO-> "
    with pytest.raises(FenceError, match="EnabledState=Quiescing"):
        clp.status(None)
    replies["stop -f /system1"] = "status=2\nerror_tag=COMMAND ERROR\nhpiLO-> "
    with pytest.raises(FenceError, match="refused"):
        clp.set_power(None, "off")
    assert cli.sent == ["show /system1", "show /system1", "stop -f /system1"]


# -- SSH with a password: sshd in a private mount namespace -----------------------------
# The device account "ilo" (password "secret") exists only in copies of /etc/passwd
# and /etc/shadow bind-mounted over the originals inside sshd's own mount namespace.


@pytest.fixture(scope="module")
def sshd_pw():
    folder = Path(f"/tmp/pyha-fence-ilo-{SSH_PW_PORT}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    folder.chmod(0o777)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "hostkey")],
                   check=True)
    digest = subprocess.run(["openssl", "passwd", "-6", "secret"], check=True,
                            capture_output=True, text=True).stdout.strip()
    (folder / "passwd").write_text(Path("/etc/passwd").read_text()
                                   + f"ilo:x:60999:60999::{folder}:/bin/sh\n")
    (folder / "shadow").write_text(Path("/etc/shadow").read_text() + f"ilo:{digest}:19000::::::\n")
    (folder / "shadow").chmod(0o640)
    config = folder / "sshd_config"
    config.write_text(
        f"Port {SSH_PW_PORT}\nListenAddress 127.0.0.1\nHostKey {folder}/hostkey\n"
        f"PidFile {folder}/sshd.pid\nPasswordAuthentication yes\nPubkeyAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nAllowUsers ilo\nPrintMotd no\n"
        f"PrintLastLog no\nForceCommand /usr/bin/python3 {SIM} --stdio {folder}\n")
    script = (f"mount --bind {folder}/passwd /etc/passwd && "
              f"mount --bind {folder}/shadow /etc/shadow && "
              f"exec /usr/sbin/sshd -D -e -f {config}")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stderr=subprocess.DEVNULL)
    wait_tcp(SSH_PW_PORT)
    dev = Device(folder)
    dev.reset()
    for name in ("power", "mode", "commands.log"):
        (folder / name).chmod(0o666)
    yield dev
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(folder, ignore_errors=True)


def pw_args(dev: Device, password: str, *extra: str) -> list[str]:
    return ["-a", "127.0.0.1", "-x", "-u", str(SSH_PW_PORT), "-l", "ilo", "-p", password,
            "--power-wait=0",
            f"--ssh-options=-o UserKnownHostsFile={dev.dir}/known_hosts "
            "-o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR", *extra]


def test_ssh_password_login_never_shows_the_password(sshd_pw, tmp_path):
    import threading

    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if b"ssh" in cmd or b"fence_ilo_mp" in cmd:
                        seen.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    debug = tmp_path / "debug.log"
    text = (f"action=reboot\nip=127.0.0.1\nipport={SSH_PW_PORT}\nusername=ilo\n"
            "password=secret\nssh=1\npower_wait=0\n"
            f"ssh_options=-o UserKnownHostsFile={sshd_pw.dir}/known_hosts "
            "-o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR\n"
            f"verbose=1\ndebug_file={debug}\n")
    try:
        res = run_fence(AGENT, stdin=text)
    finally:
        stop.set()
        watcher.join()
    assert (res.rc, res.out) == (0, "Success: Rebooted\n"), res.err
    assert any("/usr/bin/ssh" in c for c in seen), "the ssh client was never observed"
    assert all("secret" not in c for c in seen)
    assert "secret" not in res.err + debug.read_text()
    assert "sent: (password, not logged)" in debug.read_text()
    cmds = sshd_pw.commands()
    assert cmds.index("stop -f /system1") < cmds.index("start /system1")


def test_ssh_wrong_password(sshd_pw):
    res = run_fence(AGENT, args=pw_args(sshd_pw, "Wr0ngPass", "-o", "off"))
    assert res.rc == 1 and "Unable to connect/login" in res.err, res.err
    assert "Wr0ngPass" not in res.err and sshd_pw.power == "on"


def test_dead_dns_server_fails_within_login_timeout(dead_dns):  # noqa: F811
    """Telnet to a host name whose DNS server never answers (resolver timeout 10 s)."""
    start = time.monotonic()
    res = subprocess.run(["ip", "netns", "exec", dead_dns, str(ROOT / "fence/fence_ilo_mp"),
                          "-a", DEAD_NAME, "-l", "admin", "-p", "secret", "-o", "status",
                          "--login-timeout=2"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and f"resolving {DEAD_NAME} timed out" in res.stderr, res.stderr
    assert time.monotonic() - start < 4
    # Over SSH the client resolves the name itself; login_timeout bounds it all the same.
    start = time.monotonic()
    res = subprocess.run(["ip", "netns", "exec", dead_dns, str(ROOT / "fence/fence_ilo_mp"),
                          "-a", DEAD_NAME, "-x", "-l", "admin", "-p", "secret", "-o", "status",
                          "--login-timeout=2"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "timed out" in res.stderr, res.stderr
    assert time.monotonic() - start < 4
