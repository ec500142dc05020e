"""The fence-agent runtime.

A fence agent declares its device options (with :class:`~ocf_lib.params.Param`)
and a ``connect`` function that returns a :class:`Session`, the agent's one
seam to its device.  The runtime owns everything else, so that no agent can
report a fence that did not happen:

* input from argv (fence-agents' short and long options) or, with no
  arguments, from stdin ``name=value`` lines as pacemaker-fenced and CMAN's
  fenced send them, with the legacy names (``ipaddr``, ``login``, ``passwd``,
  ``passwd_script``, ``port``, ``nodename``, ``option``, ``name``, ``fm``);
* an unknown action is an error, never a fallback to ``reboot``;
* booleans parsed by value (``ssh=0`` means no SSH);
* ``password_script`` run without a shell, under a time limit;
* every step has its own time limit (``login_timeout``, ``shell_timeout``,
  ``power_timeout``, ``power_wait``, ``delay``); ``power_timeout`` is
  seconds, not poll iterations, and stays finite under Pacemaker; a limit of
  0 is refused (fence-agents reads it as "wait forever");
* one :class:`Deadline` for the whole action, their sum, unless
  ``disable_timeout`` is true, as it is by default under pacemaker-fenced
  (``PCMK_service=pacemaker-fenced``), which passes no timeout and kills the
  agent at its own ``pcmk_<action>_timeout``;
* ``off`` returns 0 only once the device *reports* the target off;
  ``reboot`` is off, verify off, then on: 0 once off is verified even if
  power-on fails (logged);
* an unknown stdin option is named in a warning on stderr (never its value)
  and ignored, except ``agent`` and ``nodename``, which the callers send to
  every agent;
* exit codes 0, 1, and 2 for ``status`` of a target that is off; error text
  contains ``timed out`` / ``Unrecognised action`` where Pacemaker keys on
  those words.
"""

from __future__ import annotations

import os
import sys

from . import codes
from .log import Logger
from .params import (
    BOOLEAN,
    DURATION,
    FILE_PATH,
    HOST,
    INTEGER,
    STRING,
    Param,
    ParamError,
    ParamType,
    parse,
)
from .runtime import ActionContext, Agent, AgentError, Deadline, Failure, run_guarded

TYPE_CHECKING = False  # typing is not worth importing on hot paths
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

ALL_ACTIONS = ("on", "off", "reboot", "status", "list", "list-status", "monitor",
               "metadata", "manpage", "validate-all")
ACTION_ALIASES = {"meta-data": "metadata", "reset": "reboot", "enable": "on", "disable": "off",
                  "stat": "status", "poweroff": "off", "poweron": "on"}
# Old stdin names that are not a parameter's own legacy key.
STDIN_ALIASES = {"option": "action", "fm": "plug", "blade": "plug", "hostname": "ip"}
# Sent by the callers to every agent (CMAN's fenced: agent; both: nodename).
STDIN_QUIET = ("agent", "nodename")
# pacemaker-fenced passes no timeout: it SIGKILLs the agent at pcmk_<action>_timeout.
# fence-agents then disables its own time limits, and so does the runtime (the
# whole-action one only).
FENCER_SERVICE = "pacemaker-fenced"


class FenceError(AgentError):
    """Ends the action with exit 1; ``str()`` is printed as ``Failed: ...``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, codes.FENCE_FAIL)


class Session:
    """The seam between the runtime and one fence device.

    An agent subclasses this for its device (IPMI session, CLI over
    telnet/SSH, TCP line protocol); a test double implements the same
    methods.  ``status`` must return exactly ``"on"`` or ``"off"`` and raise
    :class:`FenceError` for anything it cannot vouch for.
    """

    def status(self, plug: str | None) -> str:
        raise NotImplementedError

    def set_power(self, plug: str | None, state: str) -> None:
        raise NotImplementedError

    def cycle(self, plug: str | None) -> bool:
        """Power-cycle in one request; False when the device cannot."""
        return False

    def list(self) -> dict[str, tuple[str, str | None]]:
        """``{plug: (alias, "on"|"off"|None)}`` for multi-port devices."""
        raise FenceError("list is not supported by this device")

    def close(self) -> None:
        pass


# -- the standard options ------------------------------------------------------
# Builders, so each agent lists exactly the groups it uses and fence-agents'
# names, letters and order come out the same everywhere.


class _TrueFalse(ParamType):
    """fence-agents' ``disable_timeout``: a string option that holds true or false."""

    doc = "true or false"

    def convert(self, raw: str, name: str) -> bool:
        return bool(BOOLEAN.convert(raw, name))


TRUE_FALSE: ParamType = _TrueFalse()


class _Seconds(ParamType):
    """A duration in seconds (``30``, ``30s``, ``2min``); ``positive``: above 0."""

    fence_type = "second"

    def __init__(self, positive: bool) -> None:
        self.positive = positive
        self.doc = DURATION.doc + (", above 0" if positive else "")

    def convert(self, raw: str, name: str) -> float:
        value = float(DURATION.convert(raw, name))
        if self.positive and value <= 0:
            # fence-agents read 0 as "wait forever"; here every wait has a bound.
            raise ParamError(name, raw, "is not above 0 (every wait of a fence action has "
                                        "a limit: give the seconds to wait)")
        return value


SECONDS: ParamType = _Seconds(positive=False)
TIME_LIMIT: ParamType = _Seconds(positive=True)


class _Regex(ParamType):
    """A Python regular expression (a prompt); the value stays the pattern text."""

    doc = "regular expression"

    def convert(self, raw: str, name: str) -> str:
        import re

        try:
            re.compile(raw)
        except re.error as exc:
            raise ParamError(name, raw, f"is not a regular expression ({exc})") from None
        return raw


REGEX: ParamType = _Regex()


class _Words(ParamType):
    """Words split as a shell would, without running one (``ssh_options``)."""

    doc = "words, quoted as in a shell"

    def convert(self, raw: str, name: str) -> list[str]:
        import shlex

        try:
            return shlex.split(raw)
        except ValueError as exc:
            raise ParamError(name, raw, f"cannot be split into words ({exc})") from None


WORDS: ParamType = _Words()


class CLIText(ParamType):
    """Text typed into a device's command line (a login, a password).

    No control characters: a line break would end the line and start another
    command on the device, ESC or Ctrl-C would edit or abort it.  ``spaces``
    says whether a blank is allowed (not in a login name, which is also part
    of ``user@host`` on the ssh command line).
    """

    def __init__(self, spaces: bool = True) -> None:
        self.spaces = spaces
        self.doc = "printable text" + ("" if spaces else " without blanks")

    def convert(self, raw: str, name: str) -> str:
        shown = raw.encode("unicode_escape").decode("ascii")
        if not raw.isprintable():
            raise ParamError(name, shown, "contains a control character or line break")
        if not self.spaces and " " in raw:
            raise ParamError(name, shown, "contains a blank")
        return raw


CLI_TEXT: ParamType = CLIText()


class _DebugFile(ParamType):
    """``debug_file``: an absolute path.  fence-agents take any path, but a relative
    one names a different file in each directory the agent is started from."""

    doc = FILE_PATH.doc

    def convert(self, raw: str, name: str) -> str:
        if not raw.strip().startswith("/"):
            raise ParamError(name, raw, "is not an absolute path (a relative one would "
                                        "depend on the directory the agent runs in)")
        return str(FILE_PATH.convert(raw, name))


DEBUG_FILE: ParamType = _DebugFile()
CLI_WORD: ParamType = CLIText(spaces=False)


def opt_action(default: str = "reboot") -> Param:
    return Param("action", STRING, default=default, required=True, getopt="o", order=1,
                 shortdesc="Fencing action")


def opt_ip(required: bool = True) -> Param:
    return Param("ip", HOST, required=required, getopt="a", aliases=("ipaddr",), order=1,
                 shortdesc="IP address or hostname of fencing device")


def opt_ipport(default: str, aliases: Sequence[str] = (),
               shortdesc: str = "TCP/UDP port to use for connection with device") -> Param:
    return Param("ipport", INTEGER(1, 65535), default=default, getopt="u", aliases=aliases,
                 order=1, shortdesc=shortdesc)


def opt_login(required: bool = False, type: ParamType = STRING) -> Param:  # noqa: A002
    return Param("username", type, required=required, getopt="l", aliases=("login",),
                 order=1, shortdesc="Login name")


def opt_password(type: ParamType = STRING) -> list[Param]:  # noqa: A002
    """``password`` (secret) and ``password_script``; ``type`` checks the password."""
    return [
        Param("password", type, getopt="p", aliases=("passwd",), order=1, secret=True,
              shortdesc="Login password or passphrase"),
        Param("password_script", STRING, getopt="S", aliases=("passwd_script",), order=1,
              shortdesc="Script to run to retrieve password"),
    ]


def opt_plug(required: bool, port_as_ip: bool = False) -> list[Param]:
    desc = ("IP address or hostname of fencing device (together with --port-as-ip)"
            if port_as_ip else "Physical plug number on device, UUID or identification of machine")
    out = [Param("plug", STRING, required=required, getopt="n", aliases=("port",), order=1,
                 shortdesc=desc)]
    if port_as_ip:
        out.append(Param("port_as_ip", BOOLEAN, default="0", order=200,
                         shortdesc='Make "port/plug" to be an alias to IP address'))
    return out


def opt_output() -> list[Param]:
    """Output control, which every fence agent has (fence_pcmk too)."""
    return [
        Param("quiet", BOOLEAN, getopt="q", order=50, shortdesc="Disable logging to stderr."),
        Param("verbose", BOOLEAN, getopt="v", order=51, shortdesc="Verbose mode."),
        Param("verbose_level", INTEGER(0), order=52,
              shortdesc="Level of debugging detail in output."),
        Param("debug_file", DEBUG_FILE, getopt="D", aliases=("debug",), order=53,
              shortdesc="Write debug information to given file"),
        Param("version", BOOLEAN, getopt="V", order=54,
              shortdesc="Display version information and exit"),
        Param("help", BOOLEAN, getopt="h", order=55, shortdesc="Display help and exit"),
    ]


def opt_delay() -> Param:
    return Param("delay", SECONDS, default="0", order=200,
                 shortdesc="Wait X seconds before fencing is started")


def opt_timing(*, power_wait: str = "0", power_timeout: str = "20", login_timeout: str = "5",
               shell_timeout: str = "3") -> list[Param]:
    """The steps of an agent that talks to its device itself, each with its own bound."""
    return [
        Param("disable_timeout", TRUE_FALSE, order=200,
              shortdesc="Disable the time limit of the whole action (true/false) "
                        "(default: true when run by pacemaker-fenced, which bounds the agent "
                        "with pcmk_<action>_timeout). Each step keeps its own limit: "
                        "login_timeout, shell_timeout, power_timeout, power_wait, delay"),
        Param("login_timeout", TIME_LIMIT, default=login_timeout, order=200,
              shortdesc="Wait X seconds for cmd prompt after login"),
        Param("power_timeout", TIME_LIMIT, default=power_timeout, order=200,
              shortdesc="Test X seconds for status change after ON/OFF"),
        Param("power_wait", SECONDS, default=power_wait, order=200,
              shortdesc="Wait X seconds after issuing ON/OFF"),
        Param("shell_timeout", TIME_LIMIT, default=shell_timeout, order=200,
              shortdesc="Wait X seconds for cmd prompt after issuing command"),
        Param("stonith_status_sleep", TIME_LIMIT, default="1", order=200,
              shortdesc="Sleep X seconds between status calls during a STONITH action"),
        Param("retry_on", INTEGER(0), default="1", order=201,
              shortdesc="Count of attempts to retry power on"),
    ]


def opt_common(*, power_wait: str = "0", power_timeout: str = "20", login_timeout: str = "5",
               shell_timeout: str = "3") -> list[Param]:
    """Options every agent that drives a device has: output, plugs, delay, timing."""
    return [
        *opt_output(),
        Param("plug_separator", STRING, default=",", order=100,
              shortdesc="Separator for plug parameter when specifying more than 1 plug"),
        opt_delay(),
        *opt_timing(power_wait=power_wait, power_timeout=power_timeout,
                    login_timeout=login_timeout, shell_timeout=shell_timeout),
    ]


class FenceAgent(Agent):
    def __init__(
        self,
        name: str,
        *,
        shortdesc: str,
        longdesc: str,
        params: Sequence[Param],
        connect: Callable[[FenceContext], Session] | None = None,
        vendor_url: str = "",
        multi_port: bool = False,
        has_list: bool = False,
        has_status: bool = True,
        aliases: Mapping[str, str] | None = None,
        alias_defaults: Mapping[str, Mapping[str, str]] | None = None,
        unfence_on_start: bool = False,
        needs_password: bool = False,
        cycle_param: str | None = None,
        validate: Callable[[FenceContext], Iterable[str]] | None = None,
        version: str = "pyha 0.1.0",
        perform: Callable[[FenceContext], int] | None = None,
        extra_actions: Mapping[str, Callable[[FenceContext, Session], int]] | None = None,
        unadvertised_actions: Mapping[str, Callable[[FenceContext, Session], int]]
        | None = None,
        poll_during_wait: bool = False,
    ) -> None:
        super().__init__(name, shortdesc=shortdesc, longdesc=longdesc, params=params,
                         version=version)
        self.connect = connect
        self.vendor_url = vendor_url
        self.multi_port = multi_port
        self.has_list = has_list
        self.has_status = has_status
        self.alias_shortdesc = {name: shortdesc, **(aliases or {})}
        self.alias_defaults = {k: dict(v) for k, v in (alias_defaults or {}).items()}
        self.unfence_on_start = unfence_on_start
        self.needs_password = needs_password
        self.cycle_param = cycle_param  # option whose value "cycle" selects cycle reboot
        self.validate = validate
        # An agent that hands the whole action to someone else (fence_pcmk asks
        # Pacemaker) gives ``perform`` instead of ``connect``: it returns the exit
        # code itself and owns the verification the Session flow would do.
        self.perform = perform
        # Device-specific actions (fence_ipmilan's diag): advertised after the
        # standard ones, run with the connected session, return the exit code.
        self.extra_actions = dict(extra_actions or {})
        # Accepted and run like extra_actions, but in no metadata, manpage or help:
        # for names a caller may send that must not look like a capability
        # (fence_ipmilan's list, which lists nothing).
        self.unadvertised_actions = dict(unadvertised_actions or {})
        # Poll the state during power_wait too: for devices whose status query is
        # cheap and exact (IPMI Get Chassis Status over an open session), so a
        # verified change is reported as soon as the device shows it.
        self.poll_during_wait = poll_during_wait
        if (connect is None) == (perform is None):
            raise ValueError(f"{name}: give exactly one of connect= and perform=")

    def action_names(self) -> list[str]:
        out = ["on", "off", "reboot", "status"]
        if self.has_list:
            out += ["list", "list-status"]
        out += ["monitor", "metadata", "manpage", "validate-all"]
        return out + list(self.extra_actions)

    def metadata(self, name: str | None = None) -> str:
        from .metadata import fence_metadata

        return fence_metadata(self, name)

    def manpage(self, name: str | None = None) -> str:
        from .metadata import fence_manpage

        return fence_manpage(self, name)

    def params_for(self, name: str) -> list[Param]:
        """The declarations with an alias's defaults applied (fence_ilo3 and friends)."""
        overrides = self.alias_defaults.get(name, {})
        if not overrides:
            return self.params
        out = []
        for p in self.params:
            if p.name in overrides:
                clone = Param(p.name, p.type, default=overrides[p.name])
                for slot in Param.__slots__:
                    if slot != "default":
                        setattr(clone, slot, getattr(p, slot))
                p = clone
            out.append(p)
        return out

    # -- running ------------------------------------------------------------

    def process(self, argv: list[str]) -> int:
        return self.run(argv, os.environ, sys.stdin)

    def run(self, argv: Sequence[str], env: Mapping[str, str], stdin: Any) -> int:
        name = os.path.basename(argv[0]) if argv else self.name
        if name not in self.alias_shortdesc:
            name = self.name
        params = self.params_for(name)
        unknown: list[str] = []
        try:
            if len(argv) > 1:
                raw = parse_argv(params, argv[1:])
            else:
                raw = parse_stdin(params, stdin, unknown)
                # --help/--version are for people at a terminal.  From stdin (the
                # daemons' way) they would turn a fence request into exit 0.
                raw.pop("help", None)
                raw.pop("version", None)
        except FenceError as exc:
            return _failed(str(exc), quiet=False)
        if unknown and not _truthy(raw.get("quiet")):
            # The name only: the value of a misspelt option may be a password.
            for key in unknown:
                sys.stderr.write(f"WARNING: Parse error: Ignoring unknown option '{key}'\n")
        if "action" in raw and not raw["action"].strip():
            return _failed("Unrecognised action '' (an empty action is not the default)",
                           quiet=False)
        action = _action(raw, params)
        if action == "metadata" or _truthy(raw.get("help")):
            sys.stdout.write(self.metadata(name) if action == "metadata" else self.help(name))
            return codes.FENCE_OK
        if action == "manpage":
            sys.stdout.write(self.manpage(name))
            return codes.FENCE_OK
        if _truthy(raw.get("version")):
            sys.stdout.write(self.version + "\n")
            return codes.FENCE_OK
        try:
            ctx = self.context(raw, env, name)
        except FenceError as exc:
            return _failed(str(exc), quiet=False)
        return ctx.execute()

    def context(self, options: Mapping[str, str], env: Mapping[str, str],
                name: str | None = None) -> FenceContext:
        """One action's context from option values by parameter name (as
        :func:`parse_argv` and :func:`parse_stdin` return them).

        ``name`` is the name the agent runs as (an alias brings its defaults);
        the action is normalised as on the command line, and one this agent
        does not have raises :class:`FenceError`.
        """
        name = name if name in self.alias_shortdesc else self.name
        params = self.params_for(name)
        raw = dict(options)  # the context consumes its input; the caller's stays whole
        action = _action(raw, params)
        if action not in self.action_names() and action not in self.unadvertised_actions:
            raise FenceError(f"Unrecognised action '{action}'")
        raw["action"] = action
        return FenceContext(self, name, params, raw, env)

    def help(self, name: str) -> str:
        from .metadata import fence_getopt

        lines = [f"Usage:\n\t{name} [options]\nOptions:"]
        for p in sorted(self.params_for(name), key=lambda q: (q.order, q.name)):
            default = f" (default {p.default})" if p.default is not None else ""
            lines.append(f"   {fence_getopt(p):<30} {p.shortdesc}{default}")
        lines.append("Actions: " + ", ".join(self.action_names()))
        return "\n".join(lines) + "\n"


def _truthy(value: str | None) -> bool:
    # An empty value is not "true": a stray ``version=`` line must not turn a
    # fence request into a version print that exits 0.
    return value is not None and value.strip().lower() in ("1", "yes", "true", "on")


def _default(params: Sequence[Param], name: str) -> str:
    for p in params:
        if p.name == name and p.default is not None:
            return p.default
    return ""


def _action(raw: Mapping[str, str], params: Sequence[Param]) -> str:
    """The action asked for, by its canonical name (no action: the declared default)."""
    action = raw.get("action", "").strip().lower() or _default(params, "action")
    return ACTION_ALIASES.get(action, action)


def _failed(message: str, *, quiet: bool) -> int:
    if not quiet:
        sys.stderr.write(f"Failed: {message}\n")
    return codes.FENCE_FAIL


# -- input ----------------------------------------------------------------------


def _lookup_table(params: Sequence[Param]) -> dict[str, Param]:
    table: dict[str, Param] = {}
    for p in params:
        for key in (p.name, p.longopt, *p.aliases):
            table[key.replace("-", "_")] = p
    return table


def parse_stdin(params: Sequence[Param], stream: Any,
                unknown: list[str] | None = None) -> dict[str, str]:
    """``name=value`` lines in any order; the last duplicate wins.

    Unknown names are ignored (the FenceAgentAPI asks for it) and collected in
    ``unknown``, so that the caller can warn about a misspelt option.
    """
    table = _lookup_table(params)
    raw: dict[str, str] = {}
    nodename = None
    legacy: dict[str, str] = {}
    text = stream.read() if stream is not None else ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().replace("-", "_")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "nodename":
            nodename = value
        elif key in table:
            raw[table[key].name] = value
        elif key in STDIN_ALIASES:
            if key == "fm" and len(value.split()) > 1:
                value = value.split()[1]  # "fm=<module> <port>": fence_na took the port
            legacy[STDIN_ALIASES[key]] = value
        elif key == "name" and "username" in {p.name for p in params}:
            legacy["username"] = value
        elif unknown is not None and key not in STDIN_QUIET and key not in unknown:
            unknown.append(key)
    for key, value in legacy.items():
        if key in {p.name for p in params}:
            raw.setdefault(key, value)
    if nodename is not None:
        raw["__nodename"] = nodename
    return raw


def parse_argv(params: Sequence[Param], args: Sequence[str]) -> dict[str, str]:
    """GNU-style short and long options, as fence-agents' getopt accepts them."""
    longs = {p.longopt: p for p in params}
    longs.update({p.name.replace("_", "-"): p for p in params})
    # Legacy names on the command line too (fence_na's --tcp-port for --ipport).
    longs.update({a.replace("_", "-"): p for p in params for a in p.aliases
                  if a.replace("_", "-") not in longs})
    shorts = {p.getopt: p for p in params if p.getopt}
    raw: dict[str, str] = {}
    verbose = 0
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            p = longs.get(name)
            if p is None:
                raise FenceError(f"option --{name} is not recognised")
            if p.takes_value and not eq:
                if i >= len(args):
                    raise FenceError(f"option --{name} requires a value")
                value, i = args[i], i + 1
            elif not p.takes_value and not eq:
                value = "1"
            if p.name == "verbose":
                verbose += 1
            raw[p.name] = value
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                p = shorts.get(letter)
                if p is None:
                    raise FenceError(f"option -{letter} is not recognised")
                if p.takes_value:
                    value = arg[j + 1:]
                    if not value:
                        if i >= len(args):
                            raise FenceError(f"option -{letter} requires a value")
                        value, i = args[i], i + 1
                    raw[p.name] = value
                    break
                if p.name == "verbose":
                    verbose += 1
                raw[p.name] = "1"
                j += 1
        else:
            raise FenceError(f"unexpected argument '{arg}'")
    if verbose > 1 and "verbose_level" not in raw:
        raw["verbose_level"] = str(verbose)
    return raw


# -- execution --------------------------------------------------------------------


class FenceContext(ActionContext):
    """One fence action: converted options, the target, a deadline, a logger."""

    def __init__(self, agent: FenceAgent, name: str, params: Sequence[Param],
                 raw: dict[str, str], env: Mapping[str, str]) -> None:
        self.agent = agent
        self.name = name
        self.env = env
        self.params = params
        nodename = raw.pop("__nodename", None)
        self.options, self.errors = parse(params, raw)
        self.action: str = raw["action"]
        self.nodename = nodename
        plug = self.options.get("plug")
        if plug is None and nodename and agent.multi_port:
            plug = nodename  # "port wins over nodename", but nodename beats nothing
        self.plug: str | None = plug
        if self.options.get("port_as_ip") and plug and not self.options.given("ip"):
            # The plug becomes the ip: checked by the ip's declared type.
            declared = next(p for p in params if p.name == "ip")
            try:
                self.options.set("ip", declared.convert(plug))
            except ParamError as exc:
                self.errors.append(exc)
        self.errors = [e for e in self.errors if not self._supplied(e)]
        level = self.options.get("verbose_level")
        verbose = bool(self.options.get("verbose")) or (level is not None and level > 0)
        quiet = bool(self.options.get("quiet"))
        debug_file = self.options.get("debug_file")
        self.log = Logger(name, {"HA_debug": "1" if verbose or debug_file else "0"})
        if debug_file:
            try:
                self.log.open_private(debug_file)
            except OSError as exc:
                import errno

                why = ("is a symbolic link (never followed)" if exc.errno == errno.ELOOP
                       else f"cannot be opened for appending: {exc.strerror or exc}")
                self.errors.append(ParamError("debug_file", debug_file, why))
        self.quiet = quiet
        self.register_secrets(params, self.options.raw)
        self.deadline = Deadline(self._budget())

    def _supplied(self, err: ParamError) -> bool:
        """A "required" option the runtime filled in (plug from nodename, ip from
        port_as_ip) or that this action never uses (plug for list or monitor)."""
        if err.value is not None or not err.problem.startswith("is required"):
            return False
        if err.param == "plug":
            return bool(self.plug) or self.action not in ("on", "off", "reboot", "status")
        if err.param == "ip":
            return self.options.get("ip") is not None
        return False

    def _budget(self) -> float | None:
        """Seconds this action may take: the sum of its steps; None when disabled."""
        o = self.options
        disabled = o.get("disable_timeout")
        if disabled is None:  # upstream's default: only the fencer bounds the agent itself
            disabled = self.env.get("PCMK_service") == FENCER_SERVICE
        steps = ("delay", "login_timeout", "shell_timeout", "power_timeout", "power_wait")
        if disabled or any(o.get(name) is None for name in steps):
            # No whole-action limit, or an agent without these steps (fence_pcmk,
            # which sets its own deadline): every step still has its own bound.
            return None
        phases = 2 if self.action == "reboot" else 1
        return (o.delay + o.login_timeout + 2 * o.shell_timeout
                + phases * (o.power_wait + o.power_timeout) + 5.0)

    def limit(self, want: float) -> float:
        """A per-step timeout capped by the action's deadline."""
        value = self.deadline.limit(want)
        return want if value is None else value

    # -- the policy -----------------------------------------------------------

    def _problems(self) -> list[str]:
        out = [str(e) for e in self.errors]
        o = self.options
        if self.action in ("on", "off", "reboot", "status") and self.agent.multi_port:
            if not self.plug:
                out.append("You have to enter plug number or machine identification")
        if self.agent.needs_password and not (o.get("password") or o.get("password_script")):
            out.append("You have to enter password or password script")
        if self.agent.validate is not None:
            out.extend(self.agent.validate(self))
        return out

    def execute(self) -> int:
        problems = self._problems()
        if self.action == "validate-all":
            for problem in problems:
                self._error(problem)
            return codes.FENCE_FAIL if problems else codes.FENCE_OK
        if problems:
            return self._fail(problems[0])
        return run_guarded(self._dispatch, self._report, self.log)

    def _report(self, failure: Failure) -> int:
        """Every failure is exit 1; Pacemaker keys on the words "timed out"."""
        reason = failure.reason
        if failure.kind == Failure.TIMED_OUT and "timed out" not in reason:
            reason += " (timed out)"
        elif failure.kind == Failure.INTERNAL:
            reason = f"internal error: {failure.described}"
        return self._fail(reason)

    def _error(self, message: str) -> None:
        text = self.log.mask(message)
        if self.log.logfile:
            self.log.error(text)
        if not self.quiet:
            sys.stderr.write(f"Failed: {text}\n")

    def _fail(self, message: str) -> int:
        self._error(message)
        return codes.FENCE_FAIL

    def _fetch_password(self) -> None:
        script = self.options.get("password_script")
        if not script or self.options.get("password"):
            return
        import shlex

        argv = shlex.split(script)
        result = self.run(argv, timeout=self.limit(10.0), quiet=True)
        if result.rc != 0:
            raise FenceError(f"password script {argv[0]} failed with exit code {result.rc}")
        password = (result.out.splitlines() or [""])[0]  # the first line, as fencing.py
        if not password:
            raise FenceError(f"password script {argv[0]} printed no password")
        self.log.add_secret(password)
        declared = next(p for p in self.params if p.name == "password")
        try:
            self.options.set("password", declared.convert(password))
        except ParamError as exc:
            raise FenceError(f"password script {argv[0]}: the password {exc.problem}") \
                from None

    def _delay(self) -> None:
        delay = self.options.delay
        if delay > 0 and self.action in ("off", "reboot"):
            self.log.info(f"delaying {delay:g}s before fencing")
            self.deadline.sleep(delay)

    def _dispatch(self) -> int:
        self._fetch_password()
        self._delay()
        if self.agent.perform is not None:
            return self.agent.perform(self)
        assert self.agent.connect is not None
        session = self.agent.connect(self)
        try:
            return self._act(session)
        finally:
            try:
                session.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the result
                self.log.debug(f"closing the session failed: {exc}")

    def _act(self, session: Session) -> int:
        action = self.action
        special = self.agent.extra_actions.get(action) \
            or self.agent.unadvertised_actions.get(action)
        if special is not None:
            return special(self, session)
        if action in ("list", "list-status"):
            entries = session.list()
            for plug, (alias, state) in sorted(entries.items()):
                parts = [plug, alias or ""]
                if action == "list-status":
                    parts.append((state or "UNKNOWN").upper())
                sys.stdout.write(",".join(parts) + "\n")
            return codes.FENCE_OK
        if action == "monitor":
            if self.agent.multi_port and self.agent.has_list:
                session.list()
            else:
                session.status(self.plug)
            return codes.FENCE_OK
        current = self._status(session)
        if action == "status":
            sys.stdout.write(f"Status: {current.upper()}\n")
            return codes.FENCE_STATUS_OFF if current == "off" else codes.FENCE_OK
        if action in ("on", "off") and current == action:
            sys.stdout.write(f"Success: Already {action.upper()}\n")
            return codes.FENCE_OK
        if action == "off":
            self._power(session, "off")
            sys.stdout.write("Success: Powered OFF\n")
            return codes.FENCE_OK
        if action == "on":
            self._power_on(session, self.options.retry_on)
            sys.stdout.write("Success: Powered ON\n")
            return codes.FENCE_OK
        return self._reboot(session, current)

    def _reboot(self, session: Session, current: str) -> int:
        cycle = self.agent.cycle_param and self.options.get(self.agent.cycle_param) == "cycle"
        if cycle and current == "on":
            if session.cycle(self.plug):
                # The device accepted a power cycle.  The off phase is too short to
                # observe: this is the one success not backed by a seen "off", which
                # is why cycle is opt-in and its metadata carries upstream's warning.
                sys.stdout.write("Success: Rebooted\n")
                return codes.FENCE_OK
            raise FenceError("the device refused the power cycle")
        if cycle:
            self.log.info("target is already off: powering it on instead of cycling")
        if current != "off":
            self._power(session, "off")
        try:
            self._power_on(session, self.options.retry_on)
        except Exception as exc:  # noqa: BLE001 - off is verified; on is best effort
            self.log.warning(f"target is off, but powering it on failed: {exc}")
        sys.stdout.write("Success: Rebooted\n")
        return codes.FENCE_OK

    def _power_on(self, session: Session, attempts: int) -> None:
        last: Exception | None = None
        for _ in range(max(1, attempts)):
            try:
                self._power(session, "on")
                return
            except FenceError as exc:
                last = exc
                if self.deadline.expired():
                    break
        raise last if last else FenceError("power on failed")

    def _status(self, session: Session) -> str:
        state = session.status(self.plug)
        if state not in ("on", "off"):
            raise FenceError("Unable to obtain correct plug status or plug is not available")
        return state

    def _power(self, session: Session, state: str) -> None:
        """Ask for ``state``, then poll until the device reports it, within power_timeout."""
        import time

        o = self.options
        session.set_power(self.plug, state)
        wait, first = o.power_wait, 0.5
        if self.agent.poll_during_wait:
            wait, first = 0.0, 0.1  # power_wait then only lengthens the poll window
            end = time.monotonic() + o.power_wait
        else:
            end = time.monotonic()
        self.deadline.sleep(wait)
        end = max(end, time.monotonic()) + o.power_timeout
        interval = min(first, o.stonith_status_sleep)
        while True:
            if self._status(session) == state:
                return
            if time.monotonic() >= end or self.deadline.remaining() < interval:
                raise FenceError(f"Timed out waiting to power {state.upper()} (timed out)")
            self.deadline.sleep(interval)
            interval = min(interval * 1.5, o.stonith_status_sleep)
