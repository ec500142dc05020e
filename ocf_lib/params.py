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

TYPE_CHECKING = False  # typing costs ~5 ms to import; not on hot paths
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


STRING: ParamType = _String()
INTEGER = _Integer()
BOOLEAN: ParamType = _Boolean()
DURATION: ParamType = _Duration()
IPADDR: ParamType = _IPAddress()
PATH: ParamType = _Path()


class Param:
    """A parameter of an agent, declared once.

    ``default`` is the raw string shown in metadata and converted like any
    given value.  ``deprecated`` names the parameter that replaces this one
    (its value then flows there when the new one is not given).  ``secret``
    values never appear in logs, error messages or subprocess argv.

    Fence agents also use ``getopt`` (short option letter), ``longopt`` (the
    command-line name, defaults to ``name`` with ``-``), ``aliases`` (legacy
    stdin names such as ``ipaddr``) and ``order`` (metadata position).
    """

    __slots__ = (
        "name", "type", "default", "required", "unique", "unique_group", "reloadable",
        "deprecated", "secret", "shortdesc", "longdesc", "getopt", "longopt", "aliases",
        "order", "takes_value",
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

    def __repr__(self) -> str:
        return f"Param({self.name!r})"

    def convert(self, raw: str) -> Any:
        return self.type.convert(raw, self.name)

    def shown(self, value: object) -> str:
        """How a value may appear in a log or message."""
        return "[hidden]" if self.secret else str(value)


class Values:
    """Converted parameter values; read them as attributes (``p.ip``)."""

    def __init__(self, values: dict[str, Any], given: set[str], raw: dict[str, str]) -> None:
        self._values = values
        self._given = given
        self.raw = raw

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
            values[p.name] = p.convert(text)
        except ParamError as exc:
            values[p.name] = None
            errors.append(_masked(p, exc))
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
    return Values(values, given, raw), errors


def _masked(p: Param, exc: ParamError) -> ParamError:
    if not p.secret:
        return exc
    return ParamError(p.name, "[hidden]", exc.problem)


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
