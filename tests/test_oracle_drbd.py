"""Differential oracle for drbd on the kernel stand-in (no DRBD kernel here): pyha
and ocf:linbit:drbd probe the same simulated kernel, whose state file (read
directly) says what is true.  Running means "configured in the kernel", and
Primary is rc 8.  See tests/lib/oracle.py for the rules."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest
from lib.drbdlab import DrbdLab
from lib.oracle import Answer

Setup = Callable[[DrbdLab, str, str], None]


@pytest.fixture
def lab() -> Iterator[DrbdLab]:
    lab = DrbdLab()
    try:
        yield lab
    finally:
        lab.close()


def start(by: str, promote: bool = False, peer_too: bool = True) -> Setup:
    def run(lab: DrbdLab, node: str, peer: str) -> None:
        act = lab.upstream if by == "upstream" else lab.agent
        nodes = (node, peer) if peer_too else (node,)
        for n in nodes:
            assert act(n, "start").rc == 0
        if peer_too:
            lab.finish_resync()
        if promote:
            assert act(node, "promote").rc == 0
    return run


def nothing(lab: DrbdLab, node: str, peer: str) -> None:
    pass


def peer_gone(lab: DrbdLab, node: str, peer: str) -> None:
    start("upstream", promote=True)(lab, node, peer)
    assert lab.agent(peer, "stop").rc == 0


def only_the_peer(lab: DrbdLab, node: str, peer: str) -> None:
    assert lab.upstream(peer, "start").rc == 0


ROWS: list[tuple[str, Setup]] = [
    ("absent", nothing),
    ("secondary-by-upstream", start("upstream")),
    ("secondary-by-pyha", start("pyha")),
    ("primary-by-upstream", start("upstream", promote=True)),
    ("primary-by-pyha", start("pyha", promote=True)),
    ("primary-peer-gone", peer_gone),
    ("alone-by-upstream", start("upstream", peer_too=False)),
    ("only-the-peer", only_the_peer),
]


@pytest.mark.parametrize(("row", "setup"), ROWS, ids=[r[0] for r in ROWS])
def test_probe_against_upstream_on_the_same_kernel(lab: DrbdLab, row: str,
                                                   setup: Setup) -> None:
    node, peer = lab.nodes
    setup(lab, node, peer)
    truth = lab.role(node) is not None
    mine = lab.agent(node, "monitor").rc
    theirs = lab.upstream(node, "monitor").rc
    answer = Answer("drbd", row, pyha=mine, upstream=theirs, truth=truth)
    assert not answer.problems(), f"{answer}: {answer.problems()}"
    if truth:
        assert (mine == 8) == (lab.role(node) == "Primary"), answer
        if lab.role(node) == "Primary":
            assert lab.agent(node, "demote").rc == 0
        rc = lab.agent(node, "stop").rc
        assert rc != 0 or lab.role(node) is None, f"{answer}: stop 0, still configured"


# -- values the upstream agent accepted (issue 14 item 2) ----------------------------------


@pytest.fixture
def hostlab() -> Iterator[DrbdLab]:
    """The first node is this host: linbit's crm_master writes the score without -N."""
    lab = DrbdLab(nodes=(os.uname().nodename, "beta"))
    try:
        yield lab
    finally:
        lab.close()


def _forget_score(lab: DrbdLab, node: str) -> None:
    subprocess.run(["crm_attribute", "-N", node, "-n", "master-drbd-r0", "-l", "reboot", "-D"],
                   env=lab.env(node), capture_output=True, timeout=30, check=True)
    assert lab.score(node) is None


# (parameter, value upstream ran with, action): pyha answers as upstream, and warns.
TOLERATED = [
    ("adjust_master_score", "0 10 1000", "monitor"),
    ("adjust_master_score", "10000 1000 10 0", "monitor"),
    ("adjust_master_score", "0 10 1000 10000 5", "monitor"),
    ("adjust_master_score", "0 10 1000 lots", "monitor"),
    ("unfence_if_all_uptodate", "maybe", "monitor"),
    ("fail_promote_early_if_peer_primary", "maybe", "monitor"),
    ("connect_only_after_promote", "maybe", "monitor"),
    ("ignore_missing_notifications", "maybe", "validate-all"),
    ("wfc_timeout", "soon", "validate-all"),
]


@pytest.mark.parametrize(("name", "value", "action"), TOLERATED,
                         ids=[f"{n}={v}" for n, v, _ in TOLERATED])
def test_a_value_upstream_accepted_answers_as_upstream(hostlab: DrbdLab, name: str, value: str,
                                                       action: str) -> None:
    lab = hostlab
    node, peer = lab.nodes
    start("pyha")(lab, node, peer)
    # The peer's disk is unknown now: the score is the list's third entry, which tells
    # a list taken as the default from one taken as written.
    assert lab.agent(peer, "stop").rc == 0
    answers = []
    for run in (lab.upstream, lab.agent):
        _forget_score(lab, node)
        r = run(node, action, **{name: value})
        answers.append((r.rc, lab.score(node)))
    theirs, mine = answers
    assert mine == theirs, f"pyha {mine}, upstream {theirs}"
    assert mine[0] == 0
    assert f"WARNING: parameter '{name}': value '{value}'" in r.err, r.err
    assert lab.role(node) == "Secondary"


# Upstream reads these as false; a typo would switch a safeguard off, so pyha refuses them.
GUARDS = [
    ("remove_master_score_if_peer_primary", "unexpcted"),
    ("stop_outdates_secondary", "maybe"),
]


@pytest.mark.parametrize(("name", "value"), GUARDS, ids=[n for n, _ in GUARDS])
def test_a_safeguard_is_not_switched_off_on_a_guess(hostlab: DrbdLab, name: str,
                                                    value: str) -> None:
    lab = hostlab
    node, peer = lab.nodes
    start("pyha")(lab, node, peer)
    assert lab.agent(peer, "promote").rc == 0
    # Upstream reads the word as false and keeps (rewrites) the score beside a Primary.
    assert lab.upstream(node, "monitor", **{name: value}).rc == 0
    before = lab.score(node)
    assert before is not None
    for action in ("monitor", "start", "promote", "validate-all"):
        r = lab.agent(node, action, **{name: value})
        assert r.rc == 6, (action, r.err)
        assert name in (r.reason or "") and "not turned off on a guess" in (r.reason or "")
    assert lab.role(node) == "Secondary" and lab.role(peer) == "Primary"
    assert lab.score(node) == before
    # stop does not fail on it (a failed stop fences the node): the default, and a warning
    r = lab.agent(node, "stop", **{name: value})
    assert r.rc == 0 and f"parameter '{name}'" in r.err, r.err
    assert lab.role(node) is None and lab.role(peer) == "Primary"
