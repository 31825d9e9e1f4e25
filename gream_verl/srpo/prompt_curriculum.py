"""Curriculum RL dataset: prompts ordered easy -> hard, for ``data.custom_cls.{path,name}``.

Order (competence-based curriculum, Platanios et al. 2019): prompts are ranked by a difficulty
key; at position ``i`` of ``N`` (training time ``t = i / N``) the next prompt is drawn uniformly
among the unused ones whose difficulty percentile is within the competence
``c(t) = min(1, sqrt(t (1 - c0^2) / pace + c0^2))``. ``pace`` is the fraction of the pass after
which every prompt is available (1.0: the curriculum spans the whole epoch; smaller: faster;
near 0: plain random order); ``c0`` is the share available from the start. The order is
reproducible (``seed``) and the same every epoch.

Settings (``+data.curriculum.*``): ``key`` (default ``extra_info.history_len``: short histories
are easy; any column or ``extra_info.<field>`` works, e.g. a precomputed ``difficulty`` score),
``descending`` (false; true when a larger key is easier), ``pace`` (1.0), ``c0`` (0.1), ``seed``
(``data.seed`` or 0).

verl iterates this order only with ``data.shuffle=False`` (then its ``create_rl_sampler`` uses a
``SequentialSampler``; with ``shuffle=True`` a ``RandomSampler`` would undo the curriculum, so
that combination is refused). ``data.dataloader_num_workers`` does not reorder.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from verl.utils.dataset.rl_dataset import RLHFDataset

logger = logging.getLogger(__name__)


def competence(t: np.ndarray, pace: float, c0: float) -> np.ndarray:
    """Share of the difficulty-sorted data available at training fraction ``t`` (sqrt schedule)."""
    if pace <= 0:
        return np.ones_like(t, dtype=np.float64)
    return np.minimum(1.0, np.sqrt(t * (1.0 - c0**2) / pace + c0**2))


def curriculum_order(difficulty, pace: float = 1.0, c0: float = 0.1, seed: int = 0) -> np.ndarray:
    """A permutation of ``range(len(difficulty))``: position ``i`` holds a random unused example
    among the easiest ``ceil(c(i / N) * N)`` (ties broken at random)."""
    d = np.asarray(difficulty, dtype=np.float64)
    if d.ndim != 1 or not np.isfinite(d).all():
        raise ValueError("curriculum difficulty must be one finite number per prompt")
    if not 0 < c0 <= 1:
        raise ValueError(f"data.curriculum.c0 must be in (0, 1], got {c0}")
    n = len(d)
    rng = np.random.default_rng(seed)
    by_difficulty = np.lexsort((rng.random(n), d))  # easiest first, random among ties
    available = np.ceil(competence(np.arange(n) / max(n, 1), pace, c0) * n).astype(np.int64)
    available = np.clip(np.maximum(available, np.arange(n) + 1), 1, n)
    picks = rng.random(n)
    pool: list[int] = []
    released = 0
    order = np.empty(n, dtype=np.int64)
    for i in range(n):  # O(n): swap-remove from the released pool
        pool.extend(range(released, available[i]))
        released = available[i]
        j = int(picks[i] * len(pool))
        order[i] = pool[j]
        pool[j] = pool[-1]
        pool.pop()
    return by_difficulty[order]


def _difficulty(dataframe, key: str) -> np.ndarray:
    if key.startswith("extra_info."):
        field = key.split(".", 1)[1]
        infos = dataframe["extra_info"]
        values = [(info or {}).get(field) for info in infos]
    else:
        if key not in dataframe.column_names:
            raise KeyError(f"data.curriculum.key {key!r} is not a column of the RL data ({dataframe.column_names})")
        values = dataframe[key]
    missing = sum(v is None for v in values)
    if missing:
        raise KeyError(f"data.curriculum.key {key!r} is missing in {missing} of {len(values)} rows")
    return np.asarray(values, dtype=np.float64)


class CurriculumRLHFDataset(RLHFDataset):
    """verl's ``RLHFDataset`` in curriculum order (see the module docstring)."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        if config.get("shuffle", False):
            raise ValueError(
                "CurriculumRLHFDataset needs data.shuffle=False: verl's RandomSampler would undo the easy -> hard order"
            )
        cur = config.get("curriculum", None) or {}
        self.curriculum_key = str(cur.get("key", "extra_info.history_len"))
        self.curriculum_descending = bool(cur.get("descending", False))
        self.curriculum_pace = float(cur.get("pace", 1.0))
        self.curriculum_c0 = float(cur.get("c0", 0.1))
        self.curriculum_seed = int(cur.get("seed", config.get("seed", None) or 0))
        super().__init__(data_files, tokenizer, config, processor, max_samples)

    def _read_files_and_tokenize(self):
        super()._read_files_and_tokenize()
        d = _difficulty(self.dataframe, self.curriculum_key)
        order = curriculum_order(-d if self.curriculum_descending else d, self.curriculum_pace,
                                 self.curriculum_c0, self.curriculum_seed)
        self.dataframe = self.dataframe.select(order.tolist())
        first = d[order[: max(1, len(order) // 10)]]
        logger.info("curriculum by %s: first tenth mean %.2f, overall mean %.2f (pace %s)",
                    self.curriculum_key, float(first.mean()) if len(first) else math.nan, float(d.mean()) if len(d) else math.nan,
                    self.curriculum_pace)
