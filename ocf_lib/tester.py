"""``pyha-tester``: an ocf-tester style harness for any OCF or fence agent.

Resource agents (``--agent PATH``, pyha's or anyone's) go through what
Pacemaker will do to them, one table row per check:

* ``meta-data`` as an unprivileged user (Pacemaker's controller runs it as
  ``hacluster``) with no parameters;
* the OCF 1.1 output (``OCF_RA_VERSION_MINOR=1``) against resource-agents'
  ``metadata.rng``, and the 1.0 output (no version exported, what the classic
  ``ocf-tester`` sees) against ``ra-api-1.dtd`` including its DOCTYPE;
* ``validate-all``, and without a required parameter (6 or 2, with a reason);
  a probe while stopped (7); start, monitor, probe, every
  advertised ``OCF_CHECK_LEVEL``; start again; reload, migrate_to/from,
  promote/demote where advertised; stop, stop again, monitor (7); stop with a
  spoilt integer/boolean/select parameter (0: stop never fails on validation);
  an unknown action (3).

``metadata.rng`` predates three OCF 1.1 constructs (the ``reloadable`` and
``unique-group`` attributes and the ``<deprecated>`` element).  When the 1.1
output fails the schema *only* because of those, the row is WARN, not FAIL:
the metadata is valid OCF 1.1 and Pacemaker reads it, but the schema shipped
here cannot say so.  Anything else wrong is a FAIL.

A missing ``ocf-exit-reason:`` on a failure is a WARN for foreign agents
(upstream's Dummy prints none for an unknown action) and a FAIL for pyha
agents or with ``--strict``: pyha promises a reason for every failure.  A
Python traceback on stderr is always a FAIL.

Fence agents (``--fence PATH``) get their options on stdin, the way
pacemaker-fenced sends them: metadata (validated against fence-agents'
``metadata.rng``), validate-all, monitor, list, status, off, on, reboot and an
unknown action, with ``status`` checked after every power change, and once
more with the same options given as command-line flags (taken from each
parameter's ``getopt`` in the metadata).  The target's original power state is
restored at the end.

Exit status: 0 when no row FAILed, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import codes

RNG_OCF = "/usr/share/resource-agents/metadata.rng"
DTD_OCF = "/usr/share/resource-agents/ra-api-1.dtd"
RNG_FENCE = "/usr/share/cluster/relaxng/metadata.rng"
PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
REASON_PREFIX = "ocf-exit-reason:"
UNKNOWN_ACTION = "pyha-tester-no-such-action"


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""


@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    duration: float
    timed_out: bool = False

    @property
    def reason(self) -> str | None:
        found = None
        for line in self.err.splitlines():
            if line.startswith(REASON_PREFIX):
                found = line[len(REASON_PREFIX):].strip()
        return found

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err


@dataclass
class Report:
    agent: str
    mode: str
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str = "") -> Check:
        check = Check(name, status, " ".join(detail.split()))
        self.checks.append(check)
        return check

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def table(self) -> str:
        width = max([len(c.name) for c in self.checks] + [5])
        lines = [f"{'CHECK':<{width}}  RESULT  DETAIL", f"{'-' * width}  ------  ------"]
        for c in self.checks:
            lines.append(f"{c.name:<{width}}  {c.status:<6}  {c.detail}".rstrip())
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in (PASS, FAIL, WARN, SKIP)}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        verdict = "FAILED" if self.failed else "passed"
        lines.append(f"{self.agent} {verdict}: {summary}")
        return "\n".join(lines) + "\n"

    def as_json(self) -> str:
        return json.dumps({"agent": self.agent, "mode": self.mode, "ok": not self.failed,
                           "checks": [asdict(c) for c in self.checks]}, indent=2) + "\n"


# -- running agents -------------------------------------------------------------


def _nobody_prefix() -> list[str]:
    """argv prefix that drops to ``nobody`` when we are root (as ocf-tester does)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return ["runuser", "-u", "nobody", "--"]


def execute(argv: list[str], env: dict[str, str], timeout: float, stdin: str = "",
            cwd: str | None = None) -> Outcome:
    """Run one agent call in its own process group; SIGKILL the group on timeout."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                cwd=cwd)
    except OSError as exc:
        return Outcome(127, "", f"cannot execute {argv[0]}: {exc.strerror}", 0.0)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        timed_out = True
    return Outcome(proc.returncode, out, err, time.monotonic() - started, timed_out)


def _parse_seconds(text: str | None, default: float) -> float:
    from .params import parse_duration

    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError:
        return default


def _xml_problems(text: str, schema: str, kind: str) -> list[str]:
    """Validation errors of ``text`` against a RelaxNG or DTD file ([] = valid)."""
    from lxml import etree

    try:
        doc = etree.fromstring(text.encode("utf-8"),
                               etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return [f"not well-formed XML: {exc}"]
    validator: Any = etree.RelaxNG(file=schema) if kind == "rng" else etree.DTD(schema)
    if validator.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in validator.error_log][:5] or ["invalid"]


def strip_ocf11_extensions(text: str) -> str:
    """The 1.1 document without the constructs the shipped metadata.rng predates."""
    from lxml import etree

    doc = etree.fromstring(text.encode("utf-8"))
    for param in doc.iter("parameter"):
        for attr in ("reloadable", "unique-group"):
            if attr in param.attrib:
                del param.attrib[attr]
        for dep in param.findall("deprecated"):
            param.remove(dep)
    return etree.tostring(doc, encoding="unicode")


@dataclass
class OCFMeta:
    actions: dict[str, list[dict[str, str]]]
    params: list[dict[str, Any]]

    def has(self, action: str) -> bool:
        return action in self.actions

    def timeout(self, action: str) -> float:
        for entry in self.actions.get(action, []):
            return _parse_seconds(entry.get("timeout"), 20.0)
        return 20.0

    def depths(self) -> list[int]:
        levels = set()
        for entry in self.actions.get("monitor", []):
            try:
                levels.add(int(entry.get("depth", "0")))
            except ValueError:
                pass
        return sorted(levels)

    def monitor_interval(self, role: str | None = None) -> int:
        """A recurring monitor interval in ms (10 s when none is advertised)."""
        for entry in self.actions.get("monitor", []):
            if entry.get("role") == role and entry.get("interval"):
                ms = int(_parse_seconds(entry["interval"], 10.0) * 1000)
                if ms > 0:
                    return ms
        return 10000


def parse_ocf_metadata(text: str) -> OCFMeta:
    from lxml import etree

    doc = etree.fromstring(text.encode("utf-8"))
    actions: dict[str, list[dict[str, str]]] = {}
    for el in doc.iterfind("actions/action"):
        attrs = {str(k): str(v) for k, v in el.attrib.items()}
        actions.setdefault(el.get("name", ""), []).append(attrs)
    params = []
    for el in doc.iterfind("parameters/parameter"):
        content = el.find("content")
        params.append({
            "name": el.get("name", ""),
            "required": el.get("required") == "1",
            "unique": el.get("unique") == "1",
            "type": content.get("type", "string") if content is not None else "string",
            "default": content.get("default") if content is not None else None,
            "options": [o.get("value", "") for o in content.iterfind("option")]
            if content is not None else [],
            "shortdesc": (el.findtext("shortdesc") or "").strip(),
            "longdesc": (el.findtext("longdesc") or "").strip(),
        })
    return OCFMeta(actions, params)


def is_pyha_agent(path: str) -> bool:
    """A pyha launcher (``ocf_lib.launch``) rather than a foreign agent."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return b"ocf_lib.launch" in head


# -- resource agents --------------------------------------------------------------


class OCFTester:
    def __init__(self, path: str, params: dict[str, str], instance: str, rsctmp: str,
                 strict: bool, verbose: bool) -> None:
        self.path = os.path.abspath(path)
        self.params = params
        self.instance = instance
        self.rsctmp = rsctmp
        self.strict = strict
        self.verbose = verbose
        self.report = Report(self.path, "ocf")
        self.meta = OCFMeta({}, [])
        self.node = os.uname().nodename

    def env(self, *, minor: str | None = "1", bare: bool = False) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "OCF_ROOT": os.environ.get("OCF_ROOT", "/usr/lib/ocf"),
            "OCF_RA_VERSION_MAJOR": "1",
        }
        if minor is not None:
            env["OCF_RA_VERSION_MINOR"] = minor
        if bare:
            return env
        env.update({
            "OCF_RESOURCE_INSTANCE": self.instance,
            "OCF_RESOURCE_TYPE": os.path.basename(self.path),
            "OCF_RESOURCE_PROVIDER": os.path.basename(os.path.dirname(self.path)),
            "OCF_EXIT_REASON_PREFIX": REASON_PREFIX,
            "HA_RSCTMP": self.rsctmp,
            "OCF_RESKEY_CRM_meta_on_node": self.node,
        })
        if self.verbose:
            env["HA_debug"] = "1"
        for key, value in self.params.items():
            env["OCF_RESKEY_" + key] = value
        return env

    def call(self, action: str, *, interval_ms: int = 0, depth: int | None = None,
             extra: dict[str, str] | None = None) -> Outcome:
        env = self.env()
        timeout = self.meta.timeout(action)
        env["OCF_RESKEY_CRM_meta_timeout"] = str(int(timeout * 1000))
        env["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
        if depth is not None:
            env["OCF_CHECK_LEVEL"] = str(depth)
            env["OCF_RESKEY_OCF_CHECK_LEVEL"] = str(depth)
        env.update(extra or {})
        # Pacemaker kills the agent when the advertised timeout expires; allow only
        # a little scheduling slack beyond it.
        result = execute([self.path, action], env, timeout + 1.0, cwd="/")
        if self.verbose:
            sys.stderr.write(f"--- {action} rc={result.rc} ({result.duration:.2f}s)\n"
                             f"{result.out}{result.err}")
        return result

    def expect(self, name: str, result: Outcome, want: tuple[int, ...],
               reason_needed: bool = False) -> bool:
        """One row: ``result.rc`` must be in ``want``."""
        names = "/".join(f"{w} ({codes.OCF_NAMES.get(w, '?')})" for w in want)
        took = f"{result.duration:.2f}s"
        if result.timed_out:
            self.report.add(name, FAIL, f"timed out after {took}, expected {names}")
            return False
        if result.traceback:
            self.report.add(name, FAIL, f"rc {result.rc}; a Python traceback on stderr")
            return False
        if result.rc not in want:
            why = result.reason or _last_line(result.err) or "no ocf-exit-reason"
            self.report.add(name, FAIL, f"rc {result.rc}, expected {names}: {why}")
            return False
        if reason_needed and not result.reason:
            status = FAIL if self.strict else WARN
            self.report.add(name, status, f"rc {result.rc} as expected, but no "
                            f"'{REASON_PREFIX}' line on stderr")
            return status != FAIL
        detail = f"rc {result.rc} in {took}"
        if result.reason:
            detail += f" ({result.reason})"
        self.report.add(name, PASS, detail)
        return True

    # -- the sequence ---------------------------------------------------------

    def run(self) -> Report:
        rep = self.report
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            rep.add("agent is an executable file", FAIL, self.path)
            return rep
        if not self.metadata_checks():
            return rep
        self.lifecycle()
        return rep

    def metadata_checks(self) -> bool:
        rep = self.report
        prefix = _nobody_prefix()
        who = "nobody" if prefix else "the current user"
        res = execute(prefix + [self.path, "meta-data"], self.env(bare=True), 30, cwd="/")
        if res.rc != 0 or not res.out.strip():
            rep.add(f"meta-data as {who}, no parameters", FAIL,
                    f"rc {res.rc}: {_last_line(res.err) or 'no output'}")
        else:
            rep.add(f"meta-data as {who}, no parameters", PASS, f"rc 0 in {res.duration:.2f}s")
        # OCF 1.1, what Pacemaker >= 2.1 asks for.
        res11 = execute([self.path, "meta-data"], self.env(bare=True), 30, cwd="/")
        text11 = res11.out if res11.rc == 0 else ""
        problems = _xml_problems(text11, RNG_OCF, "rng") if text11 else [f"rc {res11.rc}"]
        row = "meta-data OCF 1.1 vs metadata.rng"
        if not problems:
            rep.add(row, PASS, RNG_OCF)
        elif text11 and not problems[0].startswith("not well-formed") and \
                not _xml_problems(strip_ocf11_extensions(text11), RNG_OCF, "rng"):
            rep.add(row, WARN, "valid except for OCF 1.1 reloadable/unique-group/deprecated, "
                    "which this metadata.rng predates")
        else:
            rep.add(row, FAIL, "; ".join(problems))
        # OCF 1.0: what ocf-tester and pre-1.1 callers see.
        res10 = execute([self.path, "meta-data"], self.env(bare=True, minor=None), 30, cwd="/")
        row = "meta-data OCF 1.0 vs ra-api-1.dtd"
        if res10.rc != 0:
            rep.add(row, FAIL, f"rc {res10.rc}")
        elif 'SYSTEM "ra-api-1.dtd"' not in res10.out:
            rep.add(row, FAIL, "no <!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\"> "
                    "(ocf-tester validates against the DOCTYPE)")
        else:
            problems = _xml_problems(res10.out, DTD_OCF, "dtd")
            rep.add(row, FAIL if problems else PASS, "; ".join(problems) or DTD_OCF)
        try:
            self.meta = parse_ocf_metadata(text11 or res10.out)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the agent's
            rep.add("metadata parses", FAIL, str(exc))
            return False
        if not self.meta.has("start") or not self.meta.has("stop") \
                or not self.meta.has("monitor"):
            rep.add("start, stop, monitor advertised", FAIL,
                    "advertised: " + ", ".join(sorted(self.meta.actions)))
        missing = [p["name"] for p in self.meta.params
                   if p["required"] and p["default"] is None and p["name"] not in self.params]
        if missing:
            rep.add("required parameters given", FAIL, "use -o for: " + ", ".join(missing))
            return False
        return True

    def lifecycle(self) -> None:
        rep = self.report
        meta = self.meta
        interval = meta.monitor_interval()
        if meta.has("validate-all"):
            self.expect("validate-all", self.call("validate-all"), (codes.SUCCESS,))
            # (a "required" parameter with a default, as upstream Xen's xmfile, is
            # never really missing: unsetting it just selects the default)
            required = [p["name"] for p in meta.params
                        if p["required"] and p["default"] is None]
            if required:
                name = required[0]  # empty is unset, as ${OCF_RESKEY_x:-} reads it
                res = self.call("validate-all", extra={"OCF_RESKEY_" + name: ""})
                self.expect(f"validate-all without {name}", res,
                            (codes.ERR_CONFIGURED, codes.ERR_ARGS), reason_needed=True)
        else:
            rep.add("validate-all", SKIP, "not advertised")
        if not self.expect("probe while stopped", self.call("monitor"), (codes.NOT_RUNNING,)):
            rep.add("lifecycle", SKIP, "not run: the resource is not cleanly stopped "
                    "(or the probe lies); stop it first")
            return
        if not self.expect("start", self.call("start"), (codes.SUCCESS,)):
            self.cleanup()
            return
        try:
            self.running_checks(interval)
        finally:
            stopped = self.expect("stop", self.call("stop"), (codes.SUCCESS,))
        if stopped:
            self.expect("monitor after stop", self.call("monitor", interval_ms=interval),
                        (codes.NOT_RUNNING,))
            self.expect("probe after stop", self.call("monitor"), (codes.NOT_RUNNING,))
            self.expect("stop again (already stopped)", self.call("stop"), (codes.SUCCESS,))
            self.expect("monitor after second stop", self.call("monitor"), (codes.NOT_RUNNING,))
            self.stop_despite_bad_parameter()
        self.expect("unknown action", self.call(UNKNOWN_ACTION), (codes.ERR_UNIMPLEMENTED,),
                    reason_needed=True)

    def stop_despite_bad_parameter(self) -> None:
        """Pacemaker must be able to stop what a bad edit of the configuration broke."""
        # A required or unique parameter may identify the resource, and stop
        # without its identity must fail; spoil one that only tunes behaviour.
        typed = [p for p in self.meta.params if p["type"] in ("integer", "boolean", "select")
                 and not p.get("required") and not p.get("unique")]
        if not typed:
            self.report.add("stop with an invalid parameter", SKIP,
                            "no optional, non-unique integer, boolean or select parameter "
                            "to spoil")
            return
        name = typed[0]["name"]
        res = self.call("stop", extra={"OCF_RESKEY_" + name: "pyha-not-a-value"})
        if res.rc == codes.SUCCESS and not res.traceback:
            self.report.add("stop with an invalid parameter", PASS,
                            f"{name}=pyha-not-a-value: rc 0")
            return
        status = FAIL if self.strict else WARN
        self.report.add("stop with an invalid parameter", status,
                        f"{name}=pyha-not-a-value: rc {res.rc} (stop must not fail on "
                        f"validation): {res.reason or _last_line(res.err)}")

    def running_checks(self, interval: int) -> None:
        meta = self.meta
        ok = (codes.SUCCESS,)
        self.expect("monitor after start", self.call("monitor", interval_ms=interval), ok)
        self.expect("probe while running", self.call("monitor"), ok)
        for depth in meta.depths():
            self.expect(f"monitor OCF_CHECK_LEVEL={depth}",
                        self.call("monitor", interval_ms=interval, depth=depth), ok)
        self.expect("start again (already running)", self.call("start"), ok)
        self.expect("monitor after second start", self.call("monitor", interval_ms=interval), ok)
        for reload in ("reload", "reload-agent"):
            if meta.has(reload):
                self.expect(reload, self.call(reload), ok)
                self.expect(f"monitor after {reload}",
                            self.call("monitor", interval_ms=interval), ok)
        if meta.has("migrate_to") and meta.has("migrate_from"):
            mig = {"OCF_RESKEY_CRM_meta_migrate_source": self.node,
                   "OCF_RESKEY_CRM_meta_migrate_target": self.node}
            self.expect("migrate_to", self.call("migrate_to", extra=mig), ok)
            self.expect("migrate_from", self.call("migrate_from", extra=mig), ok)
            self.expect("monitor after migration",
                        self.call("monitor", interval_ms=interval), ok)
        elif meta.has("migrate_to") or meta.has("migrate_from"):
            self.report.add("migration", FAIL, "only one of migrate_to/migrate_from advertised")
        if meta.has("promote") and meta.has("demote"):
            self.promotable_checks()
        elif meta.has("promote") or meta.has("demote"):
            self.report.add("promotable", FAIL, "only one of promote/demote advertised")

    def promotable_checks(self) -> None:
        promoted_interval = self.meta.monitor_interval("Promoted") \
            if "Promoted" in {e.get("role") for e in self.meta.actions["monitor"]} \
            else self.meta.monitor_interval("Master")
        role = {"OCF_RESKEY_CRM_meta_role": "Promoted"}
        self.expect("promote", self.call("promote"), (codes.SUCCESS,))
        self.expect("monitor while promoted",
                    self.call("monitor", interval_ms=promoted_interval, extra=role),
                    (codes.RUNNING_PROMOTED,))
        self.expect("promote again", self.call("promote"), (codes.SUCCESS,))
        self.expect("demote", self.call("demote"), (codes.SUCCESS,))
        self.expect("monitor after demote",
                    self.call("monitor", interval_ms=self.meta.monitor_interval()),
                    (codes.SUCCESS,))
        self.expect("demote again", self.call("demote"), (codes.SUCCESS,))

    def cleanup(self) -> None:
        res = self.call("stop")
        self.report.add("cleanup stop", PASS if res.rc == 0 else FAIL, f"rc {res.rc}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -- fence agents -------------------------------------------------------------------


class FenceTester:
    def __init__(self, path: str, params: dict[str, str], verbose: bool,
                 timeout: float) -> None:
        self.path = os.path.abspath(path)
        self.params = params
        self.verbose = verbose
        self.timeout = timeout
        self.report = Report(self.path, "fence")
        self.actions: set[str] = set()
        self.getopt: dict[str, str] = {}  # parameter -> "-a, --ip=[ip]" from the metadata

    def call(self, action: str, *, as_nobody: bool = False, bare: bool = False) -> Outcome:
        lines = [f"action={action}"]
        if not bare:
            lines += [f"{k}={v}" for k, v in self.params.items()]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LANG": "C.UTF-8", "LC_ALL": "C", "PCMK_service": "pacemaker-fenced"}
        prefix = _nobody_prefix() if as_nobody else []
        result = execute(prefix + [self.path], env, self.timeout, "\n".join(lines) + "\n",
                         cwd="/")
        if self.verbose:
            sys.stderr.write(f"--- {action} rc={result.rc} ({result.duration:.2f}s)\n"
                             f"{result.out}{result.err}")
        return result

    def expect(self, name: str, result: Outcome, want: tuple[int, ...]) -> bool:
        took = f"{result.duration:.2f}s"
        if result.timed_out:
            self.report.add(name, FAIL, f"timed out after {took}")
            return False
        if result.traceback:
            self.report.add(name, FAIL, f"rc {result.rc}; a Python traceback on stderr")
            return False
        if result.rc not in want:
            shown = "/".join(str(w) for w in want)
            why = _last_line(result.err) or _last_line(result.out)
            self.report.add(name, FAIL, f"rc {result.rc}, expected {shown}: {why}")
            return False
        self.report.add(name, PASS, f"rc {result.rc} in {took} {_last_line(result.out)}")
        return True

    def argv_agrees(self) -> None:
        """The same options as command-line flags (from the metadata's getopt) give the
        same answer: a person checking by hand must see what the fencer sees."""
        argv = [self.path]
        for name, value in self.params.items():
            mixed = self.getopt.get(name, "")
            longopt = next((w for w in mixed.replace(",", " ").split() if w.startswith("--")),
                           "")
            if not longopt:
                self.report.add("status via command-line options", SKIP,
                                f"no command-line option for {name}")
                return
            flag = longopt.split("=", 1)[0]
            if "=" in longopt:
                argv += [f"{flag}={value}"]
            elif value.strip().lower() in ("1", "yes", "true", "on"):
                argv += [flag]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LANG": "C.UTF-8", "LC_ALL": "C"}
        by_stdin = self.call("status")
        by_argv = execute(argv + ["--action=status"], env, self.timeout, "", cwd="/")
        self.expect("status via command-line options", by_argv, (by_stdin.rc,))

    def status_is(self, name: str, want: str) -> bool:
        rc = codes.FENCE_OK if want == "on" else codes.FENCE_STATUS_OFF
        return self.expect(f"status after {name} is {want}", self.call("status"), (rc,))

    def run(self) -> Report:
        rep = self.report
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            rep.add("agent is an executable file", FAIL, self.path)
            return rep
        res = self.call("metadata", as_nobody=True, bare=True)
        who = "nobody" if _nobody_prefix() else "the current user"
        if not self.expect(f"metadata as {who}", res, (codes.FENCE_OK,)):
            return rep
        problems = _xml_problems(res.out, RNG_FENCE, "rng")
        rep.add("metadata vs fence-agents metadata.rng", FAIL if problems else PASS,
                "; ".join(problems) or RNG_FENCE)
        if problems and problems[0].startswith("not well-formed"):
            return rep
        from lxml import etree

        doc = etree.fromstring(res.out.encode("utf-8"))
        self.actions = {el.get("name", "") for el in doc.iterfind("actions/action")}
        for el in doc.iterfind("parameters/parameter"):
            getopt = el.find("getopt")
            if getopt is not None:
                self.getopt[el.get("name", "")] = getopt.get("mixed", "")
        for needed in ("on", "off", "status", "monitor"):
            if needed not in self.actions:
                rep.add(f"{needed} advertised", FAIL, "advertised: "
                        + ", ".join(sorted(self.actions)))
        if "validate-all" in self.actions:
            self.expect("validate-all", self.call("validate-all"), (codes.FENCE_OK,))
        self.expect("monitor", self.call("monitor"), (codes.FENCE_OK,))
        if "list" in self.actions:
            res = self.call("list")
            if self.expect("list", res, (codes.FENCE_OK,)):
                bad = [line for line in res.out.splitlines() if line and "," not in line]
                if bad:
                    rep.add("list output is 'plug,alias' lines", FAIL, bad[0])
        if "list-status" in self.actions:
            res = self.call("list-status")
            if self.expect("list-status", res, (codes.FENCE_OK,)):
                bad = [line for line in res.out.splitlines()
                       if line and line.rsplit(",", 1)[-1] not in ("ON", "OFF", "UNKNOWN")]
                if bad:
                    rep.add("list-status output is 'plug,alias,ON|OFF' lines", FAIL, bad[0])
        first = self.call("status")
        if not self.expect("status (initial)", first,
                           (codes.FENCE_OK, codes.FENCE_STATUS_OFF)):
            return rep
        initial = "off" if first.rc == codes.FENCE_STATUS_OFF else "on"
        try:
            if self.expect("off", self.call("off"), (codes.FENCE_OK,)):
                self.status_is("off", "off")
            if self.expect("off again (already off)", self.call("off"), (codes.FENCE_OK,)):
                self.status_is("second off", "off")
            if self.expect("on", self.call("on"), (codes.FENCE_OK,)):
                self.status_is("on", "on")
            if self.expect("on again (already on)", self.call("on"), (codes.FENCE_OK,)):
                self.status_is("second on", "on")
            if "reboot" in self.actions:
                if self.expect("reboot", self.call("reboot"), (codes.FENCE_OK,)):
                    self.status_is("reboot", "on")
            res = self.call(UNKNOWN_ACTION)
            if res.rc == codes.FENCE_OK:
                rep.add("unknown action is an error", FAIL,
                        "rc 0: an unknown action must never succeed (nor fall back to reboot)")
            else:
                self.expect("unknown action is an error", res, (res.rc,))
            self.status_is("unknown action", "on")
            self.argv_agrees()
        finally:
            if initial == "off":
                res = self.call("off")
                rep.add("restore initial state (off)", PASS if res.rc == 0 else FAIL,
                        f"rc {res.rc}")
        return rep


# -- manpages --------------------------------------------------------------------------


def _load_pyha_agent(path: str) -> Any:
    """The ResourceAgent behind a pyha launcher (``ocf("Name", "agents.module")``)."""
    import ast
    import importlib

    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ocf" \
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            root = os.path.dirname(os.path.dirname(os.path.realpath(path)))
            if root not in sys.path:
                sys.path.insert(0, root)
            return importlib.import_module(str(node.args[1].value)).agent
    raise ValueError(f"{path} does not look like a pyha resource agent launcher")


def agent_from_metadata(text: str, name: str) -> Any:
    """A declaration-only ResourceAgent rebuilt from a foreign agent's metadata."""
    from lxml import etree

    from .ocf import Action, ResourceAgent
    from .params import BOOLEAN, INTEGER, STRING, Choice, Param, ParamType

    doc = etree.fromstring(text.encode("utf-8"))
    meta = parse_ocf_metadata(text)
    params = []
    for p in meta.params:
        ptype: ParamType = {"integer": INTEGER, "boolean": BOOLEAN}.get(p["type"], STRING)
        if p["type"] == "select":
            ptype = Choice(*p["options"])
        params.append(Param(p["name"], ptype, default=p["default"], required=p["required"],
                            unique=p["unique"], shortdesc=p["shortdesc"] or p["name"],
                            longdesc=p["longdesc"]))
    agent = ResourceAgent(doc.get("name") or name,
                          shortdesc=(doc.findtext("shortdesc") or "").strip() or name,
                          longdesc=(doc.findtext("longdesc") or "").strip() or name,
                          params=params)
    for action, entries in meta.actions.items():
        if action == "meta-data":
            continue
        advertise = [{k: v for k, v in e.items() if k != "name"} for e in entries]
        agent.actions[action] = Action(action, lambda ctx: 0, advertise)
    return agent


def manpage(path: str) -> str:
    from .metadata import ocf_manpage

    provider = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if is_pyha_agent(path):
        return ocf_manpage(_load_pyha_agent(path))
    res = execute([os.path.abspath(path), "meta-data"],
                  {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "OCF_ROOT": os.environ.get("OCF_ROOT", "/usr/lib/ocf"),
                   "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}, 30, cwd="/")
    if res.rc != 0:
        raise ValueError(f"{path} meta-data failed with rc {res.rc}: {_last_line(res.err)}")
    agent = agent_from_metadata(res.out, os.path.basename(path))
    return ocf_manpage(agent, provider=provider)


# -- command line ------------------------------------------------------------------------


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ValueError(f"-o expects name=value, got {pair!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyha-tester", description="Test an OCF resource agent or a fence agent the way "
        "the cluster will run it; one PASS/FAIL row per check.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--agent", metavar="PATH", help="an OCF resource agent executable")
    what.add_argument("--fence", metavar="PATH", help="a fence agent executable")
    what.add_argument("--manpage", metavar="PATH", help="print a resource agent's manpage")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        metavar="NAME=VALUE", help="a parameter (repeatable)")
    parser.add_argument("--instance", "-n", default="pyha-tester",
                        help="OCF_RESOURCE_INSTANCE (default: pyha-tester)")
    parser.add_argument("--rsctmp", metavar="DIR",
                        help="HA_RSCTMP for the agent (default: a private temporary directory)")
    parser.add_argument("--strict", action="store_true",
                        help="a missing ocf-exit-reason is a FAIL (always so for pyha agents)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="per-call limit for fence agents in seconds (default 120)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every call's output on stderr (and set HA_debug=1)")
    args = parser.parse_args(argv)
    try:
        params = _options(args.options)
    except ValueError as exc:
        parser.error(str(exc))
    if args.manpage:
        try:
            sys.stdout.write(manpage(args.manpage))
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"pyha-tester: {exc}\n")
            return 1
        return 0
    if args.fence:
        report = FenceTester(args.fence, params, args.verbose, args.timeout).run()
    else:
        rsctmp = args.rsctmp or tempfile.mkdtemp(prefix="pyha-tester-")
        try:
            strict = args.strict or is_pyha_agent(args.agent)
            report = OCFTester(args.agent, params, args.instance, rsctmp, strict,
                               args.verbose).run()
        finally:
            if not args.rsctmp:
                shutil.rmtree(rsctmp, ignore_errors=True)
    sys.stdout.write(report.as_json() if args.json else report.table())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
