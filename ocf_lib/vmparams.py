"""Parameter types of the VM agents (VirtualDomain, Xen): every value they take is
parsed here.

The values the upstream shell agents ran with keep working, as upstream read
them, with a warning (params.Lenient); see docs/virtualdomain.md and
docs/xen.md, "Values the upstream agent accepted".
"""

from __future__ import annotations

from .params import (
    INTEGER,
    Lenient,
    ParamError,
    ParamType,
    Tolerant,
)
from .virt import MIGRATE_FLAGS, MIGRATE_IGNORED, SHUTDOWN_MODES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any





# -- VirtualDomain ----------------------------------------------------------------

TRANSPORTS = ("ssh", "tcp", "tls", "unix", "ext", "libssh", "libssh2")


class _URI(ParamType):
    """A libvirt connection URI, ``driver[+transport]://[user@][host][:port]/path[?query]``,
    or an alias from libvirt.conf (refused later: it cannot be checked without libvirt)."""

    doc = "libvirt URI"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if not text.isprintable() or any(c.isspace() for c in text):
            raise ParamError(name, raw, "contains blanks or control characters")
        scheme, sep, _ = text.partition("://")
        allowed = "abcdefghijklmnopqrstuvwxyz0123456789+-."
        if sep and (not scheme or not scheme[0].isalpha()
                    or any(c not in allowed for c in scheme.lower())):
            raise ParamError(name, raw, "is not a libvirt URI (driver[+transport]://host/path)")
        if not text.isascii() or any(c in "\"'<>`|{}^\\" for c in text):
            raise ParamError(name, raw, "has characters no URI holds (RFC 3986)")
        if not sep and not all(c.isalnum() or c in "_.-" for c in text):
            raise ParamError(name, raw, "is neither a libvirt URI (driver[+transport]://"
                                        "host/path) nor an alias name")
        return text


class _ShutdownModes(ParamType):
    """virsh shutdown --mode words, comma-separated.  Upstream never read the parameter
    (a misspelt variable), so a word that is not a mode is dropped with a warning."""

    doc = "comma-separated list of " + ", ".join(SHUTDOWN_MODES)

    def convert(self, raw: str, name: str) -> Any:
        words = [m.strip().lower() for m in raw.replace(",", " ").split()]
        modes = tuple(m for m in words if m in SHUTDOWN_MODES)
        unknown = [m for m in words if m not in SHUTDOWN_MODES]
        if unknown:
            kept = ",".join(modes) or "the hypervisor's default"
            return Lenient(modes, f"has {', '.join(repr(m) for m in unknown)}, not among "
                                  f"{', '.join(SHUTDOWN_MODES)}; shutting down with {kept} "
                                  "(the upstream agent ignored shutdown_mode)")
        return modes


def _split_words(text: str) -> list[str]:
    """Blank-separated words; '...' and "..." group blanks (shlex costs an import of re)."""
    words: list[str] = []
    cur, quote, started = "", "", False
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                cur += ch
        elif ch in "'\"":
            quote, started = ch, True
        elif ch.isspace():
            if started:
                words.append(cur)
            cur, started = "", False
        else:
            cur += ch
            started = True
    if quote:
        raise ValueError("unbalanced quote")
    if started:
        words.append(cur)
    return words


# virsh migrate options that rename the domain on the target: the agents there
# look for the old name, would answer "not running" and start a second copy.
RENAMING = ("--dname",)


class _MigrateOptions(ParamType):
    """virsh-style migrate options -> (libvirt flags including LIVE, --migrateuri value,
    options the agent cannot honour).  The last are tolerated: upstream passed them to
    virsh unread; here migrate_to fails on them, and Pacemaker stops and starts the
    domain instead.  An option that renames the domain is refused."""

    doc = "virsh migrate options"

    def convert(self, raw: str, name: str) -> Any:
        try:
            words = _split_words(raw)
        except ValueError:
            words = raw.split()  # upstream handed virsh the quotes as they were
        flags, uri, unsupported = MIGRATE_FLAGS["--live"], None, []
        while words:
            word = words.pop(0)
            if word.split("=", 1)[0] in RENAMING:
                raise ParamError(name, raw, f"has '{word}', which renames the domain on the "
                                            "target, where the cluster would no longer find it")
            if word.startswith("--migrateuri="):
                uri = word.split("=", 1)[1]
            elif word == "--migrateuri" and words:
                uri = words.pop(0)
            elif word in MIGRATE_FLAGS:
                flags |= MIGRATE_FLAGS[word]
            elif word not in MIGRATE_IGNORED:
                unsupported.append(word)
        if unsupported:
            return Lenient((flags, uri, tuple(unsupported)),
                           f"has {' '.join(unsupported)}, which this agent does not support: "
                           "migrate_to will fail (the domain is then stopped and started "
                           "instead); the upstream agent passed it to virsh")
        return flags, uri, ()


class _Transport(ParamType):
    """A libvirt transport.  One libvirt may know that is not listed is used as given
    (the migration fails if libvirt does not know it, as upstream's did); a value that
    is not a word would change which host the URI names, and is refused."""

    doc = "one of " + ", ".join(TRANSPORTS)

    def choices(self) -> tuple[str, ...]:
        return TRANSPORTS

    def convert(self, raw: str, name: str) -> Any:
        word = raw.strip().lower()
        if word in TRANSPORTS:
            return word
        if word.isascii() and word.isalnum():
            return Lenient(word, f"is not one of {', '.join(TRANSPORTS)}; used as given, as "
                                 "the upstream agent does (libvirt refuses a transport it "
                                 "does not know when migrating)")
        raise ParamError(name, raw, "is not a transport name (letters and digits), so the "
                                    "remote URI would name another host")


class _UserName(ParamType):
    """A login name for the generated remote URI (upstream silently dropped others)."""

    doc = "user name"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if not (text[:1].isascii() and text[:1].isalpha()
                and text.replace("-", "").replace("_", "").isalnum() and text.isascii()):
            raise ParamError(name, raw, "is not a user name (a letter, then letters, "
                                        "digits, '-' or '_')")
        return text


URI = _URI()
SHUTDOWN_MODE_LIST = _ShutdownModes()
MIGRATE_OPTIONS = _MigrateOptions()
TRANSPORT = _Transport()
MIGRATION_USER = Tolerant(_UserName(), None, "the upstream agent drops such a name and "
                                             "connects as the default user")
MIGRATE_PORT = Tolerant(INTEGER(1, 65535), None, "the upstream agent does not check it; a "
                                                 "random port 49152-49215 is used")
