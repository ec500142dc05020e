"""Third-party libraries, imported only when an action needs them.

The agents run as ``python3 -IS``: no site-packages scan at start-up, which
saves ~9 ms on every monitor.  The first time an action really needs lxml,
pyroute2, libvirt, pexpect or pyghmi, :func:`need` adds the interpreter's
site directories and imports it.  Under pytest (site already loaded) it is a
plain import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_site_added = False


def need(module: str) -> ModuleType:
    global _site_added
    try:
        return importlib.import_module(module)
    except ImportError:
        if _site_added:
            raise
    import site

    site.main()
    _site_added = True
    return importlib.import_module(module)
