"""Load a dataset in any supported format into the one in-memory form, :class:`RecDataset`.

Formats (``detect.py`` tells them apart by content):
  ``lcrec``           LC-Rec / GREAM folder, already filtered and remapped (``lcrec.py``)
  ``amazon2018``      raw Amazon 2014 or 2018 dump (``amazon.py``)
  ``amazon2023``      raw Amazon Reviews 2023 JSON lines (``amazon2023.py``)
  ``amazon2023-csv``  Amazon Reviews 2023 benchmark CSVs (``amazon2023.py``)
  ``table``           a plain CSV / TSV / Parquet interaction table (``table.py``)
Raw formats are k-cored and remapped on load; ``gream data convert`` writes the result as an
LC-Rec folder once, so later commands read it fast.

This module imports the loaders; the loaders import only ``rec_dataset.py`` (the form) and
each other's readers, never this module, so there is no import cycle.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from gream_verl.data.amazon import load_amazon_raw
from gream_verl.data.amazon2023 import load_amazon2023, load_amazon2023_csv
from gream_verl.data.detect import FORMATS, detect_format
from gream_verl.data.lcrec import is_lcrec, load_lcrec
from gream_verl.data.rec_dataset import (
    ITEM_FIELDS,
    ITEM_TEXT_FIELDS,
    RecDataset,
    clean_text,
    drop_short_users,
)
from gream_verl.data.table import TableColumns, load_table

REVIEW_OPTIONS = ("k", "meta", "on_bad_lines", "reviews_per_item", "review_chars")
OPTIONS = {
    "lcrec": (),
    "amazon2018": REVIEW_OPTIONS,
    "amazon2023": REVIEW_OPTIONS,
    "amazon2023-csv": ("k", "meta", "on_bad_lines"),
    "table": ("k", "meta", "on_bad_lines"),
}

__all__ = ["FORMATS", "ITEM_FIELDS", "ITEM_TEXT_FIELDS", "OPTIONS", "RecDataset", "TableColumns", "clean_text",
           "detect_format", "drop_short_users", "is_lcrec", "load_dataset", "table_columns_from"]


def table_columns_from(table: TableColumns | dict | None) -> TableColumns:
    """``TableColumns`` from a config section (unknown keys are an error naming them)."""
    if table is None or isinstance(table, TableColumns):
        return table or TableColumns()
    known = {f.name for f in fields(TableColumns)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown table option(s) {unknown}; known: {sorted(known)}")
    return TableColumns(**dict(table))


def load_dataset(
    path: str | Path,
    name: str | None = None,
    min_length: int = 3,
    format: str = "auto",
    repeated_items: str = "keep",
    table: TableColumns | dict | None = None,
    **options,
) -> RecDataset:
    """Load any supported format from a folder or file.

    ``format="auto"`` detects it by content. ``options`` are the raw formats' settings
    (``OPTIONS[format]``: ``k``, ``meta`` (a meta file, or for a table the item table),
    ``on_bad_lines``, ``reviews_per_item``, ``review_chars``); ``table`` names a table's
    columns; ``repeated_items`` ("keep" or "drop") applies to LC-Rec sequences (raw formats
    always keep a (user, item) pair once). Users with fewer than ``min_length`` items are then
    dropped with a warning (``problems["short_users_dropped"]``); ``min_length=0`` keeps all.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; formats: auto, {', '.join(FORMATS)}")
    extra = sorted(set(options) - set(OPTIONS[format]))
    if extra:
        what = "only apply to raw dumps" if format == "lcrec" else f"do not apply to format {format}"
        raise ValueError(f"{path}: options {extra} {what}")
    if format == "lcrec":
        dataset = load_lcrec(path, name=name, repeated_items=repeated_items)
    elif format == "amazon2018":
        dataset = load_amazon_raw(path, name=name, **options)
    elif format == "amazon2023":
        dataset = load_amazon2023(path, name=name, **options)
    elif format == "amazon2023-csv":
        dataset = load_amazon2023_csv(path, name=name, **options)
    else:
        dataset = _load_table(path, name, table_columns_from(table), **options)
    return drop_short_users(dataset, min_length)


def _load_table(path: Path, name: str | None, columns: TableColumns, meta=None, **options) -> RecDataset:
    """A table file, or a folder holding one interaction table and optionally one item table
    (told apart by whether they have the user column)."""
    from gream_verl.data.table import table_columns, table_kind

    if path.is_file():
        return load_table(path, name=name, items=meta, columns=columns, **options)
    tables = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".") and table_kind(p)]
    inter = [p for p in tables if columns.user in table_columns(p)]
    items = [p for p in tables if p not in inter and columns.item in table_columns(p)]
    if len(inter) != 1:
        names = ", ".join(p.name for p in inter) or "none"
        raise ValueError(f"{path}: expected one table with the user column {columns.user!r}, found {names}; "
                         "pass the file, or set table.user=NAME")
    if meta is None and len(items) > 1:
        raise ValueError(f"{path}: several item tables ({', '.join(p.name for p in items)}); pass one with --meta")
    return load_table(inter[0], name=name, items=meta or (items[0] if items else None), columns=columns, **options)
