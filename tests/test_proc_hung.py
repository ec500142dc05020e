"""Bounded waits: a child that cannot die is abandoned, never waited for.

A process in uninterruptible sleep (umount or blkid on a dead SAN path) does not
die on SIGKILL until the kernel lets it go.  This kernel has no device-mapper to
suspend, so the stand-in is the narrowest one that behaves the same: a cgroup-v1
freezer cgroup, whose frozen tasks (state D) ignore SIGKILL until thawed.  Root.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocf_lib import codes, proc
from ocf_lib.ocf import Context, ResourceAgent

FREEZER = Path("/sys/fs/cgroup/freezer")


@pytest.fixture
def frozen() -> Iterator[Path]:
    """A frozen cgroup; a child that joins it is stuck until the test thaws it."""
    group = FREEZER / f"pyha-hung-{os.getpid()}"
    group.mkdir()
    try:
        (group / "freezer.state").write_text("FROZEN\n")
        yield group
    finally:
        (group / "freezer.state").write_text("THAWED\n")
        # The abandoned children are this process's: reap them now they can die.
        for _, pid in list(proc.abandoned):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        proc.abandoned.clear()
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def reader(group: Path) -> list[str]:
    """A command that gets stuck for good, like a read from hung storage."""
    return ["sh", "-c", f"echo $$ > {group}/cgroup.procs; exec sleep 60"]


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


def test_a_child_in_uninterruptible_sleep_is_abandoned_in_bounded_time(
        frozen: Path) -> None:
    started = time.monotonic()
    with pytest.raises(proc.CommandAbandoned, match="did not die after SIGKILL"):
        proc.run(reader(frozen), timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + proc.KILL_GRACE + 1.0, elapsed
    (argv0, pid), = proc.abandoned
    assert argv0 == "sh" and state_of(pid) == "D"  # still there, killed but stuck


def test_a_stop_that_abandoned_a_child_never_answers_0(
        frozen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Even an agent that swallows the timeout cannot turn it into a successful stop."""
    agent = ResourceAgent("H", shortdesc="h", longdesc="h", params=[])

    @agent.action("stop")
    def stop(ctx: Context) -> int:
        try:
            ctx.run(reader(frozen), timeout=0.3)
        except proc.CommandTimeout:
            pass
        return codes.SUCCESS

    rc = agent.run(["H", "stop"], {"OCF_RESOURCE_INSTANCE": "h"})
    err = capsys.readouterr().err
    reasons = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert rc == codes.ERR_GENERIC and len(reasons) == 1
    assert "stop cannot be confirmed: sh" in reasons[0]
