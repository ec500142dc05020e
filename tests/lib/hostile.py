"""A bad-input sweep: every parameter of an agent, given hostile values, through the
actions a cluster runs, each call in fresh network, mount and PID namespaces.

Each call is a fork of this (warm) process that unshares its namespaces and
enters the agent through the same ``ocf_lib.launch`` entry point its executable
uses: thousands of calls then take a minute or two instead of ten.

What a call may never do, whatever the value: print a traceback or an "internal
error", exit outside its protocol (OCF 0-9, fence 0-2), fail without a reason line
(``ocf-exit-reason:`` or ``Failed:``), or hang.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent.parent
MARKER = Path("/tmp/pyha-sweep-pwned")

# Empty, blanks, very long, traversal, shell metacharacters, other bases, NaN,
# non-ASCII, "/", "0".  MARKER appears in the metacharacter values: if any shell
# ever runs one, the file exists afterwards.
VALUES: tuple[str, ...] = (
    "", " ", "\t \t", "x" * 4096, "../../../../etc/passwd", "/", "0", "-1", "010", "0x10",
    "NaN", "inf", "1e999", f"$(touch {MARKER})", f"`touch {MARKER}`", f"a;touch {MARKER};#",
    "a|b&c>d", "'\"", "ünïcødé²𝄞", "\u202e", "a\nb", "%s%n", "-o", "--help",
)


@dataclass
class World:
    """How to run one agent against simulators, stand-ins or nothing real."""

    agent: Path
    kind: str  # "ocf" or "fence"
    env: dict[str, str]
    base: dict[str, str]  # a valid configuration the hostile value is put into
    hide: Sequence[str] = ()  # directories covered by an empty tmpfs (e.g. libvirt's sockets)
    actions: Sequence[str] = ()
    skip: frozenset[str] = field(default_factory=frozenset)  # parameters not swept
    cwd: str = "/tmp"  # where relative paths land
    only: Sequence[str] = ()  # sweep just these parameters (default: all declared)

    def parameters(self) -> list[str]:
        if self.kind == "ocf":
            argv = [str(self.agent), "meta-data"]
        else:
            argv = [str(self.agent), "-o", "metadata"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
        names = [p.get("name") or "" for p in ET.fromstring(out).iter("parameter")]
        names = [n for n in names if n and n not in self.skip and n != "action"]
        return [n for n in names if n in self.only] if self.only else names


@dataclass
class Outcome:
    param: str
    value: str
    action: str
    rc: int | None
    out: str
    err: str

    def problems(self, kind: str) -> list[str]:
        text = self.out + self.err
        found = []
        if self.rc is None:
            return ["hung (no answer within the time limit)"]
        if "Traceback" in text:
            found.append("traceback")
        if "internal error" in text.lower():
            found.append("internal error")
        top = 9 if kind == "ocf" else 2
        if not 0 <= self.rc <= top:
            found.append(f"exit {self.rc} outside the protocol")
        reasons = self.err.count("ocf-exit-reason:")
        if kind == "ocf" and self.rc not in (0, 7, 8) and reasons != 1:
            found.append(f"exit {self.rc} with {reasons} ocf-exit-reason lines, not one")
        if kind == "fence" and self.rc == 1 and "Failed:" not in self.err:
            found.append("exit 1 without a Failed: line")
        return found

    def __str__(self) -> str:
        shown = self.value if len(self.value) < 40 else self.value[:20] + "..."
        last = (self.err.strip().splitlines() or [""])[-1][:200]
        return f"{self.param}={shown!r} {self.action}: rc {self.rc}: {last}"


_CLONE_NEWNS, _CLONE_NEWNET, _CLONE_NEWPID = 0x00020000, 0x40000000, 0x20000000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND = 0x1, 0x20, 0x1000
# What a hostile value must never be able to write (a debug_file of
# "../../../etc/shadow" once did): read-only inside every call.  /tmp stays
# writable for the world's own directory.
PROTECTED = ("/etc", "/usr", "/var", "/root", "/boot", "/home", "/opt", "/srv", "/work",
             "/lib", "/bin", "/sbin")
_FLAGS = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _in_fresh_namespaces(world: World, argv: list[str], env: dict[str, str], stdin: bytes,
                         out_fd: int, err_fd: int) -> NoReturn:
    """The child: new mount, network and PID namespaces, then the agent's own entry
    point, in this already warm interpreter (a fork costs ~2 ms, an exec ~50)."""
    code = 125
    try:
        os.setsid()
        libc = _libc()
        if libc.unshare(_FLAGS) != 0:
            raise OSError(ctypes_errno(), "unshare")
        pid = os.fork()  # the first child in a new PID namespace is its init
        if pid:
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
        libc.mount(b"proc", b"/proc", b"proc", 0, None)
        for path in PROTECTED:
            if os.path.isdir(path) and not os.path.islink(path):
                raw = path.encode()
                if libc.mount(raw, raw, None, _MS_BIND | _MS_REC, None) == 0:
                    libc.mount(None, raw, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
        os.chdir(world.cwd)
        for path in world.hide:
            if os.path.isdir(path):
                libc.mount(b"pyha-sweep", path.encode(), b"tmpfs", 0, None)
        read_fd, write_fd = os.pipe()
        os.write(write_fd, stdin)
        os.close(write_fd)
        os.dup2(read_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False))
        os.environ.clear()
        os.environ.update(env)
        sys.argv = argv
        from ocf_lib import launch

        entry = _entry_point(world.agent)
        try:
            if world.kind == "ocf":
                launch.ocf(*entry)
            else:
                launch.fence(entry[1])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must never return into pytest
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def ctypes_errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _entry_point(agent: Path) -> tuple[str, str]:
    """(name, module) from the executable's own launch line, e.g. ocf("IPaddr2", ...)."""
    text = agent.read_text()
    call = text[text.rindex("\n", 0, len(text.rstrip())) + 1:].strip()
    args = [a.strip().strip("'\"") for a in call[call.index("(") + 1:call.rindex(")")].split(",")]
    return (args[0], args[-1]) if len(args) > 1 else ("", args[0])


def _call(world: World, param: str, value: str, action: str, timeout: float) -> Outcome:
    env = dict(world.env)
    if world.kind == "ocf":
        for key, val in world.base.items():
            env[f"OCF_RESKEY_{key}"] = val
        env[f"OCF_RESKEY_{param}"] = value
        name, _, interval = action.partition("@")
        env["OCF_RESKEY_CRM_meta_interval"] = interval or "0"
        env.setdefault("OCF_RESKEY_CRM_meta_timeout", "8000")
        argv = [str(world.agent), name]
        stdin = b""
    else:
        options = {**world.base, param: value, "action": action}
        if any("\n" in v for v in options.values()):
            return Outcome(param, value, action, 0, "", "")  # not expressible on stdin
        argv = [str(world.agent)]
        stdin = "".join(f"{k}={v}\n" for k, v in options.items()).encode()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    with out, err:
        pid = os.fork()
        if pid == 0:
            _in_fresh_namespaces(world, argv, env, stdin, out.fileno(), err.fileno())
        rc: int | None = None
        end = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.002)
        out.seek(0)
        err.seek(0)
        return Outcome(param, value, action, rc, out.read().decode("utf-8", "replace"),
                       err.read().decode("utf-8", "replace"))


def sweep(world: World, values: Iterable[str] = VALUES, *, timeout: float = 60,
          workers: int = 2) -> list[tuple[Outcome, list[str]]]:
    """Every (parameter, value, action) of ``world``; the calls that broke a rule.

    The calls are shared among ``workers`` forked processes (one per core), each
    running its share one call at a time: a process that forks must not have
    threads.
    """
    import json

    # Import the agent here, once: every forked call then starts warm.
    import ocf_lib.launch  # noqa: F401

    __import__(_entry_point(world.agent)[1], fromlist=["agent"])
    jobs = [(p, v, a) for p in world.parameters() for v in values for a in world.actions]
    children = []
    for n in range(workers):
        share = jobs[n::workers]
        sink = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                done = [vars(_call(world, *job, timeout)) for job in share]
                sink.write(json.dumps(done).encode())
                sink.flush()
            except BaseException:  # noqa: BLE001 - never return into pytest
                code = 1
            finally:
                os._exit(code)
        children.append((pid, sink))
    outcomes = []
    for pid, sink in children:
        _, status = os.waitpid(pid, 0)
        with sink:
            sink.seek(0)
            data = sink.read()
        if status != 0 or not data:
            raise RuntimeError(f"sweep worker {pid} failed (status {status})")
        outcomes.extend(Outcome(**item) for item in json.loads(data))
    bad = [(o, o.problems(world.kind)) for o in outcomes]
    return [(o, p) for o, p in bad if p]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "OCF_ROOT": "/usr/lib/ocf", "OCF_RA_VERSION_MAJOR": "1",
           "OCF_RA_VERSION_MINOR": "1", "OCF_RESOURCE_INSTANCE": "sweep"}
    env.update(extra or {})
    return env
