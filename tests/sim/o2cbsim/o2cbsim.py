#!/usr/bin/python3 -IS
"""A stand-in for the OCFS2 kernel side and ocfs2_controld, for ocf:pyha:o2cb tests.

This machine's kernel has neither configfs nor OCFS2, and Debian ships no
``ocfs2_controld``.  What is simulated, and how:

* the kernel's files live under ``$PYHA_KERNEL_ROOT`` (``proc/filesystems``,
  ``proc/self/mountinfo``, ``proc/modules``, ``sys/fs/ocfs2/*``,
  ``sys/kernel/config``); the agent reaches sysfs/configfs through its
  ``sysfs``/``configfs`` parameters and the /proc tables through
  :mod:`ocf_lib.sysroot`;
* ``modprobe`` (this file, by name) "loads" a module by creating what the real
  module registers, refuses to unload a module in use, and fails for a
  module listed in ``faults.json`` ``missing``;
* ``mount``/``umount`` edit the simulated mountinfo, refusing unknown
  filesystem types and missing mount points with mount(8)'s messages;
* ``ocfs2_controld.pcmk``/``.cman`` check the cluster_stack label like the real
  daemon ("This daemon supports the "cman" stack, but the "pcmk" stack is in
  use"), then daemonise.  The agent recognises the daemon by its executable
  (``/proc/PID/exe``), so the tests run a compiled copy of ``controld.c`` per
  stack name: it hands over to this script, which daemonises and re-executes
  that copy as the daemon process.  ``faults.json`` ``daemon``: ``never``
  (exits 0, no process), ``stubborn`` (ignores SIGTERM), ``slow:<s>``.

NOT simulated here: the EBUSY a real kernel returns when cluster_stack is
rewritten while a stack is active.  A regular file cannot refuse a write, so
the tests exercise that path in-process, through ``ocf_lib.o2cbtool.write_label``
seam and a double that applies the kernel's rule (tests/test_o2cb.py).
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.environ.get("PYHA_KERNEL_ROOT", "")
SIM = os.environ.get("PYHA_O2CBSIM_DIR", "")

# module -> modules it needs loaded first
DEPS = {"ocfs2_stack_user": ["ocfs2_stackglue"], "ocfs2": ["ocfs2_stackglue"],
        "ocfs2_dlmfs": ["ocfs2_stackglue"], "ocfs2_stackglue": [], "configfs": []}


def p(*parts: str) -> str:
    return os.path.join(ROOT, *parts)


def read(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return default


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def faults() -> dict:
    try:
        return json.loads(read(os.path.join(SIM, "faults.json"), "{}"))
    except ValueError:
        return {}


def modules() -> list[str]:
    return [line.split()[0] for line in read(p("proc", "modules")).splitlines() if line]


def mountinfo() -> list[str]:
    return [line for line in read(p("proc", "self", "mountinfo")).splitlines() if line]


def mounted_types() -> list[str]:
    return [line.split(" - ")[1].split()[0] for line in mountinfo() if " - " in line]


def fs_add(name: str, nodev: bool) -> None:
    lines = read(p("proc", "filesystems")).splitlines()
    lines.append(f"{'nodev' if nodev else ''}\t{name}")
    write(p("proc", "filesystems"), "\n".join(lines) + "\n")


def fs_del(name: str) -> None:
    lines = [ln for ln in read(p("proc", "filesystems")).splitlines()
             if ln.split() and ln.split()[-1] != name]
    write(p("proc", "filesystems"), "\n".join(lines) + ("\n" if lines else ""))


def daemons_running() -> list[int]:
    alive = []
    for line in read(os.path.join(SIM, "daemons")).split():
        pid = int(line)
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    continue
            alive.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return alive


def in_use(module: str) -> bool:
    loaded = modules()
    if module == "configfs":
        return "configfs" in mounted_types()
    if module == "ocfs2":
        return "ocfs2" in mounted_types()
    if module == "ocfs2_dlmfs":
        return "ocfs2_dlmfs" in mounted_types()
    if module == "ocfs2_stack_user":
        return bool(daemons_running()) or "ocfs2" in mounted_types()
    if module == "ocfs2_stackglue":
        return any(m in loaded for m in ("ocfs2_stack_user", "ocfs2", "ocfs2_dlmfs"))
    return False


def load(module: str) -> int:
    if module not in DEPS or module in faults().get("missing", []):
        sys.stderr.write(f"modprobe: FATAL: Module {module} not found in directory "
                         "/lib/modules/pyha-sim\n")
        return 1
    for dep in DEPS[module]:
        if dep not in modules():
            rc = load(dep)
            if rc:
                return rc
    if module in modules():
        return 0
    if module == "configfs":
        fs_add("configfs", True)
        os.makedirs(p("sys", "kernel", "config"), exist_ok=True)
    elif module == "ocfs2_stackglue":
        write(p("sys", "fs", "ocfs2", "cluster_stack"), "o2cb\n")
        write(p("sys", "fs", "ocfs2", "loaded_cluster_plugins"), "")
        write(p("sys", "fs", "ocfs2", "active_cluster_plugin"), "")
        write(p("sys", "fs", "ocfs2", "max_locking_protocol"), "1.0\n")
    elif module == "ocfs2_stack_user":
        plugins = read(p("sys", "fs", "ocfs2", "loaded_cluster_plugins"))
        write(p("sys", "fs", "ocfs2", "loaded_cluster_plugins"), plugins + "user\n")
    elif module == "ocfs2":
        fs_add("ocfs2", False)
    elif module == "ocfs2_dlmfs":
        fs_add("ocfs2_dlmfs", True)
    lines = read(p("proc", "modules")).splitlines()
    lines.append(f"{module} 16384 0 - Live 0x0000000000000000")
    write(p("proc", "modules"), "\n".join(lines) + "\n")
    return 0


def unload(module: str) -> int:
    if module not in modules():
        return 0
    if in_use(module):
        sys.stderr.write(f"modprobe: FATAL: Module {module} is in use.\n")
        return 1
    if module == "configfs":
        fs_del("configfs")
        try:
            os.rmdir(p("sys", "kernel", "config"))
        except OSError:
            pass
    elif module == "ocfs2_stackglue":
        for name in ("cluster_stack", "loaded_cluster_plugins", "active_cluster_plugin",
                     "max_locking_protocol"):
            try:
                os.unlink(p("sys", "fs", "ocfs2", name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(p("sys", "fs", "ocfs2"))
        except OSError:
            pass
    elif module == "ocfs2_stack_user":
        plugins = [x for x in read(p("sys", "fs", "ocfs2", "loaded_cluster_plugins")).split()
                   if x != "user"]
        write(p("sys", "fs", "ocfs2", "loaded_cluster_plugins"), "".join(x + "\n" for x in plugins))
    elif module in ("ocfs2", "ocfs2_dlmfs"):
        fs_del(module)
    lines = [ln for ln in read(p("proc", "modules")).splitlines() if ln.split()[0] != module]
    write(p("proc", "modules"), "\n".join(lines) + ("\n" if lines else ""))
    return 0


def modprobe(argv: list[str]) -> int:
    remove = "-r" in argv or "--remove" in argv
    names = [a for a in argv if not a.startswith("-")]
    for name in names:
        rc = unload(name) if remove else load(name)
        if rc:
            return rc
    return 0


def escape(text: str) -> str:
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def mount(argv: list[str]) -> int:
    fstype, args, i = "", [], 0
    while i < len(argv):
        if argv[i] in ("-t", "-o"):
            fstype = argv[i + 1] if argv[i] == "-t" else fstype
            i += 2
            continue
        if not argv[i].startswith("-"):
            args.append(argv[i])
        i += 1
    if len(args) != 2:
        sys.stderr.write("mount (pyha simulator): usage: mount -t TYPE SOURCE DIR\n")
        return 1
    source, where = args
    known = {ln.split()[-1] for ln in read(p("proc", "filesystems")).splitlines() if ln.split()}
    if fstype not in known:
        sys.stderr.write(f"mount: {where}: unknown filesystem type '{fstype}'.\n")
        return 32
    if not os.path.isdir(where):
        sys.stderr.write(f"mount: {where}: mount point does not exist.\n")
        return 32
    lines = mountinfo()
    mid = 100 + len(lines)
    lines.append(f"{mid} 1 0:{mid} / {escape(where)} rw,relatime shared:{mid} - {fstype} "
                 f"{source} rw")
    write(p("proc", "self", "mountinfo"), "\n".join(lines) + "\n")
    return 0


def umount(argv: list[str]) -> int:
    where = [a for a in argv if not a.startswith("-")][-1]
    lines = mountinfo()
    keep = [ln for ln in lines if ln.split()[4] != escape(where)]
    if len(keep) == len(lines):
        sys.stderr.write(f"umount: {where}: not mounted.\n")
        return 32
    write(p("proc", "self", "mountinfo"), "\n".join(keep) + ("\n" if keep else ""))
    return 0


def controld(prog: str, argv: list[str]) -> int:
    stack = prog.rsplit(".", 1)[1]
    label = read(p("sys", "fs", "ocfs2", "cluster_stack"), "").strip()
    if not label:
        sys.stderr.write(f"{prog}: Unable to determine the cluster stack: "
                         "/sys/fs/ocfs2/cluster_stack not found\n")
        return 1
    if label != stack:
        sys.stderr.write(f'{prog}: This daemon supports the "{stack}" stack, but the '
                         f'"{label}" stack is in use\n')
        return 1
    mode = str(faults().get("daemon", "normal"))
    if mode == "never":
        return 0
    exe = os.environ.get("PYHA_O2CBSIM_EXE")
    if not exe:
        sys.stderr.write(f"{prog} (pyha simulator): run the compiled stand-in (controld.c), "
                         "whose process is the daemon's own executable\n")
        return 1
    delay = float(mode.split(":")[1]) if mode.startswith("slow:") else 0.0
    if os.fork():
        return 0  # the parent returns at once, like a daemon's foreground process
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)
    with open(os.path.join(SIM, "daemons"), "a") as f:
        f.write(f"{os.getpid()}\n")
    if delay:
        time.sleep(delay)  # still python3, not yet the daemon's executable
    env = {**os.environ, "PYHA_O2CBSIM_RUN": "stubborn" if mode == "stubborn" else "normal"}
    os.execve(exe, [exe, *argv], env)
    return 0


def main() -> int:
    # Through the compiled stand-in, the program is the executable's own name.
    prog = os.path.basename(os.environ.get("PYHA_O2CBSIM_EXE") or sys.argv[0])
    argv = sys.argv[1:]
    if not ROOT or not SIM:
        sys.stderr.write(f"{prog} (pyha simulator): PYHA_KERNEL_ROOT and PYHA_O2CBSIM_DIR "
                         "must be set\n")
        return 1
    if not os.path.isdir(SIM):
        sys.stderr.write(f"{prog} (pyha simulator): {SIM} does not exist\n")
        return 1
    with open(os.path.join(SIM, "calls.log"), "a") as log:
        log.write(f"{time.time():.3f} {prog} {' '.join(argv)}\n")
    if prog == "modprobe":
        return modprobe(argv)
    if prog == "mount":
        return mount(argv)
    if prog == "umount":
        return umount(argv)
    if prog.startswith("ocfs2_controld."):
        return controld(prog, argv)
    sys.stderr.write(f"o2cbsim: unknown program {prog}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
