import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.index.rqkmeans import assign, fit_rq_kmeans, kmeans, rq_kmeans

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n=600, dim=8, centers=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=5.0, size=(centers, dim))
    return (means[rng.integers(centers, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_deterministic_per_seed_and_seed_matters():
    X = blobs()
    a = rq_kmeans(X, levels=3, codebook_size=16, seed=3, progress=False)
    b = rq_kmeans(X, levels=3, codebook_size=16, seed=3, progress=False)
    c = rq_kmeans(X, levels=3, codebook_size=16, seed=4, progress=False)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_codes_in_range_and_residual_shrinks(balanced, init):
    X = blobs()
    r = fit_rq_kmeans(X, levels=4, codebook_size=16, balanced=balanced, init=init, progress=False)
    assert r.codes.shape == (600, 4) and r.codes.dtype == np.int64
    assert r.codes.min() >= 0 and r.codes.max() < 16
    assert r.codebooks.shape == (4, 16, 8) and r.codebooks.dtype == np.float32
    mse = [r.input_mse, *r.residual_mse]
    assert all(b < a for a, b in zip(mse, mse[1:], strict=False)), mse
    # codes + codebooks reconstruct X up to the final residual
    recon = sum(r.codebooks[level][r.codes[:, level]] for level in range(4))
    assert np.mean(np.sum((X - recon) ** 2, axis=1)) == pytest.approx(r.residual_mse[-1], rel=1e-3)


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(1)
    means = np.eye(4, 6, dtype=np.float32) * 50
    truth = np.repeat(np.arange(4), 50)
    X = torch.from_numpy(means[truth] + rng.normal(size=(200, 6)).astype(np.float32))
    _, labels, _ = kmeans(X, 4, seed=0)
    # every true cluster maps to one label and labels are distinct across clusters
    mapping = {int(t): set(labels[truth == t].tolist()) for t in range(4)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len(set().union(*mapping.values())) == 4


@settings(max_examples=25, deadline=None)
@given(n=st.integers(20, 300), k=st.integers(2, 20), seed=st.integers(0, 1000))
def test_balanced_assignment_respects_capacity(n, k, seed):
    if k > n:
        k = n
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g) * torch.tensor([10.0, 1, 1, 1, 1])  # skewed: plain k-means is unbalanced
    C = X[:k].clone() + 0.01
    labels, dist = assign(X, C, chunk_size=17, capacity=math.ceil(n / k))
    sizes = torch.bincount(labels, minlength=k)
    assert int(sizes.sum()) == n and int(labels.min()) >= 0
    assert int(sizes.max()) <= math.ceil(n / k)
    expect = ((X - C[labels]) ** 2).sum(1)
    assert torch.allclose(dist, expect, rtol=1e-4, atol=1e-3)


def test_balanced_rq_sizes_bounded_and_plain_is_not():
    rng = np.random.default_rng(0)
    # one dense blob plus a spread: plain k-means puts many points in few clusters
    X = np.concatenate([rng.normal(size=(400, 4)) * 0.1, rng.normal(size=(100, 4)) * 20]).astype(np.float32)
    cap = math.ceil(500 / 10)
    bal = rq_kmeans(X, levels=2, codebook_size=10, balanced=True, progress=False)
    plain = rq_kmeans(X, levels=2, codebook_size=10, balanced=False, progress=False)
    for level in range(2):
        assert np.bincount(bal[:, level], minlength=10).max() <= cap
    assert np.bincount(plain[:, 0], minlength=10).max() > cap


def test_nearest_assignment_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    X, C = torch.randn(333, 7, generator=g), torch.randn(9, 7, generator=g)
    labels, dist = assign(X, C, chunk_size=50)
    brute = torch.cdist(X, C) ** 2
    assert torch.equal(labels, brute.argmin(1))
    assert torch.allclose(dist, brute.min(1).values, atol=1e-4)


def test_chunk_size_does_not_change_codes():
    X = blobs(n=300)
    a = rq_kmeans(X, levels=2, codebook_size=8, chunk_size=7, progress=False)
    b = rq_kmeans(X, levels=2, codebook_size=8, chunk_size=10_000, progress=False)
    assert np.array_equal(a, b)


def test_subsampled_fit_still_assigns_every_point():
    X = blobs(n=2000, dim=4)
    r = fit_rq_kmeans(X, levels=2, codebook_size=8, max_points_per_centroid=10, progress=False)
    # centroids fitted on 80 points, but each of the 2000 points is assigned to its nearest one
    d = ((X[:, None, :] - r.codebooks[0][None]) ** 2).sum(-1)
    assert np.array_equal(r.codes[:, 0], d.argmin(1))


def test_duplicate_points_and_empty_clusters_are_fine():
    X = np.repeat(np.arange(5, dtype=np.float32)[:, None], 20, axis=0) * np.ones((1, 3), np.float32)
    codes = rq_kmeans(X, levels=2, codebook_size=8, progress=False)  # only 5 distinct points for 8 codes
    assert codes.shape == (100, 2) and codes.max() < 8
    assert len({tuple(c) for c in codes}) == 5


def test_bad_input_errors():
    X = blobs(n=50)
    with pytest.raises(ValueError, match="codebook_size 64 is larger than the number of items 50"):
        rq_kmeans(X, levels=1, codebook_size=64, progress=False)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rq_kmeans(bad, levels=1, codebook_size=4, progress=False)
    with pytest.raises(ValueError, match="2-D"):
        rq_kmeans(X[0], levels=1, codebook_size=4, progress=False)
    with pytest.raises(ValueError, match="init"):
        rq_kmeans(X, levels=1, codebook_size=4, init="bogus", progress=False)
