"""Write pyha's manpages from the declarations (run at package build time).

    python3 packaging/gen-manpages.py MANDIR ALTERNATIVES_FILE

Resource agents get ``man7/ocf_pyha_<Type>.7`` (resource-agents' naming);
fence agents ``man8/<name>.8``, except those installed through
update-alternatives (listed in ALTERNATIVES_FILE), whose names Debian's
fence-agents already uses for its own pages: ``man8/pyha-<name>.8``.
"""

from __future__ import annotations

import os
import sys

from ocf_lib.gen import fence_agents, resource_agents
from ocf_lib.metadata import fence_manpage, ocf_manpage


def main(argv: list[str]) -> int:
    mandir, alternatives_file = argv[1], argv[2]
    with open(alternatives_file, encoding="utf-8") as handle:
        alternatives = {line.strip() for line in handle if line.strip()}
    os.makedirs(os.path.join(mandir, "man7"), exist_ok=True)
    os.makedirs(os.path.join(mandir, "man8"), exist_ok=True)
    written = 0
    for ra in resource_agents():
        path = os.path.join(mandir, "man7", f"ocf_pyha_{ra.name}.7")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(ocf_manpage(ra))
        written += 1
    for fa in fence_agents():
        for name in fa.alias_shortdesc:
            page = f"pyha-{name}.8" if name in alternatives else f"{name}.8"
            with open(os.path.join(mandir, "man8", page), "w", encoding="utf-8") as handle:
                handle.write(fence_manpage(fa, name))
            written += 1
    print(f"{written} manpages written to {mandir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
