"""fence_ilo_mp: HP iLO 2 MP / Integrity MP through its SMASH CLP.

Log in over telnet (spoken natively, :class:`ocf_lib.transport.TCPLineTransport`) or SSH
(the OpenSSH client under pexpect), switch the MP main menu (``MP>``) into
SMASH CLP with ``SMCLP`` and read ``show /system1``: ``EnabledState=Enabled``
is on, ``EnabledState=Disabled`` is off.  ``start /system1`` powers on,
``stop -f /system1`` powers off at once.

Differences from upstream fence_ilo_mp 4.12:

* only an explicit ``EnabledState=Disabled`` is off; any other value, an
  error message, or no EnabledState line at all is an error (upstream took
  anything not "enabled" for off, so an error could pass for a fence);
* the CLP ``status=`` line after start/stop is checked, and the prompt is
  awaited after every command, ``SMCLP`` included; commands end with CR LF
  as upstream's do, and the echo and the extra prompt a device-side pty
  makes of CR LF are never taken for a reply;
* SSH records the key of a device seen for the first time and refuses a
  changed key (OpenSSH's ``StrictHostKeyChecking=accept-new``);
  ``accept_new_hostkey=0`` refuses any key not already in known_hosts
  (upstream answered "yes" to every question);
* a password typed into the session never reaches a log (upstream logged
  ``Sent: <password>`` at debug level); the login, the password (from
  ``password_script`` too) and the address may hold no control character or
  line break, and ``--`` precedes the ssh destination;
* a host name is resolved within ``login_timeout`` (telnet), and ssh's own
  lookup is bounded by it too;
* the default prompt is one regex, ``MP>|hpiLO->`` (upstream showed a Python
  list repr); ``telnet_path`` is accepted and unused (no telnet binary);
* the state is polled during ``power_wait`` over the open session.
"""

from __future__ import annotations

import os.path

from ocf_lib.fence import (
    CLI_TEXT,
    CLI_WORD,
    REGEX,
    WORDS,
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
from ocf_lib.params import BOOLEAN, STRING, Param
from ocf_lib.transport import LineTransport, TransportError

LOGIN_RE = r"(login\s*: ?)|((?<!Last )Login Name: )|(username: ?)|(User Name ?:)"
PASSWORD_RE = r"(password\s*:?)|(pass phrase)"
FAILED_RE = r"(invalid|incorrect|denied|failed)"

PARAMS = [
    opt_action(),
    Param("command_prompt", REGEX, default="MP>|hpiLO->", getopt="c", aliases=("cmd_prompt",),
          shortdesc="Force Python regex for command prompt"),
    Param("identity_file", STRING, getopt="k", shortdesc="Identity file (private key) for SSH"),
    Param("inet4_only", BOOLEAN, getopt="4", shortdesc="Forces agent to use IPv4 addresses only"),
    Param("inet6_only", BOOLEAN, getopt="6", shortdesc="Forces agent to use IPv6 addresses only"),
    opt_ip(required=False),
    opt_ipport("23", shortdesc="TCP port to use for connection with device "
                               "(default 23, 22 if ssh is used)"),
    *opt_password(CLI_TEXT),
    *opt_plug(required=False, port_as_ip=True),
    Param("ssh", BOOLEAN, getopt="x", aliases=("secure",), shortdesc="Use SSH connection"),
    Param("ssh_options", WORDS, shortdesc="SSH options to use"),
    Param("accept_new_hostkey", BOOLEAN, default="1",
          shortdesc="Record the SSH host key of a device seen for the first time, as "
                    "OpenSSH's StrictHostKeyChecking=accept-new; a changed key is always "
                    "refused. Set to 0 for strict checking: only keys already in "
                    "known_hosts are accepted"),
    opt_login(required=True, type=CLI_WORD),
    *opt_common(power_wait="5"),
    Param("ssh_path", STRING, default="/usr/bin/ssh", order=200, shortdesc="Path to ssh binary"),
    Param("telnet_path", STRING, default="/usr/bin/telnet", order=200,
          shortdesc="Path to telnet binary (unused: pyha speaks telnet itself)"),
]


def validate(ctx: FenceContext) -> list[str]:
    o = ctx.options
    out = []
    if not (o.get("password") or o.get("password_script") or o.get("identity_file")):
        out.append("You have to enter password, password script or identity file")
    if o.get("identity_file") and not o.get("ssh"):
        out.append("You have to use identity file together with ssh connection (-x)")
    if o.get("identity_file") and not os.path.isfile(o.identity_file):
        out.append(f"Identity file {o.identity_file} does not exist")
    if o.get("ip") is None:
        out.append("You have to enter fence address (ip, or plug with port_as_ip=1)")
    return out


def ssh_argv(ctx: FenceContext, port: int) -> list[str]:
    import math

    o = ctx.options
    argv = [o.ssh_path, "-p", str(port),
            "-o", "StrictHostKeyChecking=" + ("accept-new" if o.accept_new_hostkey else "yes"),
            "-o", "NumberOfPasswordPrompts=1",
            "-o", f"ConnectTimeout={math.ceil(o.login_timeout)}"]
    if o.inet4_only:
        argv.append("-4")
    if o.inet6_only:
        argv.append("-6")
    if o.identity_file is not None:
        argv += ["-i", o.identity_file, "-o", "PasswordAuthentication=no"]
    else:
        argv += ["-o", "PubkeyAuthentication=no"]
    if o.ssh_options is not None:
        argv += o.ssh_options
    return [*argv, "--", f"{o.username}@{o.ip}"]  # "--": the destination is never an option


class SmashCLP(Session):
    def __init__(self, ctx: FenceContext, cli: LineTransport) -> None:
        self.ctx = ctx
        self.cli = cli
        self.prompt = ctx.options.command_prompt

    def command(self, line: str, timeout: float | None = None, *, answer: bool = True) -> str:
        """Send one command and return its output, without echo and prompt.

        CR LF reaches a device-side pty as two line ends, so a command may be
        followed by its echo and by one extra, empty prompt.  An empty reply
        is therefore skipped when the command must ``answer`` (every SMASH CLP
        command prints at least a ``status=`` line): a stale prompt is never
        read as the reply to the next command.
        """
        import re
        import time

        wait = self.ctx.limit(self.ctx.options.shell_timeout if timeout is None else timeout)
        end = time.monotonic() + wait
        try:
            self.cli.send(line)
            while True:
                text = self.cli.expect([self.prompt], max(0.0, end - time.monotonic()))[1]
                m = re.search(f"(?:{self.prompt})\\Z", text, re.IGNORECASE)
                body = [x for x in (text[:m.start()] if m else text).splitlines()
                        if x.strip() and x.strip() != line]
                if body or not answer:
                    return "\n".join(body)
        except TransportError as exc:
            raise FenceError(f"iLO MP '{line}': {exc}") from None

    def status(self, plug: str | None) -> str:
        out = self.command("show /system1")
        for raw in out.splitlines():
            key, _, value = raw.strip().partition("=")
            if key.strip().lower() == "enabledstate":
                word = value.strip().lower()
                if word == "enabled":
                    return "on"
                if word == "disabled":
                    return "off"
                raise FenceError(f"iLO MP reports EnabledState={value.strip()}: neither "
                                 "Enabled nor Disabled")
        last = [line.strip() for line in out.splitlines() if line.strip()]
        raise FenceError("iLO MP 'show /system1' has no EnabledState: "
                         + (last[0] if last else "empty reply"))

    def set_power(self, plug: str | None, state: str) -> None:
        line = "start /system1" if state == "on" else "stop -f /system1"
        out = self.command(line, self.ctx.options.power_timeout)
        for raw in out.splitlines():
            key, _, value = raw.strip().partition("=")
            if key.strip().lower() == "status" and value.strip() not in ("0", ""):
                raise FenceError(f"iLO MP refused '{line}': {out.strip()}")

    def close(self) -> None:
        try:
            self.cli.send("exit")
        except TransportError:
            pass
        self.cli.close()


def login(ctx: FenceContext) -> LineTransport:
    from ocf_lib.transport import SSHTransport, TCPLineTransport

    o = ctx.options
    timeout = ctx.limit(o.login_timeout)
    port = o.ipport
    password = o.password  # None with an identity file and no passphrase
    prompt = o.command_prompt
    if o.ssh:
        cli: LineTransport = SSHTransport(ssh_argv(ctx, port if o.given("ipport") else 22),
                                          ctx.log)
        waits = [PASSWORD_RE, "passphrase", prompt, "host key verification failed",
                 "permission denied", "identification has changed", "host key is known"]
        index, text = cli.expect(waits, timeout)
        if index in (0, 1):
            if password is None:
                raise FenceError("the SSH key or account needs a password or passphrase")
            cli.send_secret(password)
            index, text = cli.expect(waits, timeout)
        if index == 5:
            raise FenceError(f"the SSH host key of {o.ip} has changed: refused (if the "
                             "device was replaced, remove its old key from known_hosts "
                             "with ssh-keygen -R)")
        if index == 6:
            raise FenceError(f"the SSH host key of {o.ip} is not in known_hosts, and "
                             "accept_new_hostkey=0 asks for strict checking")
        if index == 3:
            raise FenceError(f"the SSH host key of {o.ip} could not be verified "
                             "(host key verification failed)")
        if index != 2:
            raise FenceError("Unable to connect/login to fencing device: login refused")
        return cli
    cli = TCPLineTransport(o.ip, port, timeout, "\r\n", telnet=True, log=ctx.log)
    cli.expect([LOGIN_RE], timeout)
    cli.send(o.username)
    cli.expect([PASSWORD_RE], timeout)
    cli.send_secret(password)  # validate() asks for one without ssh
    index, _ = cli.expect([prompt, LOGIN_RE, FAILED_RE], timeout)
    if index != 0:
        raise FenceError("Unable to connect/login to fencing device: login refused")
    return cli


def connect(ctx: FenceContext) -> Session:
    try:
        cli = login(ctx)
    except TransportError as exc:
        raise FenceError(f"Unable to connect/login to fencing device: {exc}") from None
    session = SmashCLP(ctx, cli)
    # Integrity MP main menu -> SMASH CLP; on a ProLiant iLO (already SMASH CLP)
    # an error reply, harmless.  The reply may be empty.
    session.command("SMCLP", answer=False)
    return session


agent = FenceAgent(
    "fence_ilo_mp",
    shortdesc="Fence agent for HP iLO MP",
    longdesc="fence_ilo_mp is a Power Fencing agent for HP iLO MP.",
    vendor_url="http://www.hp.com",
    params=PARAMS,
    connect=connect,
    validate=validate,
    poll_during_wait=True,
)
