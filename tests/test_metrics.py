from math import comb, log2

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gream_verl.metrics import (
    ndcg_at_k,
    pass_at_k,
    pass_at_k_unbiased,
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
