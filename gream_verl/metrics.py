"""Top-k metrics with one held-out target per user (leave-one-out), vectorised over users.

* ``Recall@k`` (= HR@k with one target): the target is among the first k distinct items.
* ``NDCG@k``: ``1 / log2(rank + 1)`` if the target's rank is <= k, else 0 (ideal DCG is 1).
* ``Pass@k`` (reasoning mode): the target is among the first k *distinct* answers of the
  sampled chains, in sampling order. :func:`pass_at_k_unbiased` is the alternative unbiased
  estimator ``1 - C(n - c, k) / C(n, k)`` from n samples with c correct (Chen et al., 2021).

Rankings are deduplicated (first occurrence kept) before ranks are taken, so a repeated item
never pushes the target down. Every value lies in [0, 1]; no users gives 0.0, not NaN.

Uncertainty. A metric is a mean over users, so its uncertainty comes from which users happened to
be in the test split. :func:`bootstrap_ci` resamples users with replacement and reads the 2.5%
and 97.5% percentiles of the resampled means (percentile bootstrap). Two systems scored on the
*same* users are compared with :func:`paired_bootstrap_diff`: the per-user differences are
resampled together, so the user-to-user variation both systems share cancels and the interval of
"A minus B" is much narrower than the two separate intervals suggest. An interval that excludes 0
says the difference is not an accident of the user sample (at the 95% level).
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


def recall_per_user(ranks: np.ndarray, k: int) -> np.ndarray:
    """(users,) 1.0 where the 1-based rank is in 1..k, else 0.0 (rank 0 = target absent)."""
    ranks = np.asarray(ranks)
    k = _check_k(k)
    return ((ranks >= 1) & (ranks <= k)).astype(np.float64)


def ndcg_per_user(ranks: np.ndarray, k: int) -> np.ndarray:
    """(users,) ``1 / log2(rank + 1)`` where the 1-based rank is in 1..k, else 0.0."""
    ranks = np.asarray(ranks)
    k = _check_k(k)
    hit = (ranks >= 1) & (ranks <= k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


def per_user_metrics(ranks: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{"recall@10": (users,), "ndcg@10": (users,), ...}`` from 1-based ranks (0 = absent);
    each name is ``recall@k`` or ``ndcg@k``."""
    out = {}
    for name in names:
        kind, _, k = str(name).partition("@")
        if kind not in ("recall", "ndcg") or not k.isdigit():
            raise ValueError(f"unknown metric {name!r}; expected recall@k or ndcg@k")
        out[name] = (recall_per_user if kind == "recall" else ndcg_per_user)(ranks, int(k))
    return out


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    per_user = recall_per_user(ranks, k)
    return float(per_user.mean()) if per_user.size else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    per_user = ndcg_per_user(ranks, k)
    return float(per_user.mean()) if per_user.size else 0.0


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


# --- confidence intervals: bootstrap over users ------------------------------------------------

BOOTSTRAP_RESAMPLES = 2000


def _resampled_means(values: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
    """(num_resamples,) means of ``values`` (users,) over users drawn with replacement.

    Resamples are drawn in chunks of at most ~4M indices, so memory stays bounded for any
    number of users; the same seed gives the same resamples for any chunking of the same size.
    """
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // n)
    means = np.empty(num_resamples, dtype=np.float64)
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def _interval(values, num_resamples: int, level: float, seed: int, what: str) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{what}: expected one value per user (1-d), got shape {values.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(num_resamples) < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    if values.size == 0:
        return {"mean": 0.0, "low": 0.0, "high": 0.0, "users": 0}
    if not np.isfinite(values).all():
        raise ValueError(f"{what}: per-user values contain NaN or inf")
    means = _resampled_means(values, int(num_resamples), seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "users": int(values.size)}


def bootstrap_ci(values, num_resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                 seed: int = 0) -> dict[str, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (users,), e.g. per-user Recall@10.

    Returns ``{"mean", "low", "high", "users"}``; no users gives zeros (not NaN).
    """
    return _interval(values, num_resamples, level, seed, "bootstrap_ci")


def paired_bootstrap_diff(a, b, num_resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                          seed: int = 0) -> dict[str, float]:
    """Interval of ``mean(a) - mean(b)`` for two systems' per-user values on the same users
    (``a[i]`` and ``b[i]`` belong to user i): users are resampled, each keeping both values.

    Returns ``{"mean", "low", "high", "users"}``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_diff needs the same users for both systems: shapes {a.shape} and {b.shape}")
    return _interval(a - b, num_resamples, level, seed, "paired_bootstrap_diff")
