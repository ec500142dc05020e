"""Metadata XML and manpages, all derived from the parameter declarations.

Variants of OCF metadata:

``ocf-1.1``
    What Pacemaker 2.1+ reads (it exports ``OCF_RA_VERSION_MINOR=1``).
    ``select`` content, roles ``Promoted``/``Unpromoted``, and the 1.1-only
    attributes (``reloadable``, ``unique-group``, ``<deprecated>``) when a
    parameter uses them.  Agents that use none of those validate against
    resource-agents' strict ``metadata.rng``.
``ocf-1.0``
    Stays inside ``ra-api-1.dtd`` for callers that do not declare OCF 1.1
    (old Pacemaker, the classic ``ocf-tester``): no ``reload-agent``, no
    ``reloadable``, ``select`` shown as ``string``, legacy role names.
``rgmanager``
    ``ocf-1.0`` plus rgmanager's extensions: ``primary="1"`` on the key
    parameter and ``<special tag="rgmanager"/>``.

Built with ElementTree (never by string formatting), so every description
and default is escaped.  Not on any hot path: ``meta-data`` prints the
pre-generated files in ``metadata/``.

An agent is read through the attributes listed in :class:`DescribedAgent`
(resource agents) and :class:`DescribedFenceAgent` (fence agents), which
:class:`ocf_lib.ocf.ResourceAgent` and :class:`ocf_lib.fence.FenceAgent`
provide.  This module imports neither runtime, so the runtimes can import
it without a cycle.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

TYPE_CHECKING = False  # typing is not worth importing on hot paths
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Protocol

    from .params import Param

    class AdvertisedAction(Protocol):
        @property
        def name(self) -> str: ...
        @property
        def advertise(self) -> Sequence[Mapping[str, str]]: ...

    class Described(Protocol):
        """What every agent's metadata and manpage read."""

        @property
        def name(self) -> str: ...
        @property
        def shortdesc(self) -> str: ...
        @property
        def longdesc(self) -> str: ...
        @property
        def params(self) -> Sequence[Param]: ...

    class DescribedAgent(Described, Protocol):
        """A resource agent, as OCF metadata and manpages read it."""

        @property
        def version(self) -> str: ...
        @property
        def ocf_version(self) -> str: ...
        @property
        def actions(self) -> Mapping[str, AdvertisedAction]: ...
        @property
        def rgmanager_primary(self) -> str | None: ...

    class DescribedFenceAgent(Described, Protocol):
        """A fence agent, as fence metadata and manpages read it."""

        @property
        def vendor_url(self) -> str: ...
        @property
        def alias_shortdesc(self) -> Mapping[str, str]: ...
        @property
        def alias_defaults(self) -> Mapping[str, Mapping[str, str]]: ...
        @property
        def unfence_on_start(self) -> bool: ...
        def action_names(self) -> list[str]: ...

OCF10_ACTIONS = frozenset((
    "start", "stop", "recover", "monitor", "restart", "migrate_to", "migrate_from", "promote",
    "demote", "notify", "status", "reload", "meta-data", "usage", "methods", "validate-all",
))
LEGACY_ROLES = {"Promoted": "Master", "Unpromoted": "Slave"}


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    el.text = text
    return el


def _serialise(root: ET.Element, declaration: str = '<?xml version="1.0"?>\n',
               doctype: str = "") -> str:
    ET.indent(root, space="  ")
    return declaration + doctype + ET.tostring(root, encoding="unicode") + "\n"


def ocf_metadata(agent: DescribedAgent, variant: str = "ocf-1.1") -> str:
    if variant not in ("ocf-1.1", "ocf-1.0", "rgmanager"):
        raise ValueError(f"unknown metadata variant {variant}")
    modern = variant == "ocf-1.1"
    root = ET.Element("resource-agent", {"name": agent.name, "version": agent.version})
    _text(root, "version", agent.ocf_version if modern else "1.0")
    _text(root, "longdesc", agent.longdesc.strip(), lang="en")
    _text(root, "shortdesc", agent.shortdesc.strip(), lang="en")
    params = ET.SubElement(root, "parameters")
    for p in agent.params:
        attrs = {"name": p.name, "unique": "1" if p.unique else "0",
                 "required": "1" if p.required else "0"}
        if modern and p.unique_group:
            attrs["unique-group"] = p.unique_group
        if modern and p.reloadable:
            attrs["reloadable"] = "1"
        if variant == "rgmanager" and p.name == agent.rgmanager_primary:
            attrs["primary"] = "1"
        el = ET.SubElement(params, "parameter", attrs)
        if modern and p.deprecated:
            dep = ET.SubElement(el, "deprecated")
            if isinstance(p.deprecated, str):
                ET.SubElement(dep, "replaced-with", {"name": p.deprecated})
        longdesc = p.longdesc.strip()
        if p.secret:
            longdesc += " (This value is secret: pyha never logs it.)"
        _text(el, "longdesc", longdesc, lang="en")
        _text(el, "shortdesc", p.shortdesc.strip(), lang="en")
        ctype = p.type.ocf_type
        if ctype == "select" and not modern:
            ctype = "string"
        content = ET.SubElement(el, "content", {"type": ctype})
        if p.default is not None:
            content.set("default", p.default)
        if ctype == "select":
            for choice in p.type.choices():
                ET.SubElement(content, "option", {"value": choice})
    actions = ET.SubElement(root, "actions")
    for action in agent.actions.values():
        if not modern and action.name not in OCF10_ACTIONS:
            continue
        for entry in action.advertise:
            attrs = {"name": action.name, **entry}
            if not modern and "role" in attrs:
                attrs["role"] = LEGACY_ROLES.get(attrs["role"], attrs["role"])
            ET.SubElement(actions, "action", _ordered_action_attrs(attrs))
    if variant == "rgmanager":
        _rgmanager_actions(agent, actions)
    ET.SubElement(actions, "action", {"name": "meta-data", "timeout": "5s"})
    if variant == "rgmanager":
        ET.SubElement(root, "special", {"tag": "rgmanager"})
    return _serialise(root, doctype='<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n'
                      if not modern else "")


def _rgmanager_actions(agent: DescribedAgent, actions: ET.Element) -> None:
    """The entries rgmanager acts on, which the OCF ones do not give it.

    rgmanager schedules only actions *named* ``status`` (one per depth, at
    the advertised interval), calls ``recover`` only when advertised, and
    runs ``migrate <target>``; the runtime maps all three (ocf.py).
    """
    have = agent.actions
    monitor = have.get("monitor")
    if monitor is not None and "status" not in have:
        for entry in monitor.advertise:
            attrs = {"name": "status", **{k: v for k, v in entry.items() if k != "role"}}
            ET.SubElement(actions, "action", _ordered_action_attrs(attrs))
    if "recover" not in have and "start" in have and "stop" in have:
        ET.SubElement(actions, "action", {"name": "recover",
                                          "timeout": have["start"].advertise[0]["timeout"]})
    if "migrate_to" in have and "migrate" not in have:
        ET.SubElement(actions, "action", {"name": "migrate",
                                          "timeout": have["migrate_to"].advertise[0]["timeout"]})


def _ordered_action_attrs(attrs: dict[str, str]) -> dict[str, str]:
    order = ("name", "timeout", "interval", "depth", "role", "start-delay")
    out = {k: attrs[k] for k in order if k in attrs}
    out.update({k: v for k, v in attrs.items() if k not in out})
    return out


# -- fence agents --------------------------------------------------------------


def fence_getopt(p: Param) -> str:
    """The ``mixed`` getopt string fence-agents shows, e.g. ``-a, --ip=[ip]``."""
    value = f"=[{p.name}]" if p.takes_value else ""
    if p.getopt:
        return f"-{p.getopt}, --{p.longopt}{value}"
    return f"--{p.longopt}{value}"


def fence_metadata(agent: DescribedFenceAgent, name: str | None = None) -> str:
    """Fence-agent metadata in the shape pacemaker-fenced, pcs and crmsh read.

    Like fence-agents, a parameter with a legacy stdin name (``ipaddr``) is
    listed twice: the legacy name marked ``deprecated="1"`` and the current
    name with ``obsoletes=``, so old and new configurations both validate.
    """
    name = name or agent.name
    shortdesc = agent.alias_shortdesc.get(name, agent.shortdesc)
    root = ET.Element("resource-agent", {"name": name, "shortdesc": shortdesc})
    for alias, desc in agent.alias_shortdesc.items():
        if alias != agent.name:
            ET.SubElement(root, "symlink", {"name": alias, "shortdesc": desc})
    _text(root, "longdesc", agent.longdesc.strip())
    _text(root, "vendor-url", agent.vendor_url)  # metadata.rng requires it, even empty
    params = ET.SubElement(root, "parameters")
    defaults = agent.alias_defaults.get(name, {})
    # fence-agents sorts the emitted names, so a legacy name sits at its own
    # alphabetical place (``login`` before ``method``, ``username`` last).
    entries = [(p.order, pname, extra, p) for p in agent.params
               for pname, extra in _fence_names(p)]
    for _order, pname, extra, p in sorted(entries, key=lambda e: (e[0], e[1])):
        attrs = {"name": pname, "unique": "0", "required": "1" if p.required else "0",
                 **extra}
        el = ET.SubElement(params, "parameter", attrs)
        ET.SubElement(el, "getopt", {"mixed": fence_getopt(p)})
        content = ET.SubElement(el, "content", {"type": p.type.fence_type})
        default = defaults.get(p.name, p.default)
        if default is not None:
            content.set("default", default)
        for choice in p.type.choices():
            ET.SubElement(content, "option", {"value": choice})
        _text(el, "shortdesc", p.shortdesc.strip(), lang="en")
    actions = ET.SubElement(root, "actions")
    for action in agent.action_names():
        attrs = {"name": action}
        if action == "on":
            attrs["automatic"] = "1" if agent.unfence_on_start else "0"
        ET.SubElement(actions, "action", attrs)
    return _serialise(root, declaration='<?xml version="1.0" ?>\n')


def _fence_names(p: Param) -> list[tuple[str, dict[str, str]]]:
    if p.aliases and not p.deprecated:
        legacy = p.aliases[0]
        return [(legacy, {"deprecated": "1"}), (p.name, {"obsoletes": legacy})]
    return [(p.name, {"deprecated": "1"} if p.deprecated else {})]


# -- manpages -------------------------------------------------------------------


def _roff(text: str) -> str:
    lines = []
    for line in " ".join(text.split()).replace("\\", "\\\\").splitlines() or [""]:
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def ocf_manpage(agent: DescribedAgent, provider: str = "pyha") -> str:
    out = [
        f'.TH {agent.name.upper()} 7 "" "{provider}" "OCF resource agents"',
        ".SH NAME",
        f"ocf:{provider}:{agent.name} \\- {_roff(agent.shortdesc)}",
        ".SH SYNOPSIS",
        f"\\fB{agent.name}\\fR {{{' | '.join(sorted(set(agent.actions) | {'meta-data'}))}}}",
        ".SH DESCRIPTION",
        _roff(agent.longdesc),
        ".SH PARAMETERS",
        "Parameters are passed as \\fBOCF_RESKEY_\\fIname\\fR environment variables.",
    ]
    for p in agent.params:
        facts = [p.type.doc]
        if p.required:
            facts.append("required")
        if p.default is not None:
            facts.append(f"default {p.default!r}")
        if p.unique:
            facts.append("unique")
        if p.reloadable:
            facts.append("reloadable")
        if isinstance(p.deprecated, str):
            facts.append(f"deprecated, use {p.deprecated}")
        out += [".TP", f"\\fB{p.name}\\fR ({_roff(', '.join(facts))})", _roff(p.longdesc)]
    out += [".SH ACTIONS"]
    for action in agent.actions.values():
        for entry in action.advertise:
            detail = ", ".join(f"{k}={v}" for k, v in entry.items())
            out += [".TP", f"\\fB{action.name}\\fR", _roff(detail)]
    out += [".SH SEE ALSO", "pyha-tester(1), crm_resource(8), pcs(8)", ""]
    return "\n".join(out)


def fence_manpage(agent: DescribedFenceAgent, name: str | None = None) -> str:
    name = name or agent.name
    out = [
        f'.TH {name.upper()} 8 "" "pyha" "Fence agents"',
        ".SH NAME",
        f"{name} \\- {_roff(agent.alias_shortdesc.get(name, agent.shortdesc))}",
        ".SH DESCRIPTION",
        _roff(agent.longdesc),
        ".SH OPTIONS",
    ]
    ordered = sorted(agent.params, key=lambda q: (q.order, q.name))
    for p in ordered:
        default = f" (default {p.default})" if p.default is not None else ""
        out += [".TP", f"\\fB{_roff(fence_getopt(p))}\\fR", _roff(p.shortdesc + default)]
    out += [".SH ACTIONS"]
    for action in agent.action_names():
        out += [".TP", f"\\fB{action}\\fR"]
    out += [".SH STDIN PARAMETERS",
            "With no command-line arguments the agent reads name=value lines on stdin."]
    for p in ordered:
        names = ", ".join((p.name, *p.aliases))
        out += [".TP", f"\\fB{_roff(names)}\\fR", _roff(p.shortdesc)]
    out += [".SH SEE ALSO", "stonith_admin(8), fence_node(8)", ""]
    return "\n".join(out)
