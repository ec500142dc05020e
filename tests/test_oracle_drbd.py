"""Differential oracle for drbd on the kernel stand-in (no DRBD kernel here): pyha
and ocf:linbit:drbd probe the same simulated kernel, whose state file (read
directly) says what is true.  Running means "configured in the kernel", and
Primary is rc 8.  See tests/lib/oracle.py for the rules."""

from __future__ import annotations

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
