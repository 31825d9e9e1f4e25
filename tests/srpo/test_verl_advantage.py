"""The srpo estimator through verl's own compute_advantage (CPU), as verl's *_on_cpu tests do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

from gream_verl.srpo.advantage import SrpoConfig, srpo_scalar  # noqa: E402


def make_batch(scores: list[float], uids: list[str], resp_len: int = 5) -> DataProto:
    n = len(scores)
    lengths = torch.randint(1, resp_len + 1, (n,), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(resp_len)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros(n, resp_len)
    rewards[torch.arange(n), lengths - 1] = torch.tensor(scores)
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )


def algo(**srpo):
    return OmegaConf.create({"adv_estimator": "srpo", "norm_adv_by_std_in_grpo": True, "use_kl_in_reward": False, "srpo": srpo})


def test_registered_by_plugin():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    from gream_verl.srpo.advantage import compute_srpo_outcome_advantage

    assert get_adv_estimator_fn("srpo") is compute_srpo_outcome_advantage


def test_compute_advantage_srpo_matches_pure_function():
    scores = [1.0, 0.5, 0.0, 0.7071, 1.0, 0.0, 0.0, 0.0, 0.5, 0.5]
    uids = ["p0"] * 5 + ["p1"] * 5
    data = compute_advantage(make_batch(scores, uids), adv_estimator="srpo", config=algo(k=2))
    expected = srpo_scalar(torch.tensor(scores), np.array(uids, dtype=object), cfg=SrpoConfig(k=2))
    mask = data.batch["response_mask"]
    adv = data.batch["advantages"]
    assert torch.allclose(adv, expected[:, None] * mask, atol=1e-6)
    assert torch.equal(data.batch["returns"], adv)
    # without the bonus it is exactly verl's grpo
    grpo = compute_advantage(make_batch(scores, uids), adv_estimator="grpo")
    no_bonus = compute_advantage(make_batch(scores, uids), adv_estimator="srpo", config=algo(k=2, bonus_weight=0.0))
    assert torch.allclose(no_bonus.batch["advantages"], grpo.batch["advantages"], atol=1e-5)
    assert not torch.allclose(adv, grpo.batch["advantages"], atol=1e-3)  # the bonus does change it


def test_legacy_dynamic_sampling_masks_zero_variance_groups(caplog):
    caplog.set_level("INFO", logger="gream_verl.srpo")
    scores = [1.0, 0.0, 0.5, 0.5] + [0.5] * 4 + [0.0] * 4
    uids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    batch = make_batch(scores, uids)
    before = batch.batch["response_mask"].clone()
    out = compute_advantage(batch, adv_estimator="srpo", config=algo(drop_zero_variance_groups=True))
    mask = out.batch["response_mask"]
    assert torch.equal(mask[:4], before[:4]) and mask[4:].sum() == 0
    (record,) = [r for r in caplog.records if hasattr(r, "metrics")]  # the counts, as a metrics handler sees them
    assert record.metrics == {
        "srpo/dynamic_sampling/groups_kept": 1,
        "srpo/dynamic_sampling/groups_dropped": 2,
        "srpo/dynamic_sampling/kept_fraction": pytest.approx(1 / 3),
    }
    # all groups flat: nothing masked, so the loss stays defined
    flat = make_batch([0.0] * 8, ["a"] * 4 + ["b"] * 4)
    before = flat.batch["response_mask"].clone()
    out = compute_advantage(flat, adv_estimator="srpo", config=algo(drop_zero_variance_groups=True))
    assert torch.equal(out.batch["response_mask"], before)


def test_registration_is_idempotent():
    import importlib

    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    import gream_verl.srpo.register as register

    before = (get_adv_estimator_fn("srpo"), get_reward_manager_cls("srpo"))
    importlib.reload(register)
    importlib.reload(register)
    assert (get_adv_estimator_fn("srpo"), get_reward_manager_cls("srpo")) == before
