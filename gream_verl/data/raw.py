"""What every raw-log loader shares (Amazon 2014/2018, Amazon 2023, a user's own table):
streaming accumulation of (user, item, time) batches, a few review snippets per item, and
the final assembly into a :class:`RecDataset` (k-core, new ids, item text).

Memory: ids are dictionary-encoded by pyarrow batch by batch and merged into one arrow
array of distinct ids (``IdCodes``); a row costs two int32 codes and an int64 time, and no
Python object exists per row or per id. That is what lets a 10 GB review file stream through.

Documented behaviour shared by the raw formats:
  * repeated (user, item) pairs keep the earliest interaction (ties: the first in the file),
    before k-core counting; ``problems["duplicate_interactions"]``;
  * the k-core filter is iterative (users and items with >= k interactions, until stable);
    ``problems["removed_by_kcore"]``;
  * new ids: users and items are numbered ``"0".."n-1"`` in the sorted order of their raw
    ids; the raw item id is kept in the item's ``id_field`` (``asin`` or ``raw_id``);
  * items without a text record keep only that id (``problems["items_without_meta"]``);
  * review text: the first ``reviews_per_item`` reviews with text of an item, in file order,
    HTML tags stripped, each cut to ``review_chars``, joined by `` | `` into ``reviews``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gream_verl.data.kcore import Interactions, build_sequences
from gream_verl.data.rec_dataset import RecDataset, clean_text, strip_tags

log = logging.getLogger(__name__)


class IdCodes:
    """Raw id strings -> dense codes, without a Python object per id.

    Each batch is dictionary-encoded by pyarrow (its distinct ids + int32 indices). The
    batches' dictionaries wait in ``_pending`` and are merged into ``names`` (the distinct ids
    in order of first appearance) whenever they outgrow it, so memory stays about the distinct
    ids plus 4 bytes per row. Merging never changes a code already given: ``names`` goes
    first into the merge, and dictionary encoding numbers values by first appearance.
    """

    MIN_MERGE = 1 << 20  # pending ids before the first merge

    def __init__(self):
        self.names = pa.array([], pa.large_string())
        self._codes: list[np.ndarray] = []  # global int32 codes of merged batches
        self._pending: list[tuple[pa.Array, np.ndarray]] = []  # (batch dictionary, batch indices)
        self._pending_ids = 0

    def add(self, ids: pa.Array) -> pa.DictionaryArray:
        """Keep a batch of ids (a string array without nulls); returns its encoding."""
        encoded = pc.dictionary_encode(ids)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        self._pending.append((encoded.dictionary.cast(pa.large_string()),
                              encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)))
        self._pending_ids += len(encoded.dictionary)
        if self._pending_ids > max(self.MIN_MERGE, len(self.names)):
            self._merge()
        return encoded

    def _merge(self) -> None:
        if not self._pending:
            return
        merged = pc.dictionary_encode(pa.concat_arrays([self.names, *(d for d, _ in self._pending)]))
        to_global = merged.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        offset = len(self.names)
        for dictionary, indices in self._pending:
            self._codes.append(to_global[offset + indices])
            offset += len(dictionary)
        self.names = merged.dictionary
        self._pending, self._pending_ids = [], 0

    def codes_and_names(self) -> tuple[np.ndarray, pa.Array]:
        """(rows,) int64 codes of every kept row, and the distinct ids (code -> id)."""
        self._merge()
        codes = np.concatenate(self._codes).astype(np.int64) if self._codes else np.zeros(0, np.int64)
        return codes, self.names


class InteractionLog:
    """(user, item, time) rows accumulated from batches, in file order."""

    def __init__(self):
        self.users, self.items = IdCodes(), IdCodes()
        self._times: list[np.ndarray] = []

    def add(self, users: pa.Array, items: pa.Array, times: np.ndarray) -> pa.DictionaryArray:
        """Append a batch (string ids without nulls, int64 times); returns the items' encoding."""
        self.users.add(users)
        self._times.append(np.asarray(times, dtype=np.int64))
        return self.items.add(items)

    def __len__(self) -> int:
        return sum(len(t) for t in self._times)

    def interactions(self) -> Interactions:
        users, user_names = self.users.codes_and_names()
        items, item_names = self.items.codes_and_names()
        times = np.concatenate(self._times) if self._times else np.zeros(0, np.int64)
        return Interactions(users, items, times, user_names, item_names)


class ReviewSnippets:
    """The first ``per_item`` non-empty review texts of every item, in file order.

    Only rows that can still matter reach Python: a batch's first ``per_item`` rows of each
    item, minus the items that already have all their snippets (an arrow set lookup).
    """

    def __init__(self, per_item: int = 2, chars: int = 300):
        self.per_item, self.chars = per_item, chars
        self.kept: dict[str, list[str]] = {}
        self._full: list[pa.Array] = []  # items with per_item snippets, batch by batch
        self._full_set = pa.array([], pa.string())

    def add(self, items: pa.DictionaryArray, summaries: pa.Array, texts: pa.Array) -> None:
        """One batch: its dictionary-encoded items and the rows' summary/title and text columns."""
        if self.per_item <= 0 or not len(items):
            return
        has_text = pc.or_(pc.greater(pc.utf8_length(pc.fill_null(summaries, "")), 0),
                          pc.greater(pc.utf8_length(pc.fill_null(texts, "")), 0)).to_numpy(zero_copy_only=False)
        index = items.indices.to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(has_text)
        rows = rows[pd.Series(index[rows]).groupby(index[rows]).cumcount().to_numpy() < self.per_item]
        if len(self._full_set):
            full = pc.is_in(items.dictionary, value_set=self._full_set).to_numpy(zero_copy_only=False)
            rows = rows[~full[index[rows]]]
        if not len(rows):
            return
        names = items.dictionary.take(pa.array(index[rows])).to_pylist()
        newly_full = []
        for item, summary, text in zip(names, summaries.take(rows).to_pylist(), texts.take(rows).to_pylist(),
                                       strict=True):
            kept = self.kept.setdefault(item, [])
            if len(kept) >= self.per_item:
                continue
            snippet = strip_tags(clean_text(" ".join(p for p in (_sentence(summary), clean_text(text)) if p)))
            if snippet:
                kept.append(snippet[: self.chars].rstrip())
                if len(kept) == self.per_item:
                    newly_full.append(item)
        if newly_full:
            self._full_set = pa.concat_arrays([self._full_set, pa.array(newly_full, pa.string())])

    def of(self, item: str) -> str:
        return " | ".join(self.kept.get(item, []))


def _sentence(summary) -> str:
    text = clean_text(summary)
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def assemble(
    log_: InteractionLog,
    *,
    name: str,
    source: str,
    k: int,
    problems: dict[str, int],
    read_item_text: Callable[[set[str]], dict[str, dict[str, str]]] | None,
    snippets: ReviewSnippets | None = None,
    id_field: str = "asin",
) -> RecDataset:
    """k-core and remap the rows, then attach the text of the items that are left.

    ``read_item_text(raw ids)`` returns ``{raw id: {field: text}}`` for those it knows (a
    meta file or an item table read only for the items that survived); None: no text source.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not len(log_):
        raise ValueError(f"{source}: no valid interactions")
    inter = log_.interactions()
    result = build_sequences(inter, k=k)
    if not result.sequences:
        raise ValueError(
            f"{source}: nothing is left after the {k}-core filter ({len(inter)} interactions read); try a smaller k"
        )
    problems["duplicate_interactions"] = result.duplicates
    problems["removed_by_kcore"] = result.removed_by_kcore
    kept = set(result.item_raw)
    item_text = read_item_text(kept) if read_item_text else {}
    items: dict[str, dict[str, str]] = {}
    for new_id, raw_id in enumerate(result.item_raw):
        fields = {id_field: raw_id, **item_text.get(raw_id, {})}
        if snippets is not None and (text := snippets.of(raw_id)):
            fields["reviews"] = text
        items[str(new_id)] = fields
    problems["items_without_meta"] = len(kept) - len(kept & set(item_text))
    log.info("%s: %d users, %d items, %d interactions after %d-core (%d rounds)",
             source, len(result.sequences), len(items), sum(map(len, result.sequences.values())), k,
             result.kcore_rounds)
    return RecDataset(name=name, sequences=result.sequences, items=items, source=source, problems=problems)
