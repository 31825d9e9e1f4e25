"""Top-k metrics with one held-out target per user (leave-one-out), vectorised over users.

* ``Recall@k`` (= HR@k with one target): the target is among the first k distinct items.
* ``NDCG@k``: ``1 / log2(rank + 1)`` if the target's rank is <= k, else 0 (ideal DCG is 1).
* ``Pass@k`` (reasoning mode): the target is among the first k *distinct* answers of the
  sampled chains, in sampling order. :func:`pass_at_k_unbiased` is the alternative unbiased
  estimator ``1 - C(n - c, k) / C(n, k)`` from n samples with c correct (Chen et al., 2021).

Rankings are deduplicated (first occurrence kept) before ranks are taken, so a repeated item
never pushes the target down. Every value lies in [0, 1]; no users gives 0.0, not NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_RECALL_KS = (1, 5, 10)
DEFAULT_NDCG_KS = (5, 10)


def dedupe(ranking: Iterable) -> list:
    """Items in first-occurrence order, ``None`` (unparseable answers) dropped."""
    return [x for x in dict.fromkeys(ranking) if x is not None]


def target_ranks(rankings: Sequence[Sequence], targets: Sequence) -> np.ndarray:
    """1-based rank of each user's target in their deduplicated ranking, 0 when absent."""
    if len(rankings) != len(targets):
        raise ValueError(f"{len(rankings)} rankings but {len(targets)} targets")
    if not rankings:
        return np.zeros(0, dtype=np.int64)
    lists = [dedupe(r) for r in rankings]
    width = max((len(r) for r in lists), default=0)
    if width == 0:
        return np.zeros(len(lists), dtype=np.int64)
    table = np.full((len(lists), width), None, dtype=object)
    for row, r in enumerate(lists):
        table[row, : len(r)] = r
    hits = table == np.asarray(list(targets), dtype=object)[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    k = _check_k(k)
    return float(((ranks >= 1) & (ranks <= k)).mean()) if ranks.size else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    k = _check_k(k)
    if not ranks.size:
        return 0.0
    hit = (ranks >= 1) & (ranks <= k)
    gains = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
    return float(gains.mean())


def ranking_metrics(
    rankings: Sequence[Sequence],
    targets: Sequence,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
) -> dict[str, float]:
    """``{"recall@1": ..., "ndcg@5": ...}`` for best-first rankings (direct mode)."""
    ranks = target_ranks(rankings, targets)
    out = {f"recall@{k}": recall_at_k(ranks, k) for k in recall_ks}
    out.update({f"ndcg@{k}": ndcg_at_k(ranks, k) for k in ndcg_ks})
    return out


def pass_at_k(samples: Sequence[Sequence], targets: Sequence, ks: Sequence[int] = DEFAULT_RECALL_KS) -> dict[str, float]:
    """``{"pass@k": ...}``: fraction of users whose target is among the first k distinct
    answers of their sampled chains, in sampling order (unparseable answers are ``None``)."""
    ranks = target_ranks(samples, targets)
    return {f"pass@{k}": recall_at_k(ranks, k) for k in ks}


def pass_at_k_unbiased(num_samples: np.ndarray, num_correct: np.ndarray, k: int) -> float:
    """Mean over users of ``1 - C(n - c, k) / C(n, k)``, computed as a stable product.
    Needs ``n >= k`` for every user."""
    n = np.asarray(num_samples, dtype=np.int64)
    c = np.asarray(num_correct, dtype=np.int64)
    k = _check_k(k)
    if n.shape != c.shape:
        raise ValueError(f"num_samples {n.shape} and num_correct {c.shape} differ in shape")
    if not n.size:
        return 0.0
    if (n < k).any() or (c < 0).any() or (c > n).any():
        raise ValueError(f"need 0 <= c <= n and n >= k={k} for every user")
    # C(n-c, k) / C(n, k) = prod_{i=0}^{k-1} (n - c - i) / (n - i)
    i = np.arange(k)[None, :]
    ratio = np.clip((n[:, None] - c[:, None] - i) / (n[:, None] - i), 0.0, 1.0).prod(axis=1)
    return float((1.0 - ratio).mean())
