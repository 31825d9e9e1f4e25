"""All SRPO registrations with verl, done at import (idempotent: importing twice is a no-op).

Imported by the ``verl.plugins`` entry point (:mod:`gream_verl.verl_plugin`), so ``import verl``
makes ``algorithm.adv_estimator=srpo`` and ``reward.reward_manager.name=srpo`` available in the
driver and in every Ray worker.
"""

from __future__ import annotations

from verl.trainer.ppo import core_algos

from gream_verl.srpo.advantage import compute_srpo_outcome_advantage

ADV_ESTIMATOR = "srpo"
REWARD_MANAGER = "srpo"

if core_algos.ADV_ESTIMATOR_REGISTRY.get(ADV_ESTIMATOR) is not compute_srpo_outcome_advantage:
    core_algos.ADV_ESTIMATOR_REGISTRY.pop(ADV_ESTIMATOR, None)  # a reloaded module re-registers
    core_algos.register_adv_est(ADV_ESTIMATOR)(compute_srpo_outcome_advantage)


def _register_reward_manager() -> None:
    try:
        from verl.experimental.reward_loop.reward_manager import registry
    except ImportError:  # a verl without the reward loop: the estimator alone still works
        return
    from gream_verl.srpo.reward_manager import SrpoRewardManager

    if registry.REWARD_MANAGER.get(REWARD_MANAGER) is not SrpoRewardManager:
        registry.REWARD_MANAGER.pop(REWARD_MANAGER, None)
        registry.register(REWARD_MANAGER)(SrpoRewardManager)


_register_reward_manager()
