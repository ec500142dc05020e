"""Parameter types the VM agents (VirtualDomain, Xen) share.

The values the upstream shell agents ran with keep working, as upstream read
them, with a warning (params.Lenient); see docs/virtualdomain.md and
docs/xen.md, "Values the upstream agent accepted".
"""

from __future__ import annotations

from .params import FALSE_WORDS, TRUE_WORDS, Lenient, _Boolean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _ShellBoolean(_Boolean):
    """The shell library's ``ocf_is_true``, word for word: ``ja`` is true there too
    (with a warning); any other word that is neither true nor false is false, with
    a warning."""

    def convert(self, raw: str, name: str) -> Any:
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        if word == "ja":
            return Lenient(True, "is taken as true, as the upstream agent does (write yes)")
        return Lenient(False, "is not a boolean (yes/true/1/on or no/false/0/off); taken as "
                              "false, as the upstream agent does")


SHELL_BOOLEAN = _ShellBoolean()

