"""What the OCF and the fence runtime share.

:class:`Deadline` is one clock for a whole action.  Pacemaker SIGKILLs the
agent's process group when an operation's timeout expires, with no SIGTERM
first.  So every external call takes its time limit from a deadline that
ends a little before the caller's, and a *reserve* is kept back so that a
stop can still escalate (destroy, kill, lazy unmount) after the graceful
step has used its share.

:class:`Agent` holds an agent's identity and declarations and is the process
entry point (``agent.main()``).  :class:`ActionContext` is the part of one
action both kinds of agent have: a logger that masks the declared secrets,
a deadline, and external commands bounded by both.  :func:`run_guarded` is
the last line of defence: it runs an action and turns whatever escapes it
into a :class:`Failure`, classified once here, which each runtime reports in
its own dialect (an ``ocf-exit-reason:`` line and an OCF exit code, or a
``Failed:`` line and exit 1).  No traceback ever reaches the caller.

Hot path: imported by every agent run, so it imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing is not worth importing on hot paths
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

    from .log import Logger
    from .params import Param

INFINITE = float("inf")


class Deadline:
    """``seconds`` from now, minus ``margin`` that is never ours to spend.

    ``None`` means no limit (a hand run with no timeout): callers then pass
    their own per-call limits.
    """

    def __init__(self, seconds: float | None, *, reserve: float = 0.0, margin: float = 0.0,
                 start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.total = seconds
        self.end = INFINITE if seconds is None else self.start + max(0.0, seconds - margin)
        self.reserve = reserve

    @classmethod
    def from_timeout_ms(cls, value: str | None, *, default: float = 20.0,
                        start: float | None = None) -> Deadline:
        """From ``OCF_RESKEY_CRM_meta_timeout`` (milliseconds)."""
        seconds = default
        if value:
            try:
                seconds = int(value) / 1000.0
            except ValueError:
                seconds = default
        if seconds <= 0:
            seconds = default
        # Keep 5 % (at least 0.5 s, at most 5 s) for reporting the result,
        # and 10 % (at least 1 s, at most 10 s) in reserve for escalation.
        margin = min(max(seconds * 0.05, 0.5), 5.0)
        reserve = min(max(seconds * 0.1, 1.0), 10.0)
        return cls(seconds, reserve=reserve, margin=margin, start=start)

    def remaining(self) -> float:
        """Time left before the hard end (0 when past)."""
        return max(0.0, self.end - time.monotonic())

    def soft_remaining(self) -> float:
        """Time left for graceful steps, keeping the escalation reserve."""
        return max(0.0, self.end - self.reserve - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def soft_expired(self) -> bool:
        return time.monotonic() >= self.end - self.reserve

    def limit(self, want: float | None = None, *, soft: bool = False) -> float | None:
        """A per-call timeout: ``want`` capped by what is left (None = no limit)."""
        left = self.soft_remaining() if soft else self.remaining()
        if left == INFINITE:
            return want
        return left if want is None else min(want, left)

    def sleep(self, seconds: float) -> None:
        """Sleep, but never past the deadline."""
        left = self.remaining()
        if left > 0:
            time.sleep(min(seconds, left))

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.2f}s, reserve={self.reserve:.2f}s)"


NO_DEADLINE = Deadline(None)


# rgmanager (and CMAN's fenced) may give an agent no PATH at all.
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class AgentError(Exception):
    """An agent's own, anticipated failure: ``rc`` and a one-line ``reason``."""

    def __init__(self, reason: str, rc: int = 1) -> None:
        super().__init__(reason)
        self.rc = rc
        self.reason = reason


class Agent:
    """An agent's name, descriptions and parameter declarations; its ``main()``."""

    def __init__(self, name: str, *, shortdesc: str, longdesc: str, params: Sequence[Param],
                 version: str) -> None:
        self.name = name
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.params = list(params)
        self.version = version
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: a parameter is declared twice")

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def process(self, argv: list[str]) -> int:
        """Run as this process (argv, os.environ, stdin); returns the exit code."""
        raise NotImplementedError

    def main(self, argv: Sequence[str] | None = None) -> NoReturn:
        if "PATH" not in os.environ:
            os.environ["PATH"] = DEFAULT_PATH
        rc = self.process(list(sys.argv if argv is None else argv))
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        sys.exit(rc)


class ActionContext:
    """One action's logger and deadline; subclasses derive them from their input."""

    log: Logger
    deadline: Deadline

    def register_secrets(self, params: Sequence[Param], raw: Mapping[str, str]) -> None:
        """Mask the given values of the declared secrets in every log line."""
        for p in params:
            if p.secret and p.name in raw:
                self.log.add_secret(raw[p.name])

    def run(self, argv: Sequence[str], **kwargs: Any) -> Any:
        """:func:`ocf_lib.proc.run` bounded by this action's deadline and logger."""
        from .proc import run

        kwargs.setdefault("deadline", self.deadline)
        kwargs.setdefault("log", self.log)
        return run(argv, **kwargs)


class Failure:
    """What ended an action early, classified once; ``kind`` is one of the constants."""

    AGENT = "agent"  # AgentError: the agent's own rc and reason
    CONFIGURED = "configured"  # a parameter found unusable late (ParamError)
    NOT_INSTALLED = "not installed"  # a command that does not exist
    TIMED_OUT = "timed out"  # a command or a connection ran out of time
    UNSAFE = "unsafe"  # a path someone else controls (state.UnsafePath)
    SYSTEM = "system"  # another OSError, with its own message
    INTERNAL = "internal"  # a bug: anything else

    __slots__ = ("kind", "reason", "rc", "exc")

    def __init__(self, kind: str, reason: str, rc: int = 1,
                 exc: Exception | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.rc = rc
        self.exc = exc

    @property
    def described(self) -> str:
        """The reason with the exception's type, for a failure nobody anticipated."""
        return f"{type(self.exc).__name__}: {self.reason}" if self.exc else self.reason


# Timeouts of libraries that are not OSErrors (pexpect.TIMEOUT) are told by name,
# so that classifying never imports them.
_TIMEOUT_NAMES = ("TIMEOUT", "timeout", "TimeoutError")


def classify(exc: Exception) -> Failure:
    """The :class:`Failure` for ``exc``."""
    if isinstance(exc, AgentError):
        return Failure(Failure.AGENT, exc.reason, exc.rc)
    from .params import ParamError

    if isinstance(exc, ParamError):
        return Failure(Failure.CONFIGURED, str(exc))
    # A module not loaded cannot have raised its errors: no import to check.
    proc, state = sys.modules.get("ocf_lib.proc"), sys.modules.get("ocf_lib.state")
    if proc is not None and isinstance(exc, proc.CommandNotFound):
        return Failure(Failure.NOT_INSTALLED, str(exc))
    if proc is not None and isinstance(exc, proc.CommandTimeout):
        return Failure(Failure.TIMED_OUT, str(exc))
    if state is not None and isinstance(exc, state.UnsafePath):
        return Failure(Failure.UNSAFE, str(exc))
    if isinstance(exc, OSError):
        return Failure(Failure.SYSTEM, str(exc), exc=exc)
    if type(exc).__name__ in _TIMEOUT_NAMES:
        return Failure(Failure.TIMED_OUT, f"Connection timed out: {exc}")
    return Failure(Failure.INTERNAL, str(exc), exc=exc)


def run_guarded(body: Callable[[], int], report: Callable[[Failure], int],
                log: Logger | None) -> int:
    """``body()``, or ``report(failure)`` for what it raised or a non-integer result.

    A bug's traceback goes to the debug log, on one line (``report`` runs while
    the exception is still being handled, so it may log one for other kinds).
    """
    try:
        rc = body()
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        failure = classify(exc)
        if failure.kind == Failure.INTERNAL and log is not None:
            log.debug(traceback_line())
        return report(failure)
    if not isinstance(rc, int):  # a handler that forgot to return: never exit 0 by accident
        return report(Failure(Failure.INTERNAL, f"returned {rc!r}, not an exit code"))
    return rc


def traceback_line() -> str:
    """The current exception's traceback on one line, for a debug log."""
    import traceback

    return traceback.format_exc().replace("\n", " | ")
