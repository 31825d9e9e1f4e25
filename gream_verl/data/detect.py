"""Which format a dataset path holds, decided by the files' content, not their names alone.

Each file is classified by its first record: a JSON object with ``reviewerID`` and ``asin``
is a 2014/2018 Amazon review, one with ``user_id`` and ``parent_asin`` a 2023 review (without
``user_id``: a 2023 meta record); a CSV header with ``user_id,parent_asin,timestamp`` is a
2023 benchmark file; any other CSV / TSV / Parquet table is a plain interaction table.
LC-Rec folders are recognised by their ``*.inter.json`` / ``*.user_sequence.txt`` files,
the names being the format's definition.
"""

from __future__ import annotations

from pathlib import Path

from gream_verl.data.amazon2023 import is_benchmark_csv, record_kind
from gream_verl.data.jsonlines import first_line, parse_line
from gream_verl.data.lcrec import is_lcrec
from gream_verl.data.table import table_kind

FORMATS = {
    "lcrec": "LC-Rec folder: X.inter.json (user -> item list) or X.user_sequence.txt, optional X.item.json",
    "amazon2018": "Amazon 2014/2018 reviews, JSON lines with reviewerID, asin, unixReviewTime (+ meta_*.json)",
    "amazon2023": "Amazon 2023 reviews, JSON lines with user_id, parent_asin, timestamp (+ meta_*.jsonl)",
    "amazon2023-csv": "Amazon 2023 benchmark CSV with columns user_id,parent_asin,rating,timestamp",
    "table": "interaction table, CSV/TSV/Parquet with the columns table.user, table.item, table.timestamp",
}


def file_kind(path: Path) -> str | None:
    """What one file holds: a format name, ``"meta"`` for an Amazon meta file, or None."""
    try:
        if table_kind(path) is not None:
            return "amazon2023-csv" if is_benchmark_csv(path) else "table"
        line = first_line(path)
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    if not line.startswith(b"{"):
        return None
    kind_2023 = record_kind(path)
    if kind_2023 is not None:
        return "amazon2023" if kind_2023 == "reviews" else "meta"
    record = parse_line(line)
    if isinstance(record, dict) and "asin" in record:
        return "amazon2018" if "reviewerID" in record else "meta"
    return None


def detect_format(path: str | Path) -> str:
    """The format of a dataset folder or file (a key of ``FORMATS``); a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if is_lcrec(path):
        return "lcrec"
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    kinds = {p: file_kind(p) for p in files}
    for fmt in ("amazon2023", "amazon2018", "amazon2023-csv", "table"):
        if fmt in kinds.values():
            return fmt
    seen = "; ".join(f"{p.name}: {kind or 'unrecognised'}" for p, kind in list(kinds.items())[:8]) or "no files"
    tried = "\n".join(f"  {name}: {what}" for name, what in FORMATS.items())
    raise ValueError(f"{path}: no known dataset format ({seen}). Formats tried:\n{tried}\n"
                     "Name the format with format=NAME (--format NAME) to see why a file does not fit.")
