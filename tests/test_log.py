"""The logger: HA_LOGFILE, HA_LOGFACILITY (real syslog datagrams), HA_debug, OCF_TRACE_RA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from ocf_lib.log import Logger


def test_logfile_gets_tagged_lines_and_stderr_stays_quiet(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logfile = tmp_path / "ha.log"
    log = Logger("IPaddr2(vip)", {"HA_LOGFILE": str(logfile)})
    log.info("first")
    log.error("second\nline")
    lines = logfile.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"IPaddr2(vip)[{os.getpid()}]: INFO: first")
    assert lines[1].endswith("ERROR: second line")  # one event, one line
    assert capsys.readouterr().err == ""


def test_unwritable_logfile_falls_back_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    log = Logger("t", {"HA_LOGFILE": "/nonexistent-dir/x.log"})
    log.warning("still seen")
    assert "t[" in capsys.readouterr().err


def test_no_destination_means_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    Logger("t", {}).info("hello")
    assert capsys.readouterr().err == f"t[{os.getpid()}]: INFO: hello\n"
    Logger("t", {"HA_LOGFACILITY": "none"}).info("x")
    assert "INFO: x" in capsys.readouterr().err


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"HA_debug": "0"}, False),  # upstream ocf.py turns debug ON here; we do not
    ({"HA_debug": "no"}, False),
    ({"HA_debug": ""}, False),
    ({"HA_debug": "1"}, True),
    ({"HA_debug": "yes"}, True),
    ({"HA_debug": "true"}, True),
    ({"OCF_TRACE_RA": "1"}, True),
    ({"OCF_TRACE_RA": "0", "HA_debug": "0"}, False),
])
def test_debug_switches(env: dict[str, str], on: bool, capsys: pytest.CaptureFixture[str]) -> None:
    log = Logger("t", env)
    log.debug("detail")
    assert log.debug_on is on
    assert ("DEBUG: detail" in capsys.readouterr().err) is on


def test_trace_file_receives_debug_lines(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace"
    log = Logger("t", {"OCF_TRACE_RA": "1", "OCF_TRACE_FILE": str(trace)})
    log.debug("deep")
    log.info("normal")
    assert "DEBUG: deep" in trace.read_text()
    assert "INFO: normal" in capsys.readouterr().err
    assert "normal" not in trace.read_text()


def test_secrets_are_masked_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logfile = tmp_path / "log"
    log = Logger("t", {"HA_LOGFILE": str(logfile), "HA_debug": "1"})
    log.add_secret("pass")
    log.add_secret("password123")
    log.add_secret("")
    log.add_secret(None)
    log.debug("login with password123 then pass")
    text = logfile.read_text()
    assert "password123" not in text and "pass " not in text
    assert "login with **** then ****" in text
    assert log.mask("x") == "x"


def test_masking_never_garbles_a_message() -> None:
    """A one-character password once turned "Unable" into "Una****le"."""
    log = Logger("t", {})
    log.add_secret("b")
    log.add_secret("pw")
    assert log.mask("Unable to connect") == "Unable to connect"
    assert log.mask("password b rejected; passwd=pw") == "password **** rejected; passwd=****"
    assert log.mask("b") == "****" and log.mask("'pw'") == "'****'"
    assert log.mask("bb pwd") == "bb pwd"


def test_long_secrets_are_masked_even_glued_to_other_text() -> None:
    log = Logger("t", {})
    log.add_secret("Very$ecret9")
    log.add_secret("$x")
    assert log.mask("-PVery$ecret9 -y") == "-P**** -y"
    assert log.mask("a$x b") == "a**** b"  # starts with a non-word character: no boundary


SYSLOG_PROBE = r"""
import json, os, socket, subprocess, sys
os.makedirs("/dev", exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "pyha-h1-dev", "/dev"], check=True)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/dev/log")
sock.settimeout(5)
sys.path.insert(0, sys.argv[1])
from ocf_lib.log import Logger
log = Logger("Probe(r1)", {sys.argv[2]: sys.argv[3], "HA_debug": "1"})
log.add_secret("topsecret")
log.info("hello syslog")
log.error("password topsecret rejected")
log.debug("fine detail")
got = [sock.recv(4096).decode() for _ in range(3)]
print(json.dumps(got))
"""


@pytest.mark.parametrize(("key", "facility", "code"), [
    ("HA_LOGFACILITY", "local3", 19), ("HA_logfacility", "daemon", 3),
    ("HA_LOGFACILITY", "bogus", 3),
])
def test_syslog_for_real(key: str, facility: str, code: int) -> None:
    """A real datagram on /dev/log, inside a private mount namespace."""
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SYSLOG_PROBE,
         str(ROOT), key, facility], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    info, error, debug = json.loads(proc.stdout)
    assert info.startswith(f"<{code * 8 + 6}>")
    assert "Probe(r1)[" in info and info.endswith("INFO: hello syslog")
    assert error.startswith(f"<{code * 8 + 3}>") and "password **** rejected" in error
    assert debug.startswith(f"<{code * 8 + 7}>")
    assert proc.stderr == ""  # syslog replaced stderr
