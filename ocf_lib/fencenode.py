"""``pyha-fence-node``: fence (or unfence) a node the way CMAN's libfence does.

Reads a cluster.conf and, for the node, runs its fence methods in order,
giving each agent exactly the stdin libfence gives it:

1. every attribute of the ``<device>`` under ``clusternode/fence/method``,
   except ``name``;
2. ``nodename=<node>``, unless the device already sets ``nodename``;
3. every attribute of the ``<fencedevice>`` of that name, except ``name``
   (so ``agent=...`` is included).

No ``action`` is added for fencing: it comes from cluster.conf or is the
agent's default (reboot).  A method succeeds only when every one of its
devices succeeds; the first failing device ends the method and the next
method is tried.  ``--unfence`` runs every ``clusternode/unfence/device``
(all of them must succeed) and adds ``action=on`` when the device sets no
action: an unfence must never fall back to the agent's default, reboot.

Differences from libfence, on purpose: every agent runs under a time limit
(``--timeout``; libfence waits forever), and the agent's output is read
(libfence never reads it, so a chatty agent could block on a full pipe).
``--dry-run`` prints the stdin of each call with secrets masked, and ``-v``
the agents' output with their values masked.  What is secret comes from the
agent's declarations (every option a pyha agent declares ``secret``); for
an agent pyha has no declarations for, every value is masked but the
libfence protocol's own fields (agent, action, option, nodename, port, plug).

Exit status: 0 when the node was fenced (a method succeeded) or unfenced, 1
otherwise, 2 for a bad command line or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYHA_FENCE_DIR = os.path.join(ROOT, "fence")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MAX_METHODS = 8
MAX_DEVICES = 8
ARGS_MAX = 4096  # libfence's FENCE_AGENT_ARGS_MAX
AGENT_NAME_MAX = 256


class ConfigError(Exception):
    pass


@dataclass
class Call:
    """One agent run: which device, which agent, and its stdin lines."""

    device: str
    agent: str
    lines: list[tuple[str, str]]
    problem: str | None = None

    def stdin(self) -> str:
        return "".join(f"{k}={v}\n" for k, v in self.lines)

    def secret_values(self, secrets: frozenset[str] | None) -> list[str]:
        """The values to mask in the agent's output.

        For an agent without declarations, switches (``lanplus=1``, ``ssh=on``)
        are not masked there: no secret, and masking every "1" garbles messages.
        """
        from .params import FALSE_WORDS, TRUE_WORDS

        switches = TRUE_WORDS | FALSE_WORDS if secrets is None else frozenset()
        return [v for k, v in self.lines
                if v and is_secret(k, secrets) and v.strip().lower() not in switches]

    def shown(self, secrets: frozenset[str] | None) -> str:
        return "".join(f"{k}={'****' if is_secret(k, secrets) else v}\n"
                       for k, v in self.lines)


@dataclass
class Method:
    name: str
    calls: list[Call] = field(default_factory=list)


# The fields libfence itself writes or reads: never secret, whatever the agent.
PROTOCOL_FIELDS = frozenset(("agent", "action", "option", "nodename", "port", "plug"))


def is_secret(key: str, secrets: frozenset[str] | None) -> bool:
    """Whether the value of stdin line ``key`` is hidden.

    ``secrets`` are the names the agent declares secret; None when pyha has no
    declarations for the agent: then everything but the protocol fields is.
    """
    key = key.strip().replace("-", "_")
    if secrets is None:
        return key not in PROTOCOL_FIELDS
    return key in secrets


def declared_secrets(path: str | None) -> frozenset[str] | None:
    """Stdin names (with aliases) that the pyha agent at ``path`` declares secret.

    None when ``path`` is not a pyha fence agent (its launcher names its
    module in ``fence("fence.<name>")``) or its declarations cannot be loaded.
    """
    import importlib
    import re

    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
    except OSError:
        return None
    found = re.search(r'^fence\("(fence\.\w+)"\)', head, re.MULTILINE)
    if found is None or "ocf_lib.launch" not in head:
        return None
    try:
        params = importlib.import_module(found.group(1)).agent.params
    except Exception:  # noqa: BLE001 - no declarations: mask everything
        return None
    names: set[str] = set()
    for p in params:
        if p.secret:
            names.update(n.replace("-", "_") for n in (p.name, p.longopt, *p.aliases))
    return frozenset(names)


def _find_node(root: ET.Element, node: str) -> ET.Element:
    for el in root.iterfind("clusternodes/clusternode"):
        if el.get("name") == node:
            return el
    # CMAN also knows a node by its altname; fenced always uses the main name.
    for el in root.iterfind("clusternodes/clusternode"):
        if any(alt.get("name") == node for alt in el.iterfind("altname")):
            return el
    raise ConfigError(f"node {node} is not a clusternode in the configuration")


def _call(root: ET.Element, device: ET.Element, node: str, unfence: bool) -> Call:
    name = device.get("name", "")
    lines = [(k, v) for k, v in device.attrib.items() if k != "name"]
    if not any(k == "nodename" for k, _ in lines):
        lines.append(("nodename", node))
    fencedevice = None
    for el in root.iterfind("fencedevices/fencedevice"):
        if el.get("name") == name:
            fencedevice = el
            break
    if fencedevice is None:
        return Call(name, "", lines, f"no fencedevice named '{name}'")
    lines += [(k, v) for k, v in fencedevice.attrib.items() if k != "name"]
    if unfence and not any(k in ("action", "option") for k, _ in lines):
        lines.append(("action", "on"))
    agent = fencedevice.get("agent", "")
    call = Call(name, agent, lines)
    if not agent:
        call.problem = f"fencedevice '{name}' has no agent"
    elif len(agent) >= AGENT_NAME_MAX:
        call.problem = f"agent name of '{name}' is too long"
    elif len(call.stdin()) >= ARGS_MAX:
        call.problem = f"arguments for '{name}' exceed {ARGS_MAX} bytes"
    return call


def fence_methods(root: ET.Element, node: str) -> list[Method]:
    """The node's fence methods in order, each with its agent calls in order."""
    el = _find_node(root, node)
    node = el.get("name", node)
    methods = []
    for i, m in enumerate(el.iterfind("fence/method")):
        if i >= MAX_METHODS:
            break
        method = Method(m.get("name", str(i + 1)))
        for j, device in enumerate(m.iterfind("device")):
            if j >= MAX_DEVICES:
                break
            method.calls.append(_call(root, device, node, unfence=False))
        methods.append(method)
    return methods


def unfence_calls(root: ET.Element, node: str) -> list[Call]:
    el = _find_node(root, node)
    node = el.get("name", node)
    return [_call(root, d, node, unfence=True) for d in el.iterfind("unfence/device")]


def resolve(agent: str, search: str) -> str | None:
    """The agent's path: as given when it has a slash, else the first hit in ``search``."""
    from .proc import which

    if "/" in agent:
        return which(agent)
    return which(agent, search)


class Runner:
    def __init__(self, search: str, timeout: float, verbose: bool) -> None:
        self.search = search
        self.timeout = timeout
        self.verbose = verbose

    def run(self, call: Call) -> tuple[bool, str]:
        from .log import Logger
        from .proc import CommandError, run

        if call.problem:
            return False, call.problem
        path = resolve(call.agent, self.search)
        if path is None:
            return False, f"agent {call.agent} not found in {self.search}"
        masker = Logger("pyha-fence-node", {})
        for value in call.secret_values(declared_secrets(path)):
            masker.add_secret(value)
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
        try:
            res = run([path], input=call.stdin(), timeout=self.timeout, env=env)
        except CommandError as exc:
            return False, masker.mask(str(exc))
        text = masker.mask((res.err + res.out).strip())
        if self.verbose and text:
            sys.stderr.write(f"{call.agent} ({call.device}): {text}\n")
        if res.rc == 0:
            return True, ""
        last = text.splitlines()[-1] if text else ""
        return False, f"{call.agent} exited {res.rc}" + (f": {last}" if last else "")


def fence(root: ET.Element, node: str, runner: Runner, out: list[str]) -> bool:
    methods = fence_methods(root, node)
    if not methods:
        out.append(f"{node} has no fence methods")
        return False
    for method in methods:
        ok = bool(method.calls)
        for call in method.calls:
            done, why = runner.run(call)
            if not done:
                out.append(f"method {method.name}: device {call.device}: {why}")
                ok = False
                break
        if ok:
            out.append(f"method {method.name} succeeded")
            return True
    return False


def unfence(root: ET.Element, node: str, runner: Runner, out: list[str]) -> bool:
    calls = unfence_calls(root, node)
    if not calls:
        out.append(f"{node} has no unfence devices")
        return False
    ok = True
    for call in calls:  # every device is tried, even after a failure
        done, why = runner.run(call)
        if not done:
            out.append(f"device {call.device}: {why}")
            ok = False
    return ok


def dry_run(root: ET.Element, node: str, do_unfence: bool, search: str) -> str:
    def shown(call: Call) -> str:
        path = resolve(call.agent, search) if call.agent and not call.problem else None
        return call.shown(declared_secrets(path))

    parts = []
    if do_unfence:
        for call in unfence_calls(root, node):
            parts.append(f"# unfence device {call.device}: {call.agent}\n{shown(call)}")
    else:
        for method in fence_methods(root, node):
            for call in method.calls:
                note = f" ({call.problem})" if call.problem else ""
                parts.append(f"# method {method.name}, device {call.device}: "
                             f"{call.agent}{note}\n{shown(call)}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyha-fence-node",
        description="Fence or unfence a node with the agents cluster.conf configures, "
                    "giving them the stdin CMAN's libfence gives them.")
    parser.add_argument("node", help="the clusternode name")
    parser.add_argument("-c", "--config", default="/etc/cluster/cluster.conf",
                        help="cluster.conf to read (default %(default)s)")
    parser.add_argument("-U", "--unfence", action="store_true",
                        help="unfence the node (clusternode/unfence devices)")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="print each agent's stdin (secrets masked); run nothing")
    parser.add_argument("--agent-path", default=f"{PYHA_FENCE_DIR}:{SYSTEM_PATH}",
                        help="where agents are looked up, in order (default: pyha's own "
                             "agents, then %(default)s)")
    parser.add_argument("--system-agents", action="store_true",
                        help=f"look agents up in {SYSTEM_PATH} only (as fenced does)")
    parser.add_argument("-t", "--timeout", type=float, default=300.0,
                        help="seconds each agent may run (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the agents' output (secrets masked)")
    args = parser.parse_args(argv)
    action = "unfence" if args.unfence else "fence"
    search = SYSTEM_PATH if args.system_agents else args.agent_path
    try:
        root = ET.parse(args.config).getroot()
        if args.dry_run:
            sys.stdout.write(dry_run(root, args.node, args.unfence, search) + "\n")
            return 0
        runner = Runner(search, args.timeout, args.verbose)
        notes: list[str] = []
        ok = (unfence if args.unfence else fence)(root, args.node, runner, notes)
    except (OSError, ET.ParseError, ConfigError) as exc:
        sys.stderr.write(f"pyha-fence-node: {exc}\n")
        return 2
    for note in notes:
        sys.stderr.write(f"pyha-fence-node: {note}\n")
    print(f"{action} {args.node} {'success' if ok else 'failed'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
