"""One declaration per parameter.

A :class:`Param` is the single source of truth for a parameter: the OCF and
fence metadata, the manpage, the README tables and the validation messages
are all derived from it (see :mod:`ocf_lib.metadata`).  Each type has one
job, :meth:`ParamType.convert`, which turns the raw string into a value or
raises :class:`ParamError` naming the parameter and the value.

This module sits on every agent's hot path, so it imports nothing heavy:
no ``re``, no ``enum``, no ``dataclasses``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

TRUE_WORDS = frozenset(("yes", "true", "1", "on"))
FALSE_WORDS = frozenset(("no", "false", "0", "off"))


class ParamError(ValueError):
    """A parameter value that cannot be used; ``str()`` is the one-line reason."""

    def __init__(self, param: str, value: str | None, problem: str) -> None:
        self.param = param
        self.value = value
        self.problem = problem
        if value is None:
            text = f"parameter '{param}' {problem}"
        else:
            text = f"parameter '{param}': value '{value}' {problem}"
        super().__init__(text)


class ParamType:
    """How a raw string becomes a value.  Subclasses override :meth:`convert`."""

    ocf_type = "string"  # <content type=...> in OCF metadata
    fence_type = "string"  # <content type=...> in fence metadata
    doc = "string"

    def convert(self, raw: str, name: str) -> Any:
        return raw

    def choices(self) -> Sequence[str]:
        return ()


class _String(ParamType):
    pass


class _Integer(ParamType):
    ocf_type = fence_type = doc = "integer"

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def __call__(self, minimum: int | None = None, maximum: int | None = None) -> _Integer:
        return _Integer(minimum, maximum)

    def convert(self, raw: str, name: str) -> int:
        try:
            if "_" in raw:  # int() takes "1_000"; the shell library and Pacemaker do not
                raise ValueError(raw)
            value = int(raw.strip(), 10)
        except ValueError:
            raise ParamError(name, raw, "is not an integer") from None
        if self.minimum is not None and value < self.minimum:
            raise ParamError(name, raw, f"is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(name, raw, f"is above the maximum {self.maximum}")
        return value


class _Boolean(ParamType):
    ocf_type = fence_type = doc = "boolean"

    def convert(self, raw: str, name: str) -> bool:
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ParamError(name, raw, "is not a boolean (use yes/true/1/on or no/false/0/off)")


def parse_bool(raw: str | None, default: bool = False) -> bool:
    """Shell-library truth values; anything unrecognised is ``default``."""
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return default


class Choice(ParamType):
    """One of a fixed set of words (``select`` in OCF 1.1 metadata)."""

    ocf_type = fence_type = "select"

    def __init__(self, *values: str, case_sensitive: bool = False) -> None:
        self.values = values
        self.case_sensitive = case_sensitive
        self.doc = "one of " + ", ".join(values)

    def choices(self) -> Sequence[str]:
        return self.values

    def convert(self, raw: str, name: str) -> str:
        word = raw.strip()
        for value in self.values:
            if word == value or (not self.case_sensitive and word.lower() == value.lower()):
                return value
        raise ParamError(name, raw, "is not one of: " + ", ".join(self.values))


_UNITS = (
    ("msec", 0.001), ("ms", 0.001), ("usec", 0.000001), ("us", 0.000001),
    ("sec", 1.0), ("s", 1.0), ("min", 60.0), ("m", 60.0), ("hr", 3600.0), ("h", 3600.0),
)


def parse_duration(raw: str, default_unit: float = 1.0) -> float:
    """``30s``, ``2min``, ``500ms``, ``1h`` or a bare number of ``default_unit``.

    The units are Pacemaker's (crm_get_msec).  Raises ValueError.
    """
    text = raw.strip().lower()
    scale = default_unit
    for suffix, factor in _UNITS:
        if text.endswith(suffix):
            text = text[: -len(suffix)].strip()
            scale = factor
            break
    value = float(text)
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(raw)
    return value * scale


class _Duration(ParamType):
    """A time span; the value is in seconds (float).  A bare number means seconds."""

    fence_type = "second"
    doc = "duration (e.g. 30s, 2min, 500ms; a bare number is seconds)"

    def convert(self, raw: str, name: str) -> float:
        try:
            return parse_duration(raw)
        except ValueError:
            raise ParamError(name, raw, "is not a duration such as 30s, 2min or 500ms") from None


class _IPAddress(ParamType):
    doc = "IPv4 or IPv6 address"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if _is_ipv4(text) or _is_ipv6(text):
            return text
        raise ParamError(name, raw, "is not an IPv4 or IPv6 address")


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or len(part) > 3 or int(part) > 255:
            return False
        if len(part) > 1 and part[0] == "0":
            return False  # 010: octal to inet_aton, decimal to others; refuse to guess
    return True


def _is_ipv6(text: str) -> bool:
    # inet_pton is exact and cheap; _socket avoids the enum-heavy socket module.
    import _socket

    try:
        _socket.inet_pton(_socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True


class _Path(ParamType):
    doc = "absolute path"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if not text.startswith("/"):
            raise ParamError(name, raw, "is not an absolute path")
        if "\0" in text:
            raise ParamError(name, raw, "contains a NUL byte")
        return text


class _FilePath(_Path):
    doc = "absolute path of a file"

    def convert(self, raw: str, name: str) -> str:
        text = super().convert(raw, name)
        if text.endswith("/") or text.rsplit("/", 1)[-1] in (".", ".."):
            raise ParamError(name, raw, "names a directory, not a file")
        return text


STRING: ParamType = _String()
INTEGER = _Integer()
BOOLEAN: ParamType = _Boolean()
DURATION: ParamType = _Duration()
IPADDR: ParamType = _IPAddress()
PATH: ParamType = _Path()
FILE_PATH: ParamType = _FilePath()


class Param:
    """A parameter of an agent, declared once.

    ``default`` is the raw string shown in metadata and converted like any
    given value.  ``deprecated`` names the parameter that replaces this one
    (its value then flows there when the new one is not given).  ``secret``
    values never appear in logs, error messages or subprocess argv.

    ``identifies`` marks what a resource agent's ``stop`` needs to find its
    resource (the address, the mount point, the domain).  stop ignores every
    other parameter: when one of those is invalid, stop runs with its
    declared default instead.

    Fence agents also use ``getopt`` (short option letter), ``longopt`` (the
    command-line name, defaults to ``name`` with ``-``), ``aliases`` (legacy
    stdin names such as ``ipaddr``) and ``order`` (metadata position).
    """

    __slots__ = (
        "name", "type", "default", "required", "unique", "unique_group", "reloadable",
        "deprecated", "secret", "shortdesc", "longdesc", "getopt", "longopt", "aliases",
        "order", "takes_value", "identifies",
    )

    def __init__(
        self,
        name: str,
        type: ParamType = STRING,  # noqa: A002 - mirrors the metadata attribute
        *,
        default: str | None = None,
        required: bool = False,
        unique: bool = False,
        unique_group: str | None = None,
        reloadable: bool = False,
        deprecated: str | bool = False,
        secret: bool = False,
        shortdesc: str = "",
        longdesc: str = "",
        getopt: str | None = None,
        longopt: str | None = None,
        aliases: Iterable[str] = (),
        order: int = 1,
        takes_value: bool | None = None,
        identifies: bool = False,
    ) -> None:
        self.name = name
        self.type = type
        self.default = default
        self.required = required
        self.unique = unique
        self.unique_group = unique_group
        self.reloadable = reloadable
        self.deprecated = deprecated
        self.secret = secret
        self.shortdesc = shortdesc or name
        self.longdesc = longdesc or self.shortdesc
        self.getopt = getopt
        self.longopt = longopt or name.replace("_", "-")
        self.aliases = tuple(aliases)
        self.order = order
        # Command-line flags: booleans are switches unless said otherwise.
        self.takes_value = (type is not BOOLEAN) if takes_value is None else takes_value
        self.identifies = identifies

    def __repr__(self) -> str:
        return f"Param({self.name!r})"

    def convert(self, raw: str) -> Any:
        return self.type.convert(raw, self.name)

    def shown(self, value: object) -> str:
        """How a value may appear in a log or message."""
        return "[hidden]" if self.secret else str(value)


class Values:
    """Converted parameter values; read them as attributes (``p.ip``)."""

    def __init__(self, values: dict[str, Any], given: set[str], raw: dict[str, str],
                 warnings: list[str] | None = None, tolerated: set[str] | None = None) -> None:
        self._values = values
        self._given = given
        self.raw = raw
        # Values taken leniently (see Lenient), and why; the runtime logs them.
        self.warnings = [] if warnings is None else warnings
        self._tolerated = set() if tolerated is None else tolerated

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        value = self._values.get(name)
        return default if value is None else value

    def given(self, name: str) -> bool:
        """True when the caller set the parameter (defaults do not count)."""
        return name in self._given

    def set(self, name: str, value: Any) -> None:
        self._values[name] = value

    def tolerated(self, name: str) -> bool:
        """True when the given value was refused by the strict type and replaced
        by its lenient fallback; a validator may still refuse it where it matters."""
        return name in self._tolerated

    def warn(self, name: str, problem: str) -> None:
        """A validator's warning about a value it lets through."""
        self.warnings.append(f"parameter '{name}': value '{self.raw.get(name, '')}' {problem}")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def parse(
    params: Sequence[Param], lookup: Callable[[str], str | None] | Mapping[str, str]
) -> tuple[Values, list[ParamError]]:
    """Convert every declared parameter; collect every error rather than stop at the first.

    An empty string counts as unset, as ``${OCF_RESKEY_x:-default}`` does in the
    shell library.  Values of parameters that failed to convert are ``None``.
    """
    get = lookup.get if not callable(lookup) else lookup
    values: dict[str, Any] = {}
    given: set[str] = set()
    raw: dict[str, str] = {}
    errors: list[ParamError] = []
    warnings: list[str] = []
    tolerated: set[str] = set()
    by_name = {p.name: p for p in params}
    for p in params:
        text = get(p.name)
        if text is None or text == "":
            for alias in p.aliases:
                text = get(alias)
                if text:
                    break
        if text is None or text == "":
            values[p.name] = None
            continue
        given.add(p.name)
        raw[p.name] = text
        try:
            value = p.convert(text)
        except ParamError as exc:
            values[p.name] = None
            errors.append(_masked(p, exc))
            continue
        if isinstance(value, Lenient):
            tolerated.add(p.name)
            warnings.append(str(_masked(p, ParamError(p.name, text, value.problem))))
            value = value.value
        values[p.name] = value
    # A deprecated parameter feeds its replacement unless that was given too.
    for p in params:
        new = p.deprecated
        if isinstance(new, str) and p.name in given and new in by_name and new not in given:
            values[new] = values[p.name]
            given.add(new)
            raw[new] = raw[p.name]
    for p in params:
        if p.name in given:
            continue
        if p.default is not None:
            try:
                values[p.name] = p.convert(p.default)
            except ParamError as exc:  # a declaration bug; say so plainly
                errors.append(exc)
        elif p.required:
            errors.append(ParamError(p.name, None, "is required but not set"))
    return Values(values, given, raw, warnings, tolerated), errors


def _masked(p: Param, exc: ParamError) -> ParamError:
    if not p.secret:
        return exc
    return ParamError(p.name, "[hidden]", exc.problem)


# -- lenient values ---------------------------------------------------------------
#
# A drop-in replacement must not break a configuration the upstream agent ran with.
# A type that would refuse such a value may instead return Lenient(value, problem):
# parse() uses ``value``, records the parameter as tolerated and keeps a warning
# that the runtime logs.  A validator (or the agent, for conditions that depend on
# the environment) can still refuse a tolerated value where it matters.

class Lenient:
    """What a lenient :meth:`ParamType.convert` returns for a value it tolerates."""

    __slots__ = ("value", "problem")

    def __init__(self, value: Any, problem: str) -> None:
        self.value = value
        self.problem = problem


class Tolerant(ParamType):
    """``strict``, except that a value it refuses becomes ``fallback`` with a warning.

    ``why`` says why that is what upstream did, e.g. "the upstream agent ignores it".
    """

    def __init__(self, strict: ParamType, fallback: str | None, why: str) -> None:
        self.strict = strict
        self.fallback = fallback
        self.why = why
        self.ocf_type = strict.ocf_type
        self.fence_type = strict.fence_type
        self.doc = strict.doc

    def choices(self) -> Sequence[str]:
        return self.strict.choices()

    def convert(self, raw: str, name: str) -> Any:
        try:
            return self.strict.convert(raw, name)
        except ParamError as exc:
            value = None if self.fallback is None else self.strict.convert(self.fallback, name)
            shown = "unset" if self.fallback is None else f"'{self.fallback}'"
            return Lenient(value, f"{exc.problem}; taken as {shown} ({self.why})")


# ocf_is_true's one truth word beyond TRUE_WORDS (resource-agents' ocf-shellfuncs).
OCF_IS_TRUE_EXTRA = frozenset(("ja",))


def _shell_truth(raw: str) -> bool | None:
    """True or False for a word ``ocf_is_true`` (or pyha) reads as such, else None."""
    word = raw.strip().lower()
    if word in TRUE_WORDS or word in OCF_IS_TRUE_EXTRA:
        return True
    return False if word in FALSE_WORDS else None


class _LenientBoolean(_Boolean):
    """The shell library's ``ocf_is_true``: what is not true is false.  Words that are
    neither true nor false still work as false, with a warning."""

    def convert(self, raw: str, name: str) -> Any:
        truth = _shell_truth(raw)
        if truth is not None:
            return truth
        return Lenient(False, "is not a boolean (yes/true/1/on or no/false/0/off); taken as "
                              "false, as the upstream agent does")


LENIENT_BOOLEAN: ParamType = _LenientBoolean()


class _GuardBoolean(_Boolean):
    """A strict boolean for a safeguard the administrator switches on: a word that is
    neither true nor false is refused (6), because reading it as false, as
    ``ocf_is_true`` does, would silently switch the safeguard off.  Every word
    ``ocf_is_true`` reads as true is true."""

    def convert(self, raw: str, name: str) -> bool:
        truth = _shell_truth(raw)
        if truth is None:
            raise ParamError(name, raw, "is not a boolean (use yes/true/1/on or "
                                        "no/false/0/off); it switches a safeguard, which is "
                                        "not turned off on a guess")
        return truth


GUARD_BOOLEAN: ParamType = _GuardBoolean()


# -- IPaddr2 / network --------------------------------------------------------------

def _ascii_digits(text: str) -> bool:
    # str.isdigit() is true for '²' and other non-ASCII digits that int() refuses.
    return text.isascii() and text.isdigit()


def dotted_netmask_prefix(mask: str) -> int | None:
    """``255.255.255.0`` -> 24; None when it is not a contiguous IPv4 netmask."""
    if not _is_ipv4(mask):
        return None
    value = int.from_bytes(bytes(int(o) for o in mask.split(".")), "big")
    inverted = (~value) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        return None
    return 32 - inverted.bit_length()


class _Prefix(ParamType):
    """A prefix length 1-128 (an int), or an IPv4 dotted netmask (tolerated, converted)."""

    doc = "prefix length 1-128 (1-32 for IPv4); an IPv4 dotted netmask is converted"

    def convert(self, raw: str, name: str) -> Any:
        text = raw.strip()
        if _ascii_digits(text):
            if len(text) > 1 and text[0] == "0":
                # ip(8) reads "024" as octal (/20) while upstream's check reads 24
                raise ParamError(name, raw, "has a leading zero, which ip(8) reads as octal; "
                                            "write the prefix length in decimal")
            value = int(text)
            if 1 <= value <= 128:
                return value
        elif "." in text:
            prefix = dotted_netmask_prefix(text)
            if prefix:
                return Lenient(prefix, f"is a dotted netmask; used as /{prefix} "
                                       f"(write {name}={prefix})")
        raise ParamError(name, raw, "is not a prefix length 1-128 or an IPv4 netmask")


class _Broadcast(ParamType):
    """An IPv4 broadcast address, ``+`` (computed from the prefix) or ``-`` (none)."""

    doc = "IPv4 address, '+' or '-'"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if text in ("+", "-") or _is_ipv4(text):
            return text
        raise ParamError(name, raw, "is not an IPv4 address, '+' or '-'")


FOREVER = 0xFFFFFFFF  # the kernel's infinite address lifetime


class _Lifetime(ParamType):
    """An address lifetime in seconds, or ``forever`` (the value is then FOREVER)."""

    doc = "seconds or 'forever'"

    def convert(self, raw: str, name: str) -> int:
        text = raw.strip().lower()
        if text == "forever":
            return FOREVER
        if _ascii_digits(text) and int(text) < FOREVER:
            return int(text)
        raise ParamError(name, raw, "is not a number of seconds or 'forever'")


class _HashSeed(ParamType):
    """A 32-bit hash seed, decimal or ``0x`` hexadecimal.  Leading zeros are decimal,
    as nft(8) reads them (``010`` is 10)."""

    doc = "32-bit number, decimal or 0x hexadecimal"

    def convert(self, raw: str, name: str) -> int:
        text = raw.strip()
        value = -1
        if _ascii_digits(text):
            value = int(text, 10)
        elif text[:2] in ("0x", "0X") and text[2:] and text.isascii() \
                and all(c in "0123456789abcdefABCDEF" for c in text[2:]):
            value = int(text[2:], 16)
        if not 0 <= value <= 0xFFFFFFFF:
            raise ParamError(name, raw, "is not a 32-bit number, decimal or 0x hexadecimal")
        return value


class _MulticastMAC(ParamType):
    """A multicast Ethernet address (odd first octet), written with ':' (or '-')."""

    doc = "multicast MAC address (the first octet odd), e.g. 01:00:5e:12:34:56"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip().lower().replace("-", ":")
        octets = text.split(":")
        if len(octets) != 6 or not text.isascii() or not all(
                len(o) == 2 and all(c in "0123456789abcdef" for c in o) for o in octets):
            raise ParamError(name, raw, "is not a multicast MAC address such as 01:00:5e:12:34:56")
        if not int(octets[0], 16) & 1:
            raise ParamError(name, raw, "is not a multicast MAC (the first octet must be odd)")
        return text


class _Interface(ParamType):
    """An interface name (or altname), optionally ``name:label`` (upstream's legacy form).
    The value is the pair (name, label)."""

    doc = "interface name, or name:label"

    def convert(self, raw: str, name: str) -> tuple[str, str]:
        text = raw.strip()
        ifname, _, label = text.partition(":")
        # The kernel's rules (dev_valid_name): 1-15 bytes, altnames up to 127, no '/',
        # no whitespace, not '.' or '..'.
        if not ifname or ifname in (".", "..") or len(ifname.encode()) > 127 \
                or any(c == "/" or c.isspace() or c == "\0" for c in ifname):
            raise ParamError(name, raw, "is not an interface name")
        if any(c.isspace() or c == "\0" for c in label):
            raise ParamError(name, raw, "has a label with blanks")
        return ifname, label


class _Label(ParamType):
    doc = "address label (nic:label is at most 15 characters)"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        if any(c.isspace() or c == "\0" or c == "/" for c in text):
            raise ParamError(name, raw, "is not an address label (no blanks or '/')")
        return text


class _NetnsName(ParamType):
    """A name ``ip netns`` can create: not '.' or '..', no '/', at most 255 bytes."""

    doc = "network namespace name (as in ip netns)"

    def convert(self, raw: str, name: str) -> str:
        text = raw
        if text in (".", "..") or "/" in text or "\0" in text or len(text.encode()) > 255 \
                or not text.strip():
            raise ParamError(name, raw, "is not a network namespace name")
        return text


# iproute2's own route protocol names (rt_protos); /etc/iproute2/rt_protos may add more.
ROUTE_PROTOCOLS = {
    "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8, "ra": 9, "mrt": 10,
    "zebra": 11, "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15, "dhcp": 16,
    "keepalived": 18, "babel": 42, "openr": 99, "bgp": 186, "isis": 187, "ospf": 188,
    "rip": 189, "eigrp": 192,
}


def _route_protocol_names() -> dict[str, int]:
    names = dict(ROUTE_PROTOCOLS)
    for path in ("/usr/share/iproute2/rt_protos", "/etc/iproute2/rt_protos"):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    fields = line.split("#", 1)[0].split()
                    if len(fields) >= 2 and _ascii_digits(fields[0]) and int(fields[0]) < 256:
                        names[fields[1]] = int(fields[0])
        except OSError:
            pass
    return names


class _RouteProtocol(ParamType):
    """A route protocol, by name (rt_protos) or number 0-255; the value is the number."""

    doc = "route protocol name (e.g. kernel) or number 0-255"

    def convert(self, raw: str, name: str) -> int:
        text = raw.strip()
        if _ascii_digits(text) and int(text) < 256:
            return int(text)
        number = _route_protocol_names().get(text)
        if number is None:
            raise ParamError(name, raw, "is not a route protocol name or number 0-255")
        return number


PREFIX: ParamType = _Prefix()
BROADCAST: ParamType = _Broadcast()
LIFETIME: ParamType = _Lifetime()
HASH_SEED: ParamType = _HashSeed()
MULTICAST_MAC: ParamType = _MulticastMAC()
INTERFACE: ParamType = _Interface()
ADDR_LABEL: ParamType = _Label()
NETNS_NAME: ParamType = _NetnsName()
ROUTE_PROTOCOL: ParamType = _RouteProtocol()


# -- device addresses (fence agents) ----------------------------------------------

class _Host(ParamType):
    """A host name (IDNA allowed) or an IPv4/IPv6 address, as a device's address.

    The checks are the ones ``getaddrinfo`` would otherwise fail on with an
    encoding error (a label over 63 characters, an empty label as in a path),
    plus an all-numeric name that is not a plain IPv4 address: ``010.1.1.1``
    is 8.1.1.1 to inet_aton and 10.1.1.1 to a person.
    """

    doc = "host name or IPv4/IPv6 address"

    def convert(self, raw: str, name: str) -> str:
        text = raw.strip()
        address, percent, scope = text.partition("%")
        scoped = not percent or (scope != "" and all(
            ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in scope))
        if (_is_ipv4(text) or _is_ipv6(address)) and scoped:
            return text
        shown = raw.encode("unicode_escape").decode("ascii")
        if any(ch.isspace() or not ch.isprintable() for ch in text):
            raise ParamError(name, shown, "contains spaces or control characters: not a host "
                                          "name or an IPv4/IPv6 address")
        try:
            ascii_name = text.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_name = ""
        labels = ascii_name[:-1].split(".") if ascii_name.endswith(".") else ascii_name.split(".")
        ok = 0 < len(ascii_name) <= 253 and all(
            0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
            and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in label)
            for label in labels)
        if not ok:
            raise ParamError(name, shown, "is not a host name or an IPv4/IPv6 address")
        if labels[-1].isdigit():
            raise ParamError(name, shown, "is neither a host name nor a plain IPv4 address "
                                          "(no leading zeros, four numbers)")
        return text


HOST: ParamType = _Host()
