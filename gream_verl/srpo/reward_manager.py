"""The ``srpo`` reward manager for verl's reward loop (``reward.reward_manager.name=srpo``).

It decodes each response (``skip_special_tokens=True``, as verl does; index tokens are ordinary
added tokens and survive) and scores it with :func:`gream_verl.srpo.reward.compute_score`, or with
``reward.custom_reward_function`` when one is configured. ``beta`` comes from
``+algorithm.srpo.beta`` (default 0.5). Every key of the score dict (``score``, ``exact``,
``prefix_len``, ``format_ok``) is returned as ``reward_extra_info``, so verl logs them and
``algorithm.filter_groups.metric`` can name them.
"""

from __future__ import annotations

import inspect
from functools import partial

from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from gream_verl.srpo.reward import DEFAULT_BETA, compute_score


def _beta(config) -> float:
    try:
        section = config.get("algorithm", {}).get("srpo", None)
    except AttributeError:
        section = None
    return float(section.get("beta", DEFAULT_BETA)) if section is not None else DEFAULT_BETA


class SrpoRewardManager(RewardManagerBase):
    """Residual-sensitive index reward, one response at a time."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None, **kwargs):
        super().__init__(config, tokenizer, compute_score)
        # verl hands every manager its default_compute_score unless reward.custom_reward_function.path
        # is set; only a user's own function replaces the index reward (which falls back to verl's
        # default for data sources that are not gream/*).
        if not _has_custom_reward_function(config):
            compute_score = partial(_index_compute_score, beta=_beta(config))
        self.compute_score = compute_score
        self.is_async = inspect.iscoroutinefunction(self.compute_score)

    async def run_single(self, data) -> dict:
        item = data[-1]  # multi-sequence outputs: score the last one, as verl's managers do
        responses = item.batch["responses"]
        length = int(item.batch["attention_mask"][-responses.shape[-1] :].sum())
        ids = responses[:length]
        text = await self.loop.run_in_executor(None, lambda: self.tokenizer.decode(ids, skip_special_tokens=True))
        kwargs = dict(
            data_source=item.non_tensor_batch.get("data_source", "gream/unknown"),
            solution_str=text,
            ground_truth=item.non_tensor_batch["reward_model"]["ground_truth"],
            extra_info=dict(item.non_tensor_batch.get("extra_info", None) or {}),
        )
        if self.is_async:
            result = await self.compute_score(**kwargs)
        else:
            result = await self.loop.run_in_executor(None, lambda: self.compute_score(**kwargs))
        if not isinstance(result, dict):
            result = {"score": float(result)}
        return {"reward_score": float(result["score"]), "reward_extra_info": dict(result)}


def _has_custom_reward_function(config) -> bool:
    try:
        return bool(config.reward.custom_reward_function.get("path"))
    except AttributeError:
        return False


def _index_compute_score(data_source, solution_str, ground_truth, extra_info=None, beta=DEFAULT_BETA, **kwargs):
    return compute_score(data_source, solution_str, ground_truth, extra_info, beta=beta, **kwargs)
