"""Host-name lookups with a deadline.

``getaddrinfo`` has no timeout of its own: with a dead DNS server it waits
for the resolver's timeouts and attempts (``options timeout:`` in
resolv.conf), easily longer than the caller will wait for a fence action.
So:

* a numeric address (IPv4, IPv6, with or without a ``%scope``) is converted
  with ``AI_NUMERICHOST``, which never consults DNS or NSS;
* a name is looked up in a daemon worker thread, and the caller waits for it
  at most ``timeout`` seconds.  A lookup that outlives its deadline is
  abandoned (the thread ends with the process), and :class:`ResolveTimeout`
  says so.

:func:`connect` resolves and connects within one time limit, trying each
address in turn, as ``socket.create_connection`` does.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    import socket
    from typing import Any


class ResolveError(OSError):
    """The name does not resolve; ``str()`` names it and says why."""


class ResolveTimeout(ResolveError):
    """No answer within the deadline (a dead or unreachable DNS server)."""


def numeric(host: str, port: int, *, family: int = 0,
            socktype: int = 0) -> list[tuple[int, int, int, Any]] | None:
    """The addresses of a numeric ``host``; None when it is a name."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, family, socktype or socket.SOCK_STREAM, 0,
                                   socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [(fam, st, proto, addr) for fam, st, proto, _name, addr in infos]


def resolve(host: str, port: int, timeout: float, *, family: int = 0,
            socktype: int = 0) -> list[tuple[int, int, int, Any]]:
    """``[(family, socktype, proto, sockaddr), ...]`` for ``host``, within ``timeout`` seconds.

    ``family`` is ``socket.AF_INET``/``AF_INET6`` or 0 for both; ``socktype``
    defaults to ``SOCK_STREAM``.  Raises :class:`ResolveTimeout` when the
    lookup does not finish in time, :class:`ResolveError` when it fails.
    """
    import socket

    found = numeric(host, port, family=family, socktype=socktype)
    if found is not None:
        return found
    if not host or "\0" in host:
        raise ResolveError(f"cannot resolve {host!r}: not a host name")
    import threading

    result: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, family,
                                             socktype or socket.SOCK_STREAM))
        except (OSError, UnicodeError, ValueError) as exc:
            result.append(exc)
        done.set()

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    if not done.wait(max(0.0, timeout)):
        raise ResolveTimeout(f"resolving {host} timed out after {timeout:g}s "
                             "(is the DNS server reachable?)")
    answer = result[0]
    if isinstance(answer, BaseException):
        reason = getattr(answer, "strerror", None) or str(answer)
        raise ResolveError(f"cannot resolve {host}: {reason}")
    if not answer:
        raise ResolveError(f"cannot resolve {host}: no address")
    return [(fam, st, proto, addr) for fam, st, proto, _name, addr in answer]


def connect(host: str, port: int, timeout: float, *, family: int = 0) -> socket.socket:
    """A TCP connection to ``host:port``: lookup and connect within ``timeout`` seconds.

    Raises :class:`ResolveError`/:class:`ResolveTimeout` for the lookup,
    ``TimeoutError`` when no address answered in time, ``OSError`` otherwise.
    """
    import socket

    end = time.monotonic() + timeout
    addresses = resolve(host, port, timeout, family=family)
    last: OSError | None = None
    for fam, socktype, proto, addr in addresses:
        left = end - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(fam, socktype, proto)
        try:
            sock.settimeout(left)
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    if last is None or isinstance(last, socket.timeout):
        raise TimeoutError(f"connecting to {host}:{port} timed out")
    raise last
