"""Running external commands: argv lists only, always under a deadline.

Built on ``os.posix_spawnp`` and ``select.poll`` rather than ``subprocess``,
whose import alone costs more than a whole monitor should take.

Rules kept here so that no agent can forget them:

* an argv list, never a shell;
* a time limit that never outlives the action's :class:`Deadline`; on expiry
  the child gets SIGKILL and :class:`CommandTimeout` is raised;
* the wait after SIGKILL is bounded too: a child stuck in uninterruptible
  sleep (umount or blkid on hung storage) cannot die, so it is abandoned after
  :data:`KILL_GRACE` seconds, recorded in :data:`abandoned`, and
  :class:`CommandAbandoned` is raised.  The OCF runtime never lets a stop
  that abandoned a child answer 0: whatever that child was doing may still
  happen;
* the command, its exit code and its duration are logged, with secrets
  masked (a secret should never be *in* argv; pass it with ``input=`` or
  ``env=``, and it is masked anyway in case a caller slips);
* a missing binary raises :class:`CommandNotFound` with a clear message;
* children start with SIGPIPE at its default and ``LC_ALL=C`` so that output
  parsing does not depend on the caller's locale.
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .deadline import Deadline
    from .log import Logger

_SIGKILL = 9
_SIGPIPE = 13
_CHUNK = 65536
# How long a SIGKILLed child may take to be reaped before it is abandoned.
KILL_GRACE = 1.0
# Commands abandoned in this process (argv[0] and pid): still running, in the kernel.
abandoned: list[tuple[str, int]] = []


class CommandError(Exception):
    """A command could not be run to completion; ``str()`` is a one-line reason."""


class CommandNotFound(CommandError):
    pass


class CommandTimeout(CommandError):
    pass


class CommandAbandoned(CommandTimeout):
    """The child did not die after SIGKILL (uninterruptible sleep) and was left behind."""


class Result:
    __slots__ = ("argv", "rc", "out", "err", "duration")

    def __init__(self, argv: Sequence[str], rc: int, out: str, err: str, duration: float) -> None:
        self.argv = list(argv)
        self.rc = rc
        self.out = out
        self.err = err
        self.duration = duration

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def reason(self) -> str:
        """The last non-empty line of stderr (else stdout): what usually explains a failure."""
        for text in (self.err, self.out):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return f"exit code {self.rc}"

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, argv={self.argv[:2]}...)"


def which(name: str, path: str | None = None) -> str | None:
    """The executable ``name`` on PATH (or ``name`` itself if it has a slash)."""
    if "/" in name:
        return name if os.access(name, os.X_OK) and not os.path.isdir(name) else None
    search = path if path is not None else os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    for directory in search.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _env_for_child(env: Mapping[str, str] | None,
                   extra: Mapping[str, str] | None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    base["LC_ALL"] = "C"
    if extra:
        base.update(extra)
    return base


def run(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    deadline: Deadline | None = None,
    input: str | bytes | None = None,  # noqa: A002 - as in subprocess
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    log: Logger | None = None,
    secrets: Iterable[str] = (),
    quiet: bool = False,
) -> Result:
    """Run ``argv`` and collect its output.

    The time limit is ``timeout`` capped by ``deadline``.  Non-zero exit codes
    are returned, not raised: the caller knows what they mean.  ``quiet``
    logs a failure at debug level (for probes whose failure is an answer).
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a list, never a shell string")
    argv = [str(a) for a in argv]
    limit = deadline.limit(timeout) if deadline is not None else timeout
    shown = " ".join(argv)
    for secret in secrets:
        if secret:
            shown = shown.replace(secret, "****")
            if log is not None:
                log.add_secret(secret)
    if limit is not None and limit <= 0:
        raise CommandTimeout(f"no time left to run {argv[0]}")
    if "/" in argv[0]:
        exe = argv[0]
        if not os.access(exe, os.X_OK):
            raise CommandNotFound(f"command not found or not executable: {exe}")
    else:
        found = which(argv[0])
        if found is None:
            raise CommandNotFound(f"command not found: {argv[0]}")
        exe = found
    data = input.encode() if isinstance(input, str) else input
    if data is not None and len(data) > _CHUNK:
        # Written in one go before reading output (it must fit the pipe): say so
        # rather than truncate.
        raise ValueError(f"input for {argv[0]} is over {_CHUNK} bytes; use a file")
    if log is not None:
        log.debug(f"running: {shown}")
    started = time.monotonic()
    try:
        rc, out, err, timed_out = _spawn_and_collect(exe, argv, data,
                                                     _env_for_child(env, extra_env), limit)
    except CommandAbandoned:
        if log is not None:
            log.error(f"{shown}: did not die after SIGKILL within {KILL_GRACE:.0f}s "
                      "(uninterruptible sleep); abandoned")
        raise
    duration = time.monotonic() - started
    out_s = out.decode("utf-8", "replace")
    err_s = err.decode("utf-8", "replace")
    if timed_out:
        if log is not None:
            log.warning(f"{shown}: killed after {duration:.2f}s (time limit {limit:.1f}s)")
        raise CommandTimeout(f"{argv[0]} did not finish within {limit:.1f}s")
    result = Result(argv, rc, out_s, err_s, duration)
    if log is not None:
        if rc == 0 or quiet:
            log.debug(f"{shown}: exit {rc} in {duration:.3f}s")
        else:
            log.warning(f"{shown}: exit {rc} in {duration:.3f}s: {result.reason()}")
    return result


def _read_into(fd: int, bufs: dict[int, list[bytes]], poller: select.poll,
               open_fds: set[int]) -> None:
    chunk = os.read(fd, _CHUNK)
    if chunk:
        bufs[fd].append(chunk)
    else:
        poller.unregister(fd)
        open_fds.discard(fd)


def _spawn_and_collect(
    exe: str, argv: list[str], data: bytes | None, env: dict[str, str], limit: float | None
) -> tuple[int, bytes, bytes, bool]:
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    if data is not None:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
    else:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
    actions = [
        (os.POSIX_SPAWN_DUP2, in_r, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    try:
        pid = os.posix_spawn(exe, argv, env, file_actions=actions, setsigdef=(_SIGPIPE,))
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise CommandNotFound(f"cannot execute {exe}: {exc.strerror}") from None
    for fd in (out_w, err_w, in_r):
        os.close(fd)
    if in_w >= 0:
        try:
            if data:
                os.write(in_w, data)  # secrets and small inputs (checked in run())
        except OSError:
            pass
        os.close(in_w)
    end = None if limit is None else time.monotonic() + limit
    bufs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in bufs:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    open_fds = set(bufs)
    timed_out = False
    status: int | None = None
    # Watch the child itself too (a pidfd): when it exits, a grandchild it left
    # behind (a daemon) may hold the pipes open for ever; that must not hang us.
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    exited = False
    try:
        while open_fds and not exited:
            wait_ms = None if end is None else max(0, int((end - time.monotonic()) * 1000))
            events = poller.poll(wait_ms)
            if not events and end is not None and time.monotonic() >= end:
                timed_out = True
                break
            for fd, _ in events:
                if fd == pidfd:
                    exited = True
                    continue
                _read_into(fd, bufs, poller, open_fds)
        if exited:
            # Collect what the child wrote before it exited, without waiting for
            # whoever else still holds the pipes (bounded: a grandchild may chatter on).
            for _ in range(64):
                ready = [fd for fd, _ in poller.poll(0) if fd in open_fds]
                if not ready or not open_fds:
                    break
                for fd in ready:
                    _read_into(fd, bufs, poller, open_fds)
        elif not timed_out and pidfd >= 0:
            # Output closed but the child may still run (it closed stdout): the
            # limit still holds.
            wait_ms = None if end is None else max(0, int((end - time.monotonic()) * 1000))
            waiter = select.poll()
            waiter.register(pidfd, select.POLLIN)
            if not waiter.poll(wait_ms):
                timed_out = True
        if not timed_out:
            _, status = os.waitpid(pid, 0)
    finally:
        reaped = True
        if timed_out or status is None:
            try:
                os.kill(pid, _SIGKILL)
            except ProcessLookupError:
                pass
            reaped = _reap_within(pid, pidfd, KILL_GRACE)
        for fd in (out_r, err_r, pidfd):
            if fd >= 0:
                os.close(fd)
    if not reaped:
        abandoned.append((argv[0], pid))
        raise CommandAbandoned(f"{argv[0]} (pid {pid}) did not die after SIGKILL and was "
                               "abandoned (uninterruptible sleep, hung storage?)")
    rc = -1 if status is None else os.waitstatus_to_exitcode(status)
    if rc < 0:
        rc = 128 - rc  # killed by a signal: report it the way a shell would
    return rc, b"".join(bufs[out_r]), b"".join(bufs[err_r]), timed_out


def _reap_within(pid: int, pidfd: int, grace: float) -> bool:
    """Reap ``pid`` if it dies within ``grace`` seconds; False leaves it behind."""
    if pidfd >= 0:
        waiter = select.poll()
        waiter.register(pidfd, select.POLLIN)
        waiter.poll(int(grace * 1000))
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    end = time.monotonic() + grace
    while True:  # no pidfd (old kernel): poll waitpid
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
