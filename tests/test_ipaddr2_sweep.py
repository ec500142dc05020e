"""Bad-input sweep for IPaddr2: every parameter, hostile values, validate-all, a
probe, a recurring monitor and stop, each in fresh namespaces (tests/lib/sweep.py)."""

from __future__ import annotations

import os

from conftest import AGENTS
from lib.sweep import never_ran, sweep

from agents.ipaddr2 import agent


def test_every_parameter_survives_hostile_values() -> None:
    assert os.geteuid() == 0, "unshare needs root"
    names = [p.name for p in agent.params]
    problems, calls = sweep(str(AGENTS / "IPaddr2"), {"ip": "10.213.0.5"}, names)
    assert calls >= len(names) * 20 * 4
    assert problems == [], "\n".join(problems)
    assert never_ran()


def test_cluster_ip_parameters_in_a_clone() -> None:
    clone = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "0"}
    actions = [(name, {**extra, **clone}) for name, extra in
               (("validate-all", {}), ("monitor", {"OCF_RESKEY_CRM_meta_interval": "0"}),
                ("stop", {}))]
    params = ["mac", "clusterip_hash", "clusterip_hash_seed", "clusterip_firewall",
              "clusterip_mac_mangle"]
    problems, _calls = sweep(str(AGENTS / "IPaddr2"), {"ip": "10.213.0.5"}, params,
                             actions=actions)
    assert problems == [], "\n".join(problems)
    assert never_ran()
