"""ocf:pyha:o2cb: the OCFS2 userspace cluster stack on a node (like ocf:pacemaker:o2cb).

Start loads the modules that are missing (``configfs``, ``ocfs2_stackglue``,
``ocfs2_stack_user``, ``ocfs2``), mounts configfs at ``configfs`` (and
ocfs2_dlmfs at ``dlmfs`` when asked), writes ``stack`` into
``<sysfs>/ocfs2/cluster_stack`` and starts ``ocfs2_controld.<stack>``,
waiting up to ``daemon_timeout`` for it.  Stop refuses while OCFS2 volumes
are mounted (the daemon is what keeps them safe), stops the daemon for real,
and unloads only the modules this agent loaded.

Upstream bugs fixed (see the reference digest, section 4.4):

* monitor never found configfs mounted since Pacemaker 2.0.3 (an awk regex
  broken by a quoting change), so every monitor said "not running" and every
  start launched another daemon: the mount table is parsed here
  (:mod:`ocf_lib.mounts`, octal escapes decoded), no awk;
* stop called ``killproc``, which ocf-shellfuncs does not define, so the
  daemon kept running: here SIGTERM, a wait bounded by the stop timeout,
  then SIGKILL, and stop returns 0 only when the daemon is gone;
* the "wait for the daemon to exit" loop never waited;
* the daemon was looked for only as ``/usr/sbin/ocfs2_controld.<stack>``
  while ocfs2-tools installs ``/sbin``: here it is found through PATH, and
  a process counts as the daemon only when its executable (``/proc/PID/exe``)
  is that file, never by its name or arguments;
* stop unloaded every OCFS2 module, also those the administrator loaded.

Changing the cluster stack (the seed: OCFS2 from ``pcmk`` to ``cman``)
----------------------------------------------------------------------

The kernel accepts a new ``cluster_stack`` label only while no OCFS2 stack is
active (EBUSY otherwise), and every volume carries the stack it was made for
in its superblock; a node that mounts with a mismatched label is refused,
and changing the stamp while another node still uses the volume corrupts
it.  So this agent never switches a stack under a live OCFS2: start refuses
with the exact reason (volumes mounted, the other stack's daemon still
running, or the kernel's EBUSY).  ``validate-all`` with ``devices`` compares
each volume's on-disk stamp (``o2cluster -o``, read only) with the stack.
The safe procedure, for the whole cluster:

1. stop every OCFS2 user: the Filesystem clones, then this o2cb clone and
   the DLM (controld) clone, on ALL nodes (``crm resource stop ...``);
   check ``mounted.ocfs2 -f`` lists no node;
2. bring up the new stack (e.g. CMAN with its ``cluster name=``), change this
   resource's ``stack`` parameter, start o2cb again (the label can change
   now that nothing is active);
3. re-stamp each volume ONCE, from one node, with nothing mounted anywhere:
   ``tunefs.ocfs2 --update-cluster-stack /dev/X`` (needs the new stack
   running) or offline ``o2cluster --update=cman,<clustername>,none /dev/X``;
4. ``crm_resource --validate`` (validate-all with ``devices``) must pass;
   then start the Filesystem clones.
"""

from __future__ import annotations

import os

from ocf_lib import codes
from ocf_lib.o2cbtool import (
    any_daemon,
    current_label,
    daemon_name,
    daemon_pids,
    filesystems,
    is_mounted,
    kill_daemon,
    modprobe,
    mount,
    ocfs2_mounts,
    plugins,
    stamp_problems,
    start_daemon,
    switch_stack,
    unload,
)
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import DURATION, PATH, Lenient, Param, ParamError, ParamType, parse_bool


class _StackLabel(ParamType):
    doc = "4-character stack label (pcmk, cman)"

    def convert(self, raw: str, name: str) -> str:
        word = raw.strip()
        if len(word) != 4 or not word.isalnum() or not word.isascii():
            raise ParamError(name, raw, "must be exactly 4 letters or digits (the kernel's "
                             "cluster_stack label), e.g. pcmk or cman")
        if word == "o2cb":
            raise ParamError(name, raw, "is the classic in-kernel stack; this agent runs the "
                             "userspace stacks (pcmk, cman)")
        return word


class _DaemonTimeout(ParamType):
    doc = DURATION.doc

    def convert(self, raw: str, name: str) -> float | Lenient:
        try:
            return float(DURATION.convert(raw, name))
        except ParamError as exc:
            text = raw.strip()
            if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
                raise  # upstream gave up at once: its start failed on it
            # Upstream's "[ $COUNT -gt <word> ]" is never true for such a word: it waits
            # for the daemon until the start operation's timeout.
            return Lenient(float("inf"), f"{exc.problem}; waiting for the daemon until the "
                                         "start timeout, as the upstream agent does")


class _Words(ParamType):
    doc = "space-separated words"

    def convert(self, raw: str, name: str) -> tuple[str, ...]:
        if any(ord(c) < 32 and c not in " \t" for c in raw):
            raise ParamError(name, raw, "contains a control character")
        return tuple(raw.split())


class _Paths(ParamType):
    doc = "space-separated absolute paths"

    def convert(self, raw: str, name: str) -> tuple[str, ...]:
        paths = tuple(raw.split())
        for path in paths:
            PATH.convert(path, name)  # the same rules as a single path
        return paths


class _OptionalPath(ParamType):
    doc = "absolute path, or empty"

    def convert(self, raw: str, name: str) -> str | None:
        return PATH.convert(raw, name) if raw.strip() else None


agent = ResourceAgent(
    "o2cb",
    shortdesc="OCFS2 userspace cluster stack control",
    longdesc=(
        "Loads the OCFS2 modules, mounts configfs, selects the OCFS2 cluster stack "
        "(pcmk or cman) in the kernel and runs ocfs2_controld.<stack>. Clone it on every node "
        "that mounts OCFS2, after the DLM (controld) clone and before the Filesystem clones. "
        "Compatible with ocf:pacemaker:o2cb."
    ),
    params=[
        Param("stack", _StackLabel(), default="pcmk", identifies=True,
              shortdesc="Userspace stack",
              longdesc="The cluster stack label written to <sysfs>/ocfs2/cluster_stack; it "
                       "also selects the daemon ocfs2_controld.<stack>. Known values: pcmk, "
                       "cman. It must match the stack stamped on the OCFS2 volumes."),
        Param("sysfs", PATH, default="/sys/fs",
              shortdesc="Location where sysfs is mounted",
              longdesc="Base of ocfs2/cluster_stack and ocfs2/loaded_cluster_plugins."),
        Param("configfs", PATH, default="/sys/kernel/config",
              shortdesc="Location where configfs is or should be mounted",
              longdesc="configfs is mounted here when it is not mounted yet."),
        Param("daemon_timeout", _DaemonTimeout(), default="10",
              shortdesc="Daemon timeout",
              longdesc="How long to wait for ocfs2_controld to come up (seconds)."),
        Param("daemon_options", _Words(), default="",
              shortdesc="Daemon options",
              longdesc="Extra arguments for ocfs2_controld.<stack>, split on spaces "
                       "(e.g. -D for debug output)."),
        Param("dlmfs", _OptionalPath(), default="",
              shortdesc="Where to mount ocfs2_dlmfs",
              longdesc="Mount ocfs2_dlmfs here (e.g. /dlm, as the o2cb init script does). "
                       "Empty: not mounted; the userspace stacks lock through fs/dlm."),
        Param("devices", _Paths(), default="",
              shortdesc="OCFS2 volumes to check",
              longdesc="Space-separated OCFS2 devices. validate-all compares their on-disk "
                       "cluster stack (o2cluster -o, read only) with the stack and fails on "
                       "a mismatch; start only warns."),
    ],
)


@agent.proves_absent
def _no_daemon_of_any_stack(ctx: Context) -> bool:
    """Without a usable ``stack`` the daemon's name is unknown: only the absence of
    every ``ocfs2_controld.*`` proves nothing runs."""
    found = any_daemon()
    if found:
        ctx.log.error(f"{found[1]} (pid {found[0]}) runs")
    return found is None


def check(ctx: Context) -> None:
    configfs = ctx.params.configfs
    if os.path.exists(configfs) and not os.path.isdir(configfs):
        ctx.fail(codes.ERR_CONFIGURED, f"configfs path {configfs} is not a directory")
    if not os.path.isdir(ctx.params.sysfs):
        ctx.fail(codes.ERR_INSTALLED, f"sysfs path {ctx.params.sysfs} is not a directory")
    if parse_bool(ctx.meta("globally_unique")):
        ctx.fail(codes.ERR_CONFIGURED, "o2cb must be an anonymous clone (globally-unique=false)")


@agent.action("monitor", timeout="20s", depth=0)
def monitor(ctx: Context) -> int:
    p = ctx.params
    if not daemon_pids(daemon_name(p.stack)):
        return codes.NOT_RUNNING
    problems = []
    if not is_mounted(p.configfs):
        problems.append(f"configfs is not mounted at {p.configfs}")
    label = current_label(p.sysfs)
    if label != p.stack:
        problems.append(f"the kernel's cluster stack is {label or 'absent'}, not {p.stack}")
    if "user" not in plugins(p.sysfs):
        problems.append("the userspace stack plugin (ocfs2_stack_user) is not loaded")
    if problems:
        ctx.fail(codes.ERR_GENERIC, f"{daemon_name(p.stack)} runs but " + "; ".join(problems))
    return codes.SUCCESS


@agent.action("start", timeout="90s")
def start(ctx: Context) -> int:
    check(ctx)
    if monitor(ctx) == codes.SUCCESS:
        return codes.SUCCESS
    p = ctx.params
    from ocf_lib.proc import which

    name = daemon_name(p.stack)
    if which(name) is None:
        ctx.fail(codes.ERR_INSTALLED, f"{name} not found in PATH (ocfs2-tools ships it only "
                 "where built for that stack)")
    if "configfs" not in filesystems():
        modprobe(ctx, "configfs")
    if not is_mounted(p.configfs):
        mount(ctx, "configfs", p.configfs)
    if current_label(p.sysfs) is None:
        modprobe(ctx, "ocfs2_stackglue")
    if "user" not in plugins(p.sysfs):
        modprobe(ctx, "ocfs2_stack_user")
        if "user" not in plugins(p.sysfs):
            ctx.fail(codes.ERR_INSTALLED, "ocfs2_stack_user loaded but the kernel lists no "
                     "'user' cluster plugin")
    switch_stack(ctx, p.sysfs, p.stack)
    if "ocfs2" not in filesystems():
        modprobe(ctx, "ocfs2")
    if p.dlmfs and not is_mounted(p.dlmfs):
        if "ocfs2_dlmfs" not in filesystems():
            modprobe(ctx, "ocfs2_dlmfs")
        mount(ctx, "ocfs2_dlmfs", p.dlmfs)
    start_daemon(ctx, name, p.daemon_options, p.daemon_timeout)
    for problem in stamp_problems(ctx, current_label(p.sysfs) or p.stack, p.devices):
        ctx.log.warning(problem)
    return codes.SUCCESS


@agent.action("stop", timeout="100s")
def stop(ctx: Context) -> int:
    name = daemon_name(ctx.params.stack)
    pids = daemon_pids(name)
    if pids:
        held = ocfs2_mounts()
        if held:
            ctx.fail(codes.ERR_GENERIC, f"OCFS2 volumes are still mounted ({held}); stopping "
                     f"{name} under them is unsafe: stop the Filesystem resources first")
        kill_daemon(ctx, name, pids)
    unload(ctx, ctx.params.configfs)
    return codes.SUCCESS


@agent.action("validate-all", timeout="30s")
def validate_all(ctx: Context) -> int:
    check(ctx)
    from ocf_lib.proc import which

    p = ctx.params
    if which(daemon_name(p.stack)) is None:
        ctx.fail(codes.ERR_INSTALLED, f"{daemon_name(p.stack)} not found in PATH")
    if p.devices:
        if which("o2cluster") is None:
            ctx.fail(codes.ERR_INSTALLED, "o2cluster (ocfs2-tools) is needed to check devices")
        problems = stamp_problems(ctx, current_label(p.sysfs) or p.stack, p.devices)
        if problems:
            ctx.fail(codes.ERR_CONFIGURED, problems[0])
    return codes.SUCCESS
