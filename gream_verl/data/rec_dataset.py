"""The one in-memory form every loader produces: :class:`RecDataset`.

Kept apart from the loaders so that every loader can import it without importing the others
(``dataset.py`` imports the loaders to dispatch between them; no loader imports ``dataset.py``).
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field

ITEM_TEXT_FIELDS = ("title", "description", "brand", "categories", "reviews", "enriched")
# what loaders keep from an item entry: the text, plus the id the item had in the source
# ("asin" for Amazon releases, "raw_id" for a user's own table)
ITEM_FIELDS = (*ITEM_TEXT_FIELDS, "asin", "raw_id")

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^<>]{1,200}>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


def clean_text(value) -> str:
    """Item text as one tidy line: lists joined, HTML entities decoded, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):  # each part is unescaped once, never twice
        return ", ".join(p for p in (clean_text(v) for v in value) if p)
    return _WS.sub(" ", html.unescape(str(value))).strip()


def strip_tags(text: str) -> str:
    """Amazon text carries HTML markup (``<b>``, ``<br />``); keep only the words."""
    if "<" not in text:
        return text
    return _SPACE_BEFORE_PUNCT.sub(r"\1", clean_text(_TAG.sub(" ", text)))


@dataclass
class RecDataset:
    """User sequences plus item text. Item and user ids are strings.

    ``sequences[user]`` is chronological. ``items[item]`` maps text fields to strings; an item
    without text has an empty dict. ``item_ids`` lists every item in a stable order (the order
    of their integer ids when they are integers). ``problems`` counts what the loader dropped
    or repaired (see the loaders' docstrings), e.g. ``{"short_users_dropped": 2}``.
    """

    name: str
    sequences: dict[str, list[str]]
    items: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""
    problems: dict[str, int] = field(default_factory=dict)

    @property
    def item_ids(self) -> list[str]:
        ids = set(self.items) | {i for seq in self.sequences.values() for i in seq}
        return sorted(ids, key=id_sort_key)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences.values())

    def item_text(self, item: str, fields: tuple[str, ...] = ("title", "description")) -> str:
        """The text an item is embedded or described by; empty fields are skipped."""
        meta = self.items.get(item, {})
        parts = [f"{f.capitalize()}: {meta[f]}" for f in fields if meta.get(f)]
        return "; ".join(parts)

    def title(self, item: str) -> str:
        return self.items.get(item, {}).get("title", "") or f"item {item}"


def id_sort_key(x: str):
    """Integer ids in numeric order, then any other ids in string order."""
    return (0, int(x), "") if x.isdigit() else (1, 0, x)


def drop_short_users(dataset: RecDataset, min_length: int = 3) -> RecDataset:
    """Remove (in place) users with fewer than ``min_length`` items; warn with their count."""
    short = [u for u, seq in dataset.sequences.items() if len(seq) < min_length]
    for user in short:
        del dataset.sequences[user]
    dataset.problems["short_users_dropped"] = len(short)
    if short:
        log.warning("%s: dropped %d users with fewer than %d items (e.g. user %r)",
                    dataset.source, len(short), min_length, short[0])
    if not dataset.sequences:
        raise ValueError(f"{dataset.source}: no user has {min_length} or more items")
    return dataset
