"""Residual k-means (RQ-KMeans): level ``l`` clusters what levels ``0..l-1`` left unexplained.

Pure torch (float32 on CPU or GPU), no verl import. The algorithm per level:

* **training points**: like faiss, centroids are fitted on a random subsample of at most
  ``max_points_per_centroid * codebook_size`` residuals (256 x 256 = 65,536 by default), then
  *every* point is assigned in one chunked pass. That keeps 1M items x 4 levels in about a minute
  instead of ~100 full passes; ``max_points_per_centroid=None`` runs Lloyd on all points.
* **init**: ``"kmeans++"`` (default) runs greedy k-means++ seeding on a random subsample of
  ``min(n, 32 * codebook_size)`` training points, so seeding cost does not grow with N;
  ``"random"`` picks ``codebook_size`` distinct random points.
* **Lloyd iterations**: full-batch over the training points, distances computed in row chunks
  (``||c||^2 - 2 x.c`` by one matmul per chunk), so memory stays at ``chunk_size x codebook_size``
  floats beyond the data and one residual copy; centroid sums go through a sparse one-hot matmul
  per chunk and accumulate in float64. Stops after ``iters`` iterations or when the inertia
  improves by less than ``tol`` (relative).
* **empty clusters** take the points farthest from their centroids (deterministic).
* **balanced** (optional): capacity-constrained greedy assignment. Every cluster holds at most
  ``ceil(N / K)`` points: each unplaced point proposes to its nearest cluster that still has room,
  an over-subscribed cluster keeps its closest proposers up to its room and closes, the rest
  propose again. Each round closes a cluster, so there are at most ``K`` rounds, all vectorised.

Everything is seeded by ``seed`` (level ``l`` uses ``seed + l``), so a seed gives the same codes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

INITS = ("kmeans++", "random")
KMEANSPP_SAMPLE_PER_CLUSTER = 32
SMALL_WORK = 50_000_000  # items x codebook_size x dim below which one thread is faster


@dataclass
class RQKMeansResult:
    """Codes ``[N, levels]`` (int64), codebooks ``[levels, K, D]`` (float32) and, per level, the
    mean squared norm of the residual left after that level (it shrinks level by level)."""

    codes: np.ndarray
    codebooks: np.ndarray
    residual_mse: list[float]
    input_mse: float
    iterations: list[int] = field(default_factory=list)


def rq_kmeans(
    X: np.ndarray | torch.Tensor,
    levels: int = 4,
    codebook_size: int = 256,
    balanced: bool = False,
    iters: int = 25,
    seed: int = 0,
    **kwargs,
) -> np.ndarray:
    """Codes ``[N, levels]`` of residual k-means on ``X`` ``[N, D]``; see :func:`fit_rq_kmeans`."""
    return fit_rq_kmeans(X, levels, codebook_size, balanced, iters, seed, **kwargs).codes


def fit_rq_kmeans(
    X: np.ndarray | torch.Tensor,
    levels: int = 4,
    codebook_size: int = 256,
    balanced: bool = False,
    iters: int = 25,
    seed: int = 0,
    init: str = "kmeans++",
    tol: float = 1e-4,
    chunk_size: int = 32768,
    max_points_per_centroid: int | None = 256,
    device: str = "cpu",
    progress: bool = True,
) -> RQKMeansResult:
    """Residual k-means with ``levels`` codebooks of ``codebook_size`` centroids each.

    A codebook larger than the number of points is an error (a level could not use its codes
    and the index would carry dead tokens): lower ``codebook_size``.
    """
    residual = _validated_copy(X, device)
    n, _ = residual.shape
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    if codebook_size > n:
        raise ValueError(f"codebook_size {codebook_size} is larger than the number of items {n}; use codebook_size <= {n}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")

    with _single_thread_if_small(n * codebook_size * residual.shape[1]):
        return _fit(residual, levels, codebook_size, balanced, iters, seed, init, tol, chunk_size,
                    max_points_per_centroid, progress)


def _fit(residual, levels, codebook_size, balanced, iters, seed, init, tol, chunk_size,
         max_points_per_centroid, progress) -> RQKMeansResult:
    n = residual.shape[0]
    input_mse = _mean_sq_norm(residual, chunk_size)
    if not math.isfinite(input_mse):
        bad = int((~torch.isfinite(residual)).any(1).sum())
        raise ValueError(f"embeddings contain NaN/inf or overflowing values ({bad} rows non-finite)")
    codes = torch.empty((n, levels), dtype=torch.int64)
    codebooks, residual_mse, iterations = [], [], []
    for level in tqdm(range(levels), desc="rq-kmeans levels", disable=not progress):
        centroids, labels, its = kmeans(
            residual, codebook_size, iters=iters, seed=seed + level, init=init, tol=tol,
            balanced=balanced, chunk_size=chunk_size, max_points_per_centroid=max_points_per_centroid,
        )
        for s in range(0, n, chunk_size):  # subtract in place, chunk by chunk (no N x D gather)
            residual[s : s + chunk_size] -= centroids[labels[s : s + chunk_size]]
        codes[:, level] = labels.cpu()
        codebooks.append(centroids.cpu().numpy())
        residual_mse.append(_mean_sq_norm(residual, chunk_size))
        iterations.append(its)
        log.debug("level %d: %d iterations, residual mse %.6f", level, its, residual_mse[-1])
    return RQKMeansResult(codes.numpy(), np.stack(codebooks), residual_mse, input_mse, iterations)


@contextlib.contextmanager
def _single_thread_if_small(work: int):
    """Small problems run on one thread: torch's thread pool costs more than it saves there, and
    much more on a busy machine where idle OpenMP workers spin for cores."""
    threads = torch.get_num_threads()
    small = work < SMALL_WORK and threads > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(threads)


def kmeans(
    X: torch.Tensor,
    k: int,
    iters: int = 25,
    seed: int = 0,
    init: str = "kmeans++",
    tol: float = 1e-4,
    balanced: bool = False,
    chunk_size: int = 32768,
    max_points_per_centroid: int | None = 256,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One level: ``(centroids [k, D], labels [N], iterations run)``; labels are the final
    assignment of all of ``X`` to the returned centroids."""
    n = X.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    train = X
    if max_points_per_centroid is not None and n > max_points_per_centroid * k:
        train = X[torch.randperm(n, generator=gen)[: max_points_per_centroid * k].to(X.device)]
    centroids = _init_centroids(train, k, init, gen)
    capacity = math.ceil(train.shape[0] / k) if balanced else None
    prev_inertia = math.inf
    its = 0
    for its in range(1, iters + 1):  # noqa: B007 (its is reported)
        labels, dist = assign(train, centroids, chunk_size, capacity)
        inertia = float(dist.sum(dtype=torch.float64))
        centroids = _update_centroids(train, labels, dist, centroids, chunk_size)
        if math.isfinite(prev_inertia) and prev_inertia - inertia <= tol * max(prev_inertia, 1e-30):
            break
        prev_inertia = inertia
    labels, _ = assign(X, centroids, chunk_size, math.ceil(n / k) if balanced else None)
    return centroids, labels, its


def assign(
    X: torch.Tensor, centroids: torch.Tensor, chunk_size: int = 32768, capacity: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``[N]`` and squared distances ``[N]``: nearest centroid, or with ``capacity`` the
    capacity-constrained greedy assignment (no cluster gets more than ``capacity`` points)."""
    if capacity is None:
        return _nearest(X, centroids, chunk_size)
    return _balanced_assign(X, centroids, capacity, chunk_size)


def _nearest(
    X: torch.Tensor,
    centroids: torch.Tensor,
    chunk_size: int,
    closed: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest open centroid for every row of ``X`` (or only ``rows``, gathered chunk by chunk
    so no copy of the selected rows is made)."""
    n = X.shape[0] if rows is None else rows.numel()
    c_sq = (centroids * centroids).sum(1)
    if closed is not None:
        c_sq = c_sq.masked_fill(closed, math.inf)
    labels = torch.empty(n, dtype=torch.int64, device=X.device)
    dist = torch.empty(n, dtype=X.dtype, device=X.device)
    d = None
    for s in range(0, n, chunk_size):
        xb = X[s : s + chunk_size] if rows is None else X[rows[s : s + chunk_size]]
        if d is None or d.shape[0] != xb.shape[0]:
            d = torch.empty((xb.shape[0], centroids.shape[0]), dtype=X.dtype, device=X.device)
        torch.addmm(c_sq, xb, centroids.T, beta=1.0, alpha=-2.0, out=d)  # ||c||^2 - 2 x.c
        torch.min(d, 1, out=(dist[s : s + chunk_size], labels[s : s + chunk_size]))
        dist[s : s + chunk_size] += torch.linalg.vector_norm(xb, dim=1).square_()
    return labels, dist.clamp_min_(0.0)


def _balanced_assign(
    X: torch.Tensor, centroids: torch.Tensor, capacity: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = X.shape[0], centroids.shape[0]
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} clusters cannot hold {n} points")
    labels = torch.full((n,), -1, dtype=torch.int64, device=X.device)
    dist = torch.empty(n, dtype=X.dtype, device=X.device)
    room = torch.full((k,), capacity, dtype=torch.int64, device=X.device)
    pending = torch.arange(n, device=X.device)
    while pending.numel():
        lab, d = _nearest(X, centroids, chunk_size, closed=room == 0, rows=pending)
        # sort proposals by (cluster, distance); each cluster keeps its `room` closest proposers
        order = torch.argsort(d, stable=True)
        order = order[torch.argsort(lab[order], stable=True)]
        lab_sorted = lab[order]
        proposals = torch.bincount(lab_sorted, minlength=k)
        starts = torch.cumsum(proposals, 0) - proposals
        rank = torch.arange(order.numel(), device=X.device) - starts[lab_sorted]
        accept = rank < room[lab_sorted]
        taken = order[accept]
        labels[pending[taken]] = lab_sorted[accept]
        dist[pending[taken]] = d[taken]
        # an over-subscribed cluster took exactly its room, so it is now closed (room 0)
        room -= torch.bincount(lab_sorted[accept], minlength=k)
        pending = pending[order[~accept]]
    return labels, dist


def _update_centroids(
    X: torch.Tensor, labels: torch.Tensor, dist: torch.Tensor, old: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    k, dim = old.shape
    sums = torch.zeros((k, dim), dtype=torch.float64, device=X.device)
    for s in range(0, X.shape[0], chunk_size):
        lab = labels[s : s + chunk_size]
        m = lab.numel()
        one_hot = torch.sparse_coo_tensor(
            torch.stack([lab, torch.arange(m, device=X.device)]),
            torch.ones(m, dtype=X.dtype, device=X.device), (k, m), check_invariants=False,
        )
        sums += torch.sparse.mm(one_hot, X[s : s + chunk_size]).to(torch.float64)
    counts = torch.bincount(labels, minlength=k)
    centroids = (sums / counts.clamp_min(1).unsqueeze(1).to(torch.float64)).to(X.dtype)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():  # re-seed empty clusters at the worst-fitted points
        far = torch.topk(dist, min(empty.numel(), dist.numel())).indices
        centroids[empty[: far.numel()]] = X[far]
    return centroids


def _init_centroids(X: torch.Tensor, k: int, init: str, gen: torch.Generator) -> torch.Tensor:
    n = X.shape[0]
    if init == "random":
        return X[torch.randperm(n, generator=gen)[:k].to(X.device)].clone()
    sample_size = min(n, KMEANSPP_SAMPLE_PER_CLUSTER * k)
    sample = X[torch.randperm(n, generator=gen)[:sample_size].to(X.device)]
    return _kmeans_plus_plus(sample, k, gen)


def _kmeans_plus_plus(S: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: each step draws ``2 + ln k`` candidates with probability ~ squared
    distance to the nearest centroid so far and keeps the one that lowers the total most
    (uniformly among unchosen points once every distance is zero)."""
    m = S.shape[0]
    trials = 2 + int(math.log(k))
    sq = (S * S).sum(1)

    def sq_dist_to(idx: torch.Tensor) -> torch.Tensor:  # [m, len(idx)]
        return (sq[:, None] - 2.0 * (S @ S[idx].T) + sq[idx][None, :]).clamp_min_(0.0)

    first = torch.randint(m, (1,), generator=gen).to(S.device)
    idx = [int(first)]
    closest = sq_dist_to(first)[:, 0]
    for _ in range(1, k):
        weights = closest.to(torch.float64).cpu()
        if float(weights.sum()) <= 0.0:
            weights = torch.ones(m, dtype=torch.float64)
            weights[idx] = 0.0
        candidates = torch.multinomial(weights, trials, replacement=True, generator=gen).to(S.device)
        merged = torch.minimum(closest[:, None], sq_dist_to(candidates))  # [m, trials]
        best = int(torch.argmin(merged.sum(0, dtype=torch.float64)))
        idx.append(int(candidates[best]))
        closest = merged[:, best]
    return S[torch.tensor(idx, device=S.device)].clone()


def _validated_copy(X: np.ndarray | torch.Tensor, device: str) -> torch.Tensor:
    """A float32 copy on ``device`` that RQ-KMeans may overwrite with residuals."""
    t = torch.as_tensor(X)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"expected a non-empty 2-D array [items, dim], got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32, copy=True)


def _mean_sq_norm(X: torch.Tensor, chunk_size: int) -> float:
    return float(_row_sq_norms(X, chunk_size).sum(dtype=torch.float64)) / X.shape[0]


def _row_sq_norms(X: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``||x||^2`` per row, without an N x D temporary."""
    out = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for s in range(0, X.shape[0], chunk_size):
        out[s : s + chunk_size] = torch.linalg.vector_norm(X[s : s + chunk_size], dim=1).square_()
    return out
