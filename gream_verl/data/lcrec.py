"""The LC-Rec / GREAM folder format: read it, and write it (``gream data convert`` output).

  ``X.inter.json``  ``{"<user>": [item ids, chronological]}``, ids strings or integers
  ``X.item.json``   ``{"<item>": {"title", "description", "brand", "categories", ...}}`` (optional)
  ``X.user_sequence.txt``  one line per user, ``USER ITEM ITEM ...`` (alternative to inter.json)

Documented behaviour on imperfect input (counts land in ``RecDataset.problems``):
  * an item id that is not a non-empty string or an integer (``null``, ``true``, ``1.5``,
    ``[2, 3]``, ``{"a": 1}``, ``""``) is an error naming the file, the user and the position;
    an empty object ``{}`` is an error saying the file has no users; a user listed twice in a
    ``.user_sequence.txt`` is an error naming both lines;
  * an item repeated within a user's sequence is counted (``repeated_items``: occurrences after
    the first; ``users_with_repeated_items``) and logged; ``repeated_items="keep"`` (the default,
    the published files are used as they are) keeps them, ``"drop"`` keeps each item's first
    occurrence only;
  * an item id in the sequences without an entry in ``X.item.json`` gets empty text
    (``items_without_meta``; only counted when an item.json exists);
  * items whose text fields are all empty are kept (``items_without_text``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from gream_verl.data.rec_dataset import ITEM_FIELDS, ITEM_TEXT_FIELDS, RecDataset, clean_text
from gream_verl.io import read_json, write_json

REPEATED_ITEMS = ("keep", "drop")

log = logging.getLogger(__name__)


def is_lcrec(path: str | Path) -> bool:
    """Whether ``path`` is an LC-Rec folder or an LC-Rec sequence file (by its name)."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.inter.json")) or any(path.glob("*.user_sequence.txt"))
    return path.name.endswith((".inter.json", ".user_sequence.txt"))


def _find(folder: Path, suffix: str) -> Path | None:
    hits = sorted(folder.glob(f"*{suffix}"))
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise ValueError(f"{folder}: several *{suffix} files ({names}); pass the file explicitly")
    return hits[0] if hits else None


def load_lcrec(path: str | Path, name: str | None = None, repeated_items: str = "keep") -> RecDataset:
    """Load an LC-Rec folder (or one ``.inter.json`` / ``.user_sequence.txt`` file beside an
    optional ``.item.json``)."""
    if repeated_items not in REPEATED_ITEMS:
        raise ValueError(f"repeated_items must be one of {REPEATED_ITEMS}, got {repeated_items!r}")
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
    if inter.name.endswith(".user_sequence.txt"):
        sequences = _read_user_sequence_txt(inter)
    else:
        sequences = _read_inter_json(inter)
    problems = _count_repeats(sequences, inter, drop=repeated_items == "drop")
    item_file = folder / f"{stem}.item.json"
    items = _read_item_json(item_file) if item_file.is_file() else {}
    if item_file.is_file():
        used = {i for seq in sequences.values() for i in seq}
        problems["items_without_meta"] = len(used - set(items))
        if problems["items_without_meta"]:
            log.warning("%s: %d items of %s have no entry; they get empty text",
                        item_file, problems["items_without_meta"], inter.name)
        problems["items_without_text"] = sum(
            not any(v for k, v in meta.items() if k in ITEM_TEXT_FIELDS) for meta in items.values()
        )
    return RecDataset(name=name or stem, sequences=sequences, items=items, source=str(path), problems=problems)


def _read_inter_json(path: Path) -> dict[str, list[str]]:
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of user id -> item list, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{path}: no users (the file holds an empty object)")
    sequences = {}
    for user, seq in raw.items():
        if not isinstance(seq, list):
            raise ValueError(f"{path}: user {user!r} has {type(seq).__name__} instead of a list of items")
        if not set(map(type, seq)) <= {str, int} or "" in seq:
            position, bad = next((p, i) for p, i in enumerate(seq) if type(i) not in (str, int) or i == "")
            raise ValueError(
                f"{path}: user {user!r} has item {bad!r} at position {position}; "
                "item ids must be non-empty strings or integers"
            )
        sequences[user] = [str(i) for i in seq]
    return sequences


def _read_user_sequence_txt(path: Path) -> dict[str, list[str]]:
    sequences: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
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
        if parts[0] in first_line:
            raise ValueError(f"{path}:{lineno}: user {parts[0]!r} again (first on line {first_line[parts[0]]})")
        first_line[parts[0]] = lineno
        sequences[parts[0]] = parts[1:]
    if not sequences:
        raise ValueError(f"{path}: no users (the file has no lines)")
    return sequences


def _count_repeats(sequences: dict[str, list[str]], path: Path, drop: bool) -> dict[str, int]:
    """Count (and with ``drop`` remove, in place) items repeated within a user's sequence."""
    repeated = users = 0
    example = None
    for user, seq in sequences.items():
        unique = dict.fromkeys(seq)  # first occurrences, in order
        if len(unique) < len(seq):
            repeated += len(seq) - len(unique)
            users += 1
            example = example or user
            if drop:
                sequences[user] = list(unique)
    if repeated:
        log.warning("%s: %d repeated items in %d users' sequences (e.g. user %r); %s (repeated_items=%s)",
                    path, repeated, users, example, "first occurrences kept" if drop else "kept",
                    "drop" if drop else "keep")
    return {"repeated_items": repeated, "users_with_repeated_items": users}


def _read_item_json(item_file: Path) -> dict[str, dict[str, str]]:
    raw = read_json(item_file)
    if not isinstance(raw, dict):
        raise ValueError(f"{item_file}: expected an object of item id -> fields, got {type(raw).__name__}")
    items = {}
    for item, meta in raw.items():
        if not isinstance(meta, dict):
            raise ValueError(f"{item_file}: item {item!r} has {type(meta).__name__} instead of an object")
        items[str(item)] = {k: clean_text(v) for k, v in meta.items() if k in ITEM_FIELDS}
    return items


def save_lcrec(dataset: RecDataset, folder: str | Path, name: str | None = None) -> dict[str, Path]:
    """Write ``<name>.inter.json`` and ``<name>.item.json`` atomically (LC-Rec format)."""
    folder = Path(folder)
    name = name or dataset.name
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad dataset name {name!r} for file names")
    items = {i: {k: v for k, v in dataset.items.get(i, {}).items() if k in ITEM_FIELDS} for i in dataset.item_ids}
    inter_path = write_json(folder / f"{name}.inter.json", dataset.sequences, indent=None)
    item_path = write_json(folder / f"{name}.item.json", items, indent=1)
    return {"inter": inter_path, "item": item_path}
