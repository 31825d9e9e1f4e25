"""Interaction-table maths for raw dumps: chronological order, de-duplication, iterative
k-core, and remapping to the dense ``"0".."n-1"`` ids of the LC-Rec format.

Pure numpy/pandas, vectorised over interactions (Amazon dumps have millions of rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Interactions:
    """Parallel arrays, one row per interaction, in the order they were read."""

    users: np.ndarray  # object array of raw user ids
    items: np.ndarray  # object array of raw item ids
    times: np.ndarray  # int64 timestamps

    def __len__(self) -> int:
        return len(self.users)


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


def build_sequences(inter: Interactions, k: int = 5) -> Sequences:
    """Sort chronologically, drop repeated (user, item) pairs (the earliest is kept, before
    k-core counting), k-core filter, and remap ids.

    New ids: users are numbered in the sorted order of their raw ids, items in the sorted
    order of their raw ids (ASINs), both among those that survive the k-core filter.
    """
    user_codes, user_uniques = pd.factorize(inter.users, sort=True)
    order = chronological_order(user_codes, inter.times)
    users = user_codes[order]
    item_codes, _ = pd.factorize(inter.items)
    items = item_codes[order]
    first = first_occurrences(users, items)
    duplicates = int((~first).sum())
    users, items, order = users[first], items[first], order[first]
    keep, rounds = kcore_mask(users, items, k)
    removed = int((~keep).sum())
    users, order = users[keep], order[keep]

    item_new, item_raw = pd.factorize(inter.items[order], sort=True)
    user_new, user_raw = pd.factorize(user_uniques[users], sort=True)
    item_names = np.array([str(i) for i in range(len(item_raw))], dtype=object)
    bounds = np.flatnonzero(np.diff(user_new)) + 1  # rows are grouped by user already
    sequences = {
        str(u): item_names[chunk].tolist()
        for u, chunk in enumerate(np.split(item_new, bounds))
        if len(chunk)
    }
    return Sequences(
        sequences=sequences,
        user_raw=[str(x) for x in user_raw],
        item_raw=[str(x) for x in item_raw],
        duplicates=duplicates,
        removed_by_kcore=removed,
        kcore_rounds=rounds,
    )
