import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gream_verl.tasks.batch_curriculum import (
    ALIGN,
    REASON,
    CurriculumConfig,
    batch_rows,
    build_curriculum,
    curriculum_epoch,
    insertion_probability,
)

counts = st.integers(min_value=1, max_value=5000)
gammas = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(n_align=counts, n_reason=st.integers(0, 5000), gamma=gammas)
def test_probability_is_a_monotone_capped_ramp(n_align, n_reason, gamma):
    i = np.arange(1, n_align + 1)
    p = insertion_probability(i, n_align, n_reason, gamma)
    assert np.all((p >= 0) & (p <= 1)) and not np.isnan(p).any()
    assert np.all(np.diff(p) >= -1e-12)
    raw = gamma * i / n_align * n_reason / n_align
    np.testing.assert_allclose(p, np.minimum(raw, 1.0))
    if n_reason == 0 or gamma == 0:
        assert not p.any()


@given(n_align=counts, n_reason=counts, gamma=st.floats(0.01, 10.0))
def test_probability_scales_linearly_until_it_saturates(n_align, n_reason, gamma):
    p1, p2 = insertion_probability([1, 2], n_align, n_reason, gamma)
    if p2 < 1:
        assert p2 == pytest.approx(2 * p1)
    assert insertion_probability(n_align, n_align, n_reason, gamma) == pytest.approx(min(1.0, gamma * n_reason / n_align))


def test_probability_rejects_bad_counts():
    with pytest.raises(ValueError, match="at least one alignment batch"):
        insertion_probability(1, 0, 3)
    with pytest.raises(ValueError, match="n_reason"):
        insertion_probability(1, 3, -1)


def test_empirical_insertion_rate_follows_p_per_decile():
    n_align, n_reason, gamma, seeds = 400, 100, 1.5, 300
    p = insertion_probability(np.arange(1, n_align + 1), n_align, n_reason, gamma)
    inserted = np.zeros(n_align)
    for seed in range(seeds):
        order, _ = curriculum_epoch(n_align, n_reason, gamma, np.random.default_rng(seed))
        for (prev_kind, a), (kind, _) in zip(order[:-1], order[1:], strict=True):
            # a reasoning batch right after alignment batch a was inserted there; after the last
            # alignment batch it could also be a leftover, so that position is not compared
            if kind == REASON and prev_kind == ALIGN and a < n_align - 1:
                inserted[a] += 1
    rate = inserted / seeds
    for decile in range(10):
        sl = slice(decile * 40, decile * 40 + 39)
        assert rate[sl].mean() == pytest.approx(p[sl].mean(), abs=0.02), decile
    assert rate[:40].mean() < rate[-41:-1].mean()


def test_curriculum_epoch_uses_every_batch_once():
    order, inserted = curriculum_epoch(50, 30, 1.5, np.random.default_rng(0))
    assert [b for k, b in order if k == ALIGN] == list(range(50)) and order[0] == (ALIGN, 0)  # in order
    assert [b for k, b in order if k == REASON] == list(range(30))
    assert len(order) == 80
    tail = len(order) - max(i for i, (k, _) in enumerate(order) if k == ALIGN) - 1
    assert tail >= 30 - inserted


def test_batch_rows_fills_the_last_batch():
    rows = batch_rows(10, 4, np.random.default_rng(0))
    assert rows.shape == (3, 4) and set(rows.ravel().tolist()) == set(range(10))
    assert len(set(rows.ravel()[:10].tolist())) == 10  # a permutation first, then 2 re-drawn rows
    assert batch_rows(0, 4, np.random.default_rng(0)).shape == (0, 4)
    assert batch_rows(2, 8, np.random.default_rng(0)).shape == (1, 8)


def test_build_curriculum_layout_and_global_batches():
    config = CurriculumConfig(per_device_train_batch_size=2, gradient_accumulation_steps=2, world_size=2,
                              num_epochs=3, curriculum_epochs=2, seed=7)
    assert config.global_batch_size == 8
    order, layout = build_curriculum(100, 30, config)
    assert [e["kind"] for e in layout] == ["curriculum", "curriculum", "mixed"]
    assert len(order) == sum(len(e["pattern"]) for e in layout) * 8
    for block in range(len(order) // 8):  # every global batch is one kind only
        assert len({k for k, _ in order[block * 8:(block + 1) * 8]}) == 1
    per_epoch = len(order) // 3
    for e in range(3):
        epoch = order[e * per_epoch:(e + 1) * per_epoch]
        assert {r for k, r in epoch if k == ALIGN} == set(range(100))
        assert {r for k, r in epoch if k == REASON} == set(range(30))
    for e in layout:
        assert e["alignment_batches"] == 13 and e["reasoning_batches"] == 4
        assert e["reasoning_inserted"] + e["reasoning_appended"] == 4
    assert order == build_curriculum(100, 30, config)[0]
    assert order != build_curriculum(100, 30, CurriculumConfig(**{**config.__dict__, "seed": 8}))[0]


def test_curriculum_without_reasoning_and_bad_config():
    order, layout = build_curriculum(5, 0, CurriculumConfig(per_device_train_batch_size=1, gradient_accumulation_steps=1))
    assert all(k == ALIGN for k, _ in order) and len(order) == 15
    with pytest.raises(ValueError, match="needs alignment samples"):
        build_curriculum(0, 5, CurriculumConfig())
    with pytest.raises(ValueError, match="curriculum_epochs"):
        CurriculumConfig(num_epochs=1, curriculum_epochs=2)
