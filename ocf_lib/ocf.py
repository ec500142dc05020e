"""The OCF runtime: what every resource agent gets for free.

An agent declares its parameters and registers its actions::

    agent = ResourceAgent("Example", shortdesc=..., longdesc=..., params=[...])

    @agent.action("start", timeout="20s")
    def start(ctx: Context) -> int: ...

and ends with ``agent.main()``.  The runtime then owns the rules an agent
must never get wrong:

* actions come from ``argv[1]``; an unknown one returns 3;
* ``meta-data`` and ``usage`` need no environment and no privileges;
* parameters are validated once (their types, then the agent's declared
  cross-field validators), with one clear message per bad value; an invalid
  configuration fails ``start``/``validate-all``/``monitor`` with 6;
* ``stop`` ignores the parameters it does not need: an invalid one falls back
  to its declared default.  When a parameter that *identifies* the resource
  is unusable, stop cannot know what to stop: it succeeds only if the agent's
  declared absence proof (state recorded at start, the kernel) shows nothing
  is running, and fails otherwise;
* failures print one ``ocf-exit-reason:`` line on stderr; no traceback ever
  reaches the caller;
* every external call is bounded by one :class:`Deadline` taken from
  ``OCF_RESKEY_CRM_meta_timeout``;
* rgmanager's action names (``status``, ``verify-all``, ``migrate <target>``)
  map onto the OCF ones.
"""

from __future__ import annotations

import os
import sys

from . import codes, runtime
from .log import Logger
from .params import Param, ParamError, parse
from .runtime import ActionContext, Agent, AgentError, Deadline, Failure, run_guarded

TYPE_CHECKING = False  # typing is not worth importing on hot paths
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, NoReturn, TypeVar

    from .params import Values

    Handler = Callable[["Context"], int]
    H = TypeVar("H", bound=Handler)
    Validator = Callable[[Values], Iterable[ParamError]]
    AbsenceProof = Callable[["Context"], bool]

# rgmanager (and LSB habit) names -> OCF names.
ACTION_ALIASES = {"status": "monitor", "verify-all": "validate-all", "migrate": "migrate_to"}
BUILTIN_ACTIONS = ("meta-data", "usage", "help", "methods")


class OCFError(AgentError):
    """Raise from an action to end it with ``rc`` and a one-line ``reason``."""

    def __init__(self, rc: int, reason: str) -> None:
        super().__init__(reason, rc)


def fail(rc: int, reason: str) -> NoReturn:
    raise OCFError(rc, reason)


class Action:
    """A registered action, and how it is advertised in metadata.

    ``advertise`` holds one dict per ``<action>`` element (monitor may have
    several, for depths or roles); keys are the metadata attribute names.
    """

    __slots__ = ("name", "handler", "advertise")

    def __init__(self, name: str, handler: Handler, advertise: list[dict[str, str]]) -> None:
        self.name = name
        self.handler = handler
        self.advertise = advertise


class ResourceAgent(Agent):
    def __init__(self, name: str, *, shortdesc: str, longdesc: str, params: Sequence[Param],
                 version: str = "1.0", ocf_version: str = "1.1", promotable: bool = False,
                 rgmanager_primary: str | None = None,
                 validators: Sequence[Validator] = ()) -> None:
        super().__init__(name, shortdesc=shortdesc, longdesc=longdesc, params=params,
                         version=version)
        self.ocf_version = ocf_version
        self.promotable = promotable
        self.rgmanager_primary = rgmanager_primary
        self.actions: dict[str, Action] = {}
        # Cross-field checks; they run once every parameter converted cleanly.
        self.validators = list(validators)
        self.absence_proof: AbsenceProof | None = None

    # -- declaration --------------------------------------------------------

    def action(self, name: str, timeout: str = "20s", *, interval: str | None = None,
               depth: int | None = None, role: str | None = None,
               more: Sequence[Mapping[str, str]] = ()) -> Callable[[H], H]:
        """Register an action; ``more`` adds further ``<action>`` entries for it."""

        def register(handler: H) -> H:
            first = {"timeout": timeout}
            if interval is not None:
                first["interval"] = interval
            if depth is not None:
                first["depth"] = str(depth)
            if role is not None:
                first["role"] = role
            self.actions[name] = Action(name, handler, [first, *[dict(m) for m in more]])
            return handler

        return register

    def validator(self, check: Validator) -> Validator:
        """Declare a cross-field check: ``check(values)`` yields :class:`ParamError`."""
        self.validators.append(check)
        return check

    def proves_absent(self, proof: AbsenceProof) -> AbsenceProof:
        """Declare how stop proves the resource absent when a parameter that
        identifies it is unusable (e.g. from the state recorded at start).
        ``proof(ctx)`` returns True only when nothing can be running."""
        self.absence_proof = proof
        return proof

    def check_levels(self) -> list[int]:
        """The OCF_CHECK_LEVEL depths the monitor advertises (always including 0)."""
        levels = {0}
        monitor = self.actions.get("monitor")
        if monitor:
            for entry in monitor.advertise:
                if "depth" in entry:
                    levels.add(int(entry["depth"]))
        return sorted(levels)

    # -- metadata -----------------------------------------------------------

    def metadata(self, variant: str = "ocf-1.1") -> str:
        from .metadata import ocf_metadata

        return ocf_metadata(self, variant)

    # -- running ------------------------------------------------------------

    def process(self, argv: list[str]) -> int:
        return self.run(argv, os.environ)

    def usage(self) -> str:
        names = sorted(set(self.actions) | {"meta-data", "usage"})
        return f"usage: {self.name} {{{'|'.join(names)}}}\n"

    def run(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        if len(argv) < 2:
            sys.stderr.write(self.usage())
            return codes.ERR_ARGS
        requested = argv[1]
        if requested == "meta-data":
            minor = env.get("OCF_RA_VERSION_MINOR", "0")
            variant = "ocf-1.1" if minor not in ("", "0") else "ocf-1.0"
            if self.rgmanager_primary and is_rgmanager_call(argv, env):
                variant = "rgmanager"
            sys.stdout.write(self.metadata(variant))
            return codes.SUCCESS
        if requested in ("usage", "help"):
            sys.stdout.write(self.usage())
            return codes.SUCCESS
        if requested == "methods":
            sys.stdout.write("\n".join(sorted(set(self.actions) | {"meta-data"})) + "\n")
            return codes.SUCCESS
        name = requested if requested in self.actions else ACTION_ALIASES.get(requested, requested)
        action = self.actions.get(name)
        if action is None and name == "recover" and "start" in self.actions \
                and "stop" in self.actions:
            return self._recover(argv, env)
        if action is None:
            return _exit_reason(env, None, codes.ERR_UNIMPLEMENTED,
                                f"action '{requested}' is not supported by {self.name}")
        ctx = Context(self, name, argv, env)
        if "OCF_RESKEY_trace_ra" in env or "OCF_TRACE_RA" in env:
            from . import trace

            if trace.wanted(env):
                trace.begin(ctx)
                rc = ctx.execute(action)
                trace.end(ctx, rc)
                return rc
        return ctx.execute(action)

    def _recover(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """rgmanager's ``recover`` for agents without their own: stop, then start,
        both within the one timeout rgmanager gave."""
        stop = Context(self, "stop", argv, env)
        rc = stop.execute(self.actions["stop"])
        if rc != codes.SUCCESS:
            return rc
        start = Context(self, "start", argv, env)
        start.deadline = stop.deadline
        return start.execute(self.actions["start"])


RGMANAGER_ROOT = "/usr/share/cluster"


def is_rgmanager_call(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """rgmanager runs ``/usr/share/cluster/<name>.sh`` with OCF_ROOT=/usr/share/cluster
    and its own ``RGMANAGER_meta_*`` keys; Pacemaker does none of that."""
    return (bool(argv) and argv[0].endswith(".sh")) \
        or env.get("OCF_ROOT", "").rstrip("/") == RGMANAGER_ROOT \
        or "OCF_RESKEY_RGMANAGER_meta_refcnt" in env \
        or "OCF_RESKEY_RGMANAGER_meta_timeout" in env


class Context(ActionContext):
    """Everything an action needs, derived once from argv and the environment."""

    def __init__(self, agent: ResourceAgent, action: str, argv: Sequence[str],
                 env: Mapping[str, str]) -> None:
        self.agent = agent
        self.action = action
        self.argv = list(argv)
        self.env = env
        self.instance = env.get("OCF_RESOURCE_INSTANCE") or agent.name
        if self.instance.startswith(agent.name + ":") and is_rgmanager_call(argv, env):
            # rgmanager names an instance "<type>:<primary value>"; the value may
            # be a path or an address, so make it safe inside state file names.
            self.instance = self.instance[len(agent.name) + 1:].replace("/", "_") or agent.name
        self.log = Logger(f"{agent.name}({self.instance})", env)
        self.params, self.param_errors = parse(agent.params, self.reskey)
        self.register_secrets(agent.params, self.params.raw)
        if not self.param_errors:
            for check in agent.validators:
                self.param_errors.extend(check(self.params))
        # Values tolerated for compatibility (params.Lenient): said once per action,
        # but not every few seconds by a recurring monitor.
        for text in self.params.warnings:
            if action == "monitor" and (self.meta("interval") or "0") != "0":
                self.log.debug(text)
            else:
                self.log.warning(text)
        rg_timeout = env.get("OCF_RESKEY_RGMANAGER_meta_timeout")
        if rg_timeout and rg_timeout.isdigit():
            self.deadline = Deadline.from_timeout_ms(str(int(rg_timeout) * 1000))
        else:
            self.deadline = Deadline.from_timeout_ms(env.get("OCF_RESKEY_CRM_meta_timeout"))
        self._state: Any = None

    # -- environment facts --------------------------------------------------

    def reskey(self, name: str) -> str | None:
        return self.env.get("OCF_RESKEY_" + name)

    def meta(self, name: str) -> str | None:
        """A ``CRM_meta_*`` value (``clone-max`` and ``clone_max`` both work)."""
        return self.env.get("OCF_RESKEY_CRM_meta_" + name.replace("-", "_"))

    @property
    def is_probe(self) -> bool:
        """A monitor with no recurring interval: Pacemaker's probe."""
        return self.action == "monitor" and (self.meta("interval") or "0") == "0"

    @property
    def check_level(self) -> int:
        """OCF_CHECK_LEVEL rounded down to the nearest depth the agent supports."""
        raw = self.env.get("OCF_CHECK_LEVEL") or self.env.get("OCF_RESKEY_OCF_CHECK_LEVEL") or "0"
        try:
            wanted = int(raw)
        except ValueError:
            self.log.warning(f"OCF_CHECK_LEVEL '{raw}' is not a number; using 0")
            return 0
        supported = [lvl for lvl in self.agent.check_levels() if lvl <= wanted]
        return supported[-1] if supported else 0

    @property
    def node(self) -> str:
        """This node's cluster name."""
        return self.meta("on_node") or os.uname().nodename

    @property
    def migrate_target(self) -> str | None:
        # rgmanager: "migrate <target>"; Pacemaker: CRM_meta_migrate_target.
        if len(self.argv) > 2 and self.argv[1] == "migrate":
            return self.argv[2]
        return self.meta("migrate_target")

    @property
    def migrate_source(self) -> str | None:
        return self.meta("migrate_source")

    @property
    def state(self) -> Any:
        if self._state is None:
            from .state import StateDir

            self._state = StateDir(env=self.env)
        return self._state

    # -- doing things -------------------------------------------------------

    def fail(self, rc: int, reason: str) -> NoReturn:
        raise OCFError(rc, reason)

    # -- the policy ---------------------------------------------------------

    def execute(self, action: Action) -> int:
        errors = self.param_errors
        self.log.debug(f"{self.action} begins ({self.deadline})")
        if errors and self.action == "stop":
            rc = self._stop_despite(errors)
            if rc is not None:
                return rc
        elif errors:
            for err in errors[1:]:  # the first is logged with the exit reason
                self.log.error(str(err))
            return _exit_reason(self.env, self.log, codes.ERR_CONFIGURED, str(errors[0]))
        rc = run_guarded(lambda: action.handler(self), self._report, self.log)
        if self.action == "stop" and rc == codes.NOT_RUNNING:
            rc = codes.SUCCESS  # 7 from stop is a stop failure to Pacemaker; stopped is success
        if self.action == "stop" and rc == codes.SUCCESS:
            proc = sys.modules.get("ocf_lib.proc")
            left = getattr(proc, "abandoned", None)
            if left:  # e.g. a umount in D state may still complete, or not: unproven
                return _exit_reason(self.env, self.log, codes.ERR_GENERIC,
                                    f"stop cannot be confirmed: {left[0][0]} (pid "
                                    f"{left[0][1]}) could not be killed and may still act")
        self.log.debug(f"{self.action} returns {rc}")
        return rc

    def _report(self, failure: Failure) -> int:
        """A failure as an OCF exit code and its exit reason."""
        rc = _FAILURE_RC.get(failure.kind, codes.ERR_GENERIC)
        reason = failure.reason
        if failure.kind == Failure.AGENT:
            rc = failure.rc
        elif failure.kind in (Failure.SYSTEM, Failure.INTERNAL):
            if failure.kind == Failure.SYSTEM:
                self.log.debug(runtime.traceback_line())
            reason = f"internal error in {self.action}: {failure.described}"
        return _exit_reason(self.env, self.log, rc, reason)

    def _stop_despite(self, errors: list[ParamError]) -> int | None:
        """The stop rule for invalid parameters; None means "run the stop handler".

        A parameter stop does not need falls back to its declared default.  An
        unusable one that identifies the resource leaves stop unable to say
        what to stop: succeed only on the agent's proof that nothing runs.
        """
        blocking = []
        for err in errors:
            p = self.agent.param(err.param)
            if p is None or p.identifies:
                blocking.append(err)
                continue
            self.log.warning(f"stop ignores {err}")
            fallback = None
            if p.default is not None:
                try:
                    fallback = p.convert(p.default)
                except ParamError:
                    fallback = None
            self.params.set(p.name, fallback)
        if not blocking:
            return None
        for err in blocking[1:]:
            self.log.error(str(err))
        proof = self.agent.absence_proof
        if proof is not None:
            try:
                absent = proof(self)
            except OCFError as exc:
                return _exit_reason(self.env, self.log, exc.rc,
                                    f"{blocking[0]}; and {exc.reason}")
            except Exception as exc:  # noqa: BLE001 - a proof that breaks proves nothing
                self.log.debug(runtime.traceback_line())
                absent = False
                self.log.error(f"absence proof failed: {type(exc).__name__}: {exc}")
            if absent:
                self.log.warning(f"stop: {blocking[0]}; the resource is verifiably not running")
                return codes.SUCCESS
        return _exit_reason(self.env, self.log, codes.ERR_CONFIGURED,
                            f"stop cannot identify the resource: {blocking[0]}")


_FAILURE_RC = {Failure.CONFIGURED: codes.ERR_CONFIGURED, Failure.NOT_INSTALLED: codes.ERR_INSTALLED}


def _exit_reason(env: Mapping[str, str], log: Logger | None, rc: int, reason: str) -> int:
    prefix = env.get("OCF_EXIT_REASON_PREFIX") or "ocf-exit-reason:"
    text = " ".join(reason.split())
    if log is not None:
        text = log.mask(text)
        log.error(text)
    try:
        sys.stderr.write(f"{prefix}{text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return rc

