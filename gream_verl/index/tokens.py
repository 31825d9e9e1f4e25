"""Index tokens (``<a_12><b_200><c_3>``) and the LC-Rec ``X.index.json`` file.

Level ``l`` (0-based) uses the letter ``chr(ord('a') + l)``; code ``c`` of that level is the
token ``<{letter}_{c}>``. An item's *index* is its list of tokens, one per level; the collision
level may exist for some items only, so lengths can differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gream_verl.io import read_json, write_json

TOKEN_RE = re.compile(r"<([a-z])_(\d+)>")
MAX_LEVELS = 26


def index_token(level: int, code: int) -> str:
    if not 0 <= level < MAX_LEVELS:
        raise ValueError(f"level {level} out of range 0..{MAX_LEVELS - 1}")
    return f"<{chr(ord('a') + level)}_{int(code)}>"


def parse_index_tokens(text: str) -> list[str]:
    """All index tokens in ``text``, in order (garbage between them is ignored)."""
    return [m.group(0) for m in TOKEN_RE.finditer(text or "")]


def codes_to_tokens(codes: np.ndarray | list[int]) -> list[str]:
    return [index_token(level, int(c)) for level, c in enumerate(codes)]


@dataclass
class ItemIndex:
    """item id -> list of index tokens, plus the reverse map used to decode generations."""

    tokens: dict[str, list[str]]

    def __post_init__(self):
        self._by_string: dict[str, str] = {}
        self.num_collisions = 0  # items whose index another item already has
        for item, toks in self.tokens.items():
            key = "".join(toks)
            if key in self._by_string:
                self.num_collisions += 1
            else:
                self._by_string[key] = item

    def require_unique(self, source: str = "index") -> ItemIndex:
        """Raise unless every item has its own index (decoding needs that)."""
        if self.num_collisions:
            raise ValueError(f"{source}: {self.num_collisions} items share an index with another item")
        return self

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, item: str) -> bool:
        return item in self.tokens

    def string(self, item: str) -> str:
        """The item's index as one string, e.g. ``<a_1><b_2><c_3>``."""
        try:
            return "".join(self.tokens[item])
        except KeyError:
            raise KeyError(f"item {item!r} is not in the index") from None

    def item_of(self, index_string: str) -> str | None:
        """Item whose index is exactly these tokens (garbage between tokens ignored), else None.
        With collisions, the first item in file order wins."""
        return self._by_string.get("".join(parse_index_tokens(index_string)))

    @property
    def num_levels(self) -> int:
        return max((len(t) for t in self.tokens.values()), default=0)

    def vocabulary(self) -> list[str]:
        """Every distinct index token, sorted by level then code."""
        toks = {t for ts in self.tokens.values() for t in ts}
        return sorted(toks, key=lambda t: (t[1], int(TOKEN_RE.fullmatch(t).group(2))))


def load_index(path: str | Path) -> ItemIndex:
    raw = read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a non-empty object of item id -> list of index tokens")
    tokens: dict[str, list[str]] = {}
    for item, toks in raw.items():
        if not isinstance(toks, list) or not toks or not all(isinstance(t, str) and TOKEN_RE.fullmatch(t) for t in toks):
            raise ValueError(f"{path}: item {item!r} has a malformed index {toks!r} (expected ['<a_1>', '<b_2>', ...])")
        tokens[str(item)] = toks
    return ItemIndex(tokens)


def save_index(index: ItemIndex | dict[str, list[str]], path: str | Path) -> Path:
    tokens = index.tokens if isinstance(index, ItemIndex) else index
    return write_json(path, tokens, indent=None)
