"""Interaction-table maths for raw logs: chronological order, de-duplication, iterative
k-core, and remapping to the dense ``"0".."n-1"`` ids of the LC-Rec format.

Pure numpy/pandas, vectorised over interactions (Amazon dumps have millions of rows). Raw ids
arrive already coded as integers (each distinct id string stored once, see ``raw.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Interactions:
    """Parallel arrays, one row per interaction, in the order they were read.

    ``users[r]`` / ``items[r]`` are codes into ``user_names`` / ``item_names`` (the raw ids,
    arrow strings: millions of ids cost no Python objects).
    """

    users: np.ndarray  # (rows,) int64 user codes
    items: np.ndarray  # (rows,) int64 item codes
    times: np.ndarray  # (rows,) int64 timestamps (any unit; only their order matters)
    user_names: pa.Array  # (n_users,) string
    item_names: pa.Array  # (n_items,) string

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_ids(cls, users, items, times) -> Interactions:
        """From parallel sequences of raw ids (small inputs, tests)."""
        user_codes, user_names = pd.factorize(np.asarray(users, dtype=object))
        item_codes, item_names = pd.factorize(np.asarray(items, dtype=object))
        return cls(user_codes.astype(np.int64), item_codes.astype(np.int64), np.asarray(times, dtype=np.int64),
                   pa.array([str(u) for u in user_names], pa.string()), pa.array([str(i) for i in item_names], pa.string()))


@dataclass
class Sequences:
    """The result of :func:`build_sequences`."""

    sequences: dict[str, list[str]]  # new user id -> new item ids, chronological
    user_raw: list[str]  # new user id (as int) -> raw user id
    item_raw: list[str]  # new item id (as int) -> raw item id
    duplicates: int  # repeated (user, item) pairs removed
    removed_by_kcore: int  # interactions removed by the k-core filter
    kcore_rounds: int


def chronological_order(user_codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Row order grouped by user, each user's rows by time; ties keep file order (stable)."""
    return np.lexsort((times, user_codes))  # lexsort is a stable sort


def first_occurrences(user_codes: np.ndarray, item_codes: np.ndarray) -> np.ndarray:
    """Mask keeping the first row of every (user, item) pair, in the given row order."""
    return ~pd.DataFrame({"u": user_codes, "i": item_codes}).duplicated(keep="first").to_numpy()


def kcore_mask(user_codes: np.ndarray, item_codes: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core: drop rows of users or items with fewer than ``k`` rows, repeat until
    nothing changes. Returns the mask of kept rows and the number of rounds."""
    keep = np.ones(len(user_codes), dtype=bool)
    if k <= 1 or not len(user_codes):
        return keep, 0
    n_users, n_items = int(user_codes.max()) + 1, int(item_codes.max()) + 1
    rounds = 0
    while True:
        rounds += 1
        user_count = np.bincount(user_codes[keep], minlength=n_users)
        item_count = np.bincount(item_codes[keep], minlength=n_items)
        new_keep = keep & (user_count[user_codes] >= k) & (item_count[item_codes] >= k)
        if new_keep.sum() == keep.sum():
            return keep, rounds
        keep = new_keep


def sorted_rank(names: pa.Array) -> np.ndarray:
    """``rank[c]`` = position of ``names[c]`` in the sorted list of names (codes -> sort order)."""
    order = pc.sort_indices(names).to_numpy()
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names), dtype=np.int64)
    return rank


def build_sequences(inter: Interactions, k: int = 5) -> Sequences:
    """Sort chronologically, drop repeated (user, item) pairs (the earliest is kept, before
    k-core counting), k-core filter, and remap ids.

    New ids: users are numbered in the sorted order of their raw ids, items in the sorted
    order of their raw ids (ASINs), both among those that survive the k-core filter.
    """
    user_rank = sorted_rank(inter.user_names)  # user code -> rank of its raw id
    order = chronological_order(user_rank[inter.users], inter.times)
    users = user_rank[inter.users][order]
    items = inter.items[order]
    first = first_occurrences(users, items)
    duplicates = int((~first).sum())
    users, items = users[first], items[first]
    keep, rounds = kcore_mask(users, items, k)
    removed = int((~keep).sum())
    users, items = users[keep], items[keep]

    item_rank = sorted_rank(inter.item_names)
    item_new, item_kept = pd.factorize(item_rank[items], sort=True)  # dense, in raw-id order
    user_new, user_kept = pd.factorize(users, sort=True)
    by_rank_items = np.argsort(item_rank)  # rank -> item code
    by_rank_users = np.argsort(user_rank)
    item_raw = inter.item_names.take(pa.array(by_rank_items[item_kept])).to_pylist()
    user_raw = inter.user_names.take(pa.array(by_rank_users[user_kept])).to_pylist()
    item_names = np.array([str(i) for i in range(len(item_raw))], dtype=object)
    bounds = np.flatnonzero(np.diff(user_new)) + 1  # rows are grouped by user already
    sequences = {
        str(u): item_names[chunk].tolist()
        for u, chunk in enumerate(np.split(item_new, bounds))
        if len(chunk)
    }
    return Sequences(
        sequences=sequences,
        user_raw=user_raw,
        item_raw=item_raw,
        duplicates=duplicates,
        removed_by_kcore=removed,
        kcore_rounds=rounds,
    )
