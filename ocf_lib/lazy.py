"""Third-party libraries, imported only when an action needs them.

The agents run as ``python3 -IS``: no site-packages scan at start-up, a
saving on every monitor (docs/design.md).  The first time an action really needs lxml,
pyroute2, libvirt, pexpect or pyghmi, :func:`need` appends the interpreter's
package directories to ``sys.path`` and imports it.  It does not run
``site.main()``: that processes every ``.pth`` file on the system and costs
more than the whole monitor; none of our libraries needs a
``.pth``.  Only when a library is still missing does it fall back to
``site.main()``.  Under pytest (site already loaded) it is a plain import.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

_paths_added = False
_site_added = False


def _package_dirs() -> list[str]:
    """Debian's dist-packages and the generic site-packages of this interpreter."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    prefix = sys.prefix
    candidates = [
        f"/usr/local/lib/{version}/dist-packages",
        f"{prefix}/lib/python3/dist-packages",
        f"{prefix}/lib/{version}/dist-packages",
        f"{prefix}/lib/{version}/site-packages",
        f"{prefix}/lib64/{version}/site-packages",
    ]
    return [d for d in candidates if d not in sys.path and os.path.isdir(d)]


def need(module: str) -> ModuleType:
    global _paths_added, _site_added
    try:
        return importlib.import_module(module)
    except ImportError:
        if _site_added:
            raise
    if not _paths_added:
        _paths_added = True
        sys.path.extend(_package_dirs())
        importlib.invalidate_caches()
        try:
            return importlib.import_module(module)
        except ImportError:
            pass
    import site

    site.main()
    _site_added = True
    return importlib.import_module(module)
