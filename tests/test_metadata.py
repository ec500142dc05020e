"""Generated metadata: OCF 1.1 vs metadata.rng, OCF 1.0 vs ra-api-1.dtd, fence metadata vs
fence-agents' schema and stonith_admin, escaping, manpages, and drift of metadata/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import METADATA, ROOT
from lxml import etree

from ocf_lib import gen
from ocf_lib.metadata import ocf_manpage
from ocf_lib.ocf import ResourceAgent
from ocf_lib.params import BOOLEAN, DURATION, INTEGER, STRING, Choice, Param
from ocf_lib.tester import RNG_FENCE, strip_ocf11_extensions

RNG_OCF = "/usr/share/resource-agents/metadata.rng"
DTD_OCF = "/usr/share/resource-agents/ra-api-1.dtd"
sys.path.insert(0, str(ROOT / "tests" / "data"))
import fencedev  # noqa: E402

NASTY = 'a < b && c > "d" \'e\' ünïcødé ]]> <!-- x -->'


def rng(path: str) -> etree.RelaxNG:
    return etree.RelaxNG(file=path)


def errors(validator: etree.RelaxNG | etree.DTD, text: str) -> str:
    doc = etree.fromstring(text.encode())
    if validator.validate(doc):
        return ""
    return str(validator.error_log)


def rich_agent() -> ResourceAgent:
    agent = ResourceAgent("Rich", shortdesc="Rich " + NASTY, longdesc="Long\n" + NASTY, params=[
        Param("ip", STRING, required=True, unique=True, shortdesc="IP", longdesc=NASTY),
        Param("mode", Choice("fast", "safe"), default="safe", reloadable=True),
        Param("port", INTEGER(1, 65535), default="80", unique_group="endpoint"),
        Param("wait", DURATION, default="30s"),
        Param("enabled", BOOLEAN, default="true"),
        Param("old_wait", DURATION, deprecated="wait"),
        Param("password", STRING, secret=True, default=NASTY),
    ], promotable=True, rgmanager_primary="ip")
    for name in ("start", "stop", "promote", "demote", "notify", "reload-agent",
                 "validate-all", "migrate_to", "migrate_from"):
        agent.action(name, timeout="20s")(lambda ctx: 0)
    agent.action("monitor", timeout="20s", interval="10s", role="Unpromoted",
                 more=[{"timeout": "20s", "interval": "9s", "role": "Promoted"},
                       {"timeout": "30s", "interval": "60s", "depth": "10"}])(lambda ctx: 0)
    return agent


def plain_agent() -> ResourceAgent:
    """What most agents look like: nothing beyond the strict schema."""
    agent = ResourceAgent("Plain", shortdesc="P", longdesc=NASTY, params=[
        Param("mode", Choice("a", "b"), default="a"), Param("n", INTEGER, default="1")])
    agent.action("start")(lambda ctx: 0)
    agent.action("stop")(lambda ctx: 0)
    agent.action("monitor", interval="10s", depth=0)(lambda ctx: 0)
    return agent


def all_resource_agents() -> list[ResourceAgent]:
    return [*gen.resource_agents(), rich_agent(), plain_agent()]


@pytest.mark.parametrize("agent", all_resource_agents(), ids=lambda a: a.name)
def test_ocf11_variant_validates_against_metadata_rng(agent: ResourceAgent) -> None:
    text = agent.metadata("ocf-1.1")
    uses_11_extras = any(p.reloadable or p.unique_group or p.deprecated for p in agent.params)
    if uses_11_extras:
        # metadata.rng predates these OCF 1.1 constructs; everything else must be exact.
        assert errors(rng(RNG_OCF), strip_ocf11_extensions(text)) == ""
    else:
        assert errors(rng(RNG_OCF), text) == ""


@pytest.mark.parametrize("agent", all_resource_agents(), ids=lambda a: a.name)
def test_ocf10_variant_validates_against_the_dtd(agent: ResourceAgent) -> None:
    text = agent.metadata("ocf-1.0")
    assert '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">' in text
    assert errors(etree.DTD(DTD_OCF), text) == ""
    doc = etree.fromstring(text.encode())
    assert doc.find("actions/action[@name='reload-agent']") is None
    assert not doc.xpath("//parameter[@reloadable] | //parameter/deprecated")
    assert not doc.xpath("//content[@type='select']")


def test_plain_metadata_with_xmllint_itself(tmp_path: Path) -> None:
    agent = plain_agent()
    (tmp_path / "m11.xml").write_text(agent.metadata("ocf-1.1"))
    (tmp_path / "m10.xml").write_text(agent.metadata("ocf-1.0"))
    proc = subprocess.run(["xmllint", "--noout", "--relaxng", RNG_OCF, str(tmp_path / "m11.xml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # exactly what ocf-tester does: --valid against the DOCTYPE, from the schema directory
    proc = subprocess.run(["xmllint", "--noout", "--valid", "-"], cwd="/usr/share/resource-agents",
                          input=agent.metadata("ocf-1.0"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_ocf11_details() -> None:
    doc = etree.fromstring(rich_agent().metadata("ocf-1.1").encode())
    assert doc.findtext("version") == "1.1"
    mode = doc.find("parameters/parameter[@name='mode']")
    assert mode.get("reloadable") == "1"
    assert [o.get("value") for o in mode.iterfind("content/option")] == ["fast", "safe"]
    assert mode.find("content").get("type") == "select"
    assert doc.find("parameters/parameter[@name='port']").get("unique-group") == "endpoint"
    old = doc.find("parameters/parameter[@name='old_wait']")
    assert old.find("deprecated/replaced-with").get("name") == "wait"
    ip = doc.find("parameters/parameter[@name='ip']")
    assert (ip.get("required"), ip.get("unique")) == ("1", "1")
    roles = [a.get("role") for a in doc.iterfind("actions/action[@name='monitor']")]
    assert roles == ["Unpromoted", "Promoted", None]
    assert doc.find("actions/action[@name='reload-agent']") is not None
    assert doc.find("actions/action[@name='meta-data']") is not None
    password = doc.find("parameters/parameter[@name='password']")
    assert "secret" in password.findtext("longdesc")


def test_ocf10_details() -> None:
    doc = etree.fromstring(rich_agent().metadata("ocf-1.0").encode())
    assert doc.findtext("version") == "1.0"
    assert doc.find("parameters/parameter[@name='mode']/content").get("type") == "string"
    roles = [a.get("role") for a in doc.iterfind("actions/action[@name='monitor']")]
    assert roles == ["Slave", "Master", None]
    assert doc.find("parameters/parameter[@name='port']").get("unique-group") is None


def test_rgmanager_variant() -> None:
    doc = etree.fromstring(rich_agent().metadata("rgmanager").encode())
    assert doc.find("parameters/parameter[@name='ip']").get("primary") == "1"
    assert doc.find("special").get("tag") == "rgmanager"
    with pytest.raises(ValueError):
        rich_agent().metadata("ocf-2.0")


def test_special_characters_round_trip() -> None:
    for variant in ("ocf-1.1", "ocf-1.0", "rgmanager"):
        doc = etree.fromstring(rich_agent().metadata(variant).encode())
        assert doc.findtext("shortdesc") == "Rich " + NASTY
        assert doc.find("parameters/parameter[@name='password']/content").get("default") == NASTY
        assert doc.findtext("parameters/parameter[@name='ip']/longdesc") == NASTY
    doc = etree.fromstring(fencedev.agent.metadata().encode())
    assert doc.findtext("longdesc").endswith('<not for production> & "quoted"')


# -- fence metadata ---------------------------------------------------------------------


def fence_agents() -> list:
    return [*gen.fence_agents(), fencedev.agent]


@pytest.mark.parametrize("agent", fence_agents(), ids=lambda a: a.name)
def test_fence_metadata_validates_against_fence_agents_schema(agent) -> None:  # noqa: ANN001
    for name in agent.alias_shortdesc:
        assert errors(rng(RNG_FENCE), agent.metadata(name)) == ""


def test_fence_metadata_shape() -> None:
    doc = etree.fromstring(fencedev.agent.metadata().encode())
    assert doc.get("name") == "fence_pyhatest" and doc.get("shortdesc")
    params = {p.get("name"): p for p in doc.iterfind("parameters/parameter")}
    assert params["passwd"].get("deprecated") == "1"
    assert params["password"].get("obsoletes") == "passwd"
    assert params["port"].get("deprecated") == "1" and params["plug"].get("obsoletes") == "port"
    assert params["plug"].find("getopt").get("mixed") == "-n, --plug=[plug]"
    assert params["quiet"].find("getopt").get("mixed") == "-q, --quiet"
    assert params["quiet"].find("content").get("type") == "boolean"
    assert params["power_timeout"].find("content").get("type") == "second"
    assert params["power_timeout"].find("content").get("default") == "3"
    actions = [a.get("name") for a in doc.iterfind("actions/action")]
    for action in ("on", "off", "reboot", "status", "list", "list-status", "monitor",
                   "metadata", "manpage", "validate-all"):
        assert action in actions
    assert doc.find("actions/action[@name='on']").get("automatic") == "0"


def test_fence_metadata_without_vendor_url_is_still_valid() -> None:
    from ocf_lib.fence import FenceAgent, opt_action

    bare = FenceAgent("fence_bare", shortdesc="b", longdesc="b", params=[opt_action()],
                      connect=fencedev.SwitchSession)
    assert errors(rng(RNG_FENCE), bare.metadata()) == ""


def test_stonith_admin_reads_our_fence_metadata() -> None:
    """pacemaker's own consumer, in a private mount namespace so the host stays untouched."""
    tmp = Path(tempfile.mkdtemp(prefix="pyha-h1-"))
    try:
        tmp.chmod(0o755)
        wrapper = tmp / "wrap"
        wrapper.write_text(f'#!/bin/sh\nexec {ROOT}/tests/data/fence_pyhatest "$@"\n')
        wrapper.chmod(0o755)
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mount --bind {wrapper} /usr/sbin/fence_dummy && "
             "exec stonith_admin --metadata -a fence_dummy"],
            capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    doc = etree.fromstring(proc.stdout.encode())
    assert doc.get("name") == "fence_pyhatest"
    params = {p.get("name"): p for p in doc.iterfind("parameters/parameter")}
    assert params["action"].get("required") == "0"  # stonith_admin's own edit
    assert params["device"].get("required") == "1"
    assert {"start", "stop", "reboot", "list"} <= {a.get("name") for a in doc.iter("action")}


# -- manpages ----------------------------------------------------------------------------


def render(roff: str) -> str:
    proc = subprocess.run(["groff", "-k", "-man", "-Tutf8", "-ww", "-rLL=400n", "-rHY=0"],
                          input=roff, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stderr == "", proc.stderr  # groff warnings mean broken markup
    import re

    plain = re.sub(".\b", "", proc.stdout)  # drop the overstrike used for bold
    return " ".join(plain.split())


def test_ocf_manpage() -> None:
    agent = rich_agent()
    agent.longdesc = ".TH injected\n'also\\ escaped"
    page = ocf_manpage(agent)
    assert page.startswith(".TH RICH 7")
    assert "\n.TH injected" not in page
    text = render(page)
    assert "ocf:pyha:Rich" in text and NASTY in text
    assert "deprecated, use wait" in text and "required" in text
    assert "default '30s'" in text and "one of fast, safe" in text
    assert ".TH injected 'also\\ escaped" in text


def test_fence_manpage() -> None:
    page = fencedev.agent.manpage()
    assert page.startswith(".TH FENCE_PYHATEST 8")
    text = render(page)
    assert "-n, --plug=[plug]" in text and "plug, port" in text
    assert "(default 3)" in text and "list-status" in text


# -- drift ---------------------------------------------------------------------------------


def test_checked_in_metadata_matches_the_code() -> None:
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "pyha-metadata"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout


def test_drift_is_detected_and_repaired(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "metadata"
    shutil.copytree(METADATA, copy)
    assert gen.main(["--check", "--dir", str(copy)]) == 0
    (copy / "Example.xml").write_text((copy / "Example.xml").read_text().replace("20s", "21s"))
    (copy / "Gone.xml").write_text("<x/>")
    (copy / "Example.ocf-1.0.xml").unlink()
    capsys.readouterr()
    assert gen.main(["--check", "--dir", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "out of date: metadata/Example.xml" in out
    assert "out of date: metadata/Example.ocf-1.0.xml" in out
    assert "not generated by any agent: metadata/Gone.xml" in out
    assert gen.main(["--dir", str(copy)]) == 0
    assert gen.main(["--check", "--dir", str(copy)]) == 0
    assert (copy / "Example.xml").read_text() == (METADATA / "Example.xml").read_text()
    assert not (copy / "Gone.xml").exists()
