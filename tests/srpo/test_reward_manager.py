"""The srpo reward manager through verl's reward-loop registry and ``run_single``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls  # noqa: E402
from verl.trainer.ppo.reward import load_reward_manager  # noqa: E402

TARGET = "<a_1><b_2><c_3><d_4>"


def one_rollout(tokenizer, response: str, mode: str = "direct", prompt_len: int = 6, resp_len: int = 24) -> DataProto:
    prompt = tokenizer.encode("predict the next item")[:prompt_len]
    prompt = [tokenizer.pad_token_id] * (prompt_len - len(prompt)) + prompt
    resp = tokenizer.encode(response + "<|im_end|>")[:resp_len]
    n = len(resp)
    resp = resp + [tokenizer.pad_token_id] * (resp_len - n)
    attn = [int(t != tokenizer.pad_token_id) for t in prompt] + [1] * n + [0] * (resp_len - n)
    return DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt]),
            "responses": torch.tensor([resp]),
            "attention_mask": torch.tensor([attn]),
        },
        non_tensors={
            "data_source": np.array(["gream/Office"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": TARGET}], dtype=object),
            "extra_info": np.array([{"mode": mode, "levels": 4}], dtype=object),
        },
    )


def config(**algorithm):
    return OmegaConf.create(
        {
            "algorithm": algorithm,
            "reward": {
                "custom_reward_function": {"path": None, "name": "compute_score"},
                "reward_manager": {"source": "register", "name": "srpo", "module": {"path": None, "name": "x"}},
                "sandbox_fusion": {"url": None},
            },
        }
    )


@pytest.fixture()
def run(tokenizer):
    def _run(response, mode="direct", **algorithm):
        manager = load_reward_manager(config(**algorithm), tokenizer)
        return manager.loop.run_until_complete(manager.run_single(one_rollout(tokenizer, response, mode)))

    return _run


def test_registered_under_srpo():
    from gream_verl.srpo.reward_manager import SrpoRewardManager

    assert get_reward_manager_cls("srpo") is SrpoRewardManager


def test_run_single_scores_direct_and_reason(run):
    out = run("<a_1><b_2><c_3><d_4>")
    assert out["reward_score"] == 1.0
    assert out["reward_extra_info"] == {"score": 1.0, "exact": 1, "prefix_len": 4, "format_ok": 1}
    out = run("<a_1><b_2><c_9><d_4>")
    assert out["reward_score"] == pytest.approx(0.5**0.5) and out["reward_extra_info"]["exact"] == 0
    out = run("<think>likes pens</think><answer><a_1><b_2><c_3><d_4></answer>", mode="reason")
    assert out["reward_score"] == 1.0
    out = run("<a_1><b_2><c_3><d_4>", mode="reason")  # direct answer where reasoning is required
    assert out["reward_score"] == 0.0 and out["reward_extra_info"]["format_ok"] == 0


def test_beta_from_algorithm_config_and_garbage(run):
    assert run("<a_1><b_2><c_9><d_4>", srpo={"beta": 1.0})["reward_score"] == pytest.approx(0.5)
    assert run("the user the user")["reward_score"] == 0.0
    assert run("")["reward_score"] == 0.0


def test_plain_function_through_verl_naive_manager(tokenizer):
    cfg = config()
    cfg.reward.reward_manager.name = "naive"
    cfg.reward.custom_reward_function.path = "pkg://gream_verl.srpo.reward"
    cfg.reward.custom_reward_function.reward_kwargs = {"beta": 1.0}
    manager = load_reward_manager(cfg, tokenizer)
    out = manager.loop.run_until_complete(manager.run_single(one_rollout(tokenizer, "<a_1><b_2><c_9><d_4>")))
    assert out["reward_score"] == pytest.approx(0.5)
    assert out["reward_extra_info"]["prefix_len"] == 2


def test_reward_loop_to_srpo_advantage(tokenizer):
    """Rollouts -> srpo reward manager -> verl's rm_scores -> compute_advantage(srpo)."""
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from gream_verl.srpo.advantage import SrpoConfig, srpo_scalar

    responses = ["<a_1><b_2><c_3><d_4>", "<a_1><b_2><c_9><d_4>", "junk", "<a_1><b_2><c_3><d_4>",
                 "<a_2><b_2><c_3><d_4>", "<a_1><b_5><c_3><d_4>", "<a_1><b_2><c_3><d_0>", ""]
    manager = load_reward_manager(config(), tokenizer)
    batch = DataProto.concat([one_rollout(tokenizer, r) for r in responses])
    outs = [manager.loop.run_until_complete(manager.run_single(batch[i : i + 1])) for i in range(len(batch))]
    scores = [o["reward_score"] for o in outs]
    rm_scores = type(manager).assemble_rm_scores(batch, scores)
    resp_len = batch.batch["responses"].shape[-1]
    batch.batch["token_level_rewards"] = rm_scores
    batch.batch["response_mask"] = batch.batch["attention_mask"][:, -resp_len:].float()
    batch.non_tensor_batch["uid"] = np.array(["g0"] * 4 + ["g1"] * 4, dtype=object)
    algo = OmegaConf.create({"norm_adv_by_std_in_grpo": True, "use_kl_in_reward": False, "srpo": {"k": 2}})
    out = compute_advantage(batch, adv_estimator="srpo", config=algo)
    exact = torch.tensor([o["reward_extra_info"]["exact"] for o in outs])
    expected = srpo_scalar(torch.tensor(scores), batch.non_tensor_batch["uid"], hit=exact, cfg=SrpoConfig(k=2))
    adv = out.batch["advantages"]
    last = batch.batch["response_mask"].sum(-1).long() - 1
    assert torch.allclose(adv[torch.arange(8), last], expected.float(), atol=1e-5)
    assert exact.tolist() == [1, 0, 0, 1, 0, 0, 0, 0]  # threshold 1.0 on the reward == the exact flag
