"""What every raw-log loader shares (Amazon 2014/2018, Amazon 2023, a user's own table):
streaming accumulation of (user, item, time) batches, a few review snippets per item, and
the final assembly into a :class:`RecDataset` (k-core, new ids, item text).

Memory: a batch's ids are dictionary-encoded by pyarrow and each distinct id string is kept
once, in ``IdCodes``; a row costs three int64 codes, however long the file. That is what lets
a 10 GB review file stream through in bounded chunks.

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
    """Raw id string -> dense code, growing batch by batch."""

    def __init__(self):
        self.code: dict[str, int] = {}

    def encode(self, ids: pa.Array) -> np.ndarray:
        """(rows,) int64 codes of a string array without nulls."""
        encoded = pc.dictionary_encode(ids)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        code = self.code
        mapping = np.fromiter((code.setdefault(s, len(code)) for s in encoded.dictionary.to_pylist()),
                              dtype=np.int64, count=len(encoded.dictionary))
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)]

    @property
    def names(self) -> list[str]:
        return list(self.code)


class InteractionLog:
    """(user, item, time) rows accumulated from batches, in file order."""

    def __init__(self):
        self.users, self.items = IdCodes(), IdCodes()
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, users: pa.Array, items: pa.Array, times: np.ndarray) -> np.ndarray:
        """Append a batch (string ids without nulls, int64 times); returns its item codes."""
        item_codes = self.items.encode(items)
        self._parts.append((self.users.encode(users), item_codes, np.asarray(times, dtype=np.int64)))
        return item_codes

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self._parts)

    def interactions(self) -> Interactions:
        parts = self._parts or [(np.zeros(0, np.int64),) * 3]
        users, items, times = (np.concatenate(c) for c in zip(*parts, strict=True))
        return Interactions(users, items, times, self.users.names, self.items.names)


class ReviewSnippets:
    """The first ``per_item`` non-empty review texts of every item, in file order."""

    def __init__(self, per_item: int = 2, chars: int = 300):
        self.per_item, self.chars = per_item, chars
        self.kept: dict[int, list[str]] = {}
        self.count = np.zeros(0, dtype=np.int64)  # item code -> snippets kept so far

    def add(self, item_codes: np.ndarray, summaries: pa.Array, texts: pa.Array) -> None:
        """One batch: ``item_codes`` (rows,) and the rows' summary/title and text columns."""
        if self.per_item <= 0 or not len(item_codes):
            return
        if len(self.count) <= item_codes.max():
            self.count = np.concatenate([self.count, np.zeros(item_codes.max() + 1 - len(self.count), np.int64)])
        has_text = pc.or_(pc.greater(pc.utf8_length(pc.fill_null(summaries, "")), 0),
                          pc.greater(pc.utf8_length(pc.fill_null(texts, "")), 0))
        rows = np.flatnonzero(has_text.to_numpy(zero_copy_only=False) & (self.count[item_codes] < self.per_item))
        if not len(rows):
            return
        seen_in_batch = pd.Series(item_codes[rows]).groupby(item_codes[rows]).cumcount().to_numpy()
        rows = rows[self.count[item_codes[rows]] + seen_in_batch < self.per_item]
        summary_values, text_values = summaries.take(rows).to_pylist(), texts.take(rows).to_pylist()
        for code, summary, text in zip(item_codes[rows].tolist(), summary_values, text_values, strict=True):
            snippet = strip_tags(clean_text(" ".join(p for p in (_sentence(summary), clean_text(text)) if p)))
            if snippet:
                self.kept.setdefault(code, []).append(snippet[: self.chars].rstrip())
        np.add.at(self.count, item_codes[rows], 1)

    def of(self, item_code: int) -> str:
        return " | ".join(self.kept.get(item_code, []))


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
        if snippets is not None and (text := snippets.of(log_.items.code[raw_id])):
            fields["reviews"] = text
        items[str(new_id)] = fields
    problems["items_without_meta"] = len(kept) - len(kept & set(item_text))
    log.info("%s: %d users, %d items, %d interactions after %d-core (%d rounds)",
             source, len(result.sequences), len(items), sum(map(len, result.sequences.values())), k,
             result.kcore_rounds)
    return RecDataset(name=name, sequences=result.sequences, items=items, source=source, problems=problems)
