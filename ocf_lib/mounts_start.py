"""Filesystem's start, step by step: is the filesystem type supported, fsck, mount
(a CIFS password through a credentials file, never argv; bind-mount flags through a
remount)."""

from __future__ import annotations

import os

from ocf_lib import codes
from ocf_lib.mounts_target import CIFS, NO_FSCK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.mounts_target import Target
    from ocf_lib.ocf import Context

def _known_fstypes() -> set[str]:
    with open("/proc/filesystems", encoding="ascii") as handle:
        return {line.split()[-1] for line in handle if line.strip()}


def check_fstype(ctx: Context, cfg: Target) -> None:
    fstype = cfg.fstype
    if not fstype or fstype == "none":
        return
    if fstype.startswith("fuse.") or fstype in ("glusterfs", "rozofs"):
        fstype = "fuse"
    from ocf_lib.proc import which

    helper = any(which(f"{d}/mount.{cfg.fstype}") for d in ("/sbin", "/usr/sbin"))
    if fstype in _known_fstypes() or helper:
        return
    if which("modprobe"):
        ctx.run(["modprobe", "-q", fstype], timeout=10, quiet=True)
        if fstype in _known_fstypes():
            return
    ctx.fail(codes.ERR_INSTALLED, f"filesystem type '{cfg.fstype}' is not supported by this "
                                  "kernel (not in /proc/filesystems, no mount helper)")


def fsck(ctx: Context, cfg: Target, device: str) -> None:
    policy = ctx.params.run_fsck.policy
    if policy == "no" or (policy == "auto" and cfg.fstype in NO_FSCK):
        return
    argv = ["fsck", "-p", device] if not cfg.fstype else ["fsck", "-t", cfg.fstype, "-p", device]
    res = ctx.run(argv, timeout=ctx.deadline.limit(None, soft=True))
    if res.rc >= 4:
        ctx.fail(codes.ERR_GENERIC, f"fsck of {device} failed (exit {res.rc}): {res.reason()}")


def _credentials_file(ctx: Context, cfg: Target) -> tuple[str, str]:
    """(path, -o text): a CIFS password moved out of mount's argv into a mode-0600
    file that mount.cifs reads (credentials=); ("", options) when there is none."""
    secret = [w for w in cfg.options.words if w.lower().startswith(("password=", "pass="))]
    if not secret:
        return "", cfg.options.text
    ctx.state.ensure()
    path = ctx.state.file(f".Filesystem-credentials-{os.getpid()}-{os.urandom(8).hex()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"password={secret[-1].partition('=')[2]}\n".encode())
    finally:
        os.close(fd)
    words = [w for w in cfg.options.words if w not in secret]
    return path, ",".join([*words, f"credentials={path}"])


def mount(ctx: Context, cfg: Target, device: str) -> None:
    argv = ["mount"]
    credentials, options = "", cfg.options.text
    if cfg.bind:
        argv += ["--bind", "--", device, cfg.directory]
    else:
        if cfg.fstype:
            argv += ["-t", cfg.fstype]
        if cfg.fstype in CIFS:
            credentials, options = _credentials_file(ctx, cfg)
        if options:
            argv += ["-o", options]
        argv += ["--", device, cfg.directory]  # nothing after "--" is read as an option
    try:
        res = ctx.run(argv, timeout=ctx.deadline.limit(None, soft=True))
    finally:
        if credentials:
            os.unlink(credentials)
    if not res.ok:
        ctx.fail(codes.ERR_GENERIC, f"couldn't mount {cfg.device} on {cfg.directory}: "
                                    f"{res.reason()}")
    extra = [o for o in cfg.options.words if o != "bind"] if cfg.bind else []
    if extra:  # bind mounts take their flags (ro, nosuid...) only through a remount
        res = ctx.run(["mount", "-o", ",".join(["remount", "bind", *extra]), "--",
                       cfg.directory],
                      timeout=ctx.deadline.limit(None, soft=True))
        if not res.ok:
            ctx.run(["umount", "--", cfg.directory], timeout=10)
            ctx.fail(codes.ERR_GENERIC, f"couldn't apply {','.join(extra)} to the bind mount "
                                        f"{cfg.directory}: {res.reason()}")
