import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from gream_verl.config import load_config
from gream_verl.data.dataset import RecDataset
from gream_verl.index import collab
from gream_verl.index.build import build_index
from gream_verl.index.collab import collaborative_embeddings, cooccurrence_counts, fuse, positive_pmi

ITEMS = [str(i) for i in range(8)]
sequences_strategy = st.lists(st.lists(st.sampled_from(ITEMS), max_size=12), max_size=8)


def brute_force_counts(sequences, items, window):
    pos = {item: i for i, item in enumerate(items)}
    counts = np.zeros((len(items), len(items)))
    for seq in sequences:
        for i in range(len(seq)):
            for j in range(max(0, i - window), i):
                counts[pos[seq[i]], pos[seq[j]]] += 1 / (i - j)
                counts[pos[seq[j]], pos[seq[i]]] += 1 / (i - j)
    return counts


@settings(max_examples=80, deadline=None)
@given(sequences=sequences_strategy, window=st.integers(1, 4))
def test_counts_match_a_plain_loop(sequences, window):
    counts = cooccurrence_counts(sequences, ITEMS, window).toarray()
    np.testing.assert_allclose(counts, brute_force_counts(sequences, ITEMS, window), atol=1e-12)


@settings(max_examples=80, deadline=None)
@given(sequences=sequences_strategy, window=st.integers(1, 4))
def test_ppmi_is_finite_non_negative_and_zero_where_nothing_co_occurs(sequences, window):
    counts = cooccurrence_counts(sequences, ITEMS, window)
    ppmi = positive_pmi(counts).toarray()
    assert np.isfinite(ppmi).all() and (ppmi >= 0).all()
    assert (ppmi[counts.toarray() == 0] == 0).all()
    np.testing.assert_allclose(ppmi, ppmi.T, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(sequences=sequences_strategy, dim=st.integers(1, 12), window=st.integers(1, 3))
def test_rows_are_unit_or_zero_never_nan(sequences, dim, window):
    vectors, report = collaborative_embeddings(sequences, ITEMS, dim=dim, window=window)
    assert vectors.shape == (len(ITEMS), dim) and np.isfinite(vectors).all()
    norms = np.linalg.norm(vectors, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    seen = {item for seq in sequences if len(seq) > 1 for item in seq}
    assert all(norms[i] == 0 for i, item in enumerate(ITEMS) if item not in seen)  # isolated: neutral zero row
    assert report["items_without_cooccurrence"] >= len(ITEMS) - len(seen)


def two_communities(users_per_group=30, seed=0):
    """Users buy within {0..9} or within {10..19}: the vectors must tell the groups apart."""
    rng = np.random.default_rng(seed)
    items = [str(i) for i in range(20)]
    sequences = [list(rng.choice(items[g * 10 : g * 10 + 10], size=8)) for g in (0, 1) for _ in range(users_per_group)]
    return items, sequences


def test_items_bought_together_are_close():
    items, sequences = two_communities()
    vectors, _ = collaborative_embeddings(sequences, items, dim=4, window=2)
    cos = vectors @ vectors.T
    same = np.add.outer(np.arange(20) // 10, np.zeros(20)) == np.arange(20) // 10
    off_diagonal = ~np.eye(20, dtype=bool)
    assert cos[same & off_diagonal].mean() > cos[~same].mean() + 0.5


def test_sparse_and_dense_svd_give_the_same_geometry(monkeypatch):
    items, sequences = two_communities(users_per_group=60)
    dense, _ = collaborative_embeddings(sequences, items, dim=3)
    monkeypatch.setattr(collab, "DENSE_SVD_MAX_ITEMS", 0)
    sparse, _ = collaborative_embeddings(sequences, items, dim=3)
    np.testing.assert_allclose(dense @ dense.T, sparse @ sparse.T, atol=1e-4)


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="'ghost'"):
        cooccurrence_counts([["0", "ghost"]], ITEMS, 2)
    with pytest.raises(ValueError, match="window must be >= 1"):
        cooccurrence_counts([["0", "1"]], ITEMS, 0)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        collaborative_embeddings([["0", "1"]], ITEMS, dim=0)
    with pytest.raises(ValueError, match="3 text rows but 2"):
        fuse(np.ones((3, 4)), np.ones((2, 2)), 1.0)


def test_no_interactions_give_zero_vectors():
    vectors, report = collaborative_embeddings({}, ITEMS, dim=4)
    assert not vectors.any() and report["pairs"] == 0


@settings(max_examples=50, deadline=None)
@given(weight=st.floats(0, 4), seed=st.integers(0, 1000))
def test_fuse_rows_are_unit_and_weight_zero_keeps_the_text_geometry(weight, seed):
    rng = np.random.default_rng(seed)
    text, cf = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 3))
    cf /= np.linalg.norm(cf, axis=1, keepdims=True)
    fused = fuse(text, cf, weight)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
    if weight == 0:
        unit = text / np.linalg.norm(text, axis=1, keepdims=True)
        np.testing.assert_allclose(fused[:, :5], unit, atol=1e-6)


def index_config(embeddings_path, enabled: bool):
    overrides = {
        "embedding": {"path": str(embeddings_path)},
        "collaborative": {"enabled": enabled, "dim": 4},
        "rqkmeans": {"levels": 2, "codebook_size": 4},
        "collision": {"mode": "colliding"},
    }
    return OmegaConf.merge(load_config("index"), overrides)


def test_build_index_appends_vectors_from_training_interactions_only(tmp_path):
    items, sequences = two_communities(users_per_group=20)
    seqs = {f"u{k}": s for k, s in enumerate(sequences)}
    np.save(tmp_path / "emb.npy", np.random.default_rng(1).normal(size=(len(items), 6)).astype(np.float32))
    base = RecDataset("Two", seqs, {i: {"title": i} for i in items})
    index, report = build_index(base, index_config(tmp_path / "emb.npy", True))
    assert report["embedding_dim"] == 10 and report["collaborative"]["dim"] == 4
    train_pairs = cooccurrence_counts([s[:-2] for s in sequences], items, 3).nnz // 2
    assert report["collaborative"]["pairs"] == train_pairs
    # Valid and test items (the last two of each sequence) must not move the index.
    swapped = {u: s[:-2] + [s[-1], s[-2]] for u, s in seqs.items()}
    again, _ = build_index(RecDataset("Two", swapped, base.items), index_config(tmp_path / "emb.npy", True))
    assert again.tokens == index.tokens
    _, text_only = build_index(base, index_config(tmp_path / "emb.npy", False))
    assert "collaborative" not in text_only and text_only["embedding_dim"] == 6
