"""One clock for a whole action: :class:`Deadline` (defined in :mod:`ocf_lib.runtime`).

The class lives with the runtime core, which every agent loads anyway, so
that the monitor paths load one module fewer; this name serves the modules
and tests that import it from here.
"""

from .runtime import INFINITE, NO_DEADLINE, Deadline

__all__ = ["INFINITE", "NO_DEADLINE", "Deadline"]
