"""Honest dependencies: what pyproject.toml, the deb and the rpm declare is what
the shipped code imports, no more and no less, with the same version ranges.

Shipped code is what packaging/install-layout.sh installs: the modules of
ocf_lib/, agents/ and fence/ and the agent executables.  An import counts
whether it is a plain ``import``/``from`` or a lazy ``need("module")``.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import ROOT

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

# PyPI distribution -> (import name, Debian package, RPM package)
KNOWN = {
    "lxml": ("lxml", "python3-lxml", "python3-lxml"),
    "libvirt-python": ("libvirt", "python3-libvirt", "python3-libvirt"),
    "pexpect": ("pexpect", "python3-pexpect", "python3-pexpect"),
    "pyghmi": ("pyghmi", "python3-pyghmi", "python3-pyghmi"),
    "psutil": ("psutil", "python3-psutil", "python3-psutil"),
    "pyroute2": ("pyroute2", "python3-pyroute2", "python3-pyroute2"),
}
OURS = {"ocf_lib", "agents", "fence"}


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def split_requirement(req: str) -> tuple[str, str]:
    name = re.match(r"[A-Za-z0-9_.-]+", req)
    assert name, req
    return name.group(0).lower(), req[name.end():].replace(" ", "")


def pyproject_runtime() -> dict[str, str]:
    return dict(split_requirement(r) for r in pyproject()["project"]["dependencies"])


def deb_depends() -> list[str]:
    text = (ROOT / "packaging/debian/control").read_text()
    binary = text.split("\nPackage: pyha\n", 1)[1]
    field = re.search(r"^Depends:(.*?)(?=^\S)", binary, re.M | re.S)
    assert field
    return [d.strip() for d in field.group(1).split(",") if d.strip()]


def rpm_requires() -> list[str]:
    text = (ROOT / "packaging/pyha.spec").read_text()
    return [m.strip() for m in re.findall(r"^Requires:\s*(.+)$", text, re.M)]


def shipped_files() -> list[Path]:
    files = []
    for top in sorted(OURS):
        for path in sorted((ROOT / top).iterdir()):
            executable = path.is_file() and os.access(path, os.X_OK) and "." not in path.name
            if path.suffix == ".py" or (executable and not path.is_symlink()):
                files.append(path)
    return files


def shipped_imports() -> dict[str, set[str]]:
    """Top-level module name -> the shipped files that import it."""
    found: dict[str, set[str]] = {}
    for path in shipped_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and node.args and \
                    isinstance(node.args[0], ast.Constant) and \
                    isinstance(node.args[0].value, str) and \
                    getattr(node.func, "id", getattr(node.func, "attr", None)) == "need":
                names = [node.args[0].value]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_shipped_code_is_found() -> None:
    files = {str(p.relative_to(ROOT)) for p in shipped_files()}
    assert {"ocf_lib/lazy.py", "agents/IPaddr2", "fence/fence_ipmilan", "fence/ipmilan.py"} \
        <= files
    assert "ocf_lib" in shipped_imports()


def test_every_declared_runtime_dependency_is_imported_by_shipped_code() -> None:
    imports = shipped_imports()
    for dist in pyproject_runtime():
        assert dist in KNOWN, f"{dist}: add it to KNOWN (import, deb and rpm names)"
        module = KNOWN[dist][0]
        assert module in imports, f"{dist} is declared but no shipped code imports {module}"


def test_every_third_party_import_of_shipped_code_is_declared() -> None:
    declared = {KNOWN[d][0] for d in pyproject_runtime()}
    third_party = {m for m in shipped_imports()
                   if m not in sys.stdlib_module_names and m not in OURS and m != "__future__"}
    assert third_party <= declared, {m: sorted(shipped_imports()[m])
                                     for m in third_party - declared}


def test_deb_and_rpm_declare_the_same_libraries_as_pyproject() -> None:
    runtime = set(pyproject_runtime())
    deb = {d.split()[0] for d in deb_depends() if d.startswith("python3-")}
    rpm = {re.sub(r"^\(", "", r).split()[0] for r in rpm_requires()
           if r.lstrip("(").startswith("python3-")}
    assert deb == {KNOWN[d][1] for d in runtime}
    assert rpm == {KNOWN[d][2] for d in runtime}


def test_pyghmi_range_is_the_same_everywhere() -> None:
    assert pyproject_runtime()["pyghmi"] == ">=1.5.34,<1.7"
    deb = [d for d in deb_depends() if d.startswith("python3-pyghmi")]
    assert sorted(deb) == ["python3-pyghmi (<< 1.7~)", "python3-pyghmi (>= 1.5.34)"]
    assert "(python3-pyghmi >= 1.5.34 with python3-pyghmi < 1.7)" in rpm_requires()


def test_python_floor_is_the_same_in_pyproject_and_rpm() -> None:
    assert pyproject()["project"]["requires-python"] == ">=3.9"
    assert "python3 >= 3.9" in rpm_requires()


def test_the_tests_run_against_a_supported_pyghmi() -> None:
    from importlib.metadata import version

    installed = tuple(int(p) for p in re.findall(r"\d+", version("pyghmi"))[:3])
    assert (1, 5, 34) <= installed < (1, 7), installed


# -- what the tests use, and how a machine gets it ------------------------------------

# Import names of the dev extra's distributions that tests import (the others are
# tools or pytest plugins, never imported).
DEV_IMPORTS = {"pytest": "pytest", "pyroute2": "pyroute2", "cryptography": "cryptography"}
# Debian packages of debian-packages.txt that are Python but no library the code imports.
DEBIAN_PYTHON_TOOLING = {"python3", "python3-venv", "python3-all", "python3-setuptools"}


def dev_extra() -> dict[str, str]:
    extras = pyproject()["project"]["optional-dependencies"]
    return dict(split_requirement(r) for r in extras["dev"])


def setup_pip_packages() -> set[str]:
    """What packaging/setup-debian.sh installs into the virtualenv from PyPI."""
    text = (ROOT / "packaging/setup-debian.sh").read_text().replace("\\\n", " ")
    names: set[str] = set()
    for line in text.splitlines():
        if " -m pip install " not in line:
            continue
        for word in line.split(" -m pip install ", 1)[1].split():
            word = word.strip("\"'")
            if word and not word.startswith("-") and word != ".":
                names.add(split_requirement(word)[0])
    return names


def debian_python_packages() -> set[str]:
    text = (ROOT / "packaging/debian-packages.txt").read_text()
    names = {line.split("#", 1)[0].strip() for line in text.splitlines()}
    return {n for n in names if n.startswith("python3")} - DEBIAN_PYTHON_TOOLING


def imports_of_the_tests() -> dict[str, set[str]]:
    """Third-party top-level modules imported by tests/ and bench/ -> the files."""
    tests = ROOT / "tests"
    local = {p.stem for p in tests.rglob("*.py")} | {p.name for p in tests.rglob("*")
                                                    if p.is_dir()}
    local |= OURS | {"bench", "conftest"}
    found: dict[str, set[str]] = {}
    for path in sorted(tests.rglob("*.py")) + sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local \
                        and top not in ("__future__", "tomli"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_tests_is_declared() -> None:
    """The tests' own imports are runtime dependencies or in the ``dev`` extra."""
    if not hasattr(sys, "stdlib_module_names"):  # Python 3.9 (the bullseye job)
        pytest.skip("needs sys.stdlib_module_names (3.10+); the main job runs it")
    declared = {KNOWN[d][0] for d in pyproject_runtime()}
    declared |= {DEV_IMPORTS[d] for d in dev_extra() if d in DEV_IMPORTS}
    found = imports_of_the_tests()
    assert {"pytest", "pyroute2"} <= set(found)
    assert set(found) <= declared, {m: sorted(found[m]) for m in set(found) - declared}


def test_setup_installs_the_dev_extra_and_nothing_stale() -> None:
    """setup-debian.sh installs every dev tool, from PyPI or as Debian's package,
    and nothing that neither the runtime nor the dev extra names."""
    runtime, dev = set(pyproject_runtime()), set(dev_extra())
    pip = setup_pip_packages()
    debian = debian_python_packages()
    assert {"pytest", "ruff", "mypy"} <= pip
    missing = {d for d in dev if d not in pip and f"python3-{d}" not in debian}
    assert not missing, f"dev tools setup-debian.sh does not install: {sorted(missing)}"
    assert pip <= dev, f"installed from PyPI but not in the dev extra: {sorted(pip - dev)}"
    wanted = {KNOWN[d][1] for d in runtime} | {f"python3-{d}" for d in dev}
    assert debian <= wanted, ("Debian Python packages that neither the runtime nor the "
                              f"dev extra names: {sorted(debian - wanted)}")
