"""``pyha-migrate``: switch resources of a running Pacemaker cluster between the
upstream agents and pyha's, without restarting them.

Pacemaker restarts a resource whose agent changes, and while the resource is
unmanaged that restart is only deferred: it is planned again at the first
transition after re-managing, as long as any node's operation history still
names the old agent.  So a switch unmanages the resource's top-level parent,
changes the provider, refreshes the resource (its history is wiped on every
node and it is re-probed with the new agent), checks every node's probe
answer, asks the scheduler (``crm_simulate`` on a copy of the live CIB with
``is-managed`` restored) whether it would plan anything disruptive, and only
then re-manages.  Anything unexpected rolls the resource back to the state it
was found in.

Without ``--apply``/``--rollback`` it only reports, from the live CIB or a file.
Fence devices are never switched here: their implementation is chosen per
node with update-alternatives.

Exit status: 0 every named resource can switch (report) or was switched;
1 a resource cannot switch, or a switch failed and was rolled back to the
state found; 2 bad command line, unknown resource or unreadable CIB;
3 refused before changing anything (transition pending, node offline, no
quorum, agent not installed on every node, resource failed or not settled);
4 a rollback could not be verified: the resource is left unmanaged, with the
reason, for the administrator.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .params import Lenient, Param, ParamError, parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OCF_ROOT = "/usr/lib/ocf"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CALL_TIMEOUT = 30.0  # every cluster tool call; below any wait that contains it

EXIT_OK, EXIT_CANNOT, EXIT_USAGE, EXIT_REFUSED, EXIT_UNMANAGED = 0, 1, 2, 3, 4

# type -> (upstream provider, pyha module)
AGENTS: dict[str, tuple[str, str]] = {
    "IPaddr2": ("heartbeat", "agents.ipaddr2"),
    "Filesystem": ("heartbeat", "agents.filesystem"),
    "VirtualDomain": ("heartbeat", "agents.virtualdomain"),
    "Xen": ("heartbeat", "agents.xen"),
    "drbd": ("linbit", "agents.drbd"),
    "o2cb": ("pacemaker", "agents.o2cb"),
}

# Fence agents pyha ships under a name fence-agents also uses: the packages
# register them with update-alternatives (fence_na and fence_pcmk are pyha's only).
FENCE_ALTERNATIVES = ("fence_ipmilan", "fence_ipmilanplus", "fence_idrac", "fence_ilo3",
                      "fence_ilo4", "fence_ilo5", "fence_imm", "fence_ilo_mp")

# Known behaviour differences an administrator should read before switching
# (the README and docs/ give the reasons).
BEHAVIOUR: dict[str, tuple[str, ...]] = {
    "IPaddr2": (
        "a probe answers 7 only when the address is on no interface at all; on another "
        "interface or with another prefix it answers 1",
        "stop ignores malformed tunables (upstream failed with 6, which fences the node)",
    ),
    "Filesystem": (
        "stop has one deadline for everything, submounts included, and answers 0 only "
        "when the mount is gone",
        "ocfs2/gfs2 outside a clone, and local filesystems in a clone without "
        "force_clones, are refused with 6",
    ),
    "VirtualDomain": (
        "the domain's identity is recorded at start; a probe with neither a record nor "
        "a readable config answers 5 instead of 7 (a domain started by the upstream "
        "agent has no record until pyha's first monitor)",
    ),
    "Xen": (
        "the domain name is recorded at start; xl is preferred to xm; crashed or dying "
        "domains fail the monitor",
    ),
    "drbd": (
        "monitor answers 9 for a Primary with no UpToDate data reachable (linbit: 8)",
        "a malformed adjust_master_score is 6; stacked resources are refused with 6",
    ),
    "o2cb": (
        "stop refuses while OCFS2 is mounted, and stops the daemon for real",
        "the monitor reads the mount table (upstream's never saw configfs)",
    ),
}
# Agents without required parameters whose probe answers a clean 7: they prove
# that a node has the package (pyha, resource-agents, pacemaker) installed.
STAND_INS = {"pyha": "Example", "heartbeat": "Dummy", "pacemaker": "Dummy"}
# Instance attributes crmsh's "crm resource trace" adds; never a finding.
TRACE_ATTRS = frozenset(("trace_ra", "trace_dir"))


class MigrateError(Exception):
    """A one-line reason, and the exit status it stands for."""

    def __init__(self, reason: str, status: int = EXIT_CANNOT) -> None:
        super().__init__(reason)
        self.status = status


# -- the CIB ------------------------------------------------------------------------

@dataclass
class Resource:
    """A primitive of the CIB's configuration."""

    id: str
    klass: str
    provider: str
    type: str
    chain: list[ET.Element]  # the primitive, then its parents up to the top level
    attrs: dict[str, str]
    rule_sets: bool = False
    template: str | None = None

    @property
    def agent(self) -> str:
        if self.template:
            return f"template {self.template}"
        prov = f"{self.provider}:" if self.provider else ""
        return f"{self.klass}:{prov}{self.type}"

    @property
    def top(self) -> ET.Element:
        return self.chain[-1]

    @property
    def promotable(self) -> bool:
        for el in self.chain[1:]:
            if el.tag == "master":
                return True
            if el.tag == "clone" and (meta_value(el, "promotable") or "").lower() in (
                    "true", "yes", "1", "on"):
                return True
        return False


def meta_value(el: ET.Element, name: str) -> str | None:
    for nv in el.findall("meta_attributes/nvpair"):
        if nv.get("name") == name:
            return nv.get("value")
    return None


def meta_nvpair(el: ET.Element, name: str) -> ET.Element | None:
    for nv in el.findall("meta_attributes/nvpair"):
        if nv.get("name") == name:
            return nv
    return None


def resources(cib: ET.Element) -> list[Resource]:
    """Every primitive under configuration/resources, with its parents."""
    found: list[Resource] = []
    section = cib.find("configuration/resources")
    if section is None:
        return found

    def walk(el: ET.Element, parents: list[ET.Element]) -> None:
        if el.tag == "primitive":
            attrs: dict[str, str] = {}
            rules = False
            for ia in el.findall("instance_attributes"):
                if ia.find("rule") is not None:
                    rules = True
                for nv in ia.findall("nvpair"):
                    name, value = nv.get("name"), nv.get("value")
                    if name is not None and value is not None:
                        attrs.setdefault(name, value)
            found.append(Resource(el.get("id", ""), el.get("class", ""), el.get("provider", ""),
                                  el.get("type", ""), [el, *reversed(parents)], attrs, rules,
                                  el.get("template")))
            return
        if el.tag in ("group", "clone", "master"):
            for child in el:
                walk(child, [*parents, el])

    for child in section:
        walk(child, [])
    return found


def select(all_rscs: list[Resource], names: Sequence[str]) -> list[Resource]:
    """The primitives named, or under a named group/clone; every one if none named."""
    if not names:
        return all_rscs
    chosen: list[Resource] = []
    for name in names:
        hits = [r for r in all_rscs if r.id == name or any(el.get("id") == name
                                                           for el in r.chain[1:])]
        if not hits:
            raise MigrateError(f"no resource '{name}' in the CIB", EXIT_USAGE)
        chosen.extend(r for r in hits if r not in chosen)
    return chosen


# -- findings --------------------------------------------------------------------

@dataclass
class Finding:
    level: str  # "error" (cannot switch), "warning" (behaviour changes), "note"
    text: str


@dataclass
class Verdict:
    rsc: Resource
    target: str  # the provider it would switch to
    findings: list[Finding] = field(default_factory=list)
    nothing_to_do: bool = False

    @property
    def can_switch(self) -> bool:
        return not any(f.level == "error" for f in self.findings)


def upstream_params(rtype: str, provider: str,
                    runner: Callable[..., subprocess.CompletedProcess[str]] | None = None,
                    ) -> dict[str, str | None]:
    """{name: default} from the installed upstream agent's own meta-data."""
    path = os.path.join(OCF_ROOT, "resource.d", provider, rtype)
    env = {"PATH": SYSTEM_PATH, "OCF_ROOT": OCF_ROOT, "OCF_RA_VERSION_MAJOR": "1",
           "OCF_RA_VERSION_MINOR": "1", "LANG": "C.UTF-8", "OCF_RESOURCE_INSTANCE": rtype}
    run = runner or subprocess.run
    try:
        proc = run([path, "meta-data"], capture_output=True, text=True, env=env,
                   timeout=CALL_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MigrateError(f"cannot read the meta-data of {path}: {exc}") from None
    if proc.returncode != 0:
        raise MigrateError(f"{path} meta-data exited {proc.returncode}")
    try:
        root = ET.fromstring(proc.stdout)
    except ET.ParseError as exc:
        raise MigrateError(f"{path} meta-data is not XML: {exc}") from None
    out: dict[str, str | None] = {}
    for p in root.iter("parameter"):
        content = p.find("content")
        default = content.get("default") if content is not None else None
        out[p.get("name", "")] = default if default != "" else None
    return out


def _converted(p: Param, raw: str | None) -> Any:
    if raw is None or raw == "":
        return None
    try:
        value = p.convert(raw)
    except ParamError:
        return ("raw", raw)
    return value.value if isinstance(value, Lenient) else value


def check(rsc: Resource, to_pyha: bool,
          meta_cache: dict[str, dict[str, str | None] | MigrateError] | None = None) -> Verdict:
    """Every parameter and behaviour finding for moving ``rsc`` to pyha (or back)."""
    spec = AGENTS.get(rsc.type)
    upstream = spec[0] if spec else ""
    target = "pyha" if to_pyha else upstream
    verdict = Verdict(rsc, target)
    add = verdict.findings.append
    if rsc.template:
        add(Finding("error", f"takes its agent from template '{rsc.template}'; switch the "
                             "template instead"))
        return verdict
    if rsc.klass == "stonith" and rsc.type in FENCE_ALTERNATIVES:
        add(Finding("error", "a fence device: its implementation is chosen on each node with "
                             f"update-alternatives ({rsc.type}), never in the CIB"))
        return verdict
    if rsc.klass != "ocf" or spec is None or rsc.provider not in ("pyha", upstream):
        add(Finding("error", f"pyha provides no replacement for {rsc.agent}"))
        return verdict
    if rsc.provider == target:
        verdict.nothing_to_do = True
        add(Finding("note", f"already runs ocf:{target}:{rsc.type}"))
        return verdict
    agent = importlib.import_module(spec[1]).agent
    declared = {p.name: p for p in agent.params}
    known = set(declared) | {a for p in agent.params for a in p.aliases}
    cache = {} if meta_cache is None else meta_cache
    if rsc.type not in cache:
        try:
            cache[rsc.type] = upstream_params(rsc.type, upstream)
        except MigrateError as exc:
            cache[rsc.type] = exc
    up = cache[rsc.type]
    if isinstance(up, MigrateError):
        add(Finding("error" if not to_pyha else "warning",
                    f"upstream ocf:{upstream}:{rsc.type}: {up}"))
        up = {}
    if rsc.rule_sets:
        add(Finding("warning", "instance attributes depend on rules; only the first value "
                               "of each parameter was checked"))
    if not to_pyha:
        for name in sorted(rsc.attrs):
            if up and name not in up and name not in TRACE_ATTRS:
                add(Finding("warning", f"parameter '{name}' is not in ocf:{upstream}:"
                                       f"{rsc.type}'s meta-data; upstream ignores it"))
        return verdict
    for name in sorted(rsc.attrs):
        if name in known or name in TRACE_ATTRS:
            continue
        if name in up:
            add(Finding("error", f"parameter '{name}' of ocf:{upstream}:{rsc.type} is not "
                                 "declared by pyha"))
        else:
            add(Finding("note", f"parameter '{name}' is known to neither agent; both ignore "
                                "it"))
    values, errors = parse(agent.params, rsc.attrs)
    if not errors:
        for validator in agent.validators:
            errors.extend(validator(values))
    for err in errors:
        add(Finding("error", f"pyha rejects it: {err}"))
    for text in values.warnings:
        add(Finding("warning", f"accepted with a warning: {text}"))
    for name, up_default in sorted(up.items()):
        p = declared.get(name)
        if p is None or name in rsc.attrs:
            continue
        if _converted(p, up_default) != _converted(p, p.default):
            shown_up = "unset" if up_default is None else f"'{up_default}'"
            shown_py = "unset" if p.default is None else f"'{p.default}'"
            add(Finding("warning", f"default of '{name}' differs: upstream {shown_up}, "
                                   f"pyha {shown_py} (not set in the CIB)"))
    for text in BEHAVIOUR.get(rsc.type, ()):
        add(Finding("note", text))
    return verdict


def render(verdict: Verdict) -> str:
    rsc = verdict.rsc
    arrow = f"{rsc.agent} -> ocf:{verdict.target}:{rsc.type}" if verdict.target else rsc.agent
    if verdict.nothing_to_do:
        state = "nothing to do"
    else:
        state = "can switch" if verdict.can_switch else "cannot switch"
    lines = [f"{rsc.id} ({arrow}): {state}"]
    lines += [f"  {f.level}: {f.text}" for f in verdict.findings]
    return "\n".join(lines)


def fence_devices(cib: ET.Element) -> list[tuple[str, str]]:
    section = cib.find("configuration/resources")
    if section is None:
        return []
    return [(p.get("id", ""), p.get("type", "")) for p in section.iter("primitive")
            if p.get("class") == "stonith" and p.get("type") in FENCE_ALTERNATIVES]


def fence_selection(name: str, sbin: str = "/usr/sbin") -> str:
    """Which implementation this node's /usr/sbin/<name> resolves to."""
    path = os.path.join(sbin, name)
    if not os.path.lexists(path):
        return f"{path} does not exist"
    real = os.path.realpath(path)
    if os.path.islink(path) and "/etc/alternatives/" in os.readlink(path):
        owner = "pyha" if "/pyha/fence/" in real else "fence-agents"
        return f"{path} -> {real} ({owner}, chosen with update-alternatives)"
    return f"{path} is {real} (fence-agents; no alternative registered)"


def report_fence(cib: ET.Element, local: str | None) -> list[str]:
    lines = []
    nodes = sorted(n.get("uname", "") for n in cib.iterfind("configuration/nodes/node"))
    for rid, ftype in fence_devices(cib):
        lines.append(f"{rid} (stonith:{ftype}): switched per node with update-alternatives, "
                     "never from here")
        for node in nodes or ["(no nodes in the CIB)"]:
            if local is not None and node == local:
                lines.append(f"  {node} (this node): {fence_selection(ftype)}")
            else:
                lines.append(f"  {node}: not visible from here; on {node} run "
                             f"'update-alternatives --display {ftype}' or pyha-migrate")
    return lines


# -- the live cluster ---------------------------------------------------------------

class Tools:
    """The cluster's command-line tools (argv lists, each call bounded)."""

    def __init__(self, timeout: float = CALL_TIMEOUT) -> None:
        self.timeout = timeout

    def run(self, argv: Sequence[str], check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True,
                                  timeout=timeout or self.timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise MigrateError(f"{argv[0]} is not installed", EXIT_REFUSED) from None
        except OSError as exc:
            raise MigrateError(f"cannot run {argv[0]}: {exc}") from None
        except subprocess.TimeoutExpired:
            raise MigrateError(f"{argv[0]} did not answer within "
                               f"{timeout or self.timeout:.0f} s") from None
        if check and proc.returncode != 0:
            text = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise MigrateError(f"{' '.join(argv[:3])} failed (rc {proc.returncode}): "
                               f"{text[-1] if text else 'no output'}")
        return proc

    def cib(self) -> ET.Element:
        return _xml(self.run(["cibadmin", "--query"]).stdout, "cibadmin --query")

    def status(self) -> ET.Element:
        return _xml(self.run(["crm_mon", "-1", "--output-as=xml"]).stdout, "crm_mon")

    def controller_state(self) -> tuple[str, str]:
        dc = _xml(self.run(["crmadmin", "-D", "--output-as=xml"]).stdout, "crmadmin -D")
        el = dc.find("dc")
        name = el.get("node_name", "") if el is not None else ""
        if not name:
            return "", "no DC"
        st = _xml(self.run(["crmadmin", "-S", name, "--output-as=xml"]).stdout, "crmadmin -S")
        crmd = st.find("crmd")
        return name, (crmd.get("state", "") if crmd is not None else "")

    def local_node(self) -> str | None:
        proc = self.run(["crm_node", "-n"], check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise MigrateError(f"{what} gave unreadable XML: {exc}") from None


def wait(predicate: Callable[[], Any], timeout: float, what: str,
         interval: float = 0.5) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise MigrateError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Placement:
    """Where a resource runs, from crm_mon: {node: role}."""

    roles: dict[str, str]

    def expected_rc(self, node: str) -> int:
        role = self.roles.get(node)
        if role is None:
            return 7
        return 8 if role in ("Promoted", "Master") else 0


class Switcher:
    def __init__(self, tools: Tools, timeout: float, out: Callable[[str], None]) -> None:
        self.tools = tools
        self.timeout = timeout
        self.say = out
        self._sets_before: set[str] = set()

    # -- preconditions ---------------------------------------------------------

    def wait_idle(self, settle: float = 10.0) -> None:
        last = ""

        def idle() -> bool:
            nonlocal last
            dc, state = self.tools.controller_state()
            last = f"{dc or 'no DC'} in {state}"
            return state == "S_IDLE"

        try:
            wait(idle, settle, "an idle controller")
        except MigrateError:
            raise MigrateError(f"a transition is pending (controller {last})",
                               EXIT_REFUSED) from None

    def cluster_ready(self) -> list[str]:
        mon = self.tools.status()
        dc = mon.find("summary/current_dc")
        if dc is None or dc.get("present") != "true":
            raise MigrateError("the cluster has no DC", EXIT_REFUSED)
        if dc.get("with_quorum") != "true":
            raise MigrateError("the partition has no quorum", EXIT_REFUSED)
        nodes = []
        for n in mon.iterfind("nodes/node"):
            if n.get("type", "member") != "member":
                continue
            if n.get("online") != "true" or n.get("unclean") == "true" \
                    or n.get("pending") == "true":
                raise MigrateError(f"node {n.get('name')} is not online", EXIT_REFUSED)
            nodes.append(n.get("name", ""))
        return nodes

    def placement(self, rsc: Resource) -> Placement:
        mon = self.tools.status()
        for f in mon.iter("failure"):
            if _base(f.get("op_key", "").rsplit("_", 2)[0]) == rsc.id:
                raise MigrateError(f"{rsc.id} has a failed action ({f.get('op_key')} on "
                                   f"{f.get('node')}); clean it up first", EXIT_REFUSED)
        roles: dict[str, str] = {}
        for el in mon.iter("resource"):
            if _base(el.get("id", "")) != rsc.id:
                continue
            if el.get("orphaned") == "true" or el.get("blocked") == "true" \
                    or el.get("failed") == "true":
                raise MigrateError(f"{rsc.id} is failed, blocked or orphaned", EXIT_REFUSED)
            if el.get("pending"):
                raise MigrateError(f"{rsc.id} has an action in flight", EXIT_REFUSED)
            if el.get("active") != "true":
                continue
            for node in el.iter("node"):
                name = node.get("name", "")
                if name in roles:
                    raise MigrateError(f"{rsc.id} is active twice on {name}", EXIT_REFUSED)
                roles[name] = el.get("role", "Started")
        return Placement(roles)

    def agents_installed(self, providers: Iterable[str], nodes: list[str]) -> list[str]:
        """Prove the target package is installed on every node, from this node.

        A throw-away primitive of a parameter-less agent of that package
        (ocf:pyha:Example, ocf:heartbeat:Dummy, ocf:pacemaker:Dummy), stopped
        and unmanaged, is probed by every node: its probe answers a clean 7
        where the package is installed, and Pacemaker records "not installed"
        where it is not.  (The agent being switched cannot be probed so: without
        its parameters its probe fails, and a failed probe leaves a "maybe
        active" orphan whose stop runs when it is deleted.)  Returns notes for
        packages it cannot check this way (linbit has no such agent).
        """
        made: list[tuple[str, str]] = []
        notes = []
        try:
            for provider in sorted(set(providers)):
                stand_in = STAND_INS.get(provider)
                if stand_in is None:
                    notes.append(f"no parameter-less ocf:{provider} agent to probe with; "
                                 "the refresh probes check the agent itself")
                    continue
                rid = f"pyha-migrate-probe-{provider}"
                xml = (f'<primitive id="{rid}" class="ocf" provider="{provider}" '
                       f'type="{stand_in}"><meta_attributes id="{rid}-meta">'
                       f'<nvpair id="{rid}-role" name="target-role" value="Stopped"/>'
                       f'<nvpair id="{rid}-managed" name="is-managed" value="false"/>'
                       f'</meta_attributes></primitive>')
                self.tools.run(["cibadmin", "--create", "-o", "resources", "--xml-text", xml])
                made.append((rid, f"ocf:{provider}:{stand_in}"))
            for rid, agent in made:
                results = wait(functools.partial(self._probed, rid, nodes),
                               min(self.timeout, 60.0), f"the probes of {agent} on every node")
                missing = sorted(n for n, (rc, status, _) in results.items()
                                 if status == "7" or rc == "5")
                if missing:
                    raise MigrateError(f"{agent} is not installed on {', '.join(missing)}",
                                       EXIT_REFUSED)
                odd = sorted(f"{n} answered {rc} {why}".strip()
                             for n, (rc, _s, why) in results.items() if rc != "7")
                if odd:
                    raise MigrateError(f"cannot tell whether {agent} is installed: "
                                       + "; ".join(odd), EXIT_REFUSED)
        finally:
            for rid, _agent in made:
                # After a 7 everywhere the orphan is inactive: deleting it stops nothing
                # (and a stand-in's stop only removes its own state file).
                with contextlib.suppress(MigrateError):
                    self.tools.run(["cibadmin", "--delete", "--xml-text",
                                    f'<primitive id="{rid}"/>'])
                with contextlib.suppress(MigrateError):
                    self.tools.run(["crm_resource", "--cleanup", "-r", rid], check=False)
        return notes

    def _probed(self, rid: str, nodes: list[str]) -> dict[str, tuple[str, str, str]] | None:
        history = lrm_history(self.tools.cib(), rid)
        out = {}
        for node in nodes:
            probe = None
            for entry in history.get(node, []):
                if entry.probe is not None:  # an Element without children is falsy
                    probe = entry.probe
            if probe is None or probe.get("op-status") == "-1":
                return None
            out[node] = (probe.get("rc-code", ""), probe.get("op-status", ""),
                         probe.get("exit-reason", ""))
        return out

    # -- one switch --------------------------------------------------------------

    def switch(self, rsc: Resource, target: str) -> int:
        """Move ``rsc`` to ocf:<target>:<type>; the exit status for it."""
        self.wait_idle()
        nodes = self.cluster_ready()
        found = self.placement(rsc)
        before = self.tools.cib()
        chain = _chain_in(before, rsc)
        nodes = probed_nodes(before, chain, nodes)
        unmanage = _unmanage_plan(chain)
        original = rsc.provider
        self.say(f"{rsc.id}: runs on {_where(found)}; switching ocf:{original}:{rsc.type} -> "
                 f"ocf:{target}:{rsc.type}")
        try:
            self._set_managed(unmanage, restore=False)
            try:
                self._set_provider(rsc, target)
                self._refresh_and_check(rsc, target, nodes, found)
                self._simulate(rsc, unmanage)
            except MigrateError as exc:
                self.say(f"{rsc.id}: {exc}; rolling back to ocf:{original}:{rsc.type}")
                return self._roll_back(rsc, original, unmanage, nodes, found, str(exc))
            self._set_managed(unmanage, restore=True)
        except KeyboardInterrupt:
            raise MigrateError(f"{rsc.id}: interrupted; it may be left unmanaged, on "
                               f"ocf:{rsc.provider}:{rsc.type}: check crm_mon before "
                               "re-managing it", EXIT_UNMANAGED) from None
        try:
            self._settled(rsc, found)
        except MigrateError as exc:
            raise MigrateError(f"{rsc.id}: re-managed on ocf:{target}:{rsc.type}, but then: "
                               f"{exc}", EXIT_CANNOT) from None
        self.say(f"{rsc.id}: now ocf:{target}:{rsc.type}, still on {_where(found)}, "
                 "nothing restarted")
        return EXIT_OK

    def _roll_back(self, rsc: Resource, original: str, unmanage: list[tuple[str, str | None]],
                   nodes: list[str], found: Placement, why: str) -> int:
        try:
            self._set_provider(rsc, original)
            self._refresh_and_check(rsc, original, nodes, found)
            self._simulate(rsc, unmanage)
        except MigrateError as exc:
            raise MigrateError(f"{rsc.id}: switch failed ({why}); the rollback could not be "
                               f"verified ({exc}): left unmanaged on ocf:{original}:"
                               f"{rsc.type}", EXIT_UNMANAGED) from None
        self._set_managed(unmanage, restore=True)
        raise MigrateError(f"{rsc.id}: {why}; rolled back to ocf:{original}:{rsc.type} as "
                           "found", EXIT_CANNOT)

    def _set_managed(self, plan: list[tuple[str, str | None]], restore: bool) -> None:
        if not restore:
            # crm_resource creates a meta_attributes set where there was none;
            # remember which existed so that a restore leaves the CIB as found.
            self._sets_before = _meta_set_ids(self.tools.cib(), [el for el, _v in plan])
        for el_id, value in plan:
            if restore and value is None:
                self.tools.run(["crm_resource", "-r", el_id, "--meta", "-d", "is-managed"])
            else:
                self.tools.run(["crm_resource", "-r", el_id, "--meta", "-p", "is-managed",
                                "-v", value if restore and value is not None else "false"])
        if restore:
            cib = self.tools.cib()
            for el in cib.iter():
                if el.get("id") not in {el_id for el_id, _v in plan}:
                    continue
                for ma in el.findall("meta_attributes"):
                    if len(ma) == 0 and ma.get("id") not in self._sets_before:
                        self.tools.run(["cibadmin", "--delete", "--xml-text",
                                        f'<meta_attributes id="{ma.get("id")}"/>'])

    def _set_provider(self, rsc: Resource, provider: str) -> None:
        self.tools.run(["cibadmin", "--modify", "-o", "resources", "--xml-text",
                        f'<primitive id="{rsc.id}" provider="{provider}"/>'])
        rsc.provider = provider

    def _refresh_and_check(self, rsc: Resource, provider: str, nodes: list[str],
                           found: Placement) -> None:
        # No operation in flight: a late result of the old agent would be recorded
        # after the refresh wiped the history, and the old agent would stay named.
        self.wait_idle(self.timeout)
        self.tools.run(["crm_resource", "--refresh", "-r", rsc.id], timeout=self.timeout)
        answers = wait(lambda: self._answers(rsc, provider, nodes, found), self.timeout,
                       f"every node's probe of {rsc.id} with ocf:{provider}:{rsc.type}")
        self.say(f"{rsc.id}: probes with ocf:{provider}:{rsc.type}: "
                 + ", ".join(f"{n} {rc}" for n, rc in sorted(answers.items())))
        if rsc.promotable:
            for node in found.roles:
                wait(functools.partial(self._score, rsc, node), self.timeout,
                     f"{rsc.id}'s promotion score on {node}")
        self.wait_idle(self.timeout)

    def _answers(self, rsc: Resource, provider: str, nodes: list[str],
                 found: Placement) -> dict[str, int] | None:
        history = lrm_history(self.tools.cib(), rsc.id)
        answers: dict[str, int] = {}
        for node in nodes:
            entries = history.get(node, [])
            want = found.expected_rc(node)
            for entry in entries:
                if entry.provider != provider:
                    return None  # the old history is still there: not refreshed yet
                for op in entry.ops:
                    status, rc = op.get("op-status", "0"), op.get("rc-code", "")
                    if status == "-1":
                        continue
                    reason = op.get("exit-reason") or ""
                    key = op.get("operation_key", "")
                    if status != "0":
                        raise MigrateError(f"{key} on {node} did not complete (op-status "
                                           f"{status}, rc {rc}){': ' + reason if reason else ''}")
                    if op.get("operation") == "monitor" and op.get("interval", "0") == "0":
                        continue  # probes (and their last_failure copies) are judged below
                    if op.get("operation") == "monitor" and rc in ("0", "8"):
                        continue
                    raise MigrateError(f"{key} on {node} answered {rc}"
                                       f"{': ' + reason if reason else ''}")
            probes = [e.probe for e in entries if e.probe is not None]
            if not probes or any(p.get("op-status") == "-1" for p in probes):
                return None
            got = sorted({int(p.get("rc-code", "-1")) for p in probes})
            reason = " ".join(p.get("exit-reason") or "" for p in probes).strip()
            if want == 7 and got != [7] or want != 7 and want not in got:
                raise MigrateError(
                    f"the probe on {node} answered {','.join(map(str, got))} where "
                    f"{want} was expected"
                    f"{' (it runs there)' if want != 7 else ''}{': ' + reason if reason else ''}")
            answers[node] = want
        return answers

    def _score(self, rsc: Resource, node: str) -> bool:
        proc = self.tools.run(["crm_attribute", "-N", node, "-n", f"master-{rsc.id}", "-l",
                               "reboot", "--query", "-q"], check=False)
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def _simulate(self, rsc: Resource, plan: list[tuple[str, str | None]]) -> None:
        cib = self.tools.cib()
        restored = with_managed(cib, plan)
        with tempfile.TemporaryDirectory(prefix="pyha-migrate-") as tmp:
            cib_file, graph = os.path.join(tmp, "cib.xml"), os.path.join(tmp, "graph.xml")
            with open(cib_file, "w", encoding="utf-8") as handle:
                handle.write(ET.tostring(restored, encoding="unicode"))
            self.tools.run(["crm_simulate", "--run", "--xml-file", cib_file, "--save-graph",
                            graph], timeout=self.timeout)
            with open(graph, encoding="utf-8") as handle:
                planned = disruptive(ET.fromstring(handle.read()),
                                     {r.id for r in resources(cib) if r.top.get("id")
                                      == rsc.top.get("id")})
        if planned:
            raise MigrateError("re-managing would make the scheduler plan "
                               + ", ".join(planned))

    def _settled(self, rsc: Resource, found: Placement) -> None:
        self.wait_idle(self.timeout)
        now = self.placement(rsc)
        if now.roles != found.roles:
            raise MigrateError(f"{rsc.id} was re-managed but now runs on {_where(now)} "
                               f"(was {_where(found)})")


@dataclass
class History:
    provider: str
    ops: list[ET.Element]
    probe: ET.Element | None


def lrm_history(cib: ET.Element, rid: str) -> dict[str, list[History]]:
    """{node: [History of each lrm_resource of rid or rid:N]} from the CIB status."""
    out: dict[str, list[History]] = {}
    for state in cib.iterfind("status/node_state"):
        node = state.get("uname", "")
        for lrm in state.iterfind("lrm/lrm_resources/lrm_resource"):
            lid = lrm.get("id", "")
            if _base(lid) != rid:
                continue
            ops = lrm.findall("lrm_rsc_op")
            probes = [op for op in ops if op.get("operation") == "monitor"
                      and op.get("interval", "0") == "0"]
            probe = max(probes, key=lambda op: int(op.get("call-id", "-1") or -1),
                        default=None)
            out.setdefault(node, []).append(History(lrm.get("provider", ""), ops, probe))
    return out


def with_managed(cib: ET.Element, plan: list[tuple[str, str | None]]) -> ET.Element:
    """A copy of ``cib`` with is-managed as it was before the switch."""
    copy = ET.fromstring(ET.tostring(cib))
    for el_id, value in plan:
        for el in copy.iter():
            if el.get("id") != el_id or el.tag not in ("primitive", "group", "clone", "master"):
                continue
            for ma in el.findall("meta_attributes"):
                for nv in ma.findall("nvpair"):
                    if nv.get("name") == "is-managed":
                        if value is None:
                            ma.remove(nv)
                        else:
                            nv.set("value", value)
    return copy


DISRUPTIVE = frozenset(("start", "stop", "promote", "demote", "migrate_to", "migrate_from",
                        "notify", "reload", "reload-agent"))


def disruptive(graph: ET.Element, members: set[str]) -> list[str]:
    """The actions of a transition graph that would disturb ``members`` or fence."""
    found = []
    for action_set in graph.iter("action_set"):
        for act in action_set:
            op = act.get("operation", "")
            key = act.get("operation_key", op)
            if act.tag == "crm_event" and op in ("stonith", "do_shutdown"):
                found.append(f"{key} on {act.get('on_node', '?')}")
            elif act.tag == "pseudo_event" and op == "stonith":
                found.append(key)
            elif act.tag == "rsc_op" and op in DISRUPTIVE:
                prim = act.find("primitive")
                rid = _base(prim.get("id", "")) if prim is not None else ""
                if rid in members:
                    found.append(f"{key} on {act.get('on_node', '?')}")
    return found


def _base(rid: str) -> str:
    return rid.split(":", 1)[0]


def _chain_in(cib: ET.Element, rsc: Resource) -> list[ET.Element]:
    for r in resources(cib):
        if r.id == rsc.id:
            return r.chain
    raise MigrateError(f"{rsc.id} disappeared from the CIB")


def probed_nodes(cib: ET.Element, chain: list[ET.Element], nodes: list[str]) -> list[str]:
    """The nodes Pacemaker probes the resource on: location constraints with
    resource-discovery=never take a node out; =exclusive keeps only its nodes.
    (Rule-based constraints are not evaluated: their nodes are waited for.)"""
    ids = {el.get("id") for el in chain}
    never, exclusive = set(), set()
    for loc in cib.iterfind("configuration/constraints/rsc_location"):
        if loc.get("rsc") not in ids or not loc.get("node"):
            continue
        if loc.get("resource-discovery") == "never":
            never.add(loc.get("node"))
        elif loc.get("resource-discovery") == "exclusive":
            exclusive.add(loc.get("node"))
    return [n for n in nodes if n not in never and (not exclusive or n in exclusive)]


def _meta_set_ids(cib: ET.Element, ids: list[str]) -> set[str]:
    return {ma.get("id", "") for el in cib.iter() if el.get("id") in ids
            for ma in el.findall("meta_attributes")}


def _unmanage_plan(chain: list[ET.Element]) -> list[tuple[str, str | None]]:
    """(element id, is-managed as found) for the top-level parent, and for every
    element below it that sets is-managed itself (it would override the parent's)."""
    plan = [(chain[-1].get("id", ""), meta_value(chain[-1], "is-managed"))]
    for el in chain[:-1]:
        value = meta_value(el, "is-managed")
        if value is not None:
            plan.append((el.get("id", ""), value))
    return plan


def _where(p: Placement) -> str:
    if not p.roles:
        return "no node"
    return ", ".join(f"{n} ({r})" for n, r in sorted(p.roles.items()))


# -- the command -------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyha-migrate",
        description="Report whether resources can switch between the upstream agents and "
                    "pyha's, and switch them with no restart (--apply) or back (--rollback).")
    parser.add_argument("resources", nargs="*", metavar="RESOURCE",
                        help="primitives, groups or clones (default: every one pyha provides)")
    parser.add_argument("--cib", metavar="FILE", help="read this CIB file instead of the "
                                                      "live cluster (report only)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--apply", action="store_true", help="switch to ocf:pyha")
    mode.add_argument("--rollback", action="store_true", help="switch back to the upstream "
                                                              "agent")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each step (default %(default)s)")
    args = parser.parse_args(argv)
    if args.cib and (args.apply or args.rollback):
        parser.error("--apply and --rollback work on the live cluster, not on --cib")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        return run(args)
    except MigrateError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"pyha-migrate: {exc}\n")
        return exc.status


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    tools = Tools()
    local: str | None = None
    if args.cib:
        try:
            cib = ET.parse(args.cib).getroot()
        except (OSError, ET.ParseError) as exc:
            raise MigrateError(f"cannot read {args.cib}: {exc}", EXIT_USAGE) from None
    else:
        cib = tools.cib()
        local = tools.local_node()
    to_pyha = not args.rollback
    every = resources(cib)
    named = select(every, args.resources)
    if not args.resources:
        named = [r for r in named if r.klass == "ocf" and r.type in AGENTS
                 and r.provider in ("pyha", AGENTS[r.type][0])]
    cache: dict[str, dict[str, str | None] | MigrateError] = {}
    verdicts = [check(r, to_pyha, cache) for r in named]
    for v in verdicts:
        _emit(render(v))
    for line in report_fence(cib, local):
        _emit(line)
    blocked = [v for v in verdicts if not v.can_switch]
    if not (args.apply or args.rollback):
        return EXIT_CANNOT if blocked else EXIT_OK
    todo = [v for v in verdicts if v.can_switch and not v.nothing_to_do]
    if not todo:
        return EXIT_CANNOT if blocked else EXIT_OK
    switcher = Switcher(tools, args.timeout, _emit)
    switcher.wait_idle()
    nodes = switcher.cluster_ready()
    for note in switcher.agents_installed([v.target for v in todo], nodes):
        _emit(f"note: {note}")
    status = EXIT_CANNOT if blocked else EXIT_OK
    for v in todo:
        try:
            switcher.switch(v.rsc, v.target)
        except MigrateError as exc:
            sys.stderr.write(f"pyha-migrate: {exc}\n")
            status = max(status, exc.status)
            if exc.status in (EXIT_UNMANAGED, EXIT_REFUSED):
                break  # do not touch anything more in a cluster in this state
    return status



if __name__ == "__main__":
    sys.exit(main())
