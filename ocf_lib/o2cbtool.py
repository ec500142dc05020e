"""The OCFS2 userspace cluster stack on this node: what the o2cb agent reads and changes.

* the kernel's view: ``/proc/filesystems``, the mount table (both through
  :mod:`ocf_lib.sysroot`, where the tests' OCFS2 stand-in lives), and under
  the ``sysfs`` parameter ``ocfs2/cluster_stack`` (the label) and
  ``ocfs2/loaded_cluster_plugins``;
* :func:`write_label`, the one write to the kernel's label, and
  :func:`switch_stack`, which refuses to change the label under a live OCFS2;
* ``ocfs2_controld.<stack>``, recognised only by its executable
  (``/proc/PID/exe``), started and waited for, stopped with SIGTERM then
  SIGKILL within the deadline;
* the record of the modules and mounts start added (in ``$HA_RSCTMP``), so
  stop undoes those and nothing the administrator set up;
* the volumes' on-disk stack stamps (``o2cluster -o``, read only).
"""

from __future__ import annotations

import os
import time

from . import codes, mounts, sysroot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .ocf import Context


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


def is_mounted(where: str) -> bool:
    return mounts.at(mount_table(), where) is not None


def ocfs2_mounts() -> str:
    """The mounted OCFS2 volumes as ``<source> on <mount point>, ...``; empty: none."""
    return ", ".join(f"{m.source} on {m.mountpoint}" for m in mount_table()
                     if m.fstype == "ocfs2")


def label_path(sysfs: str) -> str:
    return os.path.join(sysfs, "ocfs2", "cluster_stack")


def current_label(sysfs: str) -> str | None:
    text = _read(label_path(sysfs))
    return None if text is None else text.strip()


def plugins(sysfs: str) -> list[str]:
    text = _read(os.path.join(sysfs, "ocfs2", "loaded_cluster_plugins")) or ""
    return text.split()


def write_label(path: str, label: str) -> None:
    """The seam to the kernel's cluster_stack attribute (may raise EBUSY)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, (label + "\n").encode())
    finally:
        os.close(fd)


def switch_stack(ctx: Context, sysfs: str, stack: str) -> None:
    """Write the label, refusing to switch stacks while OCFS2 is active, with the reason."""
    label, path = current_label(sysfs), label_path(sysfs)
    if label == stack:
        return
    if label is None:
        ctx.fail(codes.ERR_INSTALLED, f"{path} does not exist after loading "
                 "ocfs2_stackglue: this kernel has no userspace OCFS2 stack support")
    busy = []
    held = ocfs2_mounts()
    if held:
        busy.append(f"OCFS2 volumes are mounted ({held})")
    if label != "o2cb" and daemon_pids(daemon_name(label)):
        busy.append(f"{daemon_name(label)} is running")
    advice = ("change stacks only with OCFS2 stopped on every node: see the procedure in "
              "the o2cb agent's documentation")
    if busy:
        ctx.fail(codes.ERR_GENERIC, f"cannot switch the OCFS2 cluster stack from {label} to "
                 f"{stack}: {'; '.join(busy)}; {advice}")
    try:
        write_label(path, stack)
    except OSError as exc:
        import errno

        if exc.errno == errno.EBUSY:
            ctx.fail(codes.ERR_GENERIC, f"the kernel refused to switch the OCFS2 cluster "
                     f"stack from {label} to {stack} (EBUSY: the {label} stack is still "
                     f"active); {advice}")
        ctx.fail(codes.ERR_INSTALLED, f"cannot write {stack} to {path}: {exc.strerror}")
    ctx.log.info(f"OCFS2 cluster stack switched from {label} to {stack}")


# -- the daemon ----------------------------------------------------------------------


def daemon_name(stack: str) -> str:
    return f"ocfs2_controld.{stack}"


# Where ocfs2-tools installs the daemons (Debian: /sbin, merged into /usr/sbin).
DAEMON_DIRS = ("/usr/sbin", "/sbin")


def daemon_paths(name: str) -> set[str]:
    """The daemon's executable as the kernel names it: PATH's choice and the packaged
    locations (which still match after the package was removed or upgraded), resolved."""
    from .proc import which

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


def any_daemon() -> tuple[int, str] | None:
    """A process running any ``ocfs2_controld.*`` from PATH or the packaged directories:
    what stop must rule out when the stack, hence the daemon's name, is unknown."""
    dirs = {os.path.realpath(d) for d in (*os.environ.get("PATH", "").split(":"), *DAEMON_DIRS)
            if d}
    for pid, exe in executables():
        head, base = os.path.split(exe)
        if base.startswith("ocfs2_controld.") and head in dirs:
            return pid, exe
    return None


def start_daemon(ctx: Context, name: str, options: tuple[str, ...], timeout: float) -> None:
    """Run the daemon (it forks into the background), then wait up to ``timeout``
    (within the action's deadline) until its executable shows in the process table."""
    r = ctx.run([name, *options], timeout=min(30.0, timeout + 5))
    if r.rc != 0:
        ctx.fail(codes.ERR_GENERIC, f"{name} failed to start: {r.reason()}")
    end = time.monotonic() + min(timeout, ctx.deadline.soft_remaining())
    while not daemon_pids(name):
        if time.monotonic() >= end:
            ctx.fail(codes.ERR_GENERIC, f"{name} did not come up within "
                     f"{min(timeout, ctx.deadline.soft_remaining()):g}s")
        time.sleep(0.1)


def kill_daemon(ctx: Context, name: str, pids: list[int]) -> None:
    """SIGTERM, then SIGKILL when the deadline nears; returns only once no process runs it."""
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


# -- what start loaded, for stop --------------------------------------------------------


def _loaded_file(ctx: Context) -> str:
    return f"o2cb-{ctx.instance}.loaded"


def _remember(ctx: Context, item: str) -> None:
    ctx.state.ensure()
    items = (ctx.state.read(_loaded_file(ctx)) or "").split()
    if item not in items:
        ctx.state.write(_loaded_file(ctx), " ".join([*items, item]) + "\n", 0o644)


def modprobe(ctx: Context, module: str) -> None:
    r = ctx.run(["modprobe", "-s", module], timeout=30)
    if r.rc != 0:
        ctx.fail(codes.ERR_INSTALLED, f"cannot load module {module}: {r.reason()}")
    _remember(ctx, "module:" + module)


def mount(ctx: Context, fstype: str, where: str) -> None:
    if not os.path.isdir(where):
        ctx.fail(codes.ERR_INSTALLED, f"{fstype} mount point {where} does not exist")
    r = ctx.run(["mount", "-t", fstype, fstype, where], timeout=30)
    if r.rc != 0:
        ctx.fail(codes.ERR_GENERIC, f"cannot mount {fstype} on {where}: {r.reason()}")
    _remember(ctx, "mount:" + where)


def unload(ctx: Context, configfs: str) -> None:
    """Undo start's mounts and module loads, newest first; configfs stays (libdlm)."""
    items = (ctx.state.read(_loaded_file(ctx)) or "").split()
    keep: list[str] = []
    for item in reversed(items):
        kind, _, what = item.partition(":")
        if what in (configfs, "configfs"):
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


# -- the volumes' stamps --------------------------------------------------------------


def stamp_problems(ctx: Context, running: str, devices: tuple[str, ...]) -> list[str]:
    """Volumes whose on-disk stack differs from ``running``, each with the way out."""
    out = []
    for dev in devices:
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
