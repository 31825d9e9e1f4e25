"""Amazon Reviews 2023 (Hou et al., McAuley Lab; https://amazon-reviews-2023.github.io/) ->
:class:`RecDataset`, with the same treatment as the older dumps (``amazon.py``, ``raw.py``).

Two forms of the release:
  * raw files, one JSON object per line, optionally gzipped:
      reviews ``<Category>.jsonl``: user_id, parent_asin (the item; ``asin`` is a variant of
              it, e.g. a colour, and is ignored), timestamp (milliseconds), rating, title, text
      meta    ``meta_<Category>.jsonl``: parent_asin, title, description (list), features
              (list), store, categories (list), details (object; not used)
    Item text: ``title``; ``description`` = the description paragraphs, then
    ``Features: a; b``;
    ``brand`` = store; ``categories`` = the category path. A review line without user_id,
    parent_asin or an integer timestamp is a bad line (``on_bad_lines``, see ``amazon.py``).
  * the benchmark CSVs (``user_id,parent_asin,rating,timestamp[,history]``): one file
    (``<Category>.csv``, the 0-core or 5-core rating-only files) or a leave-last-out split
    (``<Category>.train.csv``, ``.valid.csv``, ``.test.csv``). The split files are read in the
    order train, valid, test, so a timestamp tie keeps that order and the rebuilt sequence ends
    with the valid then the test item: leave-one-out then reproduces the release's split
    (exactly so when the k-core removes nothing, as for the 5-core files with k <= 5). The
    ``history`` column repeats earlier rows and is not read.
"""

from __future__ import annotations

from pathlib import Path

from gream_verl.data.amazon import (
    ReviewFields,
    category_of,
    flat_categories,
    load_reviews_and_meta,
    paragraphs,
    read_meta,
)
from gream_verl.data.jsonlines import first_line, parse_line
from gream_verl.data.rec_dataset import RecDataset, clean_text, strip_tags
from gream_verl.data.table import TableColumns, load_table, table_columns, table_kind

FIELDS_2023 = ReviewFields(user="user_id", item="parent_asin", time="timestamp", summary="title", text="text")
CSV_COLUMNS = TableColumns(user="user_id", item="parent_asin", timestamp="timestamp")
SPLITS = ("train", "valid", "test")


def record_kind(path: Path) -> str | None:
    """``"reviews"`` or ``"meta"`` when the file's first record looks like the 2023 release."""
    try:
        record = parse_line(first_line(path))
    except ValueError:
        return None
    if not isinstance(record, dict) or "parent_asin" not in record:
        return None
    return "reviews" if "user_id" in record else "meta"


def is_benchmark_csv(path: Path) -> bool:
    """A CSV whose header has the 2023 benchmark columns."""
    return table_kind(path) == "csv" and {"user_id", "parent_asin", "timestamp"} <= set(table_columns(path))


def meta_fields_2023(record: dict) -> dict[str, str]:
    """Title, description (+ features), brand (the store) and categories of a 2023 meta record."""
    features = "; ".join(f for f in (clean_text(x) for x in record.get("features") or []) if f)
    description = " ".join(p for p in (paragraphs(record.get("description")), features and f"Features: {features}") if p)
    fields = {
        "title": strip_tags(clean_text(record.get("title"))),
        "description": strip_tags(description),
        "brand": clean_text(record.get("store")),
        "categories": flat_categories(record.get("categories") or []),
    }
    return {k: v for k, v in fields.items() if v}


def find_2023_files(path: Path, meta: str | Path | None = None) -> tuple[Path, Path | None]:
    """The reviews file and its meta file (None if none) for a folder or a reviews file, by content."""
    if path.is_dir():
        kinds = {p: record_kind(p) for p in sorted(path.iterdir()) if p.is_file()}
        reviews = [p for p, kind in kinds.items() if kind == "reviews"]
        metas = [p for p, kind in kinds.items() if kind == "meta"]
        if len(reviews) != 1:
            names = ", ".join(p.name for p in reviews) or "none"
            raise ValueError(f"{path}: expected one Amazon 2023 reviews file, found {len(reviews)} ({names}); pass one")
    else:
        reviews, metas = [path], [p for p in sorted(path.parent.iterdir()) if p.name.startswith("meta_")
                                  and p.is_file() and record_kind(p) == "meta"]
    if meta is not None:
        if not Path(meta).is_file():
            raise FileNotFoundError(f"{meta}: no such meta file")
        return reviews[0], Path(meta)
    category = category_of(reviews[0])
    named = [p for p in metas if category_of(p).removeprefix("meta_") == category]
    chosen = named or (metas if len(metas) == 1 else [])
    return reviews[0], chosen[0] if chosen else None


def load_amazon2023(
    path: str | Path,
    name: str | None = None,
    k: int = 5,
    meta: str | Path | None = None,
    on_bad_lines: str = "warn",
    reviews_per_item: int = 2,
    review_chars: int = 300,
) -> RecDataset:
    """Load a 2023 reviews file (or a folder holding it and its meta file); see the module docstring."""
    reviews_file, meta_file = find_2023_files(Path(path), meta)
    return load_reviews_and_meta(
        reviews_file, meta_file, FIELDS_2023, "parent_asin", meta_fields_2023, name=name, k=k,
        on_bad_lines=on_bad_lines, reviews_per_item=reviews_per_item, review_chars=review_chars,
    )


def benchmark_csv_files(path: Path) -> list[Path]:
    """The CSV(s) of a benchmark folder or file, split files in train, valid, test order."""
    if path.is_file():
        return [path]
    csvs = [p for p in sorted(path.iterdir()) if p.is_file() and is_benchmark_csv(p)]
    split = {s: [p for p in csvs if f".{s}." in p.name] for s in SPLITS}
    if all(len(v) == 1 for v in split.values()):
        return [split[s][0] for s in SPLITS]
    if len(csvs) == 1:
        return csvs
    names = ", ".join(p.name for p in csvs) or "none"
    raise ValueError(f"{path}: expected one benchmark CSV or one <name>.train/.valid/.test.csv set, found: {names}")


def load_amazon2023_csv(
    path: str | Path,
    name: str | None = None,
    k: int = 5,
    meta: str | Path | None = None,
    on_bad_lines: str = "warn",
) -> RecDataset:
    """Load the 2023 benchmark CSV(s); ``meta`` is a ``meta_<Category>.jsonl`` for item text."""
    path = Path(path)
    files = benchmark_csv_files(path)
    meta_file = Path(meta) if meta else None
    if meta_file is None and path.is_dir():
        metas = [p for p in sorted(path.iterdir()) if p.name.startswith("meta_") and record_kind(p) == "meta"]
        meta_file = metas[0] if len(metas) == 1 else None
    dataset = load_table(files, name=name or files[0].name.split(".")[0], k=k, columns=CSV_COLUMNS,
                         on_bad_lines=on_bad_lines, id_field="asin")
    if meta_file is not None:
        asins = {fields["asin"]: i for i, fields in dataset.items.items()}
        text = read_meta(meta_file, set(asins), on_bad_lines, dataset.problems, key="parent_asin",
                         fields_of=meta_fields_2023)
        for asin, fields in text.items():
            dataset.items[asins[asin]].update(fields)
        dataset.problems["items_without_meta"] = len(asins) - len(text)
    return dataset
