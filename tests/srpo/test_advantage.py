"""Bonus-calibrated group advantage against hand-computed values and a float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.srpo.advantage import (
    SrpoConfig,
    comb_ratio,
    compute_srpo_outcome_advantage,
    mask_zero_variance_groups,
    passk_bonus,
    srpo_config,
    srpo_scalar,
    zero_variance_group_mask,
)


def reference(scores, uids, hits, k, weight, norm=True, eps=1e-6):
    """Straightforward per-group float64 implementation with exact integer binomials."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(scores)
    for u in dict.fromkeys(uids):
        idx = [i for i, v in enumerate(uids) if v == u]
        r = scores[idx]
        g = len(idx)
        if g == 1:
            grpo = r - 0.0
            grpo = grpo / (1.0 + eps) if norm else grpo
        else:
            grpo = (r - r.mean()) / (r.std(ddof=1) + eps) if norm else r - r.mean()
        c = int(sum(hits[i] for i in idx))
        kk = min(k, g)
        rho = 1 - math.comb(g - c, kk) / math.comb(g, kk)
        sigma = math.sqrt(rho * (1 - rho))
        delta = math.comb(g - c - 1, kk - 1) / math.comb(g - 1, kk - 1) if c < g else 0.0
        for j, i in enumerate(idx):
            bonus = 0.0
            if sigma > 1e-12:
                bonus = (1 - rho) / sigma if hits[i] else ((1 - rho) - delta) / sigma
            out[i] = grpo[j] + weight * bonus
    return out


def test_hand_computed_bonus_g10_k4_c2():
    # rho = 1 - C(8,4)/C(10,4) = 2/3, sigma = sqrt(2/9), delta = C(7,3)/C(9,3) = 5/12
    hit = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    bonus = passk_bonus(hit, torch.zeros(10, dtype=torch.long), 1, k=4)
    sigma = math.sqrt(2 / 9)
    assert bonus[0].item() == pytest.approx((1 / 3) / sigma, abs=1e-12)
    assert bonus[5].item() == pytest.approx((1 / 3 - 5 / 12) / sigma, abs=1e-12)
    assert bonus.sum().item() == pytest.approx(0.0, abs=1e-12)  # zero-mean within the group


@pytest.mark.parametrize("c", range(0, 11))
def test_every_hit_count_is_finite(c):
    hit = torch.tensor([1] * c + [0] * (10 - c))
    scores = hit.float() * 1.0
    adv = srpo_scalar(scores, np.array(["u"] * 10, dtype=object), cfg=SrpoConfig(k=4))
    assert torch.isfinite(adv).all()
    if c in (0, 10) or c > 10 - 4:  # sigma = 0: no bonus, plain GRPO
        expected = reference(scores.numpy(), ["u"] * 10, hit.tolist(), 4, 0.0)
        np.testing.assert_allclose(adv.numpy(), expected, atol=1e-6)


def test_small_groups_and_singletons():
    uids = ["a", "b", "b", "c", "c", "c"]
    hits = [1, 1, 0, 0, 0, 1]
    scores = torch.tensor([1.0, 1.0, 0.5, 0.0, 0.5, 1.0])
    adv = srpo_scalar(scores, np.array(uids, dtype=object), cfg=SrpoConfig(k=4))
    np.testing.assert_allclose(adv.numpy(), reference(scores.numpy(), uids, hits, 4, 1.0), atol=1e-6)
    assert adv[0].item() == pytest.approx(1.0, abs=1e-5)  # singleton: r itself, no bonus


def test_ties_give_zero_advantage():
    adv = srpo_scalar(torch.full((8,), 0.5), np.zeros(8, dtype=np.int64))
    assert torch.equal(adv, torch.zeros(8))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=1, max_size=12),
    st.integers(1, 8),
    st.floats(0.0, 2.0),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_matches_float64_reference(sizes, k, weight, norm, rnd):
    uids, scores = [], []
    for gi, g in enumerate(sizes):
        for _ in range(g):
            uids.append(f"uid-{gi}")
            scores.append(rnd.choice([0.0, 0.5, math.sqrt(0.75), 1.0, rnd.random()]))
    order = list(range(len(uids)))
    rnd.shuffle(order)  # groups need not be contiguous
    uids = [uids[i] for i in order]
    scores = [scores[i] for i in order]
    hits = [int(s >= 1.0 - 1e-6) for s in scores]  # the documented float slack of the threshold
    adv = srpo_scalar(torch.tensor(scores, dtype=torch.float64), np.array(uids, dtype=object),
                      cfg=SrpoConfig(k=k, bonus_weight=weight), norm_by_std=norm)
    expected = reference(scores, uids, hits, k, weight, norm)
    assert np.isfinite(adv.numpy()).all()
    assert np.max(np.abs(adv.numpy() - expected)) < 1e-6


def test_config_reading_and_errors():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "srpo": {"k": 2, "bonus_weight": 0.5}})
    assert srpo_config(cfg) == SrpoConfig(k=2, bonus_weight=0.5)
    assert srpo_config(OmegaConf.create({})) == SrpoConfig()
    with pytest.raises(ValueError, match="unknown algorithm.srpo"):
        srpo_config(OmegaConf.create({"srpo": {"kk": 2}}))
    with pytest.raises(ValueError, match="k must be"):
        SrpoConfig(k=0)
    rewards = torch.zeros(4, 3)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 0.5, 0.0])
    adv, ret = compute_srpo_outcome_advantage(rewards, torch.ones(4, 3), np.array(["x"] * 4, dtype=object), config=cfg)
    # norm_adv_by_std_in_grpo=False read from config: centred rewards plus 0.5 * bonus
    expected = reference([1.0, 0.0, 0.5, 0.0], ["x"] * 4, [1, 0, 0, 0], 2, 0.5, norm=False)
    np.testing.assert_allclose(adv[:, 0].numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="use_kl_in_reward"):
        compute_srpo_outcome_advantage(rewards, torch.ones(4, 3), np.zeros(4), config=OmegaConf.create({"use_kl_in_reward": True}))
    with pytest.raises(ValueError, match="non-finite"):
        srpo_scalar(torch.tensor([float("nan"), 1.0]), np.zeros(2))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0.0, 0.25, 0.5, 1.0])), max_size=40), st.floats(0, 0.3))
def test_zero_variance_group_mask(rows, tol):
    gids = [g for g, _ in rows]
    scores = [s for _, s in rows]
    keep = zero_variance_group_mask(scores, np.array(gids), tol)
    for i, g in enumerate(gids):
        group = [s for gg, s in rows if gg == g]
        assert keep[i] == (float(np.std(group)) > tol)


def test_zero_variance_mask_keeps_float_ties_out():
    # ten identical float64 rewards whose mean is not exactly representable: std must count as 0
    scores = [math.sqrt(0.5)] * 10 + [0.0, 1.0]
    keep = zero_variance_group_mask(scores, np.array([0] * 10 + [1, 1]), tol=1e-9)
    assert keep.tolist() == [False] * 10 + [True, True]


def test_hand_computed_bonus_k1():
    # G=3, c=1, k=1: rho = 1 - 2/3 = 1/3, sigma = sqrt(2)/3, delta = C(1,0)/C(2,0) = 1
    bonus = passk_bonus(torch.tensor([0, 0, 1]), torch.zeros(3, dtype=torch.long), 1, k=1)
    np.testing.assert_allclose(bonus.numpy(), [-1 / math.sqrt(2), -1 / math.sqrt(2), math.sqrt(2)], atol=1e-12)
    scores = torch.tensor([0.0, 0.0, 0.9999995], dtype=torch.float64)  # within the threshold's 1e-6 slack
    adv = srpo_scalar(scores, np.zeros(3), cfg=SrpoConfig(k=1), norm_by_std=False)
    assert adv[2].item() == pytest.approx(0.9999995 * 2 / 3 + math.sqrt(2), abs=1e-9)


def test_huge_k_is_clamped_to_the_group_before_allocating():
    import tracemalloc

    scores = torch.tensor([1.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.25])
    uids = np.zeros(8, dtype=np.int64)
    expected = srpo_scalar(scores, uids, cfg=SrpoConfig(k=8))  # pass@8 of a group of 8
    # k = 10**6 first: code that allocates O(k) fails this bound with tens of MB instead of
    # going on to 10**9, which needed 22 GB before the fix
    for k in (10**6, 10**9):
        tracemalloc.start()  # numpy reports its array buffers to tracemalloc
        try:
            adv = srpo_scalar(scores, uids, cfg=SrpoConfig(k=k))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1_000_000, f"k={k}: {peak} bytes traced for a group of 8"
        assert torch.equal(adv, expected)


def test_comb_ratio_against_math_comb():
    a, b, k = np.array([5, 3, 0, 7]), np.array([9, 3, 4, 7]), np.array([4, 2, 1, 0])
    expected = [math.comb(x, y) / math.comb(z, y) for x, z, y in zip(a, b, k, strict=True)]
    np.testing.assert_allclose(comb_ratio(a, b, k), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="needs k <= b"):
        comb_ratio(np.array([3]), np.array([3]), np.array([4]))


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan"), float("inf")])
def test_epsilon_must_be_positive(epsilon):
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match="algorithm.srpo.epsilon must be a finite number > 0"):
        srpo_config(OmegaConf.create({"srpo": {"epsilon": epsilon}}))


@pytest.mark.parametrize("k", [0, 2.5, float("inf"), "four", None])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="algorithm.srpo.k must be an integer >= 1"):
        SrpoConfig(k=k)


def test_dynamic_sampling_returns_its_counts():
    scores = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0])
    mask = torch.ones(8, 3)
    stats = mask_zero_variance_groups(scores, np.array(["a", "a", "b", "b", "c", "c", "d", "d"], dtype=object), mask)
    assert stats == {"srpo/dynamic_sampling/groups_kept": 1, "srpo/dynamic_sampling/groups_dropped": 3,
                     "srpo/dynamic_sampling/kept_fraction": 0.25}
    assert mask.sum(1).tolist() == [3, 3, 0, 0, 0, 0, 0, 0]
