"""MostPop against hand-computed metrics; SASRec learns a predictable pattern."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.baselines import SASRecConfig, most_pop, rank_metrics, sasrec, target_ranks


def test_target_ranks_break_ties_by_item_order():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    ranks = target_ranks(scores, torch.tensor([2, 3]))
    assert ranks.tolist() == [1, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=30), st.data())
def test_target_rank_matches_a_stable_sort(values, data):
    target = data.draw(st.integers(0, len(values) - 1))
    scores = torch.tensor([values], dtype=torch.float64)
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    assert target_ranks(scores, torch.tensor([target])).item() == order.index(target)


def test_rank_metrics_values():
    m = rank_metrics(np.array([0, 4, 9, 100]))
    assert m["recall@1"] == 0.25 and m["recall@5"] == 0.5 and m["recall@10"] == 0.75
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(6)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)
    with pytest.raises(ValueError, match="no examples"):
        rank_metrics(np.array([]))


def test_most_pop_hand_computed():
    # training parts s[:-2]: u1 [A, A, B], u2 [A, C], u3 [C]: counts A=3, C=2, B=1, D=0, E=0
    sequences = {
        "u1": ["A", "A", "B", "x", "B"],   # test target B: rank 2 (A, C ahead)
        "u2": ["A", "C", "x", "A"],        # test target A: rank 0
        "u3": ["C", "x", "D"],             # test target D: rank 3 (A, C, B ahead; D before E... )
    }
    sequences["u4"] = ["E", "E", "E"]      # training part [E]: E=1, tie with B broken by item order
    m = most_pop(sequences, "test", max_history=20)
    # counts: A=3, C=2, B=1, E=1, D=0, x=0 -> order A, C, B, E, D, x (ties by item order B<E, D<x)
    # ranks: u1 B=2, u2 A=0, u3 D=4, u4 E=3
    assert m["examples"] == 4
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@5"] == pytest.approx(1.0)
    expected_ndcg5 = (1 / math.log2(4) + 1 + 1 / math.log2(6) + 1 / math.log2(5)) / 4
    assert m["ndcg@5"] == pytest.approx(expected_ndcg5)


def _pattern_sequences(n_users: int = 300, n_items: int = 60, length: int = 12, seed: int = 0):
    """Each user walks item i -> i+1 (mod n_items) from a random start: the next item is
    fully predictable from the last one, while popularity is flat."""
    rng = np.random.default_rng(seed)
    return {
        f"u{u}": [str((start + t) % n_items) for t in range(length)]
        for u, start in enumerate(rng.integers(0, n_items, n_users))
    }


def test_sasrec_learns_a_predictable_pattern():
    sequences = _pattern_sequences()
    pop = most_pop(sequences)
    cfg = SASRecConfig(hidden=32, blocks=1, max_len=10, dropouts=(0.0,), lr=5e-3, max_epochs=15,
                       eval_every=5, patience=10, seed=1, threads=1)
    result = sasrec(sequences, cfg, progress=False)
    assert pop["recall@10"] < 0.35
    assert result["recall@10"] > 0.9
    assert result["recall@10"] > pop["recall@10"] + 0.5
    assert all(0.0 <= result[k] <= 1.0 for k in ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10"))
    assert len(result["train_loss"]) == result["epochs"]
    assert not any(math.isnan(x) for x in result["train_loss"])
    assert result["users"] == [f"u{u}" for u in range(300)] and len(result["ranks"]) == 300


def test_sasrec_stops_after_patience_epochs_without_gain_and_picks_dropout_on_valid():
    sequences = _pattern_sequences(n_users=60, n_items=20, length=6)
    # lr 0: valid NDCG@10 never changes after epoch 1, so training stops at epoch 1 + patience
    cfg = SASRecConfig(hidden=8, blocks=1, max_len=6, lr=0.0, max_epochs=50, patience=4, seed=0, threads=1)
    result = sasrec(sequences, cfg, progress=False)
    assert [(c["best_epoch"], c["epochs"], c["stopped_by"]) for c in result["candidates"]] == [(1, 5, "patience")] * 2
    assert result["converged"] and [c["dropout"] for c in result["candidates"]] == [0.2, 0.5]
    best = max(result["candidates"], key=lambda c: c["valid_ndcg@10"])
    assert result["dropout"] == best["dropout"]
    capped = sasrec(sequences, SASRecConfig(hidden=8, blocks=1, max_len=6, max_minutes=1e-9, threads=1), progress=False)
    assert not capped["converged"] and capped["stopped_by"] == "time cap" and capped["epochs"] == 1
    with pytest.raises(ValueError, match="dropouts"):
        SASRecConfig(dropouts=())
    with pytest.raises(ValueError, match="patience must be >= 1"):
        SASRecConfig(patience=0)


def test_sasrec_is_reproducible_with_a_seed():
    sequences = _pattern_sequences(n_users=80, n_items=30, length=8)
    cfg = SASRecConfig(hidden=16, blocks=1, max_len=8, max_epochs=2, eval_every=1, seed=3, threads=1)
    a = sasrec(sequences, cfg, progress=False)
    b = sasrec(sequences, cfg, progress=False)
    assert a["train_loss"] == b["train_loss"] and a["ndcg@10"] == b["ndcg@10"]
