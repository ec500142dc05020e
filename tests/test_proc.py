"""proc.run: argv only, time limits bounded by the deadline, logging, masking, missing binaries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ocf_lib.deadline import Deadline
from ocf_lib.log import Logger
from ocf_lib.proc import CommandNotFound, CommandTimeout, run, which


def logger(tmp_path: Path) -> tuple[Logger, Path]:
    path = tmp_path / "log"
    return Logger("t", {"HA_LOGFILE": str(path), "HA_debug": "1"}), path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("argv", ["echo hi", b"echo hi"])
def test_a_string_is_refused(argv: str | bytes) -> None:
    with pytest.raises(TypeError, match="never a shell string"):
        run(argv)  # type: ignore[arg-type]


def test_output_and_exit_codes() -> None:
    res = run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.rc, res.out, res.err) == (3, "out\n", "err\n")
    assert not res.ok and res.reason() == "err"
    assert run(["true"]).ok
    assert run(["false"]).reason() == "exit code 1"
    assert res.argv == ["sh", "-c", "echo out; echo err >&2; exit 3"]


def test_arguments_are_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    res = run(["echo", f"; touch {marker}", "$(id)", "*"])
    assert res.out == f"; touch {marker} $(id) *\n"
    assert not marker.exists()


def test_input_env_and_locale() -> None:
    assert run(["cat"], input="secret\n").out == "secret\n"
    assert run(["cat"], input=b"\x00bin").out == "\x00bin"
    res = run(["sh", "-c", "echo $LC_ALL $FOO $BAR"], env={"PATH": "/usr/bin:/bin", "FOO": "f"},
              extra_env={"BAR": "b"})
    assert res.out == "C f b\n"
    assert run(["sh", "-c", "echo ${HOME:-unset}"], env={"PATH": "/bin"}).out == "unset\n"


def test_input_up_to_a_pipe_buffer_and_no_silent_truncation() -> None:
    assert len(run(["cat"], input=b"x" * 65536).out) == 65536
    assert run(["true"], input=b"y" * 65536, timeout=5).rc == 0  # child never reads it
    with pytest.raises(ValueError, match="over 65536 bytes"):
        run(["cat"], input="z" * 65537)


def test_stdin_is_devnull_without_input() -> None:
    assert run(["cat"], timeout=5).out == ""


def test_timeout_kills_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not finish within 0.5s"):
        run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=0.5)
    assert 0.45 < time.monotonic() - started < 5.0
    assert not alive(int(pidfile.read_text()))


def test_deadline_caps_the_per_call_timeout() -> None:
    deadline = Deadline(0.6)
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        run(["sleep", "30"], timeout=20, deadline=deadline)
    assert time.monotonic() - started < 5.0


def test_an_expired_deadline_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(CommandTimeout, match="no time left"):
        run(["touch", str(marker)], deadline=Deadline(0.0))
    assert not marker.exists()


def test_child_that_closes_its_output_still_obeys_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        run(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5.0


def test_a_daemonising_child_does_not_hang_the_caller() -> None:
    """The child exits but a grandchild keeps its stdout open: return when the child exits."""
    started = time.monotonic()
    res = run(["sh", "-c", "sleep 30 & echo $!"], timeout=20)
    daemon = int(res.out)
    try:
        assert res.rc == 0
        assert time.monotonic() - started < 5.0
        assert alive(daemon)  # it really was still holding the pipe
    finally:
        os.kill(daemon, 9)


def test_killed_by_a_signal_reads_like_a_shell() -> None:
    assert run(["sh", "-c", "kill -9 $$"]).rc == 137


def test_large_output_is_collected_whole() -> None:
    res = run(["head", "-c", "3000000", "/dev/zero"])
    assert len(res.out) == 3_000_000


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound, match="command not found: no-such-tool-pyha"):
        run(["no-such-tool-pyha"])
    with pytest.raises(CommandNotFound, match="/nonexistent/tool"):
        run(["/nonexistent/tool"])
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(CommandNotFound, match="not executable"):
        run([str(plain)])


def test_which() -> None:
    assert which("sh") in ("/usr/bin/sh", "/bin/sh", "/usr/sbin/sh")
    assert which("no-such-tool-pyha") is None
    assert which("/bin/sh") == "/bin/sh"
    assert which("/etc") is None
    assert which("sh", path="/nonexistent") is None


def test_command_exit_code_and_duration_are_logged(tmp_path: Path) -> None:
    log, path = logger(tmp_path)
    run(["sh", "-c", "exit 0"], log=log)
    run(["sh", "-c", "echo broken >&2; exit 4"], log=log)
    run(["sh", "-c", "exit 5"], log=log, quiet=True)
    lines = path.read_text().splitlines()
    assert "DEBUG: running: sh -c exit 0" in lines[0]
    assert "DEBUG: sh -c exit 0: exit 0 in 0.0" in lines[1]
    assert "WARNING: sh -c echo broken >&2; exit 4: exit 4 in " in lines[3]
    assert lines[3].endswith(": broken")
    assert "DEBUG: sh -c exit 5: exit 5 in" in lines[5]  # quiet: an answer, not a problem


def test_timeouts_are_logged(tmp_path: Path) -> None:
    log, path = logger(tmp_path)
    with pytest.raises(CommandTimeout):
        run(["sleep", "5"], timeout=0.2, log=log)
    assert "WARNING: sleep 5: killed after 0.2" in path.read_text()


def test_secrets_are_masked_in_the_log(tmp_path: Path) -> None:
    log, path = logger(tmp_path)
    res = run(["echo", "user", "hunter2"], log=log, secrets=["hunter2", ""])
    assert res.out == "user hunter2\n"  # the command itself got the real value
    text = path.read_text()
    assert "hunter2" not in text and "echo user ****" in text
    log.info("later: hunter2")  # and the logger keeps masking it
    assert "hunter2" not in path.read_text()


def test_no_zombies_left(tmp_path: Path) -> None:
    for _ in range(20):
        run(["true"])
    with pytest.raises(CommandTimeout):
        run(["sleep", "5"], timeout=0.1)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
