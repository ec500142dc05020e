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

TOOLS = (("pyha-tester", "ocf_lib.tester"), ("pyha-metadata", "ocf_lib.gen"),
         ("pyha-fence-node", "ocf_lib.fencenode"), ("pyha-migrate", "ocf_lib.migrate"))


def tool_manpage(cmd: str, module: str) -> str | None:
    """A command's manpage: its one-line purpose and its ``--help`` text, verbatim."""
    import subprocess

    try:
        mod = __import__(module, fromlist=["main"])
    except ImportError:
        return None
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "80"}, check=True)
    purpose = (mod.__doc__ or cmd).strip().splitlines()[0].replace("``", "")
    if ":" in purpose:
        purpose = purpose.split(":", 1)[1].strip()
    body = proc.stdout.replace(os.path.basename(module.replace(".", "/")) + ".py", cmd)
    body = body.replace("\\", "\\\\").replace("\n.", "\n\\&.").replace("\n'", "\n\\&'")
    return "\n".join([f'.TH {cmd.upper()} 1 "" "pyha" "pyha tools"', ".SH NAME",
                      f"{cmd} \\- {purpose}", ".SH SYNOPSIS AND OPTIONS", ".nf", body.rstrip(),
                      ".fi", ".SH SEE ALSO", "ocf_pyha_Example(7), fence_pcmk(8)", ""])


def main(argv: list[str]) -> int:
    mandir, alternatives_file = argv[1], argv[2]
    with open(alternatives_file, encoding="utf-8") as handle:
        alternatives = {line.strip() for line in handle if line.strip()}
    os.makedirs(os.path.join(mandir, "man7"), exist_ok=True)
    os.makedirs(os.path.join(mandir, "man8"), exist_ok=True)
    os.makedirs(os.path.join(mandir, "man1"), exist_ok=True)
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
    for cmd, module in TOOLS:
        page = tool_manpage(cmd, module)
        if page:
            with open(os.path.join(mandir, "man1", f"{cmd}.1"), "w", encoding="utf-8") as handle:
                handle.write(page)
            written += 1
    print(f"{written} manpages written to {mandir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
