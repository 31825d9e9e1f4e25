"""The transformers rollout server the CPU recipe plugs into verl (without Ray: called directly)."""

from __future__ import annotations

import asyncio

import pytest
import torch

pytest.importorskip("verl")

from gream_verl.verl_cpu.rollout import HFRolloutServer, resolve_max_tokens, server_actor_name  # noqa: E402


def test_max_tokens_follow_verls_vllm_rule():
    assert resolve_max_tokens({"max_tokens": 5}, prompt_len=10, prompt_length=16, response_length=8, max_model_len=None) == 5
    assert resolve_max_tokens({"max_new_tokens": 50}, 10, 16, 8, None) == 14  # clamped to the context left
    assert resolve_max_tokens({}, 10, 16, 8, None) == 8
    assert resolve_max_tokens({}, 20, 16, 8, None) == 4  # long prompt: the remaining budget
    assert resolve_max_tokens({"max_tokens": 0}, 10, 16, 8, None) == 1
    with pytest.raises(ValueError, match="no room"):
        resolve_max_tokens({}, 24, 16, 8, None)


def test_server_names_match_the_adapter_lookup():
    assert server_actor_name(0) == "hf_server_0_0"
    assert server_actor_name(3, "_x", "reward") == "hf_server_reward_3_0_x"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from gream_verl.model.checkpoint import save_pretrained_atomic
    from gream_verl.model.tiny import build_tiny_qwen3, train_tokenizer

    tokenizer = train_tokenizer(["a tiny corpus for a tiny rollout test"] * 20, vocab_size=300)
    model = build_tiny_qwen3(tokenizer, hidden_size=32, num_layers=1, heads=4, kv_heads=2, intermediate=64)
    out = tmp_path_factory.mktemp("tiny") / "model"
    save_pretrained_atomic(model, tokenizer, out)
    return out


@pytest.fixture(scope="module")
def server(model_dir):
    from verl.workers.config import HFModelConfig, RolloutConfig

    config = RolloutConfig(name="hf", prompt_length=16, response_length=6)
    return HFRolloutServer(config, HFModelConfig(path=str(model_dir)), replica_rank=0)


def _generate_many(server, prompts, params):
    async def go():
        return await asyncio.gather(*[server.generate(p, dict(params), request_id=str(i)) for i, p in enumerate(prompts)])

    return asyncio.run(go())


def test_concurrent_requests_return_token_outputs(server):
    from verl.workers.rollout.replica import TokenOutput

    outs = _generate_many(server, [[5, 6, 7], [8, 9], [10, 11, 12, 13]], {"temperature": 1.0, "top_p": 0.9, "logprobs": True})
    for out in outs:
        assert isinstance(out, TokenOutput)
        assert 1 <= len(out.token_ids) <= 6
        assert out.log_probs is not None and len(out.log_probs) == len(out.token_ids)
        assert all(lp <= 0 for lp in out.log_probs)
        assert out.stop_reason == "completed"
    no_logprobs = _generate_many(server, [[5, 6]], {"temperature": 1.0})[0]
    assert no_logprobs.log_probs is None


def test_bad_requests_fail_clearly(server):
    with pytest.raises(ValueError, match="text-only"):
        asyncio.run(server.generate([1, 2], {}, "r", image_data=["img"]))
    with pytest.raises(ValueError, match="rollout.n"):
        asyncio.run(server.generate([1, 2], {"n": 2}, "r"))


def test_weight_updates_change_generation_and_tag_global_steps(server):
    greedy = {"temperature": 0, "max_tokens": 4, "logprobs": True}
    before = _generate_many(server, [[5, 6, 7]], greedy)[0]
    state = {k: v.clone() for k, v in server.model.state_dict().items()}
    try:
        changed = {name: torch.randn_like(t) for name, t in state.items() if name.endswith("weight")}
        assert server.update_weights(changed, global_steps=7) == len(changed)
        after = _generate_many(server, [[5, 6, 7]], greedy)[0]
        assert after.extra_fields["global_steps"] == 7
        assert after.log_probs != before.log_probs
        with pytest.raises(KeyError, match="no parameters named"):
            server.update_weights({"not.a.param": torch.zeros(1)})
        name = next(iter(changed))
        with pytest.raises(ValueError, match="shape"):
            server.update_weights({name: torch.zeros(1)})
    finally:
        server.update_weights(state)
    assert _generate_many(server, [[5, 6, 7]], greedy)[0].token_ids == before.token_ids


def test_sleep_and_wake_up_keep_the_model_usable(server):
    async def cycle():
        await server.sleep()
        await server.wake_up(tags=["weights"])
        await server.clear_kv_cache()
        return await server.abort_all_requests()

    assert asyncio.run(cycle())["aborted_count"] == 0
    assert _generate_many(server, [[5, 6]], {"temperature": 0})[0].token_ids
