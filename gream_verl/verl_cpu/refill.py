"""Dynamic sampling that always ends: verl's sync replay buffer with a cap on generation rounds.

With ``algorithm.filter_groups.enable=True``, verl 0.9.1's v1 sync ``ReplayBuffer`` evicts every
finished prompt group whose rewards are all equal and asks for fresh prompts until the batch holds
``data.train_batch_size`` groups *with* reward variance. It ignores
``algorithm.filter_groups.max_num_gen_batches`` (it logs a warning saying so), so a policy that
only produces zero-variance groups (it never hits, or always hits) refills forever.

``CappedReplayBuffer`` is that buffer plus the cap. Plug it in with verl's custom-sampler keys::

    trainer.v1.sampler.custom_sampler.path=pkg://gream_verl.verl_cpu.refill
    trainer.v1.sampler.custom_sampler.name=CappedReplayBuffer
    algorithm.filter_groups.max_num_gen_batches=4

verl hands a custom sampler only ``trainer.v1.sampler.*`` and that section's node; the buffer reads
``algorithm.filter_groups`` and ``data.train_batch_size`` from the root of that node's config
(``sampler_kwargs.filter_groups`` / ``sampler_kwargs.train_batch_size`` override them). Semantics, per training step, with ``B = data.train_batch_size`` and
``N = max_num_gen_batches``:

* a *generation round* is ``B`` prompts: the step's first batch is round 1, refills count in
  prompts, so ``rounds = 1 + refilled / B``;
* while fewer than ``N`` rounds were generated, the buffer filters and refills exactly as verl's;
* a refill that would go past ``N`` rounds stops the filtering for the rest of the step: groups
  still in flight are kept whatever their rewards, one top-up replaces the shortfall, and a
  warning names the cause. Zero-variance groups have zero advantage under GRPO / SRPO, so they
  add no policy-gradient signal: the step trains on the informative groups it found;
* ``N <= 0`` means no cap (verl's documented meaning of ``max_num_gen_batches``).

A step therefore generates at most ``(N + 1) * B`` prompts. Each step logs
``training/filter_groups/gen_rounds`` and ``training/filter_groups/capped`` (0 or 1).

``sampler_kwargs.poll_interval`` (seconds, default 0.1) replaces verl's fixed 2 s between looks
at the queue, which on a CPU run of a few seconds per step would dominate ``timing_s/gen``.

The buffer is platform-independent: the GPU recipes (``recipes/srpo/recipes.yaml``) use it too.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.1


def generation_rounds(refilled: int, batch_size: int) -> int:
    """Rounds generated in a step: the first batch plus refills, in whole or started batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return 1 + math.ceil(max(refilled, 0) / batch_size)


def refill_budget(max_num_gen_batches: int, batch_size: int, refilled: int) -> float:
    """Prompts that may still be refilled before the cap (``inf`` when there is none)."""
    if max_num_gen_batches <= 0:
        return math.inf
    return max((max_num_gen_batches - 1) * batch_size - refilled, 0)


def _plain(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return dict(value)


def _root_settings(trainer_config) -> dict:
    """``filter_groups`` and ``train_batch_size`` from the full verl config that ``trainer_config``
    (a node of it) belongs to; empty when it is a plain dict (tests)."""
    if not isinstance(trainer_config, DictConfig):
        return {}
    root = trainer_config._get_root()
    out = {}
    if OmegaConf.select(root, "algorithm.filter_groups") is not None:
        out["filter_groups"] = OmegaConf.select(root, "algorithm.filter_groups")
    if OmegaConf.select(root, "data.train_batch_size") is not None:
        out["train_batch_size"] = OmegaConf.select(root, "data.train_batch_size")
    return out


class CappedReplayBuffer(ReplayBuffer):
    """verl's sync ``ReplayBuffer`` honouring ``max_num_gen_batches`` (see the module docstring)."""

    def __init__(self, trainer_mode: str, trainer_config, max_off_policy_threshold, max_off_policy_strategy: str,
                 sampler_kwargs, refill_fn=None, **kwargs):
        if trainer_mode != "sync":
            raise ValueError(f"CappedReplayBuffer is for trainer.v1.trainer_mode=sync, got {trainer_mode!r}")
        settings = {**_root_settings(trainer_config), **_plain(sampler_kwargs)}
        filter_groups = _plain(settings.get("filter_groups"))
        enabled = bool(filter_groups.get("enable", False))
        metric = filter_groups.get("metric") if enabled else None
        if enabled and not metric:
            raise ValueError("algorithm.filter_groups.metric must be set when group filtering is enabled")
        if "train_batch_size" not in settings:
            raise ValueError("CappedReplayBuffer needs data.train_batch_size (or sampler_kwargs.train_batch_size)")
        self.batch_size = int(settings["train_batch_size"])
        self.max_num_gen_batches = int(filter_groups.get("max_num_gen_batches", 0) or 0)
        poll_interval = float(settings.get("poll_interval", DEFAULT_POLL_INTERVAL))
        if poll_interval <= 0:
            raise ValueError(f"sampler_kwargs.poll_interval must be > 0, got {poll_interval}")
        self._refill_prompts = refill_fn
        self._refilled = 0
        self._capped = False
        super().__init__(
            trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy, sampler_kwargs,
            poll_interval=poll_interval,
            refill_fn=self._capped_refill if refill_fn is not None else None,
            filter_groups_metric=metric,
            train_batch_size=self.batch_size,
            gen_batch_size=1 if metric else self.batch_size,
            max_inflight_gen_batches=int(filter_groups.get("max_inflight_gen_batches", 1) or 1),
            **kwargs,
        )

    # -- the cap ---------------------------------------------------------------------------------
    def _shortfall(self, partition_id: str = "train") -> int:
        """Groups still missing for a full batch: batch - (terminal groups + groups in flight)."""
        have = (len(self.finished_keys[partition_id]) + len(self.failure_keys[partition_id])
                + len(self.pending_keys[partition_id]) + len(self.running_keys[partition_id]))
        return max(self.batch_size - have, 0)

    def _capped_refill(self, num_prompts: int) -> int:
        if not self._capped and num_prompts > refill_budget(self.max_num_gen_batches, self.batch_size, self._refilled):
            self._capped = True
            logger.warning(
                "dynamic sampling: %d generation rounds of %d prompts (algorithm.filter_groups.max_num_gen_batches=%d) "
                "did not give %d groups with reward variance; the rest of this step keeps zero-variance groups "
                "(zero advantage: no policy-gradient signal) instead of refilling. If this repeats, the policy "
                "is flat on these prompts (always or never rewarded).",
                generation_rounds(self._refilled, self.batch_size), self.batch_size, self.max_num_gen_batches,
                self.batch_size)
        if self._capped:
            num_prompts = min(num_prompts, self._shortfall())
        if num_prompts <= 0:
            return 0
        self._refilled += num_prompts
        return self._refill_prompts(num_prompts)

    def _dapo_filtered_keys(self, partition_id: str):
        if self._capped:
            return set(), Counter()
        return super()._dapo_filtered_keys(partition_id)

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if partition_id == "val" or self.filter_groups_metric is None:
            return super().sample(global_steps, partition_id, batch_size)
        self._refilled, self._capped = 0, False
        batch, metrics = super().sample(global_steps, partition_id, batch_size)
        prefix = self._metrics_prefix(partition_id)
        metrics[f"{prefix}/filter_groups/gen_rounds"] = generation_rounds(self._refilled, self.batch_size)
        metrics[f"{prefix}/filter_groups/capped"] = int(self._capped)
        return batch, metrics
