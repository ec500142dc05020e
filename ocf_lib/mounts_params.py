"""Filesystem's parameter types: every value of ocf:pyha:Filesystem is parsed here.

Each type turns the raw string into what the agent acts on (a :class:`Device` with its
UUID=/LABEL= tag, :class:`MountOptions` that know their secrets, a :class:`StatusPrefix`
that cannot leave the mount point...).  Values the upstream agent ran with are taken as
it read them, with a warning (:class:`ocf_lib.params.Lenient`); docs/filesystem.md lists
them, and the ones still refused.
"""

from __future__ import annotations

from ocf_lib.params import DURATION, Lenient, ParamError, ParamType, Tolerant

# Longest first: upstream takes "-U x", "-Ux", "--uuid=x" and "--uuid x" alike.
_TAGS = (("--uuid=", "UUID="), ("--uuid ", "UUID="), ("--label=", "LABEL="),
         ("--label ", "LABEL="), ("-U", "UUID="), ("-L", "LABEL="), ("UUID=", "UUID="),
         ("LABEL=", "LABEL="))


def _control(text: str) -> bool:
    return any(ord(c) < 32 or c == "\x7f" for c in text)


class Device:
    """The ``device`` value: the text as given, and ``tag`` ("UUID=x"/"LABEL=x") when
    it names a filesystem rather than a path."""

    __slots__ = ("text", "tag")

    def __init__(self, text: str, tag: str) -> None:
        self.text = text
        self.tag = tag

    def __str__(self) -> str:
        return self.text


class _DeviceType(ParamType):
    doc = ("a device path, UUID=/LABEL= (or -U/-L/--uuid/--label), host:/export, "
           "//host/share, or a directory to bind; no leading or trailing blanks, no other "
           "word starting with '-'")

    def convert(self, raw: str, name: str) -> Device:
        if raw != raw.strip():
            raise ParamError(name, raw, "has leading or trailing white space")
        if _control(raw):
            raise ParamError(name, raw, "contains a control character")
        for prefix, tag in _TAGS:
            if raw.startswith(prefix):
                value = raw[len(prefix):].strip()
                if not value:
                    raise ParamError(name, raw, f"names no {tag[:-1]}")
                return Device(raw, tag + value)
        if raw.startswith("-"):  # mount would read it as an option
            raise ParamError(name, raw, "starts with '-' (only -U, -L, --uuid, --label "
                                        "are understood)")
        return Device(raw, "")


class _MountPointType(ParamType):
    doc = "absolute path, not /; symlinks are followed"

    def convert(self, raw: str, name: str) -> str:
        if raw != raw.strip():
            raise ParamError(name, raw, "has leading or trailing white space")
        if not raw.startswith("/"):
            raise ParamError(name, raw, "is not an absolute path")
        if "\0" in raw:
            raise ParamError(name, raw, "contains a NUL byte")
        text = "/" + "/".join(w for w in raw.split("/") if w and w != ".")
        if text == "/":
            raise ParamError(name, raw, "is the root directory")
        return text


class _FsTypeType(ParamType):
    doc = "a filesystem type name (letters, digits, '.', '_', '+', '-'), 'none' for a bind"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if text.startswith("-") or not all(c.isascii() and (c.isalnum() or c in "._+-")
                                           for c in text):
            raise ParamError(name, raw, "is not a filesystem type name")
        return text


# Values of these options are secrets: never in argv, a log or a message.
SECRET_OPTIONS = ("password=", "pass=", "password2=")
# mount(8) options that change the operation or run programs: never from a resource.
FORBIDDEN_OPTIONS = ("remount", "move", "rbind", "make-", "helper=", "uhelper=", "x-mount.")


def hide(word: str) -> str:
    for key in SECRET_OPTIONS:
        if word.lower().startswith(key):
            return word[:len(key)] + "****"
    return word


class MountOptions:
    """The ``options`` value: the words in order, with the secret values known."""

    __slots__ = ("words",)

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words

    def __contains__(self, word: str) -> bool:
        return word in self.words

    def __bool__(self) -> bool:
        return bool(self.words)

    @property
    def text(self) -> str:
        """For mount's -o; may hold secrets."""
        return ",".join(self.words)

    def shown(self) -> str:
        return ",".join(hide(w) for w in self.words)

    def secrets(self) -> list[str]:
        return [w.partition("=")[2] for w in self.words if hide(w) != w and "=" in w]

    def __str__(self) -> str:
        return self.shown()


class _MountOptionsType(ParamType):
    doc = ("comma-separated mount options without blanks or quotes; remount, move, rbind, "
           "make-*, helper=, uhelper= and x-mount.* are refused")

    def convert(self, raw: str, name: str) -> MountOptions | Lenient:
        text = raw.strip()
        words = tuple(text.split(",")) if text else ()
        shown = ",".join(hide(w) for w in words)
        kept = tuple(w for w in words if w)
        # mount(8) skips empty options ("ro,,noatime", "ro,"); the warning shows the
        # raw value, so a value holding a secret is refused rather than echoed.
        if kept != words and kept and not any(hide(w) != w for w in words):
            words = kept
        for word in words:
            low = word.lower()
            if not word or any(c in word for c in " \t'\"\\") or _control(word):
                raise ParamError(name, shown, "holds an empty or malformed option")
            if low.startswith("-") or any(low.startswith(f) for f in FORBIDDEN_OPTIONS):
                raise ParamError(name, shown, f"option '{hide(word)}' is not allowed here")
        if len(words) != len(tuple(text.split(",")) if text else ()):
            return Lenient(MountOptions(words), f"has empty options; used as "
                                                f"'{','.join(words)}', as mount(8) does")
        return MountOptions(words)


class StatusPrefix:
    """``statusfile_prefix`` split into the directories to walk and the file-name stem."""

    __slots__ = ("dirs", "stem")

    def __init__(self, dirs: tuple[str, ...], stem: str) -> None:
        self.dirs = dirs
        self.stem = stem

    def __str__(self) -> str:
        return "".join(d + "/" for d in self.dirs) + self.stem


class _StatusPrefixType(ParamType):
    doc = "a path relative to the mount point, without '..'"

    def convert(self, raw: str, name: str) -> StatusPrefix | Lenient:
        if "\0" in raw or _control(raw):
            raise ParamError(name, raw, "is not a relative path")
        parts = [w for w in raw.split("/") if w != "."]
        if ".." in parts:
            raise ParamError(name, raw, "leads out of the mount point ('..')")
        *dirs, stem = parts
        prefix = StatusPrefix(tuple(d for d in dirs if d), stem)
        if raw.startswith("/"):  # upstream appends it to "<directory>/": the same file
            return Lenient(prefix, f"is absolute; used as '{prefix}' below the mount point, "
                                   "as the upstream agent does")
        return prefix


class Fsck:
    """``run_fsck``: ``policy`` is auto, force or no."""

    __slots__ = ("policy",)

    def __init__(self, policy: str) -> None:
        self.policy = policy

    def __str__(self) -> str:
        return self.policy


class _FsckType(ParamType):
    doc = "auto, force or no (another word means auto, with a warning, as upstream)"

    def convert(self, raw: str, name: str) -> Fsck | Lenient:
        word = raw.strip().lower()
        if word in ("auto", "force", "no"):
            return Fsck(word)
        return Lenient(Fsck("auto"), "is not auto, force or no; taken as auto, as the "
                                     "upstream agent does")


class Unmount:
    """``force_unmount``: ``kill`` is true, safe or false; ``move`` the modifier."""

    __slots__ = ("kill", "move")

    def __init__(self, kill: str, move: bool) -> None:
        self.kill = kill
        self.move = move

    def __str__(self) -> str:
        return self.kill + (",move" if self.move else "")


# ocf_is_true's words (ja included) are true; upstream kills nothing for any other word.
_KILL_WORDS = {"true": "true", "yes": "true", "1": "true", "on": "true", "ja": "true",
               "safe": "safe", "false": "false", "no": "false", "0": "false", "off": "false"}
_MODIFIERS = ("xargs", "noxargs", "ps", "nops")


class _UnmountType(ParamType):
    doc = ("true, safe or false, with the modifiers move, xargs, ps (or nomove, noxargs, nops), "
           "comma-separated; unknown words are ignored with a warning, as upstream")

    def convert(self, raw: str, name: str) -> Unmount | Lenient:
        kill, move, known, unknown = "true", False, False, []
        for word in (w.strip() for w in raw.split(",")):
            low = word.lower()
            if not word:
                continue
            if low in _KILL_WORDS:
                kill = _KILL_WORDS[low]
            elif low in ("move", "nomove"):
                move = low == "move"
            elif low not in _MODIFIERS:
                unknown.append(word)
                continue
            known = True
        if not unknown:
            return Unmount(kill, move)
        if not known:  # upstream: neither ocf_is_true nor "safe", so nothing is killed
            return Lenient(Unmount("false", False), "is not true, safe or false; taken as "
                                                    "false (kill nothing), as the upstream "
                                                    "agent does")
        value = Unmount(kill, move)
        return Lenient(value, f"has unknown word(s) {', '.join(unknown)}; ignored, as the "
                              f"upstream agent does (used as '{value}')")


SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
           "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
           "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
           "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
           "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31}


class _SignalsType(ParamType):
    doc = "signal names (TERM, SIGTERM) or numbers 1-64, separated by blanks or commas"

    def __init__(self, default: str) -> None:
        self.default = default

    def convert(self, raw: str, name: str) -> tuple[int, ...] | Lenient:
        sigs, bad = [], []
        for word in raw.replace(",", " ").split():
            upper = word.upper()
            if word.isascii() and word.isdigit() and 1 <= int(word) <= 64:
                sigs.append(int(word))
            elif (upper[3:] if upper.startswith("SIG") else upper) in SIGNALS:
                sigs.append(SIGNALS[upper[3:] if upper.startswith("SIG") else upper])
            else:
                bad.append(word)
        # Upstream's "kill -s WORD" fails on such a word and goes on with the next one;
        # with none left, the releases without these parameters sent the default.
        if not sigs:
            return Lenient(self.convert(self.default, name),
                           f"names no signal; taken as {self.default}")
        if bad:
            return Lenient(tuple(sigs), f"has {', '.join(repr(w) for w in bad)}, not a signal "
                                        "name or number; skipped, as the upstream agent's "
                                        "kill does")
        return tuple(sigs)


DEVICE, MOUNTPOINT, FSTYPE = _DeviceType(), _MountPointType(), _FsTypeType()
OPTIONS, STATUS_PREFIX, FSCK = _MountOptionsType(), _StatusPrefixType(), _FsckType()

UNMOUNT, TERM_SIGNALS, KILL_SIGNALS = _UnmountType(), _SignalsType("TERM"), _SignalsType("KILL")
SIGNAL_DELAY = Tolerant(DURATION, "1", "the upstream releases without signal_delay wait 1 s")
