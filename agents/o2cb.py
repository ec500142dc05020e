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

import errno
import os
import time

from ocf_lib import codes, mounts, sysroot
from ocf_lib.ocf import Context, ResourceAgent
from ocf_lib.params import DURATION, PATH, Lenient, Param, ParamError, ParamType, parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


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


# -- the kernel's view ---------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def filesystems() -> set[str]:
    text = _read(sysroot.path("/proc/filesystems")) or ""
    return {line.split()[-1] for line in text.splitlines() if line.split()}


def mount_table() -> list[mounts.Mount]:
    return mounts.read_mountinfo(sysroot.path(mounts.MOUNTINFO))


def label_path(ctx: Context) -> str:
    return os.path.join(ctx.params.sysfs, "ocfs2", "cluster_stack")


def current_label(ctx: Context) -> str | None:
    text = _read(label_path(ctx))
    return None if text is None else text.strip()


def plugins(ctx: Context) -> list[str]:
    text = _read(os.path.join(ctx.params.sysfs, "ocfs2", "loaded_cluster_plugins")) or ""
    return text.split()


def write_label(path: str, label: str) -> None:
    """The seam to the kernel's cluster_stack attribute (may raise EBUSY)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, (label + "\n").encode())
    finally:
        os.close(fd)


def daemon_name(stack: str) -> str:
    return f"ocfs2_controld.{stack}"


# Where ocfs2-tools installs the daemons (Debian: /sbin, merged into /usr/sbin).
DAEMON_DIRS = ("/usr/sbin", "/sbin")


def daemon_paths(name: str) -> set[str]:
    """The daemon's executable as the kernel names it: PATH's choice and the packaged
    locations (which still match after the package was removed or upgraded), resolved."""
    from ocf_lib.proc import which

    found = which(name)
    candidates = [found] if found else []
    candidates += [os.path.join(d, name) for d in DAEMON_DIRS]
    return {os.path.realpath(c) for c in candidates}


def executables() -> Iterator[tuple[int, str]]:
    """(pid, executable) of every process but this one, as ``/proc/PID/exe`` names it.
    A file replaced under a running process (a package upgrade) reads
    ``<path> (deleted)``: that process still runs the program at ``<path>``."""
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            exe = os.readlink(f"/proc/{entry.name}/exe")
        except OSError:  # kernel thread, or gone
            continue
        if exe.endswith(" (deleted)"):
            exe = exe[:-len(" (deleted)")]
        yield int(entry.name), exe


def daemon_pids(name: str) -> list[int]:
    """Processes running the daemon's own executable.

    Not argv: anyone can name a process, or a script's argument, after the
    daemon; a user's ``sh ocfs2_controld.pcmk`` must not pass for the cluster's
    daemon (stop would signal it, start would skip the real one)."""
    targets = daemon_paths(name)
    return [pid for pid, exe in executables() if exe in targets]


@agent.proves_absent
def _no_daemon_of_any_stack(ctx: Context) -> bool:
    """Without a usable ``stack``, the daemon's name is unknown: only the absence of
    every ``ocfs2_controld.*`` executable (from PATH or the packaged directories)
    from the process table proves nothing runs."""
    dirs = {os.path.realpath(d) for d in (*os.environ.get("PATH", "").split(":"), *DAEMON_DIRS)
            if d}
    for pid, exe in executables():
        head, base = os.path.split(exe)
        if base.startswith("ocfs2_controld.") and head in dirs:
            ctx.log.error(f"{exe} (pid {pid}) runs")
            return False
    return True


def ocfs2_mounts() -> list[mounts.Mount]:
    return [m for m in mount_table() if m.fstype == "ocfs2"]


# -- what this agent loaded, for stop ---------------------------------------------------


def _loaded_file(ctx: Context) -> str:
    return f"o2cb-{ctx.instance}.loaded"


def remember(ctx: Context, item: str) -> None:
    ctx.state.ensure()
    items = (ctx.state.read(_loaded_file(ctx)) or "").split()
    if item not in items:
        ctx.state.write(_loaded_file(ctx), " ".join([*items, item]) + "\n", 0o644)


def modprobe(ctx: Context, module: str) -> None:
    r = ctx.run(["modprobe", "-s", module], timeout=30)
    if r.rc != 0:
        ctx.fail(codes.ERR_INSTALLED, f"cannot load module {module}: {r.reason()}")
    remember(ctx, "module:" + module)


def mount(ctx: Context, fstype: str, where: str) -> None:
    if not os.path.isdir(where):
        ctx.fail(codes.ERR_INSTALLED, f"{fstype} mount point {where} does not exist")
    r = ctx.run(["mount", "-t", fstype, fstype, where], timeout=30)
    if r.rc != 0:
        ctx.fail(codes.ERR_GENERIC, f"cannot mount {fstype} on {where}: {r.reason()}")
    remember(ctx, "mount:" + where)


# -- actions ------------------------------------------------------------------------


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
    stack = ctx.params.stack
    if not daemon_pids(daemon_name(stack)):
        return codes.NOT_RUNNING
    problems = []
    if mounts.at(mount_table(), ctx.params.configfs) is None:
        problems.append(f"configfs is not mounted at {ctx.params.configfs}")
    label = current_label(ctx)
    if label != stack:
        problems.append(f"the kernel's cluster stack is {label or 'absent'}, not {stack}")
    if "user" not in plugins(ctx):
        problems.append("the userspace stack plugin (ocfs2_stack_user) is not loaded")
    if problems:
        ctx.fail(codes.ERR_GENERIC, f"{daemon_name(stack)} runs but " + "; ".join(problems))
    return codes.SUCCESS


def set_stack(ctx: Context) -> None:
    """Write the label, refusing to switch stacks while OCFS2 is active, with the reason."""
    stack, label = ctx.params.stack, current_label(ctx)
    if label == stack:
        return
    if label is None:
        ctx.fail(codes.ERR_INSTALLED, f"{label_path(ctx)} does not exist after loading "
                 "ocfs2_stackglue: this kernel has no userspace OCFS2 stack support")
    busy = []
    if ocfs2_mounts():
        busy.append("OCFS2 volumes are mounted (" + ", ".join(
            f"{m.source} on {m.mountpoint}" for m in ocfs2_mounts()) + ")")
    if label != "o2cb" and daemon_pids(daemon_name(label)):
        busy.append(f"{daemon_name(label)} is running")
    advice = ("change stacks only with OCFS2 stopped on every node: see the procedure in "
              "the o2cb agent's documentation")
    if busy:
        ctx.fail(codes.ERR_GENERIC, f"cannot switch the OCFS2 cluster stack from {label} to "
                 f"{stack}: {'; '.join(busy)}; {advice}")
    try:
        write_label(label_path(ctx), stack)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            ctx.fail(codes.ERR_GENERIC, f"the kernel refused to switch the OCFS2 cluster "
                     f"stack from {label} to {stack} (EBUSY: the {label} stack is still "
                     f"active); {advice}")
        ctx.fail(codes.ERR_INSTALLED, f"cannot write {stack} to {label_path(ctx)}: "
                 f"{exc.strerror}")
    ctx.log.info(f"OCFS2 cluster stack switched from {label} to {stack}")


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
    if mounts.at(mount_table(), p.configfs) is None:
        mount(ctx, "configfs", p.configfs)
    if current_label(ctx) is None:
        modprobe(ctx, "ocfs2_stackglue")
    if "user" not in plugins(ctx):
        modprobe(ctx, "ocfs2_stack_user")
        if "user" not in plugins(ctx):
            ctx.fail(codes.ERR_INSTALLED, "ocfs2_stack_user loaded but the kernel lists no "
                     "'user' cluster plugin")
    set_stack(ctx)
    if "ocfs2" not in filesystems():
        modprobe(ctx, "ocfs2")
    if p.dlmfs and mounts.at(mount_table(), p.dlmfs) is None:
        if "ocfs2_dlmfs" not in filesystems():
            modprobe(ctx, "ocfs2_dlmfs")
        mount(ctx, "ocfs2_dlmfs", p.dlmfs)
    r = ctx.run([name, *p.daemon_options], timeout=min(30.0, p.daemon_timeout + 5))
    if r.rc != 0:
        ctx.fail(codes.ERR_GENERIC, f"{name} failed to start: {r.reason()}")
    end = time.monotonic() + min(p.daemon_timeout, ctx.deadline.soft_remaining())
    while not daemon_pids(name):
        if time.monotonic() >= end:
            ctx.fail(codes.ERR_GENERIC, f"{name} did not come up within "
                     f"{min(p.daemon_timeout, ctx.deadline.soft_remaining()):g}s")
        time.sleep(0.1)
    if p.devices:
        for problem in stamp_problems(ctx):
            ctx.log.warning(problem)
    return codes.SUCCESS


@agent.action("stop", timeout="100s")
def stop(ctx: Context) -> int:
    name = daemon_name(ctx.params.stack)
    pids = daemon_pids(name)
    if pids:
        held = ocfs2_mounts()
        if held:
            ctx.fail(codes.ERR_GENERIC, "OCFS2 volumes are still mounted ("
                     + ", ".join(f"{m.source} on {m.mountpoint}" for m in held)
                     + f"); stopping {name} under them is unsafe: stop the Filesystem "
                     "resources first")
        kill_daemon(ctx, name, pids)
    unload(ctx)
    return codes.SUCCESS


def kill_daemon(ctx: Context, name: str, pids: list[int]) -> None:
    import signal

    sig = signal.SIGTERM
    while pids:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        pids = daemon_pids(name)
        if pids and ctx.deadline.soft_remaining() <= 1:
            if sig == signal.SIGKILL:
                ctx.fail(codes.ERR_GENERIC, f"{name} (pid {pids[0]}) does not exit")
            ctx.log.warning(f"{name} ignored SIGTERM; sending SIGKILL")
            sig = signal.SIGKILL
    ctx.log.info(f"{name} stopped")


def unload(ctx: Context) -> None:
    """Undo this agent's mounts and module loads, newest first; configfs stays (libdlm)."""
    items = (ctx.state.read(_loaded_file(ctx)) or "").split()
    keep: list[str] = []
    for item in reversed(items):
        kind, _, what = item.partition(":")
        if what in (ctx.params.configfs, "configfs"):
            keep.insert(0, item)  # dlm_controld uses configfs too
            continue
        argv = ["umount", what] if kind == "mount" else ["modprobe", "-r", what]
        r = ctx.run(argv, timeout=30, quiet=True)
        if r.rc != 0:
            ctx.log.warning(f"{' '.join(argv)}: {r.reason()} (left in place)")
    if keep:
        ctx.state.write(_loaded_file(ctx), " ".join(keep) + "\n", 0o644)
    else:
        ctx.state.remove(_loaded_file(ctx))


def stamp_problems(ctx: Context) -> list[str]:
    """Volumes whose on-disk stack differs from the running (or configured) one."""
    running = current_label(ctx) or ctx.params.stack
    out = []
    for dev in ctx.params.devices:
        r = ctx.run(["o2cluster", "-o", dev], timeout=20)
        if r.rc != 0:
            out.append(f"cannot read the cluster stack of {dev}: {r.reason()}")
            continue
        disk = r.out.strip().split(",")[0] or "o2cb"
        if disk != running:
            out.append(
                f"{dev} is stamped for the {disk} stack but this node runs {running}: mounting "
                f"it will fail. With OCFS2 stopped on EVERY node, re-stamp it once: "
                f"tunefs.ocfs2 --update-cluster-stack {dev} (with the {running} stack "
                f"running) or o2cluster --update={running},<clustername>,none {dev}")
    return out


@agent.action("validate-all", timeout="30s")
def validate_all(ctx: Context) -> int:
    check(ctx)
    from ocf_lib.proc import which

    if which(daemon_name(ctx.params.stack)) is None:
        ctx.fail(codes.ERR_INSTALLED, f"{daemon_name(ctx.params.stack)} not found in PATH")
    if ctx.params.devices:
        if which("o2cluster") is None:
            ctx.fail(codes.ERR_INSTALLED, "o2cluster (ocfs2-tools) is needed to check devices")
        problems = stamp_problems(ctx)
        if problems:
            ctx.fail(codes.ERR_CONFIGURED, problems[0])
    return codes.SUCCESS
