from math import comb, log2

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.metrics import (
    bootstrap_ci,
    ndcg_at_k,
    paired_bootstrap_diff,
    pass_at_k,
    pass_at_k_unbiased,
    per_user_metrics,
    ranking_metrics,
    recall_at_k,
    target_ranks,
)

TEN = [str(i) for i in range(10)]


def test_hit_at_rank_1():
    m = ranking_metrics([TEN], ["0"])
    assert m == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "ndcg@5": 1.0, "ndcg@10": 1.0}


def test_hit_at_rank_10():
    m = ranking_metrics([TEN], ["9"])
    assert m["recall@1"] == 0.0 and m["recall@5"] == 0.0 and m["recall@10"] == 1.0
    assert m["ndcg@5"] == 0.0
    assert m["ndcg@10"] == pytest.approx(1 / log2(11))


def test_miss():
    m = ranking_metrics([TEN], ["x"])
    assert all(v == 0.0 for v in m.values())


def test_duplicates_do_not_push_the_target_down():
    # deduplicated: a, b, target -> rank 3
    assert target_ranks([["a", "a", "b", "a", "t"]], ["t"]).tolist() == [3]
    m = ranking_metrics([["a", "a", "a", "a", "a", "t"]], ["t"])
    assert m["recall@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx(1 / log2(3))


def test_mean_over_users_and_none_answers():
    ranks = target_ranks([["t"], [None, "t"], ["x"], []], ["t", "t", "t", "t"])
    assert ranks.tolist() == [1, 1, 0, 0]
    assert recall_at_k(ranks, 1) == 0.5


def test_no_users_is_zero_not_nan():
    assert ranking_metrics([], []) == {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "ndcg@5": 0.0, "ndcg@10": 0.0}
    assert pass_at_k([], []) == {"pass@1": 0.0, "pass@5": 0.0, "pass@10": 0.0}


def test_bad_input():
    with pytest.raises(ValueError, match="2 rankings but 1 targets"):
        target_ranks([["a"], ["b"]], ["a"])
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(np.array([1]), 0)


def test_pass_at_k_counts_distinct_answers_in_sampling_order():
    samples = [["a", "a", "b", "t"], ["t"], ["a", "b"]]
    assert pass_at_k(samples, ["t", "t", "t"], ks=(1, 2, 3)) == {
        "pass@1": pytest.approx(1 / 3),
        "pass@2": pytest.approx(1 / 3),
        "pass@3": pytest.approx(2 / 3),
    }


def test_pass_at_k_unbiased_matches_binomials():
    n, c, k = np.array([10, 10, 5]), np.array([0, 3, 5]), 4
    expected = np.mean([1 - comb(int(nn - cc), k) / comb(int(nn), k) for nn, cc in zip(n, c, strict=True)])
    assert pass_at_k_unbiased(n, c, k) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"need 0 <= c <= n and n >= k=4 for every user"):
        pass_at_k_unbiased(np.array([3]), np.array([1]), 4)


@given(st.lists(st.tuples(st.lists(st.integers(0, 30), max_size=25), st.integers(0, 30)), min_size=1, max_size=20))
def test_metrics_bounded_monotone_and_ndcg_below_recall(cases):
    rankings = [r for r, _ in cases]
    targets = [t for _, t in cases]
    ranks = target_ranks(rankings, targets)
    prev = 0.0
    for k in (1, 2, 5, 10, 20):
        r, n = recall_at_k(ranks, k), ndcg_at_k(ranks, k)
        assert 0.0 <= n <= r <= 1.0
        assert r >= prev
        prev = r
    for rank, ranking, target in zip(ranks, rankings, targets, strict=True):
        distinct = list(dict.fromkeys(ranking))
        assert rank == (distinct.index(target) + 1 if target in distinct else 0)


# --- per-user metrics and the bootstrap over users ---------------------------------------------


def test_per_user_metrics_match_hand_values():
    ranks = np.array([1, 3, 0, 11])
    m = per_user_metrics(ranks, ["recall@10", "ndcg@10"])
    assert m["recall@10"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert m["ndcg@10"] == pytest.approx([1.0, 1 / log2(4), 0.0, 0.0])
    assert recall_at_k(ranks, 10) == pytest.approx(m["recall@10"].mean())
    with pytest.raises(ValueError, match="unknown metric 'mrr@10'"):
        per_user_metrics(ranks, ["mrr@10"])


def _loop_bootstrap(values, num_resamples, seed):
    """Slow reference: one resample at a time, the same random stream as the library."""
    rng = np.random.default_rng(seed)
    n = len(values)
    chunk = max(1, (1 << 22) // n)
    means = []
    while len(means) < num_resamples:
        rows = min(chunk, num_resamples - len(means))
        idx = rng.integers(0, n, size=(rows, n))
        for r in range(rows):
            means.append(sum(values[j] for j in idx[r]) / n)
    return np.quantile(means, [0.025, 0.975])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 0.5, 1 / log2(3)]), min_size=1, max_size=40), st.integers(0, 10**6))
def test_bootstrap_matches_a_loop_reference(values, seed):
    ci = bootstrap_ci(values, num_resamples=200, seed=seed)
    low, high = _loop_bootstrap(values, 200, seed)
    assert ci["low"] == pytest.approx(low) and ci["high"] == pytest.approx(high)
    assert ci["low"] <= ci["mean"] + 1e-12 and ci["mean"] <= ci["high"] + 1e-12
    assert ci["mean"] == pytest.approx(np.mean(values)) and ci["users"] == len(values)


def test_bootstrap_width_matches_the_normal_approximation_and_shrinks_like_one_over_sqrt_n():
    # Bernoulli(0.1) hits: the 95% interval is about 2 * 1.96 * sqrt(p (1 - p) / n) wide
    rng = np.random.default_rng(7)
    widths = {}
    for n in (400, 6400):
        hits = (rng.random(n) < 0.1).astype(float)
        ci = bootstrap_ci(hits, num_resamples=2000, seed=1)
        p = hits.mean()
        widths[n] = ci["high"] - ci["low"]
        assert widths[n] == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / n), rel=0.15)
    assert widths[400] / widths[6400] == pytest.approx(4.0, rel=0.2)  # sqrt(6400 / 400)


def test_paired_difference_is_narrower_than_separate_intervals_and_finds_a_real_gain():
    # B hits every user A hits plus ~1% more: separate intervals overlap, the paired one excludes 0
    rng = np.random.default_rng(3)
    n = 3000
    a = (rng.random(n) < 0.10).astype(float)
    b = np.maximum(a, (rng.random(n) < 0.01).astype(float))
    ca, cb = bootstrap_ci(a, seed=0), bootstrap_ci(b, seed=0)
    assert ca["high"] > cb["low"]  # unpaired intervals overlap
    diff = paired_bootstrap_diff(b, a, seed=0)
    assert diff["mean"] == pytest.approx(b.mean() - a.mean())
    assert 0.0 < diff["low"] < diff["mean"] < diff["high"]
    same = paired_bootstrap_diff(a, a, seed=0)
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0, "users": n}


def test_bootstrap_is_seeded_and_rejects_bad_input():
    values = np.arange(50) % 3 == 0
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci([]) == {"mean": 0.0, "low": 0.0, "high": 0.0, "users": 0}
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap_diff([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="level must be"):
        bootstrap_ci([1.0], level=95)
    with pytest.raises(ValueError, match="1-d"):
        bootstrap_ci(np.zeros((2, 2)))
