"""One clock for a whole action.

Pacemaker SIGKILLs the agent's process group when an operation's timeout
expires, with no SIGTERM first.  So every external call takes its time limit
from a :class:`Deadline` that ends a little before the caller's, and a
*reserve* is kept back so that a stop can still escalate (destroy, kill,
lazy unmount) after the graceful step has used its share.
"""

from __future__ import annotations

import time

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
