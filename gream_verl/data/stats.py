"""Dataset statistics (``gream data stats``): sizes, sparsity, sequence lengths, item text
coverage and leave-one-out split sizes."""

from __future__ import annotations

import numpy as np

from gream_verl.data.rec_dataset import ITEM_TEXT_FIELDS, RecDataset

PERCENTILES = (10, 25, 75, 90, 95, 99)


def split_sizes(lengths: np.ndarray, min_length: int = 3) -> dict[str, int]:
    """Example counts of :func:`gream_verl.data.split.leave_one_out` without building them:
    a user with ``n >= 3`` items gives ``n - 3`` train examples, one valid and one test."""
    usable = lengths[lengths >= max(min_length, 3)]
    return {"train": int((usable - 3).sum()), "valid": len(usable), "test": len(usable)}


def dataset_stats(dataset: RecDataset, max_history: int = 20) -> dict:
    """Everything ``gream data stats`` prints, as a JSON-able dict. ``max_history`` caps the
    test history length whose mean is reported. Sparsity counts distinct (user, item) pairs,
    so an item repeated in a sequence (kept by ``repeated_items=keep``) cannot push it below 0."""
    lengths = np.array([len(s) for s in dataset.sequences.values()], dtype=np.int64)
    item_ids = dataset.item_ids
    n_users, n_items, n_inter = len(lengths), len(item_ids), int(lengths.sum())
    n_pairs = sum(len(set(s)) for s in dataset.sequences.values())
    if n_users == 0:
        raise ValueError(f"{dataset.source or dataset.name}: no users")

    def count_with(field: str) -> int:
        return sum(1 for i in item_ids if dataset.items.get(i, {}).get(field))

    with_title, with_description = count_with("title"), count_with("description")
    with_any_text = sum(1 for i in item_ids if any(dataset.items.get(i, {}).get(f) for f in ITEM_TEXT_FIELDS))
    length = {
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 3),
        "median": float(np.median(lengths)),
        "max": int(lengths.max()),
        **{f"p{q}": round(float(np.percentile(lengths, q)), 3) for q in PERCENTILES},
    }
    return {
        "name": dataset.name,
        "source": dataset.source,
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "sparsity": round(1.0 - n_pairs / (n_users * n_items), 6) if n_items else 1.0,
        "sequence_length": length,
        "test_history_length_mean": round(float(np.minimum(lengths - 1, max_history).mean()), 3),
        "item_text": {
            "with_title": with_title,
            "without_title": n_items - with_title,
            "with_description": with_description,
            "without_description": n_items - with_description,
            "without_any_text": n_items - with_any_text,
        },
        "splits": split_sizes(lengths),
        "problems": dict(dataset.problems),
    }
