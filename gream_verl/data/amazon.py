"""Raw Amazon review dumps (McAuley 2014, Ni et al. 2018) -> :class:`RecDataset`, and the
LC-Rec writer so a dump is converted once (``gream data convert``).

Files (gzipped or not), one record per line:
  reviews   ``reviews_<Cat>.json.gz`` / ``reviews_<Cat>_5.json.gz`` (2014),
            ``<Cat>.json.gz`` / ``<Cat>_5.json.gz`` (2018): reviewerID, asin, unixReviewTime,
            optional reviewText / summary
  meta      ``meta_<Cat>.json.gz``: asin, title, description (str or list), brand,
            categories (2014, list of lists) or category (2018, list)
2014 meta lines are Python literals (``{'asin': ...}``): they are parsed with
``ast.literal_eval``, never ``eval``.

Documented behaviour on imperfect input:
  * a malformed line (not a JSON / Python-literal object, or a review without reviewerID,
    asin or an integer unixReviewTime) raises ``ValueError("<file>:<line>: ...")`` with
    ``on_bad_lines="error"``; with ``"warn"`` (the default) it is skipped, counted in
    ``problems["bad_review_lines"]`` / ``["bad_meta_lines"]`` and the first few are logged
    with file and line;
  * bytes that are not UTF-8 are replaced by U+FFFD; such lines are counted in
    ``problems["non_utf8_review_lines"]`` / ``["non_utf8_meta_lines"]``;
  * repeated (user, item) pairs keep the earliest interaction (ties: the first in the file),
    before k-core counting; ``problems["duplicate_interactions"]``;
  * the k-core filter is iterative (users and items with >= k interactions, until stable);
  * meta text is HTML-unescaped, stripped of tags and whitespace-collapsed;
  * items without a meta record keep only ``{"asin": ...}`` (empty text);
    ``problems["items_without_meta"]``; repeated meta records of one ASIN keep the first;
  * new ids: users and items are numbered ``"0".."n-1"`` in the sorted order of their raw
    ids; ``items[i]["asin"]`` keeps the ASIN;
  * review text: the first ``reviews_per_item`` reviews of an item in file order
    (``summary. reviewText``, each cut to ``review_chars``) become its ``reviews`` field.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import logging
import re
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gream_verl.data.dataset import ITEM_TEXT_FIELDS, RecDataset, clean_text
from gream_verl.data.kcore import Interactions, build_sequences
from gream_verl.io import write_json

try:  # orjson is several times faster on multi-GB dumps; json is the fallback
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads = json.loads

log = logging.getLogger(__name__)

BAD_LINES_LOGGED = 5
_ASIN = re.compile(rb"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")
_SUFFIXES = (".json.gz", ".json")
_TAG = re.compile(r"<[^<>]{1,200}>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


class _LineReader:
    """Records of a JSON-lines / Python-literal-lines file, with file:line errors."""

    def __init__(self, path: Path, kind: str, on_bad_lines: str, problems: dict[str, int]):
        if on_bad_lines not in ("error", "warn"):
            raise ValueError(f"on_bad_lines must be 'error' or 'warn', got {on_bad_lines!r}")
        self.path = path
        self.on_bad_lines = on_bad_lines
        self.problems = problems
        self.bad_key, self.non_utf8_key = f"bad_{kind}_lines", f"non_utf8_{kind}_lines"
        problems.setdefault(self.bad_key, 0)
        problems.setdefault(self.non_utf8_key, 0)

    def lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            raw = gzip.open(self.path, "rb") if self.path.name.endswith(".gz") else open(self.path, "rb")
            with io.BufferedReader(raw, buffer_size=1 << 20) as f:  # C-level line splitting
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        yield lineno, line
        except (OSError, EOFError, zlib.error) as e:  # truncated, corrupt or not-really-gzip files
            raise ValueError(f"{self.path}: cannot read ({e})") from e

    def parse(self, lineno: int, line: bytes) -> dict | None:
        """The record on a line, or None for a skipped bad line."""
        try:
            record = _fast_loads(line)
        except ValueError:
            record = self._parse_slow(lineno, line)
        if not isinstance(record, dict):
            return self.bad(lineno, line, "not a JSON or Python-literal object")
        return record

    def _parse_slow(self, lineno: int, line: bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            text = line.decode("utf-8", errors="replace")
            self.problems[self.non_utf8_key] += 1
            if self.problems[self.non_utf8_key] <= BAD_LINES_LOGGED:
                log.warning("%s:%d: bytes that are not UTF-8 (at byte %d) replaced by U+FFFD", self.path, lineno, e.start)
        try:
            return json.loads(text)
        except ValueError:
            pass
        if text.lstrip().startswith("{"):
            try:
                return ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        return None

    def bad(self, lineno: int, line: bytes, why: str) -> None:
        snippet = line[:80].decode("utf-8", errors="replace").strip()
        message = f"{self.path}:{lineno}: malformed line ({why}): {snippet!r}"
        if self.on_bad_lines == "error":
            raise ValueError(message + " (on_bad_lines=warn skips such lines)")
        self.problems[self.bad_key] += 1
        if self.problems[self.bad_key] <= BAD_LINES_LOGGED:
            log.warning("%s; skipped", message)
        return None


def find_amazon_files(path: str | Path, meta: str | Path | None = None) -> tuple[Path, Path | None]:
    """The reviews file and its meta file (None if there is none) for a folder or a reviews file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.name.endswith(_SUFFIXES) and p.is_file())
        reviews = [p for p in candidates if not p.name.startswith("meta_")]
        if not reviews:
            raise FileNotFoundError(f"{path}: no Amazon reviews file (reviews_*.json[.gz], *_5.json[.gz] or <Category>.json[.gz])")
        if len(reviews) > 1:
            names = ", ".join(p.name for p in reviews)
            raise ValueError(f"{path}: several reviews files ({names}); pass one of them explicitly")
        reviews_file, folder = reviews[0], path
    else:
        reviews_file, folder = path, path.parent
    if meta is not None:
        meta_file = Path(meta)
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file}: no such meta file")
        return reviews_file, meta_file
    category = category_of(reviews_file)
    for suffix in _SUFFIXES:
        candidate = folder / f"meta_{category}{suffix}"
        if candidate.is_file():
            return reviews_file, candidate
    return reviews_file, None


def category_of(reviews_file: Path) -> str:
    """``reviews_Office_Products_5.json.gz`` -> ``Office_Products``."""
    name = reviews_file.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = name.removeprefix("reviews_")
    return name.removesuffix("_5")


def read_reviews(
    path: Path,
    on_bad_lines: str = "warn",
    reviews_per_item: int = 2,
    review_chars: int = 300,
    problems: dict[str, int] | None = None,
) -> tuple[Interactions, dict[str, list[str]]]:
    """Interactions of a reviews file, plus up to ``reviews_per_item`` review snippets per item."""
    from tqdm.auto import tqdm

    problems = {} if problems is None else problems
    reader = _LineReader(path, "review", on_bad_lines, problems)
    # one string object per distinct id (a dump has millions of rows but far fewer ids)
    pool: dict[str, str] = {}
    users: list[str] = []
    items: list[str] = []
    times = array("q")
    reviews: dict[str, list[str]] = {}
    for lineno, line in tqdm(reader.lines(), desc=f"reading {path.name}", unit=" lines", mininterval=1.0):
        record = reader.parse(lineno, line)
        if record is None:
            continue
        user, item, time = record.get("reviewerID"), record.get("asin"), record.get("unixReviewTime")
        if not (user and item and isinstance(item, str) and _is_timestamp(time)):
            reader.bad(lineno, line, "needs reviewerID, asin and an integer unixReviewTime >= 0")
            continue
        user = str(user)
        users.append(pool.setdefault(user, user))
        items.append(pool.setdefault(item, item))
        times.append(time)
        if reviews_per_item > 0:
            kept = reviews.setdefault(item, [])
            if len(kept) < reviews_per_item:
                text = clean_text(" ".join(p for p in (_sentence(record.get("summary")), record.get("reviewText")) if p))
                if text:
                    kept.append(text[:review_chars].rstrip())
    inter = Interactions(
        users=np.array(users, dtype=object),
        items=np.array(items, dtype=object),
        times=np.frombuffer(times, dtype=np.int64) if times else np.zeros(0, dtype=np.int64),
    )
    return inter, reviews


def _is_timestamp(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _sentence(summary) -> str:
    text = clean_text(summary)
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def read_meta(
    path: Path, asins: set[str], on_bad_lines: str = "warn", problems: dict[str, int] | None = None
) -> dict[str, dict[str, str]]:
    """Text fields of the items in ``asins`` (other lines are skipped without being parsed)."""
    from tqdm.auto import tqdm

    problems = {} if problems is None else problems
    reader = _LineReader(path, "meta", on_bad_lines, problems)
    wanted = {a.encode() for a in asins}
    meta: dict[str, dict[str, str]] = {}
    for lineno, line in tqdm(reader.lines(), desc=f"reading {path.name}", unit=" lines", mininterval=1.0):
        match = _ASIN.search(line)
        if match is not None and match.group(1) not in wanted:
            continue  # cheap skip: most meta lines are for items the k-core removed
        record = reader.parse(lineno, line)
        if record is None:
            continue
        asin = record.get("asin")
        if not isinstance(asin, str) or not asin:
            reader.bad(lineno, line, "no asin")
            continue
        if asin in asins and asin not in meta:
            meta[asin] = meta_fields(record)
    return meta


def meta_fields(record: dict) -> dict[str, str]:
    """Title, description, brand and categories of a 2014 or 2018 meta record, as clean text."""
    categories = record.get("categories") or record.get("category") or []
    flat: list[str] = []
    for entry in categories if isinstance(categories, list) else [categories]:
        for name in entry if isinstance(entry, list) else [entry]:
            name = clean_text(name)
            if name and name not in flat:
                flat.append(name)
    description = record.get("description")
    if isinstance(description, list):  # 2018: a list of paragraphs
        description = " ".join(clean_text(p) for p in description)
    fields = {
        "title": _strip_tags(clean_text(record.get("title"))),
        "description": _strip_tags(clean_text(description)),
        "brand": clean_text(record.get("brand")),
        "categories": ", ".join(flat),
    }
    return {k: v for k, v in fields.items() if v}


def _strip_tags(text: str) -> str:
    """2018 meta text carries HTML markup (``<b>``, ``<br>``); keep only the words."""
    if "<" not in text:
        return text
    return _SPACE_BEFORE_PUNCT.sub(r"\1", clean_text(_TAG.sub(" ", text)))


def load_amazon_raw(
    path: str | Path,
    name: str | None = None,
    k: int = 5,
    meta: str | Path | None = None,
    on_bad_lines: str = "warn",
    reviews_per_item: int = 2,
    review_chars: int = 300,
) -> RecDataset:
    """Load a raw Amazon dump (folder or reviews file), k-core it and remap ids.

    See the module docstring for every documented behaviour; counts of what was dropped or
    repaired are in the result's ``problems``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    reviews_file, meta_file = find_amazon_files(path, meta)
    problems: dict[str, int] = {}
    inter, reviews = read_reviews(reviews_file, on_bad_lines, reviews_per_item, review_chars, problems)
    if not len(inter):
        raise ValueError(f"{reviews_file}: no valid review lines")
    result = build_sequences(inter, k=k)
    if not result.sequences:
        raise ValueError(
            f"{reviews_file}: nothing is left after the {k}-core filter "
            f"({len(inter)} interactions read); try a smaller k"
        )
    problems["duplicate_interactions"] = result.duplicates
    problems["removed_by_kcore"] = result.removed_by_kcore
    kept = set(result.item_raw)
    item_meta = read_meta(meta_file, kept, on_bad_lines, problems) if meta_file else {}
    if meta_file is None:
        log.warning("%s: no meta_%s.json[.gz] beside it; items have no text", reviews_file, category_of(reviews_file))
    items: dict[str, dict[str, str]] = {}
    for new_id, asin in enumerate(result.item_raw):
        fields = {"asin": asin, **item_meta.get(asin, {})}
        if reviews.get(asin):
            fields["reviews"] = " | ".join(reviews[asin])
        items[str(new_id)] = fields
    problems["items_without_meta"] = len(kept) - len(item_meta)
    log.info(
        "%s: %d users, %d items, %d interactions after %d-core (%d rounds)",
        reviews_file, len(result.sequences), len(items), sum(map(len, result.sequences.values())), k, result.kcore_rounds,
    )
    return RecDataset(
        name=name or category_of(reviews_file),
        sequences=result.sequences,
        items=items,
        source=str(reviews_file),
        problems=problems,
    )


def save_lcrec(dataset: RecDataset, folder: str | Path, name: str | None = None) -> dict[str, Path]:
    """Write ``<name>.inter.json`` and ``<name>.item.json`` atomically (LC-Rec format)."""
    folder = Path(folder)
    name = name or dataset.name
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad dataset name {name!r} for file names")
    known = set(ITEM_TEXT_FIELDS) | {"asin"}
    items = {i: {k: v for k, v in dataset.items.get(i, {}).items() if k in known} for i in dataset.item_ids}
    inter_path = write_json(folder / f"{name}.inter.json", dataset.sequences, indent=None)
    item_path = write_json(folder / f"{name}.item.json", items, indent=1)
    return {"inter": inter_path, "item": item_path}
