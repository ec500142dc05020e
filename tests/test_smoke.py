"""The example agent's whole life through its executable, as Pacemaker runs it."""

from conftest import run_ocf


def test_example_lifecycle(ocf_env):
    assert run_ocf("Example", "monitor", env=ocf_env).rc == 7
    assert run_ocf("Example", "start", env=ocf_env).rc == 0
    assert run_ocf("Example", "monitor", env=ocf_env).rc == 0
    assert run_ocf("Example", "stop", env=ocf_env).rc == 0
    assert run_ocf("Example", "stop", env=ocf_env).rc == 0
    assert run_ocf("Example", "monitor", env=ocf_env).rc == 7


def test_unknown_action_is_3_with_reason(ocf_env):
    res = run_ocf("Example", "frobnicate", env=ocf_env)
    assert res.rc == 3
    assert "frobnicate" in res.reason
