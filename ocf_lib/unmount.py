"""Unmounting under one deadline, killing what holds the mount.

Shared by every agent that owns a mount (Filesystem, and any clusterfs/netfs
style agent).  The policy, per mount, in the order given (callers
pass submounts first):

1. ``umount``; done if it worked.
2. Until half of the graceful time is spent: signal the holders with the
   ``term`` signals, wait ``delay``, try again; then the same with ``kill``.
   The graceful time is the deadline minus its escalation reserve, shared
   by all mounts (upstream gave each submount the whole timeout).
3. In the reserve: ``umount -f`` where forcing is meaningful (network
   filesystems), then ``umount -l`` (lazy) where it is safe: network and
   virtual filesystems, or a block device once nothing holds it any more.
   A lazy detach of a block device still in use would leave the filesystem
   alive while another node mounts it: never done.

Raises :class:`OCFError` (1) naming the mount and its holders when it is
still there; returns normally only when every mount is really gone.
"""

from __future__ import annotations

import os
import time

from . import codes, mounts
from .ocf import OCFError

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .ocf import Context


def _gone(mount_id: int) -> bool:
    return all(m.mount_id != mount_id for m in mounts.read_mountinfo())


def _umount(ctx: Context, path: str, mount_id: int, *flags: str) -> bool:
    limit = ctx.deadline.limit(10.0)
    if not limit:
        return _gone(mount_id)
    ctx.run(["umount", *flags, path], timeout=limit, quiet=True)
    return _gone(mount_id)


def _signal(ctx: Context, pids: dict[int, str], sig: int, path: str) -> None:
    for pid, how in pids.items():
        try:
            os.kill(pid, sig)
            ctx.log.info(f"sent signal {sig} to {pid} ({mounts.comm(pid)}, {how}) "
                         f"holding {path}")
        except ProcessLookupError:
            pass
        except OSError as exc:
            ctx.log.warning(f"could not signal {pid}: {exc.strerror}")


def unmount_all(ctx: Context, targets: Sequence[mounts.Mount], *, kill: str = "true",
                term: Sequence[int] = (15,), kill_sigs: Sequence[int] = (9,),
                delay: float = 1.0, fast: bool = False, network: bool = False,
                lazy_ok: bool = False, own_device: bool = False) -> None:
    """Unmount ``targets`` in order; see the module docstring for the policy.

    ``own_device``: the filesystem lives on a device of its own (a block
    device), so "every process with a file on that device" is safe to match
    (``force_unmount=true``).  Never for bind mounts or anything sharing a
    device with other filesystems: that would signal half the machine
    (upstream issue #1304).
    """
    now = time.monotonic()
    graceful_end = now + ctx.deadline.soft_remaining()
    if fast:
        graceful_end = min(graceful_end, now + 6.0)
    for target in targets:
        path = target.mountpoint
        if _gone(target.mount_id) or _umount(ctx, path, target.mount_id):
            ctx.log.info(f"unmounted {path}")
            continue
        halfway = time.monotonic() + max(0.0, graceful_end - time.monotonic()) / 2
        by_device = kill == "true" and own_device and not network
        while time.monotonic() < graceful_end:
            if kill != "false":
                pids = mounts.holders(path, target.dev, by_device=by_device)
                sigs = term if time.monotonic() < halfway else kill_sigs
                for sig in sigs:
                    _signal(ctx, pids, sig, path)
                if pids and _umount(ctx, path, target.mount_id):
                    break
            time.sleep(max(0.0, min(delay, graceful_end - time.monotonic())))
            if _umount(ctx, path, target.mount_id):
                break
        if _gone(target.mount_id):
            ctx.log.info(f"unmounted {path}")
            continue
        # Escalation, in the reserve the deadline kept for it.
        if network and _umount(ctx, path, target.mount_id, "-f"):
            ctx.log.warning(f"{path}: forced unmount")
            continue
        left = mounts.holders(path, target.dev, by_device=by_device)
        if (lazy_ok or network or not left) and _umount(ctx, path, target.mount_id, "-l"):
            ctx.log.warning(f"{path}: lazy unmount (holders left: {len(left)})")
            continue
        who = ", ".join(f"{pid} ({mounts.comm(pid)})" for pid in list(left)[:5])
        raise OCFError(codes.ERR_GENERIC, f"couldn't unmount {path} within the timeout"
                                          + (f"; still used by {who}" if who else ""))
