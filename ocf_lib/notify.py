"""Clone notifications: the ``OCF_RESKEY_CRM_meta_notify_*`` environment, parsed once.

With ``notify=true`` Pacemaker runs ``notify`` on every active instance of a
clone before (``pre``) and after (``post``) each start, stop, promote and
demote of any instance.  The details arrive as space-separated lists::

    CRM_meta_notify_type       pre | post
    CRM_meta_notify_operation  start | stop | promote | demote
    CRM_meta_notify_<set>_uname / _resource
        set = start stop promote demote active inactive all available
              promoted unpromoted (Pacemaker >= 2.1) or master slave (older)

Pacemaker 2.1 exports both the new and the legacy role names; 1.1 only the
legacy ones.  :meth:`Notification.unames` accepts either spelling and falls
back to the other, so agents work with both.  Lists may carry stray spaces
(older Pacemaker padded them); they are dropped.

Probes get no notify variables; :func:`configured` tells an agent whether
notifications are enabled at all (some agents refuse to run without them).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: these paths stay lean
if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "OCF_RESKEY_CRM_meta_notify_"
# The same set under its Pacemaker 2.1 and its legacy name.
_SYNONYMS = {"promoted": "master", "master": "promoted",
             "unpromoted": "slave", "slave": "unpromoted"}
OPERATIONS = ("start", "stop", "promote", "demote")


class Notification:
    """One notify call: ``kind`` (pre/post), ``operation`` and the uname/resource sets."""

    __slots__ = ("kind", "operation", "_env")

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.kind = (env.get(PREFIX + "type") or "").strip()
        self.operation = (env.get(PREFIX + "operation") or "").strip()

    @property
    def valid(self) -> bool:
        return self.kind in ("pre", "post") and self.operation in OPERATIONS

    def _list(self, name: str, what: str) -> list[str] | None:
        raw = self._env.get(f"{PREFIX}{name}_{what}")
        return None if raw is None else raw.split()

    def _get(self, name: str, what: str) -> list[str]:
        found = self._list(name, what)
        if found is None and name in _SYNONYMS:
            found = self._list(_SYNONYMS[name], what)
        return found or []

    def unames(self, name: str) -> list[str]:
        """Node names in set ``name`` (e.g. ``"promoted"``, ``"stop"``)."""
        return self._get(name, "uname")

    def resources(self, name: str) -> list[str]:
        """Instance ids (``rsc:0``...) in set ``name``."""
        return self._get(name, "resource")

    def __repr__(self) -> str:
        return f"Notification({self.kind}-{self.operation})"


def configured(env: Mapping[str, str]) -> bool:
    """True when the clone has ``notify=true`` (or notify variables are present)."""
    from .params import parse_bool

    if parse_bool(env.get("OCF_RESKEY_CRM_meta_notify"), False):
        return True
    return (PREFIX + "start_uname") in env
