"""The DRBD kernel's view of a resource: DRBD 9 ``events2`` and DRBD 8.4 ``/proc/drbd``.

Pure parsing, no processes: the caller runs ``drbdsetup events2 --now
--statistics <res>`` (DRBD 9) or reads ``/proc/drbd`` (8.4) and hands the
text here; both fill the same :class:`Status`.  :func:`kernel_version` reads
the loaded module's version from the first line of ``/proc/drbd`` (through
:mod:`ocf_lib.sysroot`), once per process.

events2 lines look like ``exists device name:r0 volume:0 minor:0 disk:UpToDate
client:no quorum:yes`` and end with ``exists -``; /proc/drbd (8.4) has one
line per minor, `` 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C
r-----``, and during a resync a ``sync'ed: 12.5%`` line below it.
"""

from __future__ import annotations

from . import sysroot

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from typing import Any

PROC = "/proc/drbd"


class Status:
    """One resource as the kernel reports it (both DRBD 9 and 8.4 fill this)."""

    def __init__(self) -> None:
        self.configured = False
        self.role = "Unconfigured"
        self.disks: list[str] = []           # local disk state per volume
        self.clients: list[bool] = []        # intentional diskless client per volume
        self.quorum = True
        # peer -> {"role", "conn", "disks": [...], "clients": [...], "done": [...]}
        self.peers: dict[str, dict[str, Any]] = {}

    def peer(self, name: str) -> dict[str, Any]:
        return self.peers.setdefault(name, {"role": "Unknown", "conn": "StandAlone",
                                            "disks": [], "clients": [], "done": []})

    @property
    def primary(self) -> bool:
        return self.role == "Primary"

    def peer_primary(self) -> bool:
        return any(p["role"] == "Primary" for p in self.peers.values())

    def peer_all_uptodate(self, peer: dict[str, Any]) -> bool:
        return bool(peer["disks"]) and all(d == "UpToDate" for d in peer["disks"])

    def some_peer_all_uptodate(self) -> bool:
        return any(self.peer_all_uptodate(p) for p in self.peers.values())

    def peer_disk_unknown(self) -> bool:
        return not self.peers or any(d == "DUnknown" for p in self.peers.values()
                                     for d in p["disks"])

    def local_all(self, state: str) -> bool:
        return bool(self.disks) and all(d == state for d in self.disks)

    def diskless_client(self) -> bool:
        return bool(self.clients) and all(self.clients)

    def has_uptodate_data(self) -> bool:
        return self.local_all("UpToDate") or self.some_peer_all_uptodate()

    def describe(self) -> str:
        peers = ", ".join(f"{n}: {p['conn']} {p['role']} {'/'.join(p['disks'])}"
                          + "".join(f" {d}% synced" for d in p["done"] if d is not None)
                          for n, p in sorted(self.peers.items()))
        return f"{self.role} {'/'.join(self.disks) or '-'} [{peers or 'no peers'}]"


class UnknownVersion(Exception):
    """The module is loaded (``/proc/drbd`` exists) but its version cannot be read.

    Never guess: DRBD 9 and 8.4 report state in different places, and reading
    a 9 kernel the 8.4 way finds no resource, i.e. a false "not running"."""


_version_cache: list[tuple[int, int, int] | UnknownVersion | None] = []


def parse_version(word: str) -> tuple[int, int, int] | None:
    """``9.2.8`` or ``8.4.11-1`` -> (9, 2, 8); None when unreadable."""
    parts = word.strip().split("-")[0].split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) > 2 else 0


def kernel_version(refresh: bool = False) -> tuple[int, int, int] | None:
    """The loaded module's version from /proc/drbd; None when the module is not loaded.

    Raises :class:`UnknownVersion` when /proc/drbd exists but says no version.
    Read once per run."""
    if not _version_cache or refresh:
        found: tuple[int, int, int] | UnknownVersion | None
        try:
            with open(sysroot.path(PROC), encoding="utf-8", errors="replace") as f:
                first = f.readline(200)
        except FileNotFoundError:
            found = None
        except OSError as exc:
            found = UnknownVersion(f"cannot read {PROC}: {exc.strerror}")
        else:
            words = first.split()
            version = parse_version(words[1]) if words[:1] == ["version:"] and \
                len(words) > 1 else None
            found = version or UnknownVersion(
                f"{PROC} shows no module version (first line: {first.strip()[:60]!r})")
        _version_cache[:] = [found]
    cached = _version_cache[0]
    if isinstance(cached, UnknownVersion):
        raise cached
    return cached


def _percent(text: str | None) -> float | None:
    """Resync progress for the log only: an unreadable figure is no progress shown."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _fields(words: list[str]) -> dict[str, str]:
    return dict(w.split(":", 1) for w in words if ":" in w)


def parse_events2(text: str, res: str) -> Status:
    """``drbdsetup events2 --now --statistics <res>`` output -> Status."""
    st = Status()
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["exists", "-"]:
            break
        if len(words) < 3 or words[0] != "exists":
            continue
        kind, f = words[1], _fields(words[2:])
        if f.get("name") != res:
            continue
        st.configured = True
        if kind == "resource":
            st.role = f.get("role", "Unknown")
        elif kind == "connection":
            peer = st.peer(f.get("conn-name") or f.get("peer-node-id", "?"))
            peer["role"] = f.get("role", "Unknown")
            peer["conn"] = f.get("connection", "Unknown")
        elif kind == "device":
            st.disks.append(f.get("disk", "Unknown"))
            st.clients.append(f.get("disk") == "Diskless" and f.get("client") == "yes")
            if f.get("quorum") == "no":
                st.quorum = False
        elif kind == "peer-device":
            peer = st.peer(f.get("conn-name") or f.get("peer-node-id", "?"))
            peer["disks"].append(f.get("peer-disk", "DUnknown"))
            peer["clients"].append(f.get("peer-client") == "yes")
            done = f.get("done")
            peer["done"].append(_percent(done))
    return st


def resources_in_events2(text: str) -> set[str] | None:
    """Every resource named in ``drbdsetup events2 --now`` (all resources); None when
    the output lacks its closing ``exists -`` and so proves nothing."""
    names: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["exists", "-"]:
            return names
        if len(words) >= 3 and words[0] == "exists":
            name = _fields(words[2:]).get("name")
            if name:
                names.add(name)
    return None


def configured_minors(text: str) -> list[int]:
    """DRBD 8.4's /proc/drbd: the minors that belong to a configured resource."""
    found = []
    for line in text.splitlines():
        head, _, rest = line.partition(":")
        if head.strip().isdigit() and _fields(rest.split()).get("cs", "Unconfigured") \
                != "Unconfigured":
            found.append(int(head))
    return found


def minors_in_sh_status(text: str, res: str) -> list[int]:
    """DRBD 8.4 ``drbdsetup sh-status``: one ``_minor=N``/``_res_name=R`` block per volume."""
    found, minor = [], None
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "_minor":
            minor = int(value) if value.isascii() and value.isdigit() else None
        elif key == "_res_name" and value == res and minor is not None:
            found.append(minor)
    return found


def parse_proc(text: str, minors: set[int]) -> Status:
    """DRBD 8.4's /proc/drbd -> Status of the resource owning ``minors``."""
    st = Status()
    peer = st.peer("peer")
    current = None
    for line in text.splitlines():
        head, _, rest = line.partition(":")
        if head.strip().isdigit():
            current = int(head) if int(head) in minors else None
            if current is None:
                continue
            fields = _fields(rest.split())
            cs = fields.get("cs", "Unconfigured")
            if cs == "Unconfigured":
                current = None
                continue
            st.configured = True
            roles = fields.get("ro", "Unknown/Unknown").split("/")
            disks = fields.get("ds", "Diskless/DUnknown").split("/")
            st.role = roles[0] if st.role in ("Unconfigured", roles[0]) else "Mixed"
            st.disks.append(disks[0])
            st.clients.append(False)
            peer["role"] = roles[1] if len(roles) > 1 else "Unknown"
            peer["conn"] = cs
            peer["disks"].append(disks[1] if len(disks) > 1 else "DUnknown")
            peer["done"].append(None)
        elif current is not None and "sync'ed:" in line:
            peer["done"][-1] = _percent(line.split("sync'ed:")[1].split("%")[0])
    if not st.configured:
        st.peers.clear()
    return st
