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
