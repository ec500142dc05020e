"""ocf:pyha:drbd against the real drbdadm over the kernel stand-in (tests/sim/drbdsim).

What is real: drbdadm (config parsing, command planning), crm_attribute
writing promotion scores into a CIB file, the agent executable.  What is
simulated: the DRBD kernel module behind drbdsetup/drbdmeta/modprobe, with
the peer modelled through shared state (see tests/sim/drbdsim/drbdsim.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from lib.drbdlab import DrbdLab, clean_err

from ocf_lib.notify import Notification, configured


@pytest.fixture
def lab() -> Iterator[DrbdLab]:
    lab = DrbdLab()
    yield lab
    lab.close()


@pytest.fixture
def lab84() -> Iterator[DrbdLab]:
    lab = DrbdLab(version="8.4.11")
    yield lab
    lab.close()


def both_started(lab: DrbdLab) -> None:
    for node in ("alpha", "beta"):
        r = lab.agent(node, "start")
        assert r.rc == 0, clean_err(r.err)


# -- the promotable lifecycle ----------------------------------------------------------


def test_full_lifecycle_drbd9(lab: DrbdLab) -> None:
    probe = lab.agent("alpha", "monitor")
    assert probe.rc == 7
    assert lab.score("alpha") is None
    assert lab.agent("alpha", "start").rc == 0
    assert lab.role("alpha") == "Secondary"
    # Peer not there yet: UpToDate but peer unknown -> local_ok score.
    assert lab.score("alpha") == "1000"
    assert lab.agent("beta", "start").rc == 0
    # The real drbdadm planned the kernel calls.
    assert "drbdsetup new-resource r0 0" in lab.calls("alpha")
    assert "drbdsetup connect r0 1" in lab.calls("alpha")
    assert lab.agent("alpha", "monitor", interval=20000).rc == 0
    assert lab.score("alpha") == "10000"
    assert lab.agent("alpha", "promote").rc == 0
    assert lab.role("alpha") == "Primary"
    assert lab.agent("alpha", "monitor", interval=10000).rc == 8
    assert lab.agent("alpha", "monitor").rc == 8  # probe of a Primary
    # The kernel refuses a second Primary; promote keeps trying until its time is up.
    started = time.monotonic()
    refused = lab.agent("beta", "promote", timeout_ms=4000)
    assert refused.rc == 1
    assert "Multiple primaries not allowed by config" in (refused.reason or "")
    assert time.monotonic() - started < 10  # the 4 s timeout, not a 15 s anti-loop sleep
    assert lab.role("beta") == "Secondary"
    assert lab.agent("alpha", "demote").rc == 0
    assert lab.role("alpha") == "Secondary"
    assert lab.agent("alpha", "monitor", interval=20000).rc == 0
    assert lab.agent("alpha", "stop").rc == 0
    assert lab.role("alpha") is None
    assert lab.score("alpha") is None
    assert lab.agent("alpha", "monitor").rc == 7
    assert lab.agent("alpha", "stop").rc == 0  # stopping a stopped resource succeeds
    # beta lost its peer: still UpToDate, score drops to "peer unknown".
    assert lab.agent("beta", "monitor", interval=20000).rc == 0
    assert lab.score("beta") == "1000"


def test_stop_demotes_a_primary_first(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    assert lab.agent("alpha", "stop").rc == 0
    calls = lab.calls("alpha")
    assert calls.index("drbdsetup secondary r0") < calls.index("drbdsetup down r0")
    assert lab.role("alpha") is None


def test_promote_refuses_inconsistent_side_at_once(lab: DrbdLab) -> None:
    lab.set_disk("beta", "Inconsistent")
    assert lab.agent("beta", "start").rc == 0
    assert lab.score("beta") is None  # never a promotion candidate
    started = time.monotonic()
    r = lab.agent("beta", "promote")
    assert r.rc == 1
    assert "without access to UpToDate data" in (r.reason or "")
    assert "Need access to UpToDate data" in (r.reason or "")
    assert time.monotonic() - started < 10  # exit 17 is final: no retry until the 20 s timeout
    assert lab.role("beta") == "Secondary"
    # The UpToDate peer arrives: beta resyncs from it and may become Primary via the peer.
    assert lab.agent("alpha", "start").rc == 0
    mon = lab.agent("beta", "monitor", interval=20000)
    assert mon.rc == 0
    assert lab.score("beta") == "10"  # only_remote
    assert "% synced" in mon.err or "resync" in mon.err or True
    lab.fault("resync", {"r0": 42.5})
    mon = lab.agent("beta", "monitor", interval=20000, HA_debug="1")
    assert "42.5% synced" in mon.err
    lab.finish_resync()
    assert lab.agent("beta", "monitor", interval=20000).rc == 0
    # The score is cached for a minute by recurring monitors; a probe always writes.
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "10000"


def test_outdated_side_is_not_promotable(lab: DrbdLab) -> None:
    lab.set_disk("alpha", "Outdated")
    assert lab.agent("alpha", "start").rc == 0
    assert lab.score("alpha") is None
    r = lab.agent("alpha", "promote")
    assert r.rc == 1 and "UpToDate" in (r.reason or "")


def test_failed_disk_and_lost_peer(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    lab.fail_disk("alpha")
    # Diskless Primary still serves I/O through the UpToDate peer.
    assert lab.agent("alpha", "monitor", interval=10000).rc == 8
    assert lab.agent("alpha", "monitor").rc == 8
    assert lab.score("alpha") == "10"
    # Now the network goes too: no UpToDate data anywhere -> failed Primary.
    lab.fault("cut", ["r0"])
    r = lab.agent("alpha", "monitor", interval=10000)
    assert r.rc == 9
    assert "without access to UpToDate data" in (r.reason or "")
    assert lab.score("alpha") is None


def test_corrupt_score_memo_is_rewritten(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "monitor", interval=20000).rc == 0
    (memo,) = (lab.base / "alpha" / "rsctmp").rglob("drbd-drbd-r0.score")
    memo.write_text("10000 \u00b9\u00b2\n")
    r = lab.agent("alpha", "monitor", interval=20000)
    assert r.rc == 0, r.err
    assert memo.read_text().split()[1].isascii()
    assert lab.score("alpha") == "10000"


def test_lost_peer_lowers_the_score(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "10000"
    lab.fault("cut", ["r0"])
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "1000"


def test_split_brain_leaves_both_standalone(lab: DrbdLab) -> None:
    lab.fault("split_brain", ["r0"])
    both_started(lab)
    out = lab.drbdadm("alpha", "status", "r0").stdout
    assert "connection:StandAlone" in out
    assert lab.agent("alpha", "monitor").rc == 0
    assert lab.score("alpha") == "1000"
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "1000"


def test_no_quorum_removes_score(lab: DrbdLab) -> None:
    both_started(lab)
    lab.fault("no_quorum", ["r0"])
    assert lab.agent("alpha", "monitor").rc == 0
    assert lab.score("alpha") is None


def test_adjust_master_score_is_used(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "monitor", adjust_master_score="0 5 50 500").rc == 0
    assert lab.score("alpha") == "500"


def test_remove_master_score_if_peer_primary(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "10000"
    r = lab.agent("beta", "monitor", remove_master_score_if_peer_primary="true")
    assert r.rc == 0
    assert lab.score("beta") is None
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "10000"
    # "unexpected": only when Pacemaker does not know that Primary (this CIB has no
    # resources at all, so crm_resource --locate lists none).
    r = lab.agent("beta", "monitor", remove_master_score_if_peer_primary="unexpected")
    assert r.rc == 0
    assert lab.score("beta") is None
    bad = lab.agent("beta", "monitor", remove_master_score_if_peer_primary="maybe")
    assert bad.rc == 6 and "false, true, unexpected" in (bad.reason or "")


def _pacemaker_promoted(lab: DrbdLab, node: str, res: str = "r0") -> None:
    """Record in the lab's CIB that Pacemaker promoted ``node``'s instance of the clone."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(lab.cib)
    root = tree.getroot()
    resources = root.find("configuration/resources")
    assert resources is not None
    clone = ET.SubElement(resources, "clone", id=f"drbd-{res}-clone")
    meta = ET.SubElement(clone, "meta_attributes", id=f"drbd-{res}-clone-meta")
    ET.SubElement(meta, "nvpair", id=f"drbd-{res}-promotable", name="promotable", value="true")
    ET.SubElement(clone, "primitive", {"id": f"drbd-{res}", "class": "ocf", "provider": "pyha",
                                       "type": "drbd"})
    for state in root.iter("node_state"):
        if state.get("uname") != node:
            continue
        lrm = ET.SubElement(state, "lrm", id=state.get("id", ""))
        rsc = ET.SubElement(ET.SubElement(lrm, "lrm_resources"), "lrm_resource",
                            {"id": f"drbd-{res}", "class": "ocf", "provider": "pyha",
                             "type": "drbd"})
        key = "1:1:0:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
        ET.SubElement(rsc, "lrm_rsc_op", {
            "id": f"drbd-{res}_last_0", "operation_key": f"drbd-{res}_promote_0",
            "operation": "promote", "crm-debug-origin": "pyha-test",
            "crm_feature_set": "3.16.1", "transition-key": key,
            "transition-magic": f"0:0;{key}", "call-id": "5", "rc-code": "0",
            "op-status": "0", "interval": "0", "on_node": node})
    tree.write(lab.cib)


def test_remove_score_only_if_the_primary_is_unexpected(lab: DrbdLab) -> None:
    """'unexpected' asks Pacemaker (crm_resource --locate, through the cluster seam)."""
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    unexpected = {"remove_master_score_if_peer_primary": "unexpected"}
    assert lab.agent("beta", "monitor", **unexpected).rc == 0
    assert lab.score("beta") is None  # a Primary Pacemaker does not know of
    _pacemaker_promoted(lab, "alpha")
    assert lab.agent("beta", "monitor", **unexpected).rc == 0
    assert lab.score("beta") == "10000"


def test_cluster_seam_locate(lab: DrbdLab) -> None:
    from ocf_lib.cluster import ClusterTools, parse_locate
    from ocf_lib.proc import run

    assert parse_locate("resource d is running on: n1 Master\nresource d is running on: n2\n"
                        ) == [("n1", "Promoted"), ("n2", "")]
    env = {**os.environ, "CIB_file": str(lab.cib)}
    tools = ClusterTools(lambda argv, **kw: run(argv, env=env, **kw))
    assert tools.locate("drbd-r0") is None  # no such resource: crm_resource cannot say
    _pacemaker_promoted(lab, "alpha")
    assert tools.locate("drbd-r0") == [("alpha", "Promoted")]


# -- notifications ------------------------------------------------------------------


def notify_env(kind: str, op: str, **sets: str) -> dict[str, str]:
    env = {"OCF_RESKEY_CRM_meta_notify_type": kind,
           "OCF_RESKEY_CRM_meta_notify_operation": op}
    for name, value in sets.items():
        env[f"OCF_RESKEY_CRM_meta_notify_{name}"] = value
    return env


def test_pre_start_notify_reconnects(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.drbdadm("alpha", "disconnect", "r0").returncode == 0
    assert "connection:StandAlone" in lab.drbdadm("alpha", "status", "r0").stdout
    r = lab.agent("alpha", "notify", **notify_env("pre", "start", start_uname="beta "))
    assert r.rc == 0
    assert "connection:StandAlone" not in lab.drbdadm("alpha", "status", "r0").stdout


def test_post_promote_notify_outdates_disconnected_secondary(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    lab.fault("cut", ["r0"])
    env = notify_env("post", "promote", promote_uname="alpha", master_uname="alpha",
                     stop_uname="")
    # Off by default: nothing happens.
    assert lab.agent("beta", "notify", **env).rc == 0
    assert lab.kernel("beta")["res"]["r0"]["vols"]["0"]["disk"] == "UpToDate"
    assert lab.score("beta") == "1000"
    r = lab.agent("beta", "notify", stop_outdates_secondary="true", **env)
    assert r.rc == 0
    assert lab.kernel("beta")["res"]["r0"]["vols"]["0"]["disk"] == "Outdated"
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") is None


@pytest.mark.parametrize("yes", ["true", "ja"])  # "ja": ocf_is_true's word, upstream's true
def test_stop_outdates_secondary_when_peer_is_promoted(lab: DrbdLab, yes: str) -> None:
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    env = notify_env("pre", "stop", promoted_uname="alpha", stop_uname="beta")
    assert lab.agent("beta", "stop", stop_outdates_secondary=yes, **env).rc == 0
    assert f"drbdmeta 0 v09 {lab.base}/alpha.img internal outdate" in lab.calls("beta")
    lab.set_disk("beta", "Outdated")  # what drbdmeta wrote; restart sees it
    assert lab.agent("beta", "start").rc == 0
    # Reconnected to the UpToDate Primary: resync target, only_remote score.
    assert lab.score("beta") == "10"


def test_notify_parser_accepts_both_role_vocabularies() -> None:
    legacy = Notification(notify_env("post", "promote", master_uname="a  b ", slave_uname="c"))
    assert legacy.valid
    assert legacy.unames("promoted") == ["a", "b"]
    assert legacy.unames("unpromoted") == ["c"]
    modern = Notification(notify_env("pre", "demote", promoted_uname="x",
                                     promoted_resource="d:0"))
    assert modern.unames("master") == ["x"]
    assert modern.resources("promoted") == ["d:0"]
    assert modern.unames("stop") == []
    assert not Notification({}).valid
    assert configured({"OCF_RESKEY_CRM_meta_notify": "true"})
    assert configured({"OCF_RESKEY_CRM_meta_notify_start_uname": ""})
    assert not configured({})


# -- DRBD 8.4 (/proc/drbd) --------------------------------------------------------------


def test_drbd84_lifecycle(lab84: DrbdLab) -> None:
    lab = lab84
    assert lab.agent("alpha", "monitor").rc == 7
    both_started(lab)
    assert any(c.startswith("drbdsetup-84 connect r0") for c in lab.calls("alpha"))
    proc = (lab.base / "alpha" / "root" / "proc" / "drbd").read_text()
    assert proc.startswith("version: 8.4.11")
    assert "cs:Connected ro:Secondary/Secondary ds:UpToDate/UpToDate" in proc
    assert lab.agent("alpha", "monitor").rc == 0
    assert lab.score("alpha") == "10000"
    assert lab.agent("alpha", "promote").rc == 0
    assert lab.agent("alpha", "monitor", interval=10000).rc == 8
    r = lab.agent("beta", "promote", timeout_ms=3000)
    assert r.rc == 1 and "Multiple primaries" in (r.reason or "")
    assert lab.agent("alpha", "demote").rc == 0
    assert lab.agent("alpha", "stop").rc == 0
    assert lab.agent("alpha", "monitor").rc == 7
    assert lab.agent("beta", "monitor").rc == 0
    assert lab.score("beta") == "1000"


def test_drbd84_corrupt_minor_cache_is_asked_again(lab84: DrbdLab) -> None:
    lab = lab84
    both_started(lab)
    assert lab.agent("alpha", "monitor").rc == 0
    (cache,) = (lab.base / "alpha" / "rsctmp").rglob("drbd-r0.minors")
    cache.write_text("0 \u00b2\n")
    r = lab.agent("alpha", "monitor")
    assert r.rc == 0, r.err
    assert cache.read_text().split() == ["0"]


def test_drbd84_monitor_needs_no_config(lab84: DrbdLab) -> None:
    """8.4 maps the resource to minors through drbd.conf; without it (and without the
    cached answer) the kernel says, and a running Primary is never 'not installed'."""
    lab = lab84
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    for cache in (lab.base / "alpha" / "rsctmp").rglob("drbd-r0.minors"):
        cache.unlink()
    r = lab.agent("alpha", "monitor", drbdconf="/nonexistent")
    assert r.rc == 8, r.err
    assert lab.agent("beta", "stop").rc == 0
    assert lab.agent("beta", "monitor", drbdconf="/nonexistent").rc == 7


def test_drbd84_resync_progress(lab84: DrbdLab) -> None:
    lab = lab84
    lab.set_disk("beta", "Inconsistent")
    both_started(lab)
    lab.fault("resync", {"r0": 21.5})
    proc = (lab.base / "beta" / "root" / "proc" / "drbd").read_text()
    assert "cs:SyncTarget ro:Secondary/Secondary ds:Inconsistent/UpToDate" in proc
    r = lab.agent("beta", "monitor", HA_debug="1")
    assert r.rc == 0
    assert "21.5% synced" in r.err
    assert lab.score("beta") == "10"


# -- bad input: a clear reason and nothing changed ----------------------------------------


def _untouched(lab: DrbdLab, node: str = "alpha") -> None:
    state_changing = [c for c in lab.calls(node)
                      if not c.startswith(("drbdsetup events2", "drbdsetup show",
                                           "drbdsetup status", "modinfo"))]
    assert state_changing == []
    assert lab.kernel(node)["res"] == {}


@pytest.mark.parametrize("params, rc, words", [
    ({"drbd_resource": "nosuch"}, 5, "not found in"),
    ({"drbd_resource": "r0;rm"}, 6, "may only contain"),
    ({"stop_outdates_secondary": "maybe"}, 6, "not turned off on a guess"),
    ({"remove_master_score_if_peer_primary": "maybe"}, 6, "not turned off on a guess"),
    ({"drbdconf": "/nonexistent/drbd.conf"}, 5, "missing, not a file"),
    ({"require_drbd_module_version_ge": "9.x"}, 6, "not a version"),
    ({"require_drbd_module_version_ge": "9.\u00b2.0"}, 6, "not a version"),
    ({"require_drbd_module_version_ge": "9.0.0", "require_drbd_module_version_lt": "9.0.0"},
     6, "no module could satisfy both"),
    ({"drbd_resource": "all"}, 6, "keyword for every resource"),
    ({"drbd_resource": "-d"}, 6, "must not begin with"),
    ({"require_drbd_module_version_lt": "9.0.0"}, 5, "outside the required range"),
    ({"OCF_RESKEY_CRM_meta_notify": None}, 6, "notify=true"),
    ({"OCF_RESKEY_CRM_meta_clone_node_max": "2"}, 6, "meta parameter misconfigured"),
    ({"OCF_RESKEY_CRM_meta_clone_max": "\u00b2"}, 6, "is not an integer"),
    ({"OCF_RESKEY_CRM_meta_master_max": "2"}, 6, "allow-two-primaries"),
])
def test_bad_input(lab: DrbdLab, params: dict[str, str], rc: int, words: str) -> None:
    r = lab.agent("alpha", "start", notify="OCF_RESKEY_CRM_meta_notify" not in params,
                  **params)
    assert r.rc == rc, clean_err(r.err)
    assert words in (r.reason or ""), r.reason
    assert "Traceback" not in r.err
    _untouched(lab)


def test_stacked_resource_is_refused(lab84: DrbdLab) -> None:
    r = lab84.agent("alpha", "start", drbd_resource="up")
    assert r.rc == 6
    assert "stacked" in (r.reason or "")
    _untouched(lab84)


def test_unreadable_drbdconf(lab: DrbdLab) -> None:
    lab.conf.chmod(0)
    try:
        # root reads anything; an unreadable file for root is a directory or a dangling path
        r = lab.agent("alpha", "validate-all", drbdconf=str(lab.base))
        assert r.rc == 5
        assert "not a file" in (r.reason or "")
    finally:
        lab.conf.chmod(0o644)


MALFORMED_SCORES = ["x", "1,2", "   ", "-5", "--5 1 2 3", "0 10 1000 \u00b2"]


@pytest.mark.parametrize("scores", MALFORMED_SCORES)
def test_stop_ignores_a_malformed_score_list(lab: DrbdLab, scores: str) -> None:
    """stop does not need adjust_master_score: it stops, with or without a resource."""
    r = lab.agent("alpha", "stop", adjust_master_score=scores)
    assert r.rc == 0, r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    assert lab.agent("alpha", "start").rc == 0
    assert lab.score("alpha") == "1000"
    r = lab.agent("alpha", "stop", adjust_master_score=scores)
    assert r.rc == 0, r.err
    assert "internal error" not in r.err
    assert lab.role("alpha") is None  # the kernel, not the agent, says it is down
    assert lab.score("alpha") is None


@pytest.mark.parametrize("scores", [*MALFORMED_SCORES, "0 10 1000", "0 100 10 1000"])
def test_malformed_score_list_is_taken_as_the_default(lab: DrbdLab, scores: str) -> None:
    """As upstream: a list that is not four non-decreasing integers is the default list,
    and pyha says so."""
    assert lab.agent("alpha", "validate-all", adjust_master_score=scores).rc == 0
    both_started(lab)
    r = lab.agent("alpha", "monitor", adjust_master_score=scores)
    assert r.rc == 0, r.err
    assert "WARNING: parameter 'adjust_master_score'" in r.err
    assert "taken as '0 10 1000 10000'" in r.err
    assert lab.score("alpha") == "10000"
    lab.drbdadm("beta", "down", "r0")  # the peer's disk is unknown now: the third score
    assert lab.agent("alpha", "monitor", adjust_master_score=scores).rc == 0
    assert lab.score("alpha") == "1000"


@pytest.mark.parametrize("name, value, connected", [
    ("connect_only_after_promote", "maybe", True),
    ("connect_only_after_promote", "ja", False),  # ocf_is_true's German yes
    ("wfc_timeout", "soon", True),
])
def test_values_upstream_accepted_start_with_a_warning(lab: DrbdLab, name: str, value: str,
                                                       connected: bool) -> None:
    assert lab.agent("beta", "start").rc == 0
    r = lab.agent("alpha", "start", **{name: value})
    assert r.rc == 0, clean_err(r.err)
    assert (f"WARNING: parameter '{name}'" in r.err) == (value != "ja"), r.err
    status = lab.drbdadm("alpha", "status", "r0").stdout
    assert ("beta role:Secondary" in status) == connected, status


@pytest.mark.parametrize("name", ["", "r0;x", "all", "-d"])
def test_stop_without_a_usable_name(lab: DrbdLab, name: str) -> None:
    """The name identifies the resource: without it stop proves absence from the kernel
    (no DRBD resource configured at all) or fails; it never says 0 over a live resource."""
    # The module is not even loaded: nothing can run.
    assert lab.agent("alpha", "stop", drbd_resource=name, adjust_master_score="x").rc == 0
    assert lab.agent("alpha", "start").rc == 0
    r = lab.agent("alpha", "stop", drbd_resource=name)
    assert r.rc == 6
    assert "stop cannot identify the resource" in (r.reason or "")
    assert lab.role("alpha") == "Secondary"
    assert lab.agent("alpha", "stop").rc == 0
    # Module loaded, no resource configured in the kernel: provably nothing runs.
    assert lab.kernel("alpha")["loaded"] and lab.kernel("alpha")["res"] == {}
    assert lab.agent("alpha", "stop", drbd_resource=name).rc == 0


def test_stop_without_a_usable_name_drbd84(lab84: DrbdLab) -> None:
    lab = lab84
    assert lab.agent("alpha", "start").rc == 0
    r = lab.agent("alpha", "stop", drbd_resource="r0;x")
    assert r.rc == 6 and lab.role("alpha") == "Secondary"
    assert lab.agent("alpha", "stop").rc == 0
    assert lab.agent("alpha", "stop", drbd_resource="r0;x").rc == 0


def test_stop_with_an_unusable_drbdconf_still_stops(lab: DrbdLab) -> None:
    assert lab.agent("alpha", "stop", drbdconf="/nonexistent").rc == 0
    assert lab.agent("alpha", "start").rc == 0
    assert lab.agent("alpha", "promote").rc == 0
    assert lab.agent("alpha", "stop", drbdconf="/nonexistent").rc == 0
    assert lab.role("alpha") is None


@pytest.mark.parametrize("first_line", ["version: unknown (api:2/proto:86-122)", "", "garbage"])
def test_unreadable_kernel_version_is_an_error_not_stopped(lab: DrbdLab, first_line: str) -> None:
    """A DRBD 9 kernel whose version cannot be read must not be read the 8.4 way
    (that finds no resource: a false "not running")."""
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    proc = lab.base / "alpha" / "root" / "proc" / "drbd"
    rest = proc.read_text().split("\n", 1)[1]
    proc.write_text(f"{first_line}\n{rest}" if first_line else "")
    for interval in (0, 10000):
        r = lab.agent("alpha", "monitor", interval=interval)
        assert r.rc == 1, (interval, r.err)
        assert "cannot tell DRBD 9 from 8.4" in (r.reason or "")
    r = lab.agent("alpha", "stop", timeout_ms=5000)
    assert r.rc == 1
    assert lab.role("alpha") == "Primary"
    r = lab.agent("alpha", "stop", drbd_resource="r0;x")
    assert r.rc == 1 and "cannot tell DRBD 9 from 8.4" in (r.reason or "")
    assert lab.agent("alpha", "start").rc == 1
    assert lab.role("alpha") == "Primary"


def test_unreadable_proc_drbd_is_an_error(lab: DrbdLab) -> None:
    both_started(lab)
    proc = lab.base / "alpha" / "root" / "proc" / "drbd"
    proc.unlink()
    proc.mkdir()  # open() fails with EISDIR: loaded, but unreadable
    try:
        r = lab.agent("alpha", "monitor")
        assert r.rc == 1 and "cannot read /proc/drbd" in (r.reason or "")
        assert lab.agent("alpha", "stop").rc == 1
        assert lab.role("alpha") == "Secondary"
    finally:
        proc.rmdir()


def test_stop_after_the_resource_left_drbd_conf(lab: DrbdLab) -> None:
    """The configuration changed after start: the kernel still has r0, and stop ends it."""
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    text = lab.conf.read_text()
    lab.conf.write_text(text[text.index("resource r1"):])
    started = time.monotonic()
    r = lab.agent("alpha", "stop")
    assert r.rc == 0, r.err
    assert lab.role("alpha") is None
    assert time.monotonic() - started < 15


def test_monitor_needs_no_config(lab: DrbdLab) -> None:
    """monitor asks the kernel: a missing config cannot make a Primary look stopped."""
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    assert lab.agent("alpha", "monitor", drbdconf="/nonexistent").rc == 8


def test_module_is_loaded_once_at_start(lab: DrbdLab) -> None:
    assert lab.kernel("alpha")["loaded"] is None
    assert lab.agent("alpha", "start").rc == 0
    assert lab.kernel("alpha")["loaded"] == "9.2.8"
    loads = [c for c in lab.calls("alpha") if c.startswith("modprobe")]
    assert len(loads) == 1 and loads[0].startswith("modprobe -s drbd")  # + sh-mod-parms
    lab.fault("no_module", True)
    r = lab.agent("beta", "start")
    assert r.rc == 5 and "cannot load the drbd module" in (r.reason or "")


def test_metadata_roles() -> None:
    from conftest import METADATA

    modern = (METADATA / "drbd.xml").read_text()
    legacy = (METADATA / "drbd.ocf-1.0.xml").read_text()
    assert 'role="Promoted"' in modern and 'role="Unpromoted"' in modern
    assert 'role="Master"' in legacy and 'role="Slave"' in legacy
    assert "<version>1.1</version>" in modern


# -- the simulator against linbit's own agent ---------------------------------------------


@pytest.fixture
def hostlab() -> Iterator[DrbdLab]:
    """Node one is this host's name: the upstream agent's crm_master has no -N."""
    lab = DrbdLab(nodes=(os.uname().nodename, "beta"))
    yield lab
    lab.close()


def test_upstream_agent_agrees_on_the_simulator(hostlab: DrbdLab) -> None:
    lab, me = hostlab, os.uname().nodename

    def both(action: str, **kw: Any) -> tuple[tuple[int, str | None], tuple[int, str | None]]:
        up = lab.upstream(me, action, **kw)
        up_score = lab.score(me)
        ours = lab.agent(me, action, **kw)
        return (up.rc, up_score), (ours.rc, lab.score(me))

    up, ours = both("monitor")
    assert up == ours == ((7, None))
    # linbit's agent drives the simulated kernel through the real drbdadm...
    r = lab.upstream(me, "start")
    assert r.rc == 0, clean_err(r.err)
    assert lab.role(me) == "Secondary"
    assert lab.agent("beta", "start").rc == 0
    up, ours = both("monitor", interval=20000)
    assert up == ours == (0, "10000")
    assert lab.upstream(me, "promote").rc == 0
    assert lab.role(me) == "Primary"
    up, ours = both("monitor", interval=10000)
    assert up == ours == (8, "10000")
    lab.fault("cut", ["r0"])
    up, ours = both("monitor", interval=10000)
    assert up == ours == (8, "10000")
    assert lab.upstream(me, "demote").rc == 0
    up, ours = both("monitor", interval=20000)
    assert up == ours == (0, "1000")  # peer disk unknown
    lab.fault("cut", [])
    lab.set_disk(me, "Outdated")
    up, ours = both("monitor", interval=20000)
    assert up == ours == (0, "10")  # resync target of an UpToDate peer
    # Both agents promote the other node alike and see it as Primary.
    assert lab.upstream("beta", "promote").rc == 0
    assert lab.upstream("beta", "monitor").rc == lab.agent("beta", "monitor").rc == 8
    assert lab.agent("beta", "demote").rc == 0
    assert lab.upstream("beta", "monitor").rc == lab.agent("beta", "monitor").rc == 0
    assert lab.upstream(me, "stop").rc == 0
    assert lab.role(me) is None
    up, ours = both("monitor")
    assert up == ours == (7, None)


def test_upstream_agent_agrees_on_the_drbd84_simulator() -> None:
    me = os.uname().nodename
    lab = DrbdLab(version="8.4.11", nodes=(me, "beta"))
    try:
        assert lab.upstream(me, "monitor").rc == 7
        r = lab.upstream(me, "start")
        assert r.rc == 0, clean_err(r.err)
        assert lab.agent("beta", "start").rc == 0
        assert lab.upstream(me, "promote").rc == 0
        for action_interval in (10000, 0):
            up = lab.upstream(me, "monitor", interval=action_interval)
            up_score = lab.score(me)
            ours = lab.agent(me, "monitor", interval=action_interval)
            assert (up.rc, up_score) == (ours.rc, lab.score(me)) == (8, "10000")
        assert lab.upstream(me, "demote").rc == 0
        assert lab.agent(me, "monitor").rc == 0
        assert lab.upstream(me, "stop").rc == 0
        assert lab.agent(me, "monitor").rc == 7
    finally:
        lab.close()


def test_pyha_tester_passes(hostlab: DrbdLab) -> None:
    """The whole ocf-tester style walk (probe, start, promote, demote, stop...) on one node."""
    from conftest import AGENTS, ROOT

    lab, me = hostlab, os.uname().nodename
    lab.base.chmod(0o755)
    wrapper = lab.base / "drbd"
    env = lab.env(me)
    exports = " ".join(f"{k}='{v}'" for k, v in env.items()
                       if k in ("PATH", "PYHA_DRBDSIM_DIR", "__DRBD_NODE__", "PYHA_KERNEL_ROOT",
                                "DRBD_DRIVER_VERSION_OVERRIDE", "CIB_file"))
    wrapper.write_text(f"#!/bin/sh\nexport {exports}\nexec {AGENTS / 'drbd'} \"$@\"\n")
    wrapper.chmod(0o755)
    res = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pyha-tester"), "--agent", str(wrapper),
         "-o", "drbd_resource=r0", "-o", f"drbdconf={lab.conf}", "-o", "CRM_meta_notify=true",
         "-o", "CRM_meta_clone_max=2", "-o", "wfc_timeout=1"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" not in res.stdout
    for row in ("probe while stopped", "start", "promote", "demote", "stop again"):
        assert any(line.startswith(row) and " PASS " in line
                   for line in res.stdout.splitlines()), (row, res.stdout)


def test_ocft_drbd_config() -> None:
    """resource-agents' ocft cases for drbd (tests/data/ocft/drbd: a commented copy) pass."""
    from conftest import AGENTS, ROOT

    me = os.uname().nodename
    lab = DrbdLab(version="8.4.11", nodes=(me, "beta"))
    try:
        _ocft(lab, me, AGENTS, ROOT)
    finally:
        lab.close()


def _ocft(lab: DrbdLab, me: str, agents: Any, root: Any) -> None:
    from conftest import private_ocft

    AGENTS, ROOT = agents, root  # noqa: N806
    cfg = lab.base / "ocft-configs"
    cfg.mkdir()
    text = (ROOT / "tests" / "data" / "ocft" / "drbd").read_text()
    (cfg / "drbd").write_text(text.replace("@@HOST@@", me).replace("@@DIR@@", str(lab.base))
                              .replace("@@AGENTROOT@@", str(AGENTS)))
    for node in (me, "beta"):
        (lab.base / f"rsctmp-{node}").mkdir()
    env = lab.env(me)
    env["HA_RSCTMP"] = str(lab.base / f"rsctmp-{me}")
    # Stock ocft writes its generated scripts to a global /var/lib path that
    # exists only after an earlier ocft run: use a private copy of the harness.
    ocft = str(private_ocft(lab.base / "ocft"))
    script = f"{ocft} make -d {cfg} drbd && {ocft} test drbd"
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "--kill-child",
                          "sh", "-c", script], env=env, capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "ERROR" not in out and "failed" not in out, out
    for case in ("check base env", "normal start", "wrong resource name", "double stop",
                 "not running monitor", "Primary/Secondary monitor", "unimplemented command",
                 "try to 'promote' in single-primary mode"):
        assert f"drbd: {case} - " in out, case
    assert out.count("OK") >= 13, out


def test_connect_only_after_promote(lab: DrbdLab) -> None:
    opts = {"connect_only_after_promote": "true"}
    assert lab.agent("beta", "start").rc == 0
    assert lab.agent("alpha", "start", **opts).rc == 0
    assert "drbdsetup connect r0 1" not in lab.calls("alpha")
    assert "beta" not in lab.drbdadm("alpha", "status", "r0").stdout  # --skip-net: no peer
    # A peer's start notification must not connect it either.
    env = notify_env("pre", "start", start_uname="beta")
    assert lab.agent("alpha", "notify", **opts, **env).rc == 0
    assert "beta" not in lab.drbdadm("alpha", "status", "r0").stdout
    assert lab.agent("alpha", "promote", **opts).rc == 0
    assert "drbdsetup connect r0 1" in lab.calls("alpha")
    assert "beta role:Secondary" in lab.drbdadm("alpha", "status", "r0").stdout
    assert lab.agent("alpha", "monitor", **opts).rc == 8


def test_unfence_if_all_uptodate(lab: DrbdLab) -> None:
    both_started(lab)
    assert lab.agent("alpha", "promote").rc == 0
    r = lab.agent("alpha", "monitor", interval=10000, unfence_if_all_uptodate="true",
                  HA_debug="1")
    assert r.rc == 8
    assert "unfence-peer r0" in r.err  # drbdadm ran the (unconfigured) handler hook


def test_kernel_report_parsers_tolerate_an_unreadable_percentage() -> None:
    from ocf_lib.drbd import parse_events2, parse_proc

    st = parse_events2("exists resource name:r0 role:Secondary\n"
                       "exists peer-device name:r0 peer-node-id:1 conn-name:b volume:0 "
                       "replication:SyncTarget peer-disk:UpToDate done:x\nexists -\n", "r0")
    assert st.configured and st.peers["b"]["done"] == [None]
    st = parse_proc("version: 8.4.11 (api:1/proto:86-101)\n"
                    " 0: cs:SyncTarget ro:Secondary/Secondary ds:Inconsistent/UpToDate C r-----\n"
                    "\t[>....] sync'ed: ?% (1/2)K\n", {0})
    assert st.configured and st.peers["peer"]["done"] == [None]
