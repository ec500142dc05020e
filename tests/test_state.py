"""State directory: atomic writes (temp file + rename) and locks that die with their holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from ocf_lib.state import DEFAULT_DIR, LockTimeout, StateDir, write_atomic


def test_directory_from_ha_rsctmp(tmp_path: Path) -> None:
    assert StateDir(env={"HA_RSCTMP": str(tmp_path)}).path == str(tmp_path)
    assert StateDir(env={}).path == DEFAULT_DIR == "/run/resource-agents"
    assert StateDir(str(tmp_path / "x"), env={"HA_RSCTMP": "/elsewhere"}).path.endswith("x")


def test_write_read_remove(tmp_path: Path) -> None:
    st = StateDir(env={"HA_RSCTMP": str(tmp_path / "new")})
    assert st.read("a") is None and not st.exists("a")
    st.write("a", "hello\n")
    assert st.read("a") == "hello\n" and st.exists("a")
    assert os.stat(st.file("a")).st_mode & 0o777 == 0o600
    st.remove("a")
    st.remove("a")  # removing what is gone is fine
    assert st.read("a") is None


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", ".."])
def test_names_cannot_escape_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        StateDir(str(tmp_path)).file(name)


def test_write_replaces_by_rename(tmp_path: Path) -> None:
    """A reader holding the old file keeps the old bytes: the new file is a new inode."""
    path = tmp_path / "f"
    write_atomic(str(path), "old contents\n")
    before = os.stat(path).st_ino
    with open(path) as reader:
        write_atomic(str(path), "new\n", 0o644)
        assert reader.read() == "old contents\n"
    assert os.stat(path).st_ino != before
    assert path.read_text() == "new\n"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["f"]  # no temporary file left behind


def test_mode_is_exact_despite_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(str(tmp_path / "f"), b"bytes", 0o644)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f").st_mode & 0o777 == 0o644


def test_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(OSError):
        write_atomic(str(target), "x")
    assert os.listdir(tmp_path) == ["a-directory"]


def test_killed_writer_never_leaves_a_partial_file(tmp_path: Path) -> None:
    """SIGKILL mid-write: the file holds a complete old or new version, never a mix."""
    path = tmp_path / "big"
    write_atomic(str(path), "A" * 4_000_000)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from ocf_lib.state import "
            f"write_atomic\nwhile True: write_atomic({str(path)!r}, 'B' * 4_000_000)")
    for delay in (0.05, 0.13, 0.21):
        child = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(delay)
        child.kill()
        child.wait()
        data = path.read_text()
        assert data in ("A" * 4_000_000, "B" * 4_000_000)


LOCK_HOLDER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ocf_lib.state import StateDir
with StateDir(sys.argv[2]).lock("res"):
    if len(sys.argv) > 3:  # leave a child behind that outlives us
        os.posix_spawn("/bin/sleep", ["sleep", "30"], dict(os.environ))
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(ROOT), str(tmp_path), *extra],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_lock_dies_with_a_sigkilled_holder(tmp_path: Path) -> None:
    st = StateDir(str(tmp_path))
    holder = _holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout), st.lock("res", timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    with st.lock("res", timeout=2):
        assert time.monotonic() - started < 0.2


def test_lock_is_not_inherited_by_the_holders_children(tmp_path: Path) -> None:
    holder = _holder(tmp_path, "spawn")
    holder.kill()
    holder.wait()
    try:
        with StateDir(str(tmp_path)).lock("res", timeout=1):
            pass  # the orphaned sleep does not keep the lock
    finally:
        os.killpg(holder.pid, signal.SIGKILL)


def test_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    st = StateDir(str(tmp_path))
    with st.lock("x"):
        with pytest.raises(LockTimeout), st.lock("x", timeout=0.1):
            pass
    with st.lock("x", timeout=0.1):
        pass


# -- root writes here: nothing planted by another user is followed or trusted ---------

def test_planted_temporary_file_is_never_reused(tmp_path: Path) -> None:
    """A file another user created under the old predictable temporary name must not
    become the state file (its owner would keep a descriptor on our state)."""
    target = tmp_path / "state"
    for pid in (os.getpid(), os.getpid() + 1):
        planted = tmp_path / f".state.{pid}.tmp"
        planted.write_text("attacker\n")
        os.chown(planted, 65534, 65534)
    write_atomic(str(target), "ours\n")
    st = target.stat()
    assert target.read_text() == "ours\n" and st.st_uid == os.geteuid()
    assert (tmp_path / f".state.{os.getpid()}.tmp").read_text() == "attacker\n"


def test_lock_file_symlink_is_refused_and_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    st = StateDir(str(tmp_path / "d"))
    st.ensure()
    os.symlink(victim, st.file("res.lock"))
    with pytest.raises(OSError, match="symbolic link"), st.lock("res", timeout=1):
        pass
    assert victim.read_text() == "precious\n" and victim.stat().st_mode & 0o777 == 0o644
    dangling = tmp_path / "d" / "other.lock"
    os.symlink(tmp_path / "created-by-root", dangling)
    with pytest.raises(OSError), st.lock("other", timeout=1):
        pass
    assert not (tmp_path / "created-by-root").exists()


@pytest.mark.parametrize("spoil", ["other-owner", "group-writable", "world-writable", "symlink"])
def test_state_directory_others_control_is_refused(tmp_path: Path, spoil: str) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    path = real
    if spoil == "other-owner":
        os.chown(real, 65534, 65534)
    elif spoil == "group-writable":
        real.chmod(0o775)
    elif spoil == "world-writable":
        real.chmod(0o1777)  # sticky does not help: a planted file would be read as state
    else:
        path = tmp_path / "link"
        path.symlink_to(real)
    st = StateDir(str(path))
    with pytest.raises(OSError):
        st.ensure()
    with pytest.raises(OSError):
        st.write("x", "y")
    assert list(real.iterdir()) == []


def test_unsafe_state_directory_is_a_clean_agent_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An agent that keeps state answers 1 with one reason line, never a traceback."""
    from ocf_lib.ocf import Context, ResourceAgent

    agent = ResourceAgent("S", shortdesc="s", longdesc="s", params=[])

    @agent.action("start")
    def start(ctx: Context) -> int:
        with ctx.state.lock("S"):
            ctx.state.write("S.state", "up\n")
        return 0

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    rc = agent.run(["S", "start"], {"HA_RSCTMP": str(shared)})
    err = capsys.readouterr().err
    reasons = [line for line in err.splitlines() if line.startswith("ocf-exit-reason:")]
    assert rc == 1 and len(reasons) == 1 and "writable by other users" in reasons[0]
    assert "Traceback" not in err and list(shared.iterdir()) == []
    shared.chmod(0o700)
    assert agent.run(["S", "start"], {"HA_RSCTMP": str(shared)}) == 0
