"""ocf:pyha:Example, the smallest complete agent: a state file that says "running".

It exists to exercise the runtime (tests, pyha-tester, bench), like
Pacemaker's Dummy.  Every action is a few lines because ocf_lib does the rest.
"""

from __future__ import annotations

import os
import time

from ocf_lib import codes
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import DURATION, FILE_PATH, STRING, Param

agent = ResourceAgent(
    "Example",
    shortdesc="Example resource agent: a state file",
    longdesc=(
        "A resource that is running while its state file exists. It has no purpose "
        "except showing and testing the pyha runtime; use it like ocf:pacemaker:Dummy."
    ),
    params=[
        Param("state", FILE_PATH, unique=True, identifies=True,
              shortdesc="State file",
              longdesc="Where the running state is kept. "
                       "Default: $HA_RSCTMP/Example-<instance>.state"),
        Param("fake", STRING, default="dummy",
              shortdesc="Fake attribute",
              longdesc="Written into the state file; monitor at depth 10 checks it."),
        Param("op_sleep", DURATION, default="0",
              shortdesc="Delay in every action",
              longdesc="How long each action sleeps, to test timeouts (e.g. 500ms, 2s)."),
    ],
    rgmanager_primary="state",
)


def _state_file(ctx: Context) -> str:
    given = ctx.params.state
    if given:
        return str(given)
    return os.path.join(ctx.state.path, f"Example-{ctx.instance}.state")


def _nap(ctx: Context) -> None:
    if ctx.params.op_sleep:
        time.sleep(min(ctx.params.op_sleep, ctx.deadline.remaining()))


@agent.action("start", timeout="20s")
def start(ctx: Context) -> int:
    _nap(ctx)
    from ocf_lib.state import write_atomic

    write_atomic(_state_file(ctx), f"{ctx.params.fake}\n", 0o644)
    return codes.SUCCESS


@agent.action("stop", timeout="20s")
def stop(ctx: Context) -> int:
    _nap(ctx)
    try:
        os.unlink(_state_file(ctx))
    except FileNotFoundError:
        pass
    return codes.SUCCESS


@agent.action("monitor", timeout="20s", interval="10s", depth=0,
              more=[{"timeout": "20s", "interval": "60s", "depth": "10"}])
def monitor(ctx: Context) -> int:
    _nap(ctx)
    try:
        with open(_state_file(ctx), encoding="utf-8") as handle:
            content = handle.read()
    except FileNotFoundError:
        return codes.NOT_RUNNING
    if ctx.check_level >= 10 and content.strip() != ctx.params.fake:
        ctx.fail(codes.ERR_GENERIC, f"state file holds '{content.strip()}', expected "
                                    f"'{ctx.params.fake}'")
    return codes.SUCCESS


@agent.action("reload", timeout="20s")
def reload(ctx: Context) -> int:
    if monitor(ctx) == codes.SUCCESS:
        return start(ctx)
    return codes.SUCCESS


@agent.action("migrate_to", timeout="20s")
def migrate_to(ctx: Context) -> int:
    ctx.log.info(f"migrating to {ctx.migrate_target}")
    return stop(ctx)


@agent.action("migrate_from", timeout="20s")
def migrate_from(ctx: Context) -> int:
    ctx.log.info(f"migrating from {ctx.migrate_source}")
    return start(ctx)


@agent.action("validate-all", timeout="20s")
def validate_all(ctx: Context) -> int:
    directory = os.path.dirname(_state_file(ctx))
    if ctx.check_level >= 10 and not os.path.isdir(directory):
        ctx.fail(codes.ERR_ARGS, f"state directory {directory} does not exist")
    return codes.SUCCESS
