"""Where the kernel's files are: ``/proc``, ``/sys``, ``/dev``, seen through one prefix.

Agents name kernel interfaces by their real absolute paths
(``sysroot.path("/proc/drbd")``).  In production the prefix is empty and
nothing changes.  A test that stands in for a kernel feature this machine
lacks (the DRBD or OCFS2 modules) sets ``PYHA_KERNEL_ROOT`` to a directory
holding the simulator's files, so the agent reads the simulated
``/proc/drbd`` or ``/proc/mounts`` instead: the narrowest seam there is, with
no test code inside the agent.  Read once per process.
"""

from __future__ import annotations

import os

ROOT = os.environ.get("PYHA_KERNEL_ROOT", "").rstrip("/")


def path(absolute: str) -> str:
    """``absolute`` (e.g. ``/proc/drbd``) under the kernel root."""
    return ROOT + absolute if ROOT else absolute


def simulated() -> bool:
    return bool(ROOT)
