"""Raw Amazon review dumps (McAuley 2014, Ni et al. 2018) -> :class:`RecDataset`; the review and
meta readers here also serve the 2023 release (``amazon2023.py``), which differs only in names.

Files (gzipped or not), one record per line:
  reviews   ``reviews_<Cat>.json.gz`` / ``reviews_<Cat>_5.json.gz`` (2014),
            ``<Cat>.json.gz`` / ``<Cat>_5.json.gz`` (2018): reviewerID, asin, unixReviewTime,
            optional reviewText / summary
  meta      ``meta_<Cat>.json.gz``: asin, title, description (str or list), brand,
            categories (2014, list of lists) or category (2018, list)
2014 meta lines are Python literals (``{'asin': ...}``); see ``jsonlines.py``.

Documented behaviour on imperfect input (besides ``raw.py``'s de-duplication, k-core, new ids
and review snippets):
  * a malformed line (not a JSON / Python-literal object, or a review without reviewerID,
    asin or an integer unixReviewTime >= 0) raises ``ValueError("<file>:<line>: ...")`` with
    ``on_bad_lines="error"``; with ``"warn"`` (the default) it is skipped, counted in
    ``problems["bad_review_lines"]`` / ``["bad_meta_lines"]`` and the first few are logged
    with file and line;
  * bytes that are not UTF-8 are replaced by U+FFFD; such lines are counted in
    ``problems["non_utf8_review_lines"]`` / ``["non_utf8_meta_lines"]``;
  * meta text is HTML-unescaped, stripped of tags and whitespace-collapsed; repeated meta
    records of one item keep the first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from gream_verl.data.jsonlines import JsonLinesReader
from gream_verl.data.raw import InteractionLog, ReviewSnippets, assemble
from gream_verl.data.rec_dataset import RecDataset, clean_text, strip_tags

log = logging.getLogger(__name__)

_SUFFIXES = (".json.gz", ".json")


@dataclass(frozen=True)
class ReviewFields:
    """Names of a release's review fields."""

    user: str
    item: str
    time: str
    summary: str
    text: str


FIELDS_2018 = ReviewFields(user="reviewerID", item="asin", time="unixReviewTime", summary="summary", text="reviewText")


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
    """``reviews_Office_Products_5.json.gz`` -> ``Office_Products``; ``Toys.jsonl`` -> ``Toys``."""
    name = reviews_file.name
    for suffix in (".jsonl.gz", ".jsonl", *_SUFFIXES):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = name.removeprefix("reviews_")
    return name.removesuffix("_5")


def _is_timestamp(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _as_text(value) -> str | None:
    return value if value is None or isinstance(value, str) else clean_text(value)


def read_reviews(
    path: Path,
    fields: ReviewFields = FIELDS_2018,
    on_bad_lines: str = "warn",
    reviews_per_item: int = 2,
    review_chars: int = 300,
    problems: dict[str, int] | None = None,
) -> tuple[InteractionLog, ReviewSnippets]:
    """Stream a reviews file: its (user, item, time) rows and up to ``reviews_per_item``
    review snippets per item. Memory: the distinct ids, an int32 index per row and id, and
    an int64 time per row (``raw.py``)."""
    from tqdm.auto import tqdm

    problems = {} if problems is None else problems
    f = fields
    reader = JsonLinesReader(path, "review", on_bad_lines, problems)
    with_text = reviews_per_item > 0
    columns = [(f.user, pa.string()), (f.item, pa.string()), (f.time, pa.int64())]
    if with_text:
        columns += [(f.summary, pa.string()), (f.text, pa.string())]
    schema = pa.schema(columns)
    why = f"needs {f.user}, {f.item} and an integer {f.time} >= 0"

    def row_of(record: dict) -> tuple | str:
        user, item, time = record.get(f.user), record.get(f.item), record.get(f.time)
        if not (user and item and isinstance(item, str) and _is_timestamp(time)):
            return why
        text = (_as_text(record.get(f.summary)), _as_text(record.get(f.text))) if with_text else ()
        return (str(user), item, time, *text)

    def rows_ok(table: pa.Table) -> bool:
        user, item, time = table.column(0), table.column(1), table.column(2)
        return not (user.null_count or item.null_count or time.null_count) and bool(
            pc.all(pc.greater(pc.utf8_length(user), 0)).as_py() is not False
            and pc.all(pc.greater(pc.utf8_length(item), 0)).as_py() is not False
            and pc.all(pc.greater_equal(time, 0)).as_py() is not False
        )

    interactions, snippets = InteractionLog(), ReviewSnippets(reviews_per_item, review_chars)
    with tqdm(desc=f"reading {path.name}", unit=" lines", mininterval=1.0, unit_scale=True) as bar:
        for table in reader.tables(schema, row_of, rows_ok):
            times = table.column(2).to_numpy()
            items = interactions.add(table.column(0), table.column(1), times)
            if with_text:
                snippets.add(items, table.column(3), table.column(4))
            bar.update(table.num_rows)
    return interactions, snippets


def read_meta(
    path: Path,
    wanted: set[str],
    on_bad_lines: str = "warn",
    problems: dict[str, int] | None = None,
    key: str = "asin",
    fields_of: Callable[[dict], dict[str, str]] | None = None,
) -> dict[str, dict[str, str]]:
    """Text fields of the items in ``wanted``, by the meta record's ``key`` field (lines of
    other items are skipped without being parsed)."""
    from tqdm.auto import tqdm

    fields_of = fields_of or meta_fields
    problems = {} if problems is None else problems
    reader = JsonLinesReader(path, "meta", on_bad_lines, problems)
    key_re = re.compile(rb"""['"]""" + re.escape(key.encode()) + rb"""['"]\s*:\s*['"]([^'"]+)['"]""")
    wanted_bytes = {a.encode() for a in wanted}
    meta: dict[str, dict[str, str]] = {}
    for lineno, line in tqdm(reader.lines(), desc=f"reading {path.name}", unit=" lines", mininterval=1.0):
        match = key_re.search(line)
        if match is not None and match.group(1) not in wanted_bytes:
            continue  # cheap skip: most meta lines are for items the k-core removed
        record = reader.parse(lineno, line)
        if record is None:
            continue
        item = record.get(key)
        if not isinstance(item, str) or not item:
            reader.bad(lineno, line, f"no {key}")
            continue
        if item in wanted and item not in meta:
            meta[item] = fields_of(record)
    return meta


def meta_fields(record: dict) -> dict[str, str]:
    """Title, description, brand and categories of a 2014 or 2018 meta record, as clean text."""
    fields = {
        "title": strip_tags(clean_text(record.get("title"))),
        "description": strip_tags(paragraphs(record.get("description"))),
        "brand": clean_text(record.get("brand")),
        "categories": flat_categories(record.get("categories") or record.get("category") or []),
    }
    return {k: v for k, v in fields.items() if v}


def paragraphs(value) -> str:
    """A description given as a string or a list of paragraphs, as one line."""
    if isinstance(value, list):
        return " ".join(p for p in (clean_text(v) for v in value) if p)
    return clean_text(value)


def flat_categories(categories) -> str:
    """Category names (a list, or a list of lists as in 2014) flattened, unique, in order."""
    flat: list[str] = []
    for entry in categories if isinstance(categories, list) else [categories]:
        for name in entry if isinstance(entry, list) else [entry]:
            name = clean_text(name)
            if name and name not in flat:
                flat.append(name)
    return ", ".join(flat)


def load_amazon_raw(
    path: str | Path,
    name: str | None = None,
    k: int = 5,
    meta: str | Path | None = None,
    on_bad_lines: str = "warn",
    reviews_per_item: int = 2,
    review_chars: int = 300,
) -> RecDataset:
    """Load a raw Amazon 2014/2018 dump (folder or reviews file), k-core it and remap ids.

    See the module docstrings (here and ``raw.py``) for every documented behaviour; counts of
    what was dropped or repaired are in the result's ``problems``.
    """
    reviews_file, meta_file = find_amazon_files(path, meta)
    return load_reviews_and_meta(
        reviews_file, meta_file, FIELDS_2018, "asin", meta_fields, name=name, k=k,
        on_bad_lines=on_bad_lines, reviews_per_item=reviews_per_item, review_chars=review_chars,
    )


def load_reviews_and_meta(
    reviews_file: Path,
    meta_file: Path | None,
    fields: ReviewFields,
    meta_key: str,
    fields_of: Callable[[dict], dict[str, str]],
    *,
    name: str | None,
    k: int,
    on_bad_lines: str,
    reviews_per_item: int,
    review_chars: int,
) -> RecDataset:
    """A reviews file plus an optional meta file (any Amazon release) -> RecDataset."""
    if k < 1:  # before hours of reading, not after
        raise ValueError(f"k must be >= 1, got {k}")
    problems: dict[str, int] = {}
    interactions, snippets = read_reviews(reviews_file, fields, on_bad_lines, reviews_per_item, review_chars, problems)
    if not len(interactions):
        raise ValueError(f"{reviews_file}: no valid review lines")
    if meta_file is None:
        log.warning("%s: no meta file beside it; items have no text", reviews_file)

    def read_item_text(kept: set[str]) -> dict[str, dict[str, str]]:
        if meta_file is None:
            return {}
        return read_meta(meta_file, kept, on_bad_lines, problems, key=meta_key, fields_of=fields_of)

    return assemble(interactions, name=name or category_of(reviews_file), source=str(reviews_file), k=k,
                    problems=problems, read_item_text=read_item_text, snippets=snippets)


