"""ocf:pyha:o2cb over the OCFS2 kernel stand-in (tests/sim/o2cbsim) and real ocfs2-tools images.

Real: the agent executable, the daemon processes it starts and stops (the
stand-in ocfs2_controld is a real process found through /proc), mkfs.ocfs2 /
o2cluster on file images.  Simulated: the kernel's files (configfs, sysfs
cluster_stack, /proc tables) under PYHA_KERNEL_ROOT, modprobe and mount.
The kernel's EBUSY on a cluster_stack change is applied by a double at the
write_label seam (ocf_lib/o2cbtool.py), in-process (a plain file cannot refuse a write).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import AGENTS, Run, base_env

SIM = Path(__file__).resolve().parent / "sim" / "o2cbsim"
_built: list[Path] = []


def stand_in_daemon() -> Path:
    """controld.c compiled once per test run (the daemon must be a real executable)."""
    if not _built:
        out = Path(tempfile.mkdtemp(prefix="pyha-o2cbsim-bin-", dir="/tmp")) / "controld"
        subprocess.run(["cc", "-O", "-Wall", "-Werror", f'-DSIMPY="{SIM / "o2cbsim.py"}"',
                        "-o", str(out), str(SIM / "controld.c")], check=True)
        _built.append(out)
    return _built[0]


@pytest.fixture(scope="module", autouse=True)
def _remove_stand_in() -> Iterator[None]:
    yield
    if _built:
        shutil.rmtree(_built.pop().parent, ignore_errors=True)


class O2cbLab:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pyha-o2cb-", dir="/tmp"))
        self.root = self.base / "root"
        self.sim = self.base / "sim"
        self.sim.mkdir()
        (self.root / "proc" / "self").mkdir(parents=True)
        (self.root / "proc" / "self" / "mountinfo").write_text(
            "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n")
        (self.root / "proc" / "filesystems").write_text("nodev\tsysfs\nnodev\tproc\n\text4\n")
        (self.root / "proc" / "modules").write_text("")
        (self.root / "sys" / "fs").mkdir(parents=True)
        (self.root / "sys" / "kernel").mkdir(parents=True)
        self.rsctmp = self.base / "rsctmp"
        # One copy per stack: each daemon is its own executable, as installed.
        self.bin = self.base / "bin"
        self.bin.mkdir()
        for stack in ("pcmk", "cman"):
            shutil.copy2(stand_in_daemon(), self.bin / f"ocfs2_controld.{stack}")

    @property
    def sysfs(self) -> Path:
        return self.root / "sys" / "fs"

    @property
    def configfs(self) -> Path:
        return self.root / "sys" / "kernel" / "config"

    def env(self) -> dict[str, str]:
        env = base_env(self.rsctmp)
        env.update({"PATH": f"{self.bin}:{SIM}:/usr/sbin:/usr/bin:/sbin:/bin",
                    "PYHA_KERNEL_ROOT": str(self.root), "PYHA_O2CBSIM_DIR": str(self.sim),
                    "OCF_RESOURCE_INSTANCE": "o2cb"})
        return env

    def params(self, **extra: str) -> dict[str, str]:
        params = {"sysfs": str(self.sysfs), "configfs": str(self.configfs), **extra}
        return {k: v for k, v in params.items() if v is not None}

    def agent(self, action: str, timeout_ms: int = 20000, **params: str) -> Run:
        env = self.env()
        env["OCF_RESKEY_CRM_meta_timeout"] = str(timeout_ms)
        for key, value in self.params(**params).items():
            env[key if key.startswith("OCF_") else f"OCF_RESKEY_{key}"] = value
        proc = subprocess.run([str(AGENTS / "o2cb"), action], env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def fault(self, **values: Any) -> None:
        path = self.sim / "faults.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(values)
        path.write_text(json.dumps(current))

    def label(self) -> str | None:
        path = self.sysfs / "ocfs2" / "cluster_stack"
        return path.read_text().strip() if path.exists() else None

    def modules(self) -> list[str]:
        return [ln.split()[0] for ln in (self.root / "proc" / "modules").read_text().splitlines()]

    def mounts(self) -> list[tuple[str, str]]:
        out = []
        for line in (self.root / "proc" / "self" / "mountinfo").read_text().splitlines():
            words = line.split()
            out.append((words[4], line.split(" - ")[1].split()[0]))
        return out

    def daemons(self, stack: str = "pcmk") -> list[int]:
        """Live stand-in daemons of ``stack``, seen from outside the agent: the pids the
        stand-in recorded whose process runs that stack's executable."""
        alive = []
        path = self.sim / "daemons"
        for pid in path.read_text().split() if path.exists() else []:
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and exe == str(self.bin / f"ocfs2_controld.{stack}"):
                alive.append(int(pid))
        return alive

    def mount_ocfs2(self, where: str = "/srv/data") -> None:
        """Pretend a Filesystem resource mounted an OCFS2 volume."""
        info = self.root / "proc" / "self" / "mountinfo"
        with info.open("a") as f:
            f.write(f"300 1 8:16 / {where} rw,relatime - ocfs2 /dev/sdc rw,cluster_stack=pcmk\n")

    def close(self) -> None:
        pids = (self.sim / "daemons").read_text().split() if (self.sim / "daemons").exists() \
            else []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[O2cbLab]:
    lab = O2cbLab()
    yield lab
    lab.close()


def test_start_monitor_stop(lab: O2cbLab) -> None:
    assert lab.agent("monitor").rc == 7
    r = lab.agent("start")
    assert r.rc == 0, r.err
    assert lab.label() == "pcmk"
    assert set(lab.modules()) >= {"configfs", "ocfs2_stackglue", "ocfs2_stack_user", "ocfs2"}
    assert (str(lab.configfs), "configfs") in lab.mounts()
    assert len(lab.daemons()) == 1
    # The upstream monitor never saw configfs mounted (awk quoting); this one does.
    assert lab.agent("monitor").rc == 0
    # A second start is a no-op, not a second daemon.
    assert lab.agent("start").rc == 0
    assert len(lab.daemons()) == 1
    r = lab.agent("stop")
    assert r.rc == 0, r.err
    assert lab.daemons() == []  # upstream's killproc did not exist: the daemon stayed
    # What it loaded is unloaded; configfs stays mounted (dlm_controld uses it).
    assert lab.modules() == ["configfs"]
    assert lab.label() is None
    assert (str(lab.configfs), "configfs") in lab.mounts()
    assert lab.agent("monitor").rc == 7
    assert lab.agent("stop").rc == 0


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def decoys(lab: O2cbLab) -> Iterator[list[subprocess.Popen[bytes]]]:
    """User nobody's processes that carry the daemon's name without being the daemon."""
    lab.base.chmod(0o755)
    shell_dir, py_dir = lab.base / "decoy-sh", lab.base / "decoy-py"
    for d, body in ((shell_dir, "sleep 600\n"), (py_dir, "import time\ntime.sleep(600)\n")):
        d.mkdir()
        (d / "ocfs2_controld.pcmk").write_text(body)
        (d / "ocfs2_controld.pcmk").chmod(0o755)
    commands = [
        ["sh", str(shell_dir / "ocfs2_controld.pcmk")],
        ["/usr/bin/python3", str(py_dir / "ocfs2_controld.pcmk")],
        ["bash", "-c", "exec -a ocfs2_controld.pcmk sleep 600"],
        ["sh", "-c", "sleep 600; ocfs2_controld.pcmk -D"],
    ]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in commands:
            procs.append(subprocess.Popen([*NOBODY, *cmd], start_new_session=True,
                                          stdin=subprocess.DEVNULL, env=env))

        def ready(p: subprocess.Popen[bytes]) -> bool:
            """setpriv changed the uid, then executed the decoy's own program."""
            status = Path(f"/proc/{p.pid}/status").read_text().splitlines()
            uid = next(line.split()[1] for line in status if line.startswith("Uid:"))
            argv0 = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")[0]
            return uid != "0" and argv0 not in (b"", b"setpriv")

        deadline = time.monotonic() + 10
        while not all(ready(p) for p in procs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        yield procs
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def test_other_users_processes_named_like_the_daemon_do_not_count(
        lab: O2cbLab, decoys: list[subprocess.Popen[bytes]]) -> None:
    assert lab.agent("monitor").rc == 7  # no daemon runs, whatever others are named
    assert lab.agent("start").rc == 0
    assert len(lab.daemons()) == 1  # the real one was started, not skipped
    assert lab.agent("monitor").rc == 0
    assert lab.agent("stop").rc == 0
    assert lab.daemons() == []
    assert [p.poll() for p in decoys] == [None] * len(decoys)  # none of them was signalled
    assert lab.agent("monitor").rc == 7


def test_daemon_whose_executable_was_replaced_still_counts(lab: O2cbLab) -> None:
    """A package upgrade replaces the file under a running daemon: '(deleted)' in exe."""
    assert lab.agent("start").rc == 0
    (pid,) = lab.daemons()
    daemon = lab.bin / "ocfs2_controld.pcmk"
    daemon.unlink()
    shutil.copy2(stand_in_daemon(), daemon)
    assert os.readlink(f"/proc/{pid}/exe").endswith(" (deleted)")
    assert lab.agent("monitor").rc == 0
    assert lab.agent("stop").rc == 0
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_modules_loaded_by_someone_else_stay(lab: O2cbLab) -> None:
    env = lab.env()
    subprocess.run([str(SIM / "modprobe"), "ocfs2_stack_user"], env=env, check=True)
    assert lab.agent("start").rc == 0
    assert lab.agent("stop").rc == 0
    assert "ocfs2_stack_user" in lab.modules() and "ocfs2_stackglue" in lab.modules()
    assert "ocfs2" not in lab.modules()


def test_monitor_with_configfs_path_containing_space(lab: O2cbLab) -> None:
    spaced = lab.root / "kernel config"
    spaced.mkdir()
    assert lab.agent("start", configfs=str(spaced)).rc == 0
    assert lab.agent("monitor", configfs=str(spaced)).rc == 0
    assert lab.agent("stop", configfs=str(spaced)).rc == 0


def test_monitor_reports_broken_pieces(lab: O2cbLab) -> None:
    assert lab.agent("start").rc == 0
    subprocess.run([str(SIM / "umount"), str(lab.configfs)], env=lab.env(), check=True)
    r = lab.agent("monitor")
    assert r.rc == 1 and "configfs is not mounted" in (r.reason or "")


def test_stop_refuses_while_ocfs2_is_mounted(lab: O2cbLab) -> None:
    assert lab.agent("start").rc == 0
    lab.mount_ocfs2()
    r = lab.agent("stop")
    assert r.rc == 1
    assert "/dev/sdc on /srv/data" in (r.reason or "")
    assert len(lab.daemons()) == 1


def test_stubborn_daemon_gets_sigkill(lab: O2cbLab) -> None:
    lab.fault(daemon="stubborn")
    assert lab.agent("start").rc == 0
    started = time.monotonic()
    r = lab.agent("stop", timeout_ms=4000)
    assert r.rc == 0, r.err
    assert lab.daemons() == []
    assert time.monotonic() - started < 10


def test_daemon_that_never_comes_up(lab: O2cbLab) -> None:
    lab.fault(daemon="never")
    started = time.monotonic()
    r = lab.agent("start", daemon_timeout="1")
    assert r.rc == 1
    assert "did not come up within 1s" in (r.reason or "")
    assert time.monotonic() - started < 8


def test_slow_daemon_is_waited_for(lab: O2cbLab) -> None:
    lab.fault(daemon="slow:1")
    assert lab.agent("start", daemon_timeout="5").rc == 0
    assert len(lab.daemons()) == 1


def test_missing_daemon_binary(lab: O2cbLab) -> None:
    r = lab.agent("start", stack="abcd")
    assert r.rc == 5
    assert "ocfs2_controld.abcd not found" in (r.reason or "")
    assert lab.modules() == []  # nothing loaded before the check
    assert lab.agent("validate-all", stack="abcd").rc == 5


def test_missing_module(lab: O2cbLab) -> None:
    lab.fault(missing=["ocfs2_stack_user"])
    r = lab.agent("start")
    assert r.rc == 5
    assert "cannot load module ocfs2_stack_user" in (r.reason or "")


def test_stack_switch_refused_while_old_stack_runs(lab: O2cbLab) -> None:
    assert lab.agent("start", stack="pcmk").rc == 0
    r = lab.agent("start", stack="cman")
    assert r.rc == 1
    assert "from pcmk to cman" in (r.reason or "")
    assert "ocfs2_controld.pcmk is running" in (r.reason or "")
    assert lab.label() == "pcmk"
    lab.mount_ocfs2()
    r = lab.agent("start", stack="cman")
    assert "OCFS2 volumes are mounted (/dev/sdc on /srv/data)" in (r.reason or "")


def test_stack_switch_after_clean_stop(lab: O2cbLab) -> None:
    assert lab.agent("start", stack="pcmk").rc == 0
    assert lab.agent("stop", stack="pcmk").rc == 0
    r = lab.agent("start", stack="cman")
    assert r.rc == 0, r.err
    assert lab.label() == "cman"
    assert lab.daemons("cman") and not lab.daemons("pcmk")
    assert lab.agent("stop", stack="cman").rc == 0


def test_stand_in_daemon_checks_the_label(lab: O2cbLab) -> None:
    env = lab.env()
    subprocess.run([str(SIM / "modprobe"), "ocfs2_stack_user"], env=env, check=True)
    (lab.sysfs / "ocfs2" / "cluster_stack").write_text("pcmk\n")
    r = subprocess.run([str(SIM / "ocfs2_controld.cman")], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert 'supports the "cman" stack, but the "pcmk" stack is in use' in r.stderr


def test_kernel_ebusy_on_stack_change(lab: O2cbLab, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The kernel's EBUSY, through ocf_lib.o2cbtool's write_label seam (in-process)."""
    assert lab.agent("start", stack="pcmk").rc == 0
    for key, value in lab.env().items():
        monkeypatch.setenv(key, value)
    import agents.o2cb as o2cb
    from ocf_lib import o2cbtool, sysroot

    monkeypatch.setattr(sysroot, "ROOT", str(lab.root))
    # Some kernel user of the stack we cannot see from userspace (say, a mount in
    # another namespace) keeps it active; the daemon itself is gone.
    for pid in lab.daemons():
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    writes: list[str] = []

    def kernel_rule(path: str, label: str) -> None:
        writes.append(label)
        current = Path(path).read_text().strip()
        if label != current:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)

    monkeypatch.setattr(o2cbtool, "write_label", kernel_rule)
    env = {**os.environ, "OCF_RESKEY_CRM_meta_timeout": "10000",
           **{f"OCF_RESKEY_{k}": v for k, v in lab.params(stack="cman").items()}}
    rc = o2cb.agent.run(["o2cb", "start"], env)
    err = capsys.readouterr().err
    assert rc == 1
    assert writes == ["cman"]
    assert "EBUSY" in err and "from pcmk to cman" in err
    assert lab.label() == "pcmk"
    assert lab.daemons("cman") == []


# -- on-disk stack stamps with real ocfs2-tools ---------------------------------------------


@pytest.fixture
def images(lab: O2cbLab) -> dict[str, Path]:
    out = {}
    for stack in ("pcmk", "cman"):
        img = lab.base / f"{stack}.img"
        with img.open("wb") as f:
            f.truncate(64 << 20)
        subprocess.run(["mkfs.ocfs2", "-q", "-F", "-N", "2", "-b", "4k", "-C", "4k",
                        "-J", "size=4M", f"--cluster-stack={stack}",
                        f"--cluster-name={stack}clu", str(img)], check=True,
                       capture_output=True)
        out[stack] = img
    return out


def test_stamp_check_pcmk_to_cman_and_back(lab: O2cbLab, images: dict[str, Path]) -> None:
    pcmk_img = str(images["pcmk"])
    assert lab.agent("validate-all", stack="pcmk", devices=pcmk_img).rc == 0
    r = lab.agent("validate-all", stack="cman", devices=pcmk_img)
    assert r.rc == 6
    reason = r.reason or ""
    assert pcmk_img in reason and "pcmk stack" in reason and "runs cman" in reason
    assert "tunefs.ocfs2 --update-cluster-stack" in reason and "o2cluster --update=" in reason
    # The administrator follows the procedure: re-stamp offline, then it validates.
    subprocess.run(["o2cluster", "-y", "--update=cman,cmanclu,none", pcmk_img], check=True,
                   capture_output=True)
    assert lab.agent("validate-all", stack="cman", devices=pcmk_img).rc == 0
    assert lab.agent("validate-all", stack="pcmk", devices=pcmk_img).rc == 6
    subprocess.run(["o2cluster", "-y", "--update=pcmk,pcmkclu,none", pcmk_img], check=True,
                   capture_output=True)
    assert lab.agent("validate-all", stack="pcmk", devices=pcmk_img).rc == 0
    # The running label wins over the parameter once the kernel has one.
    assert lab.agent("start", stack="pcmk").rc == 0
    both = f"{images['pcmk']} {images['cman']}"
    r = lab.agent("validate-all", stack="pcmk", devices=both)
    assert r.rc == 6 and str(images["cman"]) in (r.reason or "")
    # start only warns: the new stack must run for tunefs.ocfs2 --update-cluster-stack.
    r = lab.agent("start", stack="pcmk", devices=both)
    assert r.rc == 0


def test_stamp_check_unreadable_device(lab: O2cbLab) -> None:
    r = lab.agent("validate-all", devices=str(lab.base / "nothing.img"))
    assert r.rc == 6 and "cannot read the cluster stack" in (r.reason or "")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("params, rc, words", [
    ({"stack": "xyz"}, 6, "exactly 4"),
    ({"stack": "toolong"}, 6, "exactly 4"),
    ({"stack": "o2cb"}, 6, "classic"),
    ({"daemon_timeout": "-5"}, 6, "duration"),
    ({"sysfs": "relative/path"}, 6, "absolute"),
    ({"devices": "/dev/sdc vol.img"}, 6, "absolute"),
    ({"devices": "-oupdate=x"}, 6, "absolute"),
    ({"dlmfs": "dlm"}, 6, "absolute"),
    ({"daemon_options": "-D\x01"}, 6, "control character"),
])
def test_bad_input(lab: O2cbLab, params: dict[str, str], rc: int, words: str) -> None:
    r = lab.agent("start", **params)
    assert r.rc == rc
    assert words in (r.reason or "")
    assert lab.modules() == [] and lab.label() is None
    assert not (lab.sim / "calls.log").exists()
    assert lab.agent("stop", **params).rc == 0


# -- values the upstream agent accepted (docs/o2cb.md) ------------------------------------

def upstream(lab: O2cbLab, action: str, **params: str) -> Run:
    """ocf:pacemaker:o2cb on the same stand-in (UPSTREAM_FUNCS points its paths there)."""
    funcs = lab.base / "upstream-shellfuncs"
    funcs.write_text(UPSTREAM_FUNCS)
    env = lab.env()
    env["OCF_FUNCTIONS"] = str(funcs)
    for key, value in lab.params(**params).items():
        env[f"OCF_RESKEY_{key}"] = value
    proc = subprocess.run([UPSTREAM_O2CB, action], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, cwd=lab.base)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def test_daemon_timeout_that_is_no_number_waits_until_the_start_timeout(lab: O2cbLab) -> None:
    """Upstream's "[ $COUNT -gt soon ]" is never true: it waits for the daemon until the
    start operation's timeout.  pyha does the same, with a warning, instead of 6."""
    assert upstream(lab, "validate-all", daemon_timeout="soon").rc == 0
    r = lab.agent("validate-all", daemon_timeout="soon")
    assert r.rc == 0 and "parameter 'daemon_timeout'" in r.err and "WARNING" in r.err
    lab.fault(daemon="slow:2")  # longer than pyha's default of 10 s would not prove more
    r = lab.agent("start", daemon_timeout="soon")
    assert r.rc == 0 and "parameter 'daemon_timeout'" in r.err, r.err
    assert len(lab.daemons()) == 1 and lab.label() == "pcmk"
    assert lab.agent("monitor", daemon_timeout="soon").rc == 0
    assert lab.agent("stop", daemon_timeout="soon").rc == 0
    assert lab.daemons() == []


def test_daemon_timeout_that_is_no_number_is_bounded_by_the_operation(lab: O2cbLab) -> None:
    lab.fault(daemon="never")
    started = time.monotonic()
    r = lab.agent("start", timeout_ms=4000, daemon_timeout="soon")
    assert r.rc == 1 and "did not come up" in (r.reason or "")
    assert time.monotonic() - started < 6


def test_relative_paths_stay_refused(lab: O2cbLab) -> None:
    """Upstream reads sysfs=sys/fs relative to whatever directory the cluster manager
    runs it in and writes cluster_stack there: the wrong file.  pyha: 6, nothing done."""
    for params in ({"sysfs": "sys/fs"}, {"configfs": "sys/kernel/config"}):
        assert upstream(lab, "validate-all", **params).rc == 0
        r = lab.agent("start", **params)
        assert r.rc == 6 and "absolute" in (r.reason or "")
        assert lab.modules() == [] and lab.label() is None and lab.daemons() == []


def test_stop_without_a_usable_stack(lab: O2cbLab) -> None:
    """stack names the daemon stop must end; without it, stop proves that no
    ocfs2_controld of any stack runs, or fails."""
    assert lab.agent("start").rc == 0
    (pid,) = lab.daemons()
    r = lab.agent("stop", stack="xyz")
    assert r.rc == 6 and "stop cannot identify the resource" in (r.reason or "")
    assert lab.daemons() == [pid]
    assert lab.agent("stop").rc == 0
    assert lab.daemons() == []
    assert lab.agent("stop", stack="xyz").rc == 0


def test_stop_ignores_what_it_does_not_need(lab: O2cbLab) -> None:
    assert lab.agent("start").rc == 0
    r = lab.agent("stop", devices="relative.img", daemon_options="-D\x01", dlmfs="dlm")
    assert r.rc == 0, r.err
    assert lab.daemons() == []


def test_configfs_not_a_directory(lab: O2cbLab) -> None:
    afile = lab.base / "afile"
    afile.write_text("")
    r = lab.agent("start", configfs=str(afile))
    assert r.rc == 6 and "is not a directory" in (r.reason or "")
    assert lab.modules() == []


def test_globally_unique_clone_refused(lab: O2cbLab) -> None:
    r = lab.agent("start", OCF_RESKEY_CRM_meta_globally_unique="true")
    assert r.rc == 6


def test_metadata() -> None:
    from conftest import METADATA

    text = (METADATA / "o2cb.xml").read_text()
    for name in ("stack", "sysfs", "configfs", "daemon_timeout", "daemon_options", "devices"):
        assert f'name="{name}"' in text


@pytest.mark.parametrize("minor", ["1", "0"])
def test_monitor_actions_match_upstream(minor: str) -> None:
    """pcs creates one monitor operation per advertised monitor action, with its interval:
    advertise what ocf:pacemaker:o2cb does (one monitor, no interval)."""
    import xml.etree.ElementTree as ET

    env = {"OCF_ROOT": "/usr/lib/ocf", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": minor}

    def monitors(agent: str) -> list[dict[str, str]]:
        out = subprocess.run([agent, "meta-data"], env=env, capture_output=True, text=True,
                             check=True, timeout=30).stdout
        return [dict(a.attrib) for a in ET.fromstring(out).iter("action")
                if a.get("name") == "monitor"]

    upstream = monitors(UPSTREAM_O2CB)
    assert upstream and all("interval" not in a for a in upstream)
    assert monitors(str(AGENTS / "o2cb")) == upstream


def test_pyha_tester_passes(lab: O2cbLab) -> None:
    from conftest import ROOT

    lab.base.chmod(0o755)
    wrapper = lab.base / "o2cb"
    env = lab.env()
    exports = " ".join(f"{k}='{env[k]}'" for k in ("PATH", "PYHA_KERNEL_ROOT",
                                                   "PYHA_O2CBSIM_DIR"))
    wrapper.write_text(f"#!/bin/sh\nexport {exports}\nexec {AGENTS / 'o2cb'} \"$@\"\n")
    wrapper.chmod(0o755)
    res = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pyha-tester"), "--agent", str(wrapper),
         "-o", f"sysfs={lab.sysfs}", "-o", f"configfs={lab.configfs}"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" not in res.stdout
    assert lab.daemons() == []


UPSTREAM_O2CB = "/usr/lib/ocf/resource.d/pacemaker/o2cb"
UPSTREAM_FUNCS = r"""
. /usr/lib/ocf/resource.d/heartbeat/.ocf-shellfuncs
# Point the agent's hard-coded kernel paths at the stand-in; nothing else changes.
awk() {
  local a args=()
  for a in "$@"; do
    case "$a" in /proc/*) a="$PYHA_KERNEL_ROOT$a" ;; esac
    args+=("$a")
  done
  case "${args[0]}" in
    *'$2 ~'*'$3 ~'*) command awk "${args[@]}" "$PYHA_KERNEL_ROOT/proc/mounts" ;;
    *) command awk "${args[@]}" ;;
  esac
}
check_binary() { command -v "$(basename "$1")" >/dev/null || exit 5; }
pidof() { command pidof -x "$(basename "$1")"; }
"""


def test_upstream_monitor_never_sees_configfs(lab: O2cbLab) -> None:
    """Pacemaker's o2cb (2.1.5) on the same healthy node: 7, 'configfs not mounted'."""
    assert lab.agent("start").rc == 0
    assert lab.agent("monitor").rc == 0
    # /proc/mounts (the upstream agent's view) from the stand-in's mountinfo.
    lines = []
    for where, fstype in lab.mounts():
        lines.append(f"{fstype} {where} {fstype} rw,relatime 0 0")
    (lab.root / "proc" / "mounts").write_text("\n".join(lines) + "\n")
    funcs = lab.base / "upstream-shellfuncs"
    funcs.write_text(UPSTREAM_FUNCS)
    env = lab.env()
    env.update({"OCF_FUNCTIONS": str(funcs), "OCF_RESKEY_sysfs": str(lab.sysfs),
                "OCF_RESKEY_configfs": str(lab.configfs), "HA_debug": "1"})
    up = subprocess.run([UPSTREAM_O2CB, "monitor"], env=env, capture_output=True, text=True,
                        timeout=60, stdin=subprocess.DEVNULL)
    assert up.returncode == 7, up.stderr
    assert "configfs not mounted" in up.stderr  # it got past "configfs not loaded"
    # Control: the table it read does list configfs there; the agent's regex, escaped
    # with "\\/" since Pacemaker commit 6158d48df1, is what cannot match it.
    found = subprocess.run(["awk", f'$2 == "{lab.configfs}" && $3 == "configfs" {{print $2}}',
                            str(lab.root / "proc" / "mounts")], capture_output=True, text=True)
    assert found.stdout.strip() == str(lab.configfs)
    assert lab.agent("stop").rc == 0


def test_dlmfs_and_daemon_options(lab: O2cbLab) -> None:
    dlm = lab.root / "dlm"
    dlm.mkdir()
    r = lab.agent("start", dlmfs=str(dlm), daemon_options="-D -w")
    assert r.rc == 0, r.err
    assert (str(dlm), "ocfs2_dlmfs") in lab.mounts()
    assert "ocfs2_dlmfs" in lab.modules()
    assert "ocfs2_controld.pcmk -D -w" in (lab.sim / "calls.log").read_text()
    assert lab.agent("monitor", dlmfs=str(dlm)).rc == 0
    assert lab.agent("stop", dlmfs=str(dlm)).rc == 0
    assert (str(dlm), "ocfs2_dlmfs") not in lab.mounts()
    assert lab.modules() == ["configfs"]
