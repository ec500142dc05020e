"""A private mount namespace held open by a sleeping process, for tests that mount
real filesystems: nothing is ever mounted in the host's namespace, and every mount
dies with the holder."""

from __future__ import annotations

import os
import subprocess
import time


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr}")
    return proc


class MountNamespace:
    """Agents run in it through :meth:`wrap` (``nsenter -m``); ``loops`` maps a
    name (e.g. the filesystem type) to the loop device a test attached."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private",
                                        "sleep", "infinity"])
        self.loops: dict[str, str] = {}
        for _ in range(100):  # wait until the sleep runs in its own namespace
            if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.02)

    def ns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("nsenter", "-t", str(self.holder.pid), "-m", *argv, check=check)

    def wrap(self) -> tuple[str, ...]:
        return ("nsenter", "-t", str(self.holder.pid), "-m")

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()
