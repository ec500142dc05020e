"""A small logger that speaks the cluster's logging conventions.

Importing the stdlib ``logging`` package costs more than the rest of a
monitor, so agents use this instead.  Destinations follow the shell library:

* ``HA_LOGFILE``: append ``tag[pid]: LEVEL: message`` lines to that file;
* ``HA_LOGFACILITY`` / ``HA_logfacility``: syslog with that facility
  (``none`` or empty turns syslog off);
* neither: standard error (``crm_resource`` and hand runs show it).

Debug lines appear when ``HA_debug`` is a true value (upstream's ocf.py turns
debug *on* for ``HA_debug=0``; here 0 means off) or when ``OCF_TRACE_RA`` is
true, in which case they also go to ``OCF_TRACE_FILE`` (default stderr).

Every registered secret is replaced by ``****`` before a line is written
anywhere.  A secret is masked as a whole token: where it starts and ends
with a letter or digit, its neighbours must not be letters or digits, so a
one-character password never turns "Unable" into "Una****le".  A secret of
``SUBSTRING_MIN`` characters or more is masked wherever it appears, glued to
other text too (``-Pverysecret``): a string that long is the secret.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing is not worth importing on hot paths
if TYPE_CHECKING:
    from collections.abc import Mapping

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}
_TRUE = ("1", "yes", "true", "on")
SUBSTRING_MIN = 8


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def mask_token(text: str, secret: str) -> str:
    """``text`` with every whole-token occurrence of ``secret`` replaced by ``****``."""
    if len(secret) >= SUBSTRING_MIN:
        return text.replace(secret, "****")
    out = []
    start = 0
    i = text.find(secret)
    while i >= 0:
        end = i + len(secret)
        before_ok = i == 0 or not (_word(secret[0]) and _word(text[i - 1]))
        after_ok = end == len(text) or not (_word(secret[-1]) and _word(text[end]))
        if before_ok and after_ok:
            out.append(text[start:i])
            out.append("****")
            start = end
            i = text.find(secret, end)
        else:
            i = text.find(secret, i + 1)
    out.append(text[start:])
    return "".join(out)


class Logger:
    def __init__(self, tag: str, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.tag = tag
        self.secrets: set[str] = set()
        self.logfile = env.get("HA_LOGFILE") or None
        facility = env.get("HA_LOGFACILITY") or env.get("HA_logfacility") or ""
        self.facility = "" if facility.lower() == "none" else facility
        trace = env.get("OCF_TRACE_RA", "").strip().lower() in _TRUE
        self.debug_on = trace or env.get("HA_debug", "0").strip().lower() in _TRUE
        self.trace_file = (env.get("OCF_TRACE_FILE") or None) if trace else None
        self.trace_all = False
        self._syslog_open = False
        self.logfd: int | None = None  # a private log file (open_private), else None

    def open_private(self, path: str) -> None:
        """Log to ``path`` (absolute) instead of ``HA_LOGFILE``, as a file of its own.

        The file is opened once, for appending, never through a symbolic link,
        and created mode 0600 (debug output may show device details); it must
        be a regular file, so a typo cannot append to a disk or a FIFO.
        ``/dev/stderr`` means standard error.  OSError says why it cannot be used.
        """
        if path == "/dev/stderr":
            self.logfile = path
            return
        import errno
        import stat

        try:  # for a clear reason; the open below holds even if the path changes meanwhile
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, "is a symbolic link")
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
        except OSError:
            os.close(fd)
            raise
        self.logfd = fd
        self.logfile = path

    def add_secret(self, value: str | None) -> None:
        if value and len(value) > 0:
            self.secrets.add(value)

    def mask(self, text: str) -> str:
        # Longest first, so a secret that contains another is hidden whole.
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = mask_token(text, secret)
        return text

    def log(self, level: int, message: str) -> None:
        if level == DEBUG and not self.debug_on:
            return
        text = self.mask(message).replace("\n", " ")
        name = _LEVEL_NAMES.get(level, "INFO")
        line = f"{self.tag}[{os.getpid()}]: {name}: {text}\n"
        wrote = False
        if self.logfd is not None:
            wrote = _write(self.logfd, time.strftime("%b %d %H:%M:%S ") + line)
        elif self.logfile:
            wrote = _append(self.logfile, time.strftime("%b %d %H:%M:%S ") + line)
        if self.facility:
            self._syslog(level, f"{name}: {text}")
            wrote = True
        if self.trace_file and level == DEBUG:
            wrote = _append(self.trace_file, line) or wrote
        elif self.trace_file and self.trace_all:  # a trace holds every line of its action
            _append(self.trace_file, line)
        if not wrote:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _syslog(self, level: int, text: str) -> None:
        import syslog  # a C module: cheap, and only loaded when used

        if not self._syslog_open:
            fac = getattr(syslog, "LOG_" + self.facility.upper(), syslog.LOG_DAEMON)
            syslog.openlog(self.tag, syslog.LOG_PID, fac)
            self._syslog_open = True
        prio = {DEBUG: syslog.LOG_DEBUG, INFO: syslog.LOG_INFO,
                WARNING: syslog.LOG_WARNING}.get(level, syslog.LOG_ERR)
        syslog.syslog(prio, text)

    def debug(self, message: str) -> None:
        self.log(DEBUG, message)

    def info(self, message: str) -> None:
        self.log(INFO, message)

    def warning(self, message: str) -> None:
        self.log(WARNING, message)

    def error(self, message: str) -> None:
        self.log(ERROR, message)


def _append(path: str, line: str) -> bool:
    if path in ("/dev/stderr", "-"):
        try:
            sys.stderr.write(line)
            return True
        except (OSError, ValueError):
            return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        return False
    try:
        return _write(fd, line)
    finally:
        os.close(fd)


def _write(fd: int, line: str) -> bool:
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    except OSError:
        return False
    return True
