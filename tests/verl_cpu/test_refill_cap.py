"""The refill cap of dynamic sampling (gream_verl.verl_cpu.refill) on verl's real sync replay buffer.

TransferQueue is replaced by an in-memory store and generation by a function that finishes every
dispatched prompt at once with the rewards a policy would earn, so the buffer's own refill loop
runs as in training (no Ray, a few seconds).
"""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

pytest.importorskip("verl")

from gream_verl.verl_cpu import refill  # noqa: E402

BATCH, N_SAMPLES = 4, 4


class _Store:
    """What the replay buffer reads of TransferQueue: tags per key, ``rm_scores`` per trajectory."""

    def __init__(self):
        self.tags: dict[str, dict] = {}
        self.scores: dict[str, float] = {}

    def kv_list(self, partition_id=None):
        return {"train": {k: dict(v) for k, v in self.tags.items()}}

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        return {"rm_scores": [torch.tensor([self.scores[k]]) for k in keys]}

    def kv_clear(self, keys, partition_id):
        for k in [keys] if isinstance(keys, str) else keys:
            self.tags.pop(k, None)
            self.scores.pop(k, None)


class _Exhausted(Exception):
    pass


class _Policy:
    """Finishes each dispatched prompt at once; ``rewards(k)`` = the k-th prompt's group rewards."""

    def __init__(self, store: _Store, rewards, limit: int = 60):
        self.store, self.rewards, self.limit = store, rewards, limit
        self.dispatched = 0
        self.ids = itertools.count()

    def __call__(self, num_prompts: int) -> int:
        for _ in range(num_prompts):
            if self.dispatched >= self.limit:
                raise _Exhausted(f"{self.dispatched} prompts dispatched")
            k = self.dispatched
            uid = f"p{next(self.ids)}"
            self.store.tags[uid] = {"is_prompt": True, "status": "finished", "global_steps": 1}
            for s, r in enumerate(self.rewards(k)):
                key = f"{uid}_{s}_0"
                self.store.tags[key] = {"status": "success", "global_steps": 1}
                self.store.scores[key] = float(r)
            self.dispatched += 1
        return num_prompts


@pytest.fixture
def store(monkeypatch):
    import verl.trainer.ppo.v1.replay_buffer as rb

    fake = _Store()
    monkeypatch.setattr(rb, "tq", fake)
    return fake


def _buffer(policy, max_num_gen_batches: int, enable: bool = True):
    return refill.CappedReplayBuffer(
        trainer_mode="sync", trainer_config={}, max_off_policy_threshold=None, max_off_policy_strategy="drop",
        sampler_kwargs={"filter_groups": {"enable": enable, "metric": "reward",
                                          "max_num_gen_batches": max_num_gen_batches},
                        "train_batch_size": BATCH, "poll_interval": 0.01},
        refill_fn=policy,
    )


def _sample(buffer, policy, timeout: float = 30.0):
    """buffer.sample for one step (the trainer dispatches the first batch), in a thread so that a
    hang fails the test instead of blocking it."""
    result: dict = {}

    def run():
        try:
            policy(BATCH)  # the step's first batch (trainer.prepare_step)
            result["out"] = buffer.sample(global_steps=1, partition_id="train", batch_size=BATCH)
        except Exception as e:  # noqa: BLE001  reported below
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "sample() did not return"
    return result


def _groups(store: _Store, batch) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for key in batch.keys:
        groups.setdefault(key.split("_")[0], []).append(store.scores[key])
    return groups


FLAT = lambda k: [0.0] * N_SAMPLES  # noqa: E731  never rewarded: every group has zero variance
MIXED = lambda k: [0.0, 1.0, 0.0, 0.5]  # noqa: E731


def test_without_a_cap_a_flat_policy_refills_without_end(store):
    """The failure the cap exists for: verl's semantics with max_num_gen_batches=0 (no limit)."""
    policy = _Policy(store, FLAT, limit=60)
    result = _sample(_buffer(policy, max_num_gen_batches=0), policy)
    assert isinstance(result.get("error"), _Exhausted)  # only the test's own limit stopped it


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_the_cap_stops_a_flat_policy(store, cap):
    policy = _Policy(store, FLAT, limit=60)
    result = _sample(_buffer(policy, max_num_gen_batches=cap), policy)
    assert "error" not in result, result.get("error")
    batch, metrics = result["out"]
    assert len(_groups(store, batch)) == BATCH  # a full batch (of zero-variance groups)
    assert metrics["training/filter_groups/capped"] == 1
    # cap rounds of BATCH prompts, plus one top-up of the groups evicted in the last round
    assert policy.dispatched <= (cap + 1) * BATCH
    assert metrics["training/filter_groups/gen_rounds"] == -(-policy.dispatched // BATCH)


def test_informative_groups_are_kept_and_flat_ones_still_replaced_below_the_cap(store):
    # the first batch is flat, every refill has reward variance
    policy = _Policy(store, lambda k: FLAT(k) if k < BATCH else MIXED(k))
    result = _sample(_buffer(policy, max_num_gen_batches=4), policy)
    batch, metrics = result["out"]
    groups = _groups(store, batch)
    assert len(groups) == BATCH
    assert all(len(set(g)) > 1 for g in groups.values())
    assert metrics["training/filter_groups/capped"] == 0
    assert metrics["training/filter_groups/evicted_samples"] == BATCH


def test_rounds_and_budget_follow_the_definition():
    assert refill.generation_rounds(0, 64) == 1
    assert refill.generation_rounds(1, 64) == 2
    assert refill.generation_rounds(128, 64) == 3
    assert refill.refill_budget(0, 64, 10_000) == float("inf")
    assert refill.refill_budget(1, 64, 0) == 0
    assert refill.refill_budget(3, 64, 100) == 28


def test_missing_settings_fail_clearly():
    with pytest.raises(ValueError, match="train_batch_size"):
        refill.CappedReplayBuffer("sync", {}, None, "drop", {"filter_groups": {"enable": True, "metric": "reward"}},
                                  refill_fn=lambda n: n)
    with pytest.raises(ValueError, match="sync"):
        refill.CappedReplayBuffer("async", {}, None, "drop", {}, refill_fn=lambda n: n)


def test_settings_come_from_verls_own_keys():
    """In training, verl passes the buffer a node of its config: the cap is algorithm.filter_groups'."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"algorithm": {"filter_groups": {"enable": True, "metric": "reward", "max_num_gen_batches": 3}},
                            "data": {"train_batch_size": 64}, "trainer": {"v1": {"sync": {"parameter_sync_step": 1}}}})
    buffer = refill.CappedReplayBuffer("sync", cfg.trainer.v1.sync, None, "drop", {}, refill_fn=lambda n: n)
    assert (buffer.batch_size, buffer.max_num_gen_batches, buffer.filter_groups_metric) == (64, 3, "reward")
