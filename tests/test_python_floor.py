"""The shipped code runs on every supported Python: 3.9 (RHEL 9) up to 3.13 (Debian 13).

Nothing in agents/, fence/ or ocf_lib/ may import a standard module that
Python 3.12 or 3.13 removed (PEP 594's dead batteries, distutils, imp, ...):
such an import works on the Python it was written on and fails on the next
distribution.  The minimum version itself is checked by vermin in CI
(.ci/python-floor) and by the unit tests on Python 3.9 (.ci/debroot bullseye).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
from conftest import ROOT

# Removed in 3.12 (distutils, imp, asynchat, asyncore, smtpd) and 3.13 (PEP 594).
REMOVED = {
    "distutils", "imp", "asynchat", "asyncore", "smtpd",
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib",
    "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu",
    "xdrlib", "lib2to3",
}


def shipped_sources() -> list[Path]:
    """Every Python file that ships: modules, and the agents by their shebang."""
    found = []
    for top in ("agents", "fence", "ocf_lib"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if path.suffix == ".py":
                found.append(path)
            elif not path.suffix and os.access(path, os.X_OK):
                with open(path, "rb") as handle:
                    if re.match(rb"#!\S*python", handle.readline()):
                        found.append(path)
    return found


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every import, at any depth (lazy imports count too),
    and of importlib.import_module/__import__ calls with a literal name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            names.add(node.args[0].value.split(".")[0])
    return names


def test_the_scan_sees_the_agents() -> None:
    names = {p.name for p in shipped_sources()}
    assert {"IPaddr2", "Filesystem", "fence_ipmilan", "fence_na", "params.py"} <= names


def test_the_scan_finds_each_kind_of_import() -> None:
    tree = ast.parse("import telnetlib\nfrom pipes import quote\n"
                     "def f():\n    import crypt\n    importlib.import_module('imp')\n")
    assert imported_modules(tree) >= {"telnetlib", "pipes", "crypt", "imp"}


@pytest.mark.parametrize("path", shipped_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_removed_in_python_3_12_or_3_13(path: Path) -> None:
    used = imported_modules(ast.parse(path.read_bytes(), filename=str(path))) & REMOVED
    assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}, gone in Python 3.13"


def test_declared_floor_is_3_9() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = ">=3\.9"$', text, re.M)
    assert re.search(r'^target-version = "py39"$', text, re.M)  # ruff checks syntax for 3.9
