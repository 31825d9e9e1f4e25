"""The one in-memory form every loader produces, and the LC-Rec/GREAM folder loader.

LC-Rec format (what the paper's code and ../shared/data use):
  ``X.inter.json``  ``{"<user>": [item ids, chronological]}``, ids integers or strings
  ``X.item.json``   ``{"<item>": {"title", "description", "brand", "categories", ...}}`` (optional)
  ``X.user_sequence.txt``  one line per user, ``USER ITEM ITEM ...`` (alternative to inter.json)

Documented behaviour on imperfect input (counts land in ``RecDataset.problems``):
  * an item id in the sequences without an entry in ``X.item.json`` gets empty text
    (``items_without_meta``; only counted when an item.json exists);
  * items whose text fields are all empty are kept (``items_without_text``);
  * :func:`load_dataset` drops users with fewer than ``min_length`` (3) items, which have no
    leave-one-out training target, and logs a warning (``short_users_dropped``).
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from gream_verl.io import read_json

ITEM_TEXT_FIELDS = ("title", "description", "brand", "categories", "reviews", "enriched")
ITEM_FIELDS = (*ITEM_TEXT_FIELDS, "asin")  # what loaders keep from an item.json entry

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


def clean_text(value) -> str:
    """Item text as one tidy line: lists joined, HTML entities decoded, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = [clean_text(v) for v in value]
        value = ", ".join(p for p in parts if p)
    return _WS.sub(" ", html.unescape(str(value))).strip()


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
        return sorted(ids, key=_id_sort_key)

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


def _id_sort_key(x: str):
    return (0, int(x), "") if x.isdigit() else (1, 0, x)


def _find(folder: Path, suffix: str) -> Path | None:
    hits = sorted(folder.glob(f"*{suffix}"))
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise ValueError(f"{folder}: several *{suffix} files ({names}); pass the file explicitly")
    return hits[0] if hits else None


def load_lcrec(path: str | Path, name: str | None = None) -> RecDataset:
    """Load an LC-Rec folder (or one ``.inter.json`` / ``.user_sequence.txt`` file beside an
    optional ``.item.json``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        inter = _find(folder, ".inter.json") or _find(folder, ".user_sequence.txt")
        if inter is None:
            raise FileNotFoundError(f"{folder}: no *.inter.json or *.user_sequence.txt file")
    else:
        inter = path
    stem = inter.name.split(".")[0]
    name = name or stem
    if inter.name.endswith(".user_sequence.txt"):
        sequences = _read_user_sequence_txt(inter)
    else:
        sequences = _read_inter_json(inter)
    item_file = folder / f"{stem}.item.json"
    items: dict[str, dict[str, str]] = {}
    if item_file.is_file():
        raw = read_json(item_file)
        if not isinstance(raw, dict):
            raise ValueError(f"{item_file}: expected an object of item id -> fields, got {type(raw).__name__}")
        for item, meta in raw.items():
            if not isinstance(meta, dict):
                raise ValueError(f"{item_file}: item {item!r} has {type(meta).__name__} instead of an object")
            items[str(item)] = {k: clean_text(v) for k, v in meta.items() if k in ITEM_FIELDS}
    problems = {}
    if item_file.is_file():
        used = {i for seq in sequences.values() for i in seq}
        problems["items_without_meta"] = len(used - set(items))
        if problems["items_without_meta"]:
            log.warning("%s: %d items of %s have no entry; they get empty text",
                        item_file, problems["items_without_meta"], inter.name)
        problems["items_without_text"] = sum(
            not any(v for k, v in meta.items() if k in ITEM_TEXT_FIELDS) for meta in items.values()
        )
    return RecDataset(name=name, sequences=sequences, items=items, source=str(path), problems=problems)


def _read_inter_json(path: Path) -> dict[str, list[str]]:
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of user id -> item list, got {type(raw).__name__}")
    sequences = {}
    for user, seq in raw.items():
        if not isinstance(seq, list):
            raise ValueError(f"{path}: user {user!r} has {type(seq).__name__} instead of a list of items")
        sequences[str(user)] = [str(i) for i in seq]
    return sequences


def _read_user_sequence_txt(path: Path) -> dict[str, list[str]]:
    sequences = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}:{lineno}: expected 'USER ITEM [ITEM ...]', got {line!r}")
        sequences[parts[0]] = parts[1:]
    return sequences


def load_dataset(path: str | Path, name: str | None = None, min_length: int = 3, **raw_kwargs) -> RecDataset:
    """Load any supported format from a folder or file.

    LC-Rec folders/files load as they are (already k-cored and remapped). Raw Amazon dumps
    (``reviews_*.json.gz`` / ``meta_*.json.gz``, 2014 or 2018) go through
    :func:`gream_verl.data.amazon.load_amazon_raw`, which k-cores and remaps (``raw_kwargs``).
    Users with fewer than ``min_length`` items are dropped with a warning
    (``problems["short_users_dropped"]``); ``min_length=0`` keeps every user.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if is_lcrec(path):
        if raw_kwargs:
            raise ValueError(f"{path}: options {sorted(raw_kwargs)} only apply to raw Amazon dumps")
        dataset = load_lcrec(path, name=name)
    else:
        from gream_verl.data.amazon import load_amazon_raw

        dataset = load_amazon_raw(path, name=name, **raw_kwargs)
    return drop_short_users(dataset, min_length)


def is_lcrec(path: str | Path) -> bool:
    """Whether ``path`` is an LC-Rec folder or file (else it is treated as a raw Amazon dump)."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.inter.json")) or any(path.glob("*.user_sequence.txt"))
    return path.name.endswith((".inter.json", ".user_sequence.txt"))


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
