"""``crm resource trace``: a per-action trace file, as the shell library writes one.

crmsh sets ``trace_ra=1`` (and ``trace_dir`` when given) on an operation;
Pacemaker passes them as ``OCF_RESKEY_trace_ra``/``OCF_RESKEY_trace_dir``.
The file is ``<trace_dir>/<type>/<instance>.<action>.<YYYY-MM-DD.HH:MM:SS>``
(``trace_dir`` defaults to ``/var/lib/heartbeat/trace_ra``).  ``OCF_TRACE_FILE``
overrides it: a descriptor number 3-9, or an absolute path.  On a terminal
with no ``OCF_TRACE_FILE``, the trace goes to standard error and no file is
written.

Unlike the shell library's ``set -x`` trace, this one never shows a secret:
it holds the parameters and the environment with every declared secret
masked, then the action's log at debug level and its exit code.  Files are
created mode 0600 and never through a symbolic link.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .ocf import Context

DEFAULT_DIR = "/var/lib/heartbeat/trace_ra"
_TRUE = ("1", "yes", "true", "on", "y")
_ENV_PREFIXES = ("OCF_", "HA_", "PCMK_", "CRM_")


def wanted(env: Mapping[str, str]) -> bool:
    return any((env.get(key) or "").strip().lower() in _TRUE
               for key in ("OCF_RESKEY_trace_ra", "OCF_TRACE_RA"))


def begin(ctx: Context) -> None:
    """Open the trace for this action and point the action's log at it."""
    try:
        path = _open_target(ctx)
    except OSError as exc:  # tracing is a diagnostic: it never fails an action
        ctx.log.warning(f"cannot write the trace file: {exc.strerror or exc}")
        return
    log = ctx.log
    log.trace_file = path
    log.debug_on = True
    log.trace_all = True
    secret_keys = {"OCF_RESKEY_" + p.name for p in ctx.agent.params if p.secret}
    lines = [f"# pyha trace: {ctx.agent.name} {ctx.action} instance={ctx.instance} "
             f"pid={os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}"]
    lines.append("# parameters (declared; * = given)")
    for p in ctx.agent.params:
        raw = ctx.params.raw.get(p.name)
        shown = p.default if raw is None else raw
        if shown is None:
            continue
        value = "****" if p.secret else log.mask(shown)
        lines.append(f"{'*' if raw is not None else ' '} {p.name}={value}")
    lines.append("# environment")
    for key in sorted(ctx.env):
        if key.startswith(_ENV_PREFIXES):
            value = "****" if key in secret_keys else log.mask(ctx.env[key])
            lines.append(f"  {key}={value}")
    _write(path, "\n".join(lines) + "\n")


def end(ctx: Context, rc: int) -> None:
    path = ctx.log.trace_file
    if path:
        _write(path, f"# {ctx.action} exit code {rc}\n")


def _open_target(ctx: Context) -> str:
    given = ctx.env.get("OCF_TRACE_FILE") or ""
    if given.isdigit() and 3 <= int(given) <= 9:
        return f"/dev/fd/{given}"
    if given.startswith("/"):
        fd = os.open(given, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        os.close(fd)
        return given
    if os.isatty(2):
        return "/dev/stderr"
    base = ctx.env.get("OCF_RESKEY_trace_dir") or DEFAULT_DIR
    directory = os.path.join(base, ctx.agent.name)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d.%H:%M:%S")
    name = f"{ctx.instance.replace('/', '_')}.{ctx.action}.{stamp}"
    for suffix in ("", *(f".{n}" for n in range(1, 10))):
        path = os.path.join(directory, name + suffix)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(17, "every trace file name for this second is taken")


def _write(path: str, text: str) -> None:
    if path == "/dev/stderr":
        import sys

        sys.stderr.write(text)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass
    finally:
        os.close(fd)
