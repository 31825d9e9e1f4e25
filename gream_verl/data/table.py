"""A plain interaction table (a company's own log): CSV, TSV or Parquet -> :class:`RecDataset`.

One row per interaction with a user column, an item column and a timestamp column (names
configurable, ``TableColumns``); optionally a rating column with a threshold (rows below it
are not interactions). An optional item table holds one row per item: the item column plus
any text columns, mapped onto the LC-Rec text fields (``title``, ``description``, ``brand``,
``categories``). The table is streamed in blocks by pyarrow, so it may be larger than memory.

Documented behaviour on imperfect input (besides ``raw.py``'s de-duplication, k-core and new
ids; the raw item id is kept as ``raw_id``):
  * ids are read as text (``"007"`` stays ``"007"``); Parquet integer ids become their decimal
    text; a list or struct column used as an id is an error naming the column;
  * a named column missing from a table is an error naming the file, the column and the
    columns it has; a file that cannot be parsed names the file and the offending row;
  * timestamps: integers (any epoch unit), decimals (kept to 1/1000 of their unit), or dates
    and date-times (ISO 8601, ``2023-05-01 12:00:00``); the kind is fixed by the first block;
  * a row with an empty id, or a timestamp / rating that does not parse, is bad:
    ``on_bad_lines="warn"`` skips and counts it (``problems["bad_table_rows"]``) and logs the
    first few with file, row and column; ``"error"`` raises naming them (rows are counted from
    1 after the header);
  * rows below ``min_rating`` are dropped (``problems["below_min_rating"]``);
  * item-table rows of items not in the interactions are ignored; a repeated item row keeps
    the first.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gream_verl.data.jsonlines import BAD_LINES_LOGGED, ON_BAD_LINES, first_line
from gream_verl.data.raw import InteractionLog, assemble
from gream_verl.data.rec_dataset import ITEM_TEXT_FIELDS, RecDataset, clean_text

log = logging.getLogger(__name__)

PARQUET_MAGIC = b"PAR1"
BLOCK_BYTES = 16 << 20
TEXT_FIELDS = ("title", "description", "brand", "categories")  # what an item table may fill


@dataclass(frozen=True)
class TableColumns:
    """Column names of an interaction table and of its optional item table.

    ``item_text`` maps an LC-Rec text field to the item-table column(s) that fill it, e.g.
    ``{"title": "name", "description": ["summary", "details"]}``; None: every column named
    like a text field (title, description, brand, categories).
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    rating: str | None = None
    min_rating: float | None = None
    item_text: dict[str, str | list[str]] | None = field(default=None, hash=False)


def table_kind(path: Path) -> str | None:
    """``"parquet"``, ``"csv"`` or ``"tsv"`` by the file's content (gzip allowed for text), else None."""
    with open(path, "rb") as f:
        if f.read(4) == PARQUET_MAGIC:
            return "parquet"
    try:
        line = first_line(path).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if not line or line.startswith(("{", "[")):
        return None
    if "\t" in line:
        return "tsv"
    return "csv" if "," in line else None


def table_columns(path: Path) -> list[str]:
    """The column names of a table file (its header)."""
    kind = table_kind(path)
    if kind == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    if kind is None:
        raise ValueError(f"{path}: not a CSV, TSV or Parquet table")
    header = first_line(path).decode("utf-8")
    return [c.strip() for c in next(csv.reader([header], delimiter="\t" if kind == "tsv" else ","))]


def _require(path: Path, have: list[str], wanted: dict[str, str]) -> None:
    for role, column in wanted.items():
        if column not in have:
            raise ValueError(
                f"{path}: no column {column!r} (the {role} column; set table.{role}=NAME). "
                f"Columns: {', '.join(have)}"
            )


def _batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of a table file; CSV/TSV columns are read as text."""
    kind = table_kind(path)
    if kind == "parquet":
        try:
            yield from pq.ParquetFile(path).iter_batches(batch_size=1 << 18, columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{path}: cannot read Parquet ({e})") from e
        return
    bad_rows: list[str] = []

    def invalid_row(row) -> str:
        bad_rows.append(f"malformed row {row.text!r} (expected {row.expected_columns} fields, got {row.actual_columns})")
        return "error"

    parse = pa_csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", invalid_row_handler=invalid_row)
    convert = pa_csv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                    null_values=[""], strings_can_be_null=True)
    try:
        stream = pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)
        reader = pa_csv.open_csv(stream, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
                                 parse_options=parse, convert_options=convert)
        yield from reader
    except (pa.ArrowException, OSError) as e:
        why = bad_rows[0] if bad_rows else str(e)
        raise ValueError(f"{path}: cannot read the table: {why}") from e


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _ids(path: Path, column: pa.Array, name: str) -> pa.Array:
    """An id column as text; a list or struct column is an error."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    if pa.types.is_integer(column.type) or pa.types.is_dictionary(column.type) or pa.types.is_binary(column.type):
        return pc.cast(column, pa.string())
    raise ValueError(f"{path}: column {name!r} holds {column.type} values; ids must be text or integers")


class _TimeParser:
    """Timestamps -> int64 sort keys; the kind (int, decimal, date) is fixed by the first block
    (by most of its values) and then holds for every block and every file of one table."""

    def __init__(self):
        self.kind: str | None = None

    def __call__(self, column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(rows,) int64 keys and (rows,) bool mask of values that do not parse as the file's kind."""
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            return self._dates(pd.to_datetime(column.to_pandas(), utc=True, errors="coerce"))
        series = column.to_pandas()
        numbers = pd.to_numeric(series, errors="coerce")
        if self.kind is None:  # by most values, so one bad value does not decide
            numeric = numbers.notna().sum() * 2 >= series.notna().sum() > 0
            integral = numeric and bool((numbers.dropna() % 1 == 0).all())
            self.kind = ("int" if integral else "decimal") if numeric else "date"
        if self.kind == "date":
            return self._dates(pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601"))
        values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        if self.kind == "decimal":
            values = np.round(values * 1000)
        bad = np.isnan(values) | (values % 1 != 0) | (np.abs(values) >= 2**63)
        return np.where(bad, 0, values).astype(np.int64), bad

    def _dates(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        self.kind = self.kind or "date"
        bad = values.isna().to_numpy()
        nanoseconds = values.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
        return np.where(bad, 0, nanoseconds), bad


def read_table(
    path: Path,
    columns: TableColumns,
    interactions: InteractionLog,
    on_bad_lines: str = "warn",
    problems: dict[str, int] | None = None,
    times_of: _TimeParser | None = None,
) -> None:
    """Stream the interaction rows of one table file into ``interactions`` (``times_of``:
    the timestamp parser shared by the files of one table)."""
    from tqdm.auto import tqdm

    if on_bad_lines not in ON_BAD_LINES:
        raise ValueError(f"on_bad_lines must be 'error' or 'warn', got {on_bad_lines!r}")
    problems = {} if problems is None else problems
    problems.setdefault("bad_table_rows", 0)
    problems.setdefault("below_min_rating", 0)
    c = columns
    wanted = {"user": c.user, "item": c.item, "timestamp": c.timestamp}
    if c.min_rating is not None:
        if not c.rating:
            raise ValueError("table.min_rating needs table.rating, the rating column")
        wanted["rating"] = c.rating
    _require(path, table_columns(path), wanted)
    names = list(wanted.values())
    times_of = times_of or _TimeParser()
    first_row = 1
    with tqdm(desc=f"reading {path.name}", unit=" rows", mininterval=1.0, unit_scale=True) as bar:
        for batch in _batches(path, names):
            user = _ids(path, batch.column(names.index(c.user)), c.user)
            item = _ids(path, batch.column(names.index(c.item)), c.item)
            times, bad_times = times_of(batch.column(names.index(c.timestamp)))
            bad = {
                c.user: pc.fill_null(pc.equal(pc.utf8_length(user), 0), True).to_numpy(zero_copy_only=False),
                c.item: pc.fill_null(pc.equal(pc.utf8_length(item), 0), True).to_numpy(zero_copy_only=False),
                c.timestamp: bad_times,
            }
            keep = np.ones(len(times), dtype=bool)
            if c.min_rating is not None:
                rating = pd.to_numeric(batch.column(names.index(c.rating)).to_pandas(), errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan)
                bad[c.rating] = np.isnan(rating)
                below = ~bad[c.rating] & (rating < c.min_rating)
                problems["below_min_rating"] += int(below.sum())
                keep &= ~below
            any_bad = np.logical_or.reduce(list(bad.values()))
            if any_bad.any():
                _bad_rows(path, batch, names, bad, any_bad, first_row, on_bad_lines, problems)
                keep &= ~any_bad
            rows = pa.array(np.flatnonzero(keep))
            interactions.add(user.take(rows), item.take(rows), times[keep])
            first_row += batch.num_rows
            bar.update(batch.num_rows)


def _bad_rows(path, batch, names, bad, any_bad, first_row, on_bad_lines, problems) -> None:
    """Report the block's first bad row (file, row, column, value); raise or count them all."""
    row = int(np.argmax(any_bad))
    column = next(c for c, mask in bad.items() if mask[row])
    value = batch.column(names.index(column))[row].as_py()
    shown = "an empty value" if value is None or value == "" else f"bad value {value!r}"
    message = f"{path}: row {first_row + row}, column {column!r}: {shown}"
    if on_bad_lines == "error":
        raise ValueError(message + " (on_bad_lines=warn skips such rows)")
    before = problems["bad_table_rows"]
    problems["bad_table_rows"] += int(any_bad.sum())
    if before < BAD_LINES_LOGGED:
        log.warning("%s; %d bad rows in this block skipped", message, int(any_bad.sum()))


def read_item_table(
    path: Path, item_column: str, item_text: dict[str, str | list[str]] | None, wanted: set[str]
) -> dict[str, dict[str, str]]:
    """``{raw item id: {field: text}}`` of the wanted items in an item table."""
    have = table_columns(path)
    _require(path, have, {"item": item_column})
    if item_text is None:
        item_text = {f: f for f in TEXT_FIELDS if f in have and f != item_column}
    sources: dict[str, list[str]] = {}
    for text_field, names in item_text.items():
        if text_field not in ITEM_TEXT_FIELDS:
            raise ValueError(f"table.item_text: unknown field {text_field!r}; fields: {', '.join(TEXT_FIELDS)}")
        sources[text_field] = [names] if isinstance(names, str) else list(names)
        for name in sources[text_field]:
            if name not in have:
                raise ValueError(f"{path}: no column {name!r} (named in table.item_text.{text_field}). Columns: {', '.join(have)}")
    columns = list(dict.fromkeys([item_column, *(n for names in sources.values() for n in names)]))
    found: dict[str, dict[str, str]] = {}
    wanted_array = pa.array(sorted(wanted), type=pa.string())
    for batch in _batches(path, columns):
        ids = _ids(path, batch.column(0), item_column)
        rows = pc.indices_nonzero(pc.fill_null(pc.is_in(ids, value_set=wanted_array), False))
        if not len(rows):
            continue
        picked = {name: batch.column(columns.index(name)).take(rows).to_pylist() for name in columns}
        for r, raw_id in enumerate(picked[item_column]):
            if raw_id is None or str(raw_id) in found:
                continue
            fields = {f: clean_text([picked[n][r] for n in names]) for f, names in sources.items()}
            found[str(raw_id)] = {f: v for f, v in fields.items() if v}
    return found


def load_table(
    path: str | Path | list[str | Path],
    name: str | None = None,
    items: str | Path | None = None,
    k: int = 5,
    columns: TableColumns | None = None,
    on_bad_lines: str = "warn",
    id_field: str = "raw_id",
) -> RecDataset:
    """Load an interaction table (a file, or several read in order as one table), k-core it
    and remap ids; ``items`` is the optional item table. See the module docstring."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    columns = columns or TableColumns()
    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    problems: dict[str, int] = {}
    interactions, times_of = InteractionLog(), _TimeParser()
    for p in paths:
        read_table(p, columns, interactions, on_bad_lines, problems, times_of)
    item_file = Path(items) if items else None
    if item_file is not None and not item_file.is_file():
        raise FileNotFoundError(f"{item_file}: no such item table")

    def read_item_text(kept: set[str]) -> dict[str, dict[str, str]]:
        return read_item_table(item_file, columns.item, columns.item_text, kept) if item_file else {}

    stem = paths[0].name.split(".")[0]
    source = str(paths[0]) if len(paths) == 1 else str(paths[0].parent)
    return assemble(interactions, name=name or stem, source=source, k=k, problems=problems,
                    read_item_text=read_item_text, id_field=id_field)
