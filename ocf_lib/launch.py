"""Entry points for the tiny executables in ``agents/`` and ``fence/``.

``meta-data`` is answered from the pre-generated file in ``metadata/``
before the agent module is even imported: Pacemaker's controller asks for it
as ``hacluster``, with no parameters, and pcs/crmsh ask often.  Everything
else imports the agent module and hands over to its runtime.
"""

# No "from __future__ import annotations" here: on the meta-data fast path this
# is the only module loaded, and that import would add a lookup in the stdlib
# directory to every run.  Keep the annotations plain builtins.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METADATA_DIR = os.path.join(ROOT, "metadata")


_METADATA = ("metadata", "meta-data")


def _print_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
    return True


def ocf(name: str, module: str) -> None:
    """Run resource agent ``name`` whose declarations live in ``module``."""
    argv = sys.argv
    if len(argv) == 2 and argv[1] == "meta-data":
        minor = os.environ.get("OCF_RA_VERSION_MINOR", "0")
        suffix = ".xml" if minor not in ("", "0") else ".ocf-1.0.xml"
        if argv[0].endswith(".sh"):
            # rgmanager runs every executable in /usr/share/cluster; pyha's links
            # there are named <Type>.sh.  An agent without an rgmanager primary
            # has no such file and falls through to the runtime.
            suffix = ".rgmanager"
        if _print_file(os.path.join(METADATA_DIR, name + suffix)):
            sys.exit(0)
    agent = __import__(module, fromlist=["agent"]).agent
    agent.main()


def fence(module: str) -> None:
    """Run the fence agent in ``module``; aliases are told apart by argv[0]."""
    argv = sys.argv
    wants = len(argv) == 3 and argv[1] in ("-o", "--action") and argv[2] in _METADATA
    if len(argv) == 1:
        # pacemaker-fenced and stonith_admin ask with "action=metadata" on stdin.
        # Read it here; the runtime gets the same text if this is not that.
        try:
            text = sys.stdin.read() if sys.stdin is not None else ""
        except (OSError, UnicodeDecodeError) as exc:  # never guess options: fail
            sys.stderr.write(f"Failed: cannot read the options on stdin: {exc}\n")
            sys.exit(1)
        wants = text.split() in (["action=metadata"], ["action=meta-data"])
        import io  # already loaded by the interpreter for sys.stdin: free

        sys.stdin = io.StringIO(text)
    if wants and _print_file(os.path.join(METADATA_DIR, os.path.basename(argv[0]) + ".xml")):
        sys.exit(0)
    agent = __import__(module, fromlist=["agent"]).agent
    agent.main()
