"""rgmanager's side of the agent contract, emulated for tests.

rgmanager is not packaged for Debian 12, so this reproduces what it does to an
agent (reference: ocf-drbd-o2cb-rgmanager.md, sections 5.1-5.3 and 5.6):

* rule loading: every regular, executable file in the cluster directory
  (``/usr/share/cluster``), except names ending in ``~`` or with an ``.rpm*``
  extension, is run with ``meta-data`` (stdin and stderr closed); each XML
  ``resource-agent`` becomes a type; exactly one ``primary="1"`` parameter;
* calls: ``<path> <action> [arg]`` with a *fresh* environment holding one
  ``OCF_RESKEY_<attr>`` per declared attribute (configured or defaulted,
  undeclared ones dropped), ``OCF_RA_VERSION_MAJOR=1``/``MINOR=0``,
  ``OCF_ROOT=<cluster dir>``, ``OCF_RESOURCE_INSTANCE=<type>:<primary>``,
  ``OCF_RESOURCE_TYPE``, ``OCF_CHECK_LEVEL``, ``OCF_RESKEY_RGMANAGER_meta_refcnt``
  and ``OCF_RESKEY_RGMANAGER_meta_timeout`` (seconds), and no PATH;
* an action the metadata does not advertise (at that depth, for status) is
  not run and counts as success; any non-zero exit is a failure.

Like ``rg_test test <conf> start|status|stop <type> <primary>``, it runs the
agents locally and for real.  The one addition is ``HA_RSCTMP`` (when given),
so tests keep their state files apart.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


class RuleError(Exception):
    pass


def _seconds(text: str | None, default: int = 0) -> int:
    """rgmanager's expand_time: a number with an optional s/m/h/d suffix."""
    if not text:
        return default
    text = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], 0)
    try:
        return int(text[:-1]) * scale if scale else int(text)
    except ValueError:
        return default


@dataclass
class Rule:
    type: str
    path: Path
    primary: str
    params: dict[str, dict[str, str]]  # name -> attrs (+ "default")
    actions: list[dict[str, str]]
    special: bool = False
    depths: dict[str, set[int]] = field(default_factory=dict)

    def advertises(self, action: str, depth: int = 0) -> bool:
        """rgmanager checks the action, and for status/monitor the depth too."""
        if action not in self.depths:
            return False
        if action in ("status", "monitor"):
            return depth in self.depths[action]
        return True

    def timeout(self, action: str) -> int:
        for a in self.actions:
            if a.get("name") == action and a.get("timeout"):
                return _seconds(a["timeout"])
        return 0


def load_rule(path: Path) -> Rule:
    proc = subprocess.run([str(path), "meta-data"], stdin=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                          env={}, timeout=30)
    if proc.returncode != 0:
        raise RuleError(f"{path}: meta-data exited {proc.returncode}")
    root = ET.fromstring(proc.stdout)
    if root.tag != "resource-agent" or not root.get("name"):
        raise RuleError(f"{path}: no resource-agent name")
    params: dict[str, dict[str, str]] = {}
    primaries = []
    for p in root.iterfind("parameters/parameter"):
        attrs = dict(p.attrib)
        if attrs["name"] == "action":
            raise RuleError(f"{path}: 'action' is a reserved attribute name")
        content = p.find("content")
        if content is not None and content.get("default") is not None:
            attrs["default"] = content.get("default", "")
        if attrs.get("primary", "0").startswith(("1", "y")):
            primaries.append(attrs["name"])
        params[attrs["name"]] = attrs
    if len(primaries) != 1:
        raise RuleError(f"{path}: {len(primaries)} primary parameters, rgmanager needs one")
    actions = [dict(a.attrib) for a in root.iterfind("actions/action")]
    depths: dict[str, set[int]] = {}
    for a in actions:
        depths.setdefault(a["name"], set()).add(int(a.get("depth", "0")))
    special = any(s.get("tag") == "rgmanager" for s in root.iterfind("special"))
    return Rule(root.get("name", ""), path, primaries[0], params, actions, special, depths)


def load_rules(directory: Path) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for path in sorted(directory.iterdir()):
        name = path.name
        if name.endswith("~") or ".rpm" in os.path.splitext(name)[1]:
            continue
        if not path.is_file() or not os.access(path, os.X_OK):
            continue
        rule = load_rule(path)
        rules[rule.type] = rule
    return rules


@dataclass
class Call:
    rc: int
    out: str
    err: str
    ran: bool = True


class RgManager:
    def __init__(self, directory: Path, rsctmp: Path | None = None) -> None:
        self.dir = directory
        self.rsctmp = rsctmp
        self.rules = load_rules(directory)

    def env(self, rule: Rule, attrs: dict[str, str], action: str, depth: int = 0,
            refcnt: int = 0, timeout: int | None = None) -> dict[str, str]:
        """``timeout`` overrides the metadata's, as an ``<action>`` in cluster.conf does."""
        env: dict[str, str] = {}
        for name, decl in rule.params.items():
            value = attrs.get(name, decl.get("default"))
            if value is not None:
                env[f"OCF_RESKEY_{name}"] = value
        env.update({
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "0",
            "OCF_ROOT": str(self.dir),
            "OCF_RESOURCE_INSTANCE": f"{rule.type}:{attrs[rule.primary]}",
            "OCF_RESOURCE_TYPE": rule.type,
            "OCF_CHECK_LEVEL": str(depth),
            "OCF_RESKEY_RGMANAGER_meta_refcnt": str(refcnt),
        })
        timeout = timeout or rule.timeout(action)
        if timeout:
            env["OCF_RESKEY_RGMANAGER_meta_timeout"] = str(timeout)
        if self.rsctmp is not None:
            env["HA_RSCTMP"] = str(self.rsctmp)
        return env

    def call(self, type_: str, attrs: dict[str, str], action: str, *args: str,
             depth: int = 0, action_timeout: int | None = None) -> Call:
        rule = self.rules[type_]
        if not rule.advertises(action, depth):
            return Call(0, "", "", ran=False)  # rgmanager skips it: "success"
        env = self.env(rule, attrs, action, depth, timeout=action_timeout)
        proc = subprocess.run([str(rule.path), action, *args], env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        return Call(proc.returncode, proc.stdout, proc.stderr)
