"""verl loads gream's plugin by itself: in a fresh interpreter and in a Ray worker."""

from __future__ import annotations

import pytest

from gream_verl.srpo.check import probe, problems

pytest.importorskip("verl")


@pytest.mark.slow  # a fresh interpreter importing verl
def test_fresh_interpreter_sees_srpo():
    found = probe()
    assert problems(found) == [], found
    assert found["adv_estimator_srpo"] == "gream_verl.srpo.advantage.compute_srpo_outcome_advantage"
    assert found["reward_manager_srpo"] == "gream_verl.srpo.reward_manager.SrpoRewardManager"
    assert "gream_verl.srpo.register" in found["plugin_loaded"]


def test_problems_are_reported():
    ok = {"plugin_imported_by_verl": True, "plugin_loaded": ["gream_verl.srpo.register"], "plugin_errors": {},
          "adv_estimator_srpo": "x", "reward_manager_srpo": "y"}
    assert problems(ok) == []
    broken = {**ok, "plugin_loaded": [], "plugin_errors": {"gream_verl.srpo.register": "Traceback\nImportError: boom\n"}}
    assert any("boom" in p for p in problems(broken))
    assert len(problems({})) >= 3


@pytest.mark.slow
def test_verl_check_fails_loudly_without_the_plugin(monkeypatch, capsys):
    from gream_verl.cli import main

    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")  # verl's switch to skip external plugins
    assert main(["verl-check", "--json"]) == 1
    assert "FAILED" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_worker_sees_srpo():
    ray = pytest.importorskip("ray")

    @ray.remote(num_cpus=1)
    def registry_in_worker():
        import sys

        import verl  # noqa: F401  the plugin entry point runs here
        from verl.experimental.reward_loop.reward_manager import registry
        from verl.trainer.ppo import core_algos

        fn = core_algos.ADV_ESTIMATOR_REGISTRY.get("srpo")
        cls = registry.REWARD_MANAGER.get("srpo")
        return {"adv": fn.__module__ if fn else None, "rm": cls.__name__ if cls else None,
                "plugin": "gream_verl.verl_plugin" in sys.modules}

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        found = ray.get(registry_in_worker.remote(), timeout=600)
    finally:
        ray.shutdown()
    assert found == {"adv": "gream_verl.srpo.advantage", "rm": "SrpoRewardManager", "plugin": True}
