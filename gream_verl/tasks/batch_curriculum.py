"""Reasoning curriculum (paper sec. 4.3): when reasoning batches join the alignment batches.

In each of the first ``curriculum_epochs`` epochs, after the i-th alignment batch (i = 1..N_align)
a reasoning batch is inserted with probability

    p(i) = min(1, gamma * i / N_align * N_reason / N_align)

(N_* are batch counts), so reasoning starts rare and grows as alignment progresses; reasoning
batches not inserted by the end of the epoch are appended to it. Later epochs mix uniformly: all
batches of both sets shuffled together. Every epoch uses every sample of both sets once.

A *batch* is one **global** batch (per-device batch x gradient accumulation x world size): with
LLaMA-Factory's ``disable_shuffling: true`` the (distributed) sampler reads the file in order,
so each optimizer step sees exactly one block of the file, whatever the data parallelism. The
epochs are unrolled in the file: train it with ``num_train_epochs: 1``, and without ``val_size``,
``packing`` or ``max_samples`` (each would reorder or cut the blocks). The per-device batch,
gradient accumulation and world size in ``sft_data.yaml`` must match the SFT run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALIGN, REASON = "A", "R"


def insertion_probability(i, n_align: int, n_reason: int, gamma: float = 1.5) -> np.ndarray:
    """p(i) for alignment batch positions ``i`` (1-based); the pure maths of the schedule."""
    if n_align < 1:
        raise ValueError(f"the curriculum needs at least one alignment batch, got n_align={n_align}")
    if n_reason < 0 or gamma < 0:
        raise ValueError(f"n_reason and gamma must be >= 0, got n_reason={n_reason}, gamma={gamma}")
    i = np.asarray(i, dtype=np.float64)
    return np.clip(gamma * i / n_align * n_reason / n_align, 0.0, 1.0)


def curriculum_epoch(n_align: int, n_reason: int, gamma: float, rng: np.random.Generator
                     ) -> tuple[list[tuple[str, int]], int]:
    """Order of one curriculum epoch as ``(kind, batch number)`` pairs (alignment batches in
    order, reasoning batch j after the j-th successful draw, leftovers at the end), and how many
    reasoning batches were inserted (the rest were appended)."""
    p = insertion_probability(np.arange(1, n_align + 1), n_align, n_reason, gamma)
    hits = np.flatnonzero(rng.random(n_align) < p)[:n_reason]  # alignment positions followed by reasoning
    order: list[tuple[str, int]] = []
    after = set(hits.tolist())
    next_reason = 0
    for a in range(n_align):
        order.append((ALIGN, a))
        if a in after:
            order.append((REASON, next_reason))
            next_reason += 1
    order.extend((REASON, r) for r in range(next_reason, n_reason))
    return order, next_reason


def mixed_epoch(n_align: int, n_reason: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Order of a uniformly mixed epoch: all batches of both sets, shuffled."""
    order = [(ALIGN, a) for a in range(n_align)] + [(REASON, r) for r in range(n_reason)]
    return [order[k] for k in rng.permutation(len(order))]


def batch_rows(n_rows: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row numbers shuffled into ``(n_batches, batch_size)``; the last batch is completed with
    rows drawn again at random, so every block in the file is exactly one global batch."""
    if n_rows == 0:
        return np.zeros((0, batch_size), dtype=np.int64)
    perm = rng.permutation(n_rows)
    short = -n_rows % batch_size
    if short:
        perm = np.concatenate([perm, rng.choice(n_rows, size=short, replace=short > n_rows)])
    return perm.reshape(-1, batch_size)


@dataclass(frozen=True)
class CurriculumConfig:
    gamma: float = 1.5
    num_epochs: int = 3
    curriculum_epochs: int = 2
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 8
    world_size: int = 1
    seed: int = 42

    @property
    def global_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size

    def __post_init__(self) -> None:
        for name in ("num_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "world_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"curriculum.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.curriculum_epochs <= self.num_epochs:
            raise ValueError(f"curriculum.curriculum_epochs must be in 0..num_epochs ({self.num_epochs}), "
                             f"got {self.curriculum_epochs}")


def build_curriculum(n_align_rows: int, n_reason_rows: int, config: CurriculumConfig
                     ) -> tuple[list[tuple[str, int]], list[dict]]:
    """The unrolled file order as ``(kind, row number)`` pairs, plus a per-epoch layout summary."""
    if n_align_rows < 1:
        raise ValueError("the curriculum needs alignment samples; none were built")
    rng = np.random.default_rng(config.seed)
    size = config.global_batch_size
    order: list[tuple[str, int]] = []
    layout = []
    for epoch in range(config.num_epochs):
        align_batches = batch_rows(n_align_rows, size, rng)
        reason_batches = batch_rows(n_reason_rows, size, rng)
        n_a, n_r = len(align_batches), len(reason_batches)
        if epoch < config.curriculum_epochs:
            batches, inserted = curriculum_epoch(n_a, n_r, config.gamma, rng)
            kind = "curriculum"
        else:
            batches, inserted = mixed_epoch(n_a, n_r, rng), n_r
            kind = "mixed"
        layout.append({"epoch": epoch + 1, "kind": kind, "alignment_batches": n_a, "reasoning_batches": n_r,
                       "reasoning_inserted": inserted, "reasoning_appended": n_r - inserted,
                       "pattern": "".join(k for k, _ in batches)})
        for k, b in batches:
            rows = align_batches[b] if k == ALIGN else reason_batches[b]
            order.extend((k, int(r)) for r in rows)
    return order, layout
