"""Streaming JSON-lines reading for multi-GB review and meta files, with file:line errors.

A review file of the Amazon releases is 0.1-30 GB, one JSON object per line. It is read in
chunks of ``CHUNK_BYTES`` (cut at a line end), so memory stays bounded whatever the file
size. Each chunk is parsed by pyarrow's multithreaded JSON reader into just the columns a
loader asks for (the fast path); a chunk that pyarrow rejects, or whose rows fail the
loader's vectorised check, is parsed again line by line in Python (the slow path), which
applies the documented policy for bad lines and names the file and line. Clean files never
take the slow path; a file with a few bad lines takes it for a few chunks only.

Files may be gzipped (detected by the gzip magic bytes, not the name). A line of the older
releases may be a Python literal (``{'asin': ...}``, the 2014 meta files); the slow path reads
those with ``ast.literal_eval``, never ``eval``. Bytes that are not UTF-8 are replaced by
U+FFFD and counted.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json

try:  # orjson is several times faster than json for the line-by-line path
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads = json.loads

log = logging.getLogger(__name__)

BAD_LINES_LOGGED = 5
CHUNK_BYTES = 16 << 20
ON_BAD_LINES = ("error", "warn")
GZIP_MAGIC = b"\x1f\x8b"


def open_maybe_gzip(path: Path):
    """A binary file object; gzip is decompressed when the file starts with its magic bytes.
    A file named ``.gz`` without them is an error (a download cut short, or renamed)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if path.name.endswith(".gz") and magic != GZIP_MAGIC:
        raise OSError("named .gz but not gzip-compressed")
    raw = gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")
    return io.BufferedReader(raw, buffer_size=1 << 20)


def first_line(path: Path, limit: int = 1 << 20) -> bytes:
    """The first non-blank line (at most ``limit`` bytes) of a possibly gzipped file."""
    try:
        with open_maybe_gzip(path) as f:
            for line in iter(lambda: f.readline(limit), b""):
                if line.strip():
                    return line.strip()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read ({e})") from e
    return b""


def parse_line(line: bytes):
    """A JSON or Python-literal value from one line, or None when it is neither."""
    try:
        return _fast_loads(line)
    except ValueError:
        text = line.decode("utf-8", errors="replace")
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


class JsonLinesReader:
    """Records of one JSON-lines / Python-literal-lines file.

    ``kind`` names the counters in ``problems``: ``bad_<kind>_lines`` (skipped or fatal
    lines) and ``non_utf8_<kind>_lines``. ``on_bad_lines``: ``"warn"`` skips a bad line,
    counts it and logs the first few with file and line; ``"error"`` raises
    ``ValueError("<file>:<line>: malformed line (...)")``.
    """

    def __init__(self, path: Path, kind: str, on_bad_lines: str, problems: dict[str, int]):
        if on_bad_lines not in ON_BAD_LINES:
            raise ValueError(f"on_bad_lines must be 'error' or 'warn', got {on_bad_lines!r}")
        self.path = Path(path)
        self.on_bad_lines = on_bad_lines
        self.problems = problems
        self.bad_key, self.non_utf8_key = f"bad_{kind}_lines", f"non_utf8_{kind}_lines"
        problems.setdefault(self.bad_key, 0)
        problems.setdefault(self.non_utf8_key, 0)

    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        """(number of the chunk's first line, bytes ending at a line end)."""
        lineno = 1
        try:
            with open_maybe_gzip(self.path) as f:
                while chunk := f.read(CHUNK_BYTES):
                    if not chunk.endswith(b"\n"):
                        chunk += f.readline()
                    yield lineno, chunk
                    lineno += chunk.count(b"\n")
        except (OSError, EOFError, zlib.error) as e:  # truncated, corrupt or not-really-gzip files
            raise ValueError(f"{self.path}: cannot read ({e})") from e

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, line) of every non-blank line."""
        for start, chunk in self._chunks():
            for offset, line in enumerate(chunk.split(b"\n")):
                if line.strip():
                    yield start + offset, line

    def tables(
        self,
        schema: pa.Schema,
        row_of: Callable[[dict], tuple | str],
        rows_ok: Callable[[pa.Table], bool],
    ) -> Iterator[pa.Table]:
        """The file as tables with ``schema``'s columns, one per chunk.

        ``rows_ok(table)`` is the loader's vectorised check of a fast-path table; when it is
        False the chunk is re-read line by line, where ``row_of(record)`` returns the row as a
        tuple in schema order, or a string saying why the line is bad.
        """
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        for start, chunk in self._chunks():
            try:
                table = pa_json.read_json(io.BytesIO(chunk), parse_options=options)
                if rows_ok(table):
                    yield table
                    continue
            except (pa.ArrowInvalid, UnicodeDecodeError):
                pass
            yield self._slow_table(start, chunk, schema, row_of)

    def _slow_table(self, start: int, chunk: bytes, schema: pa.Schema, row_of) -> pa.Table:
        rows = []
        for offset, line in enumerate(chunk.split(b"\n")):
            if not line.strip():
                continue
            record = self.parse(start + offset, line)
            if record is None:
                continue
            row = row_of(record)
            if isinstance(row, str):
                self.bad(start + offset, line, row)
            else:
                rows.append(row)
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
        return pa.table([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)

    def parse(self, lineno: int, line: bytes) -> dict | None:
        """The record on a line, or None for a skipped bad line."""
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            self.problems[self.non_utf8_key] += 1
            if self.problems[self.non_utf8_key] <= BAD_LINES_LOGGED:
                log.warning("%s:%d: bytes that are not UTF-8 (at byte %d) replaced by U+FFFD", self.path, lineno, e.start)
        record = parse_line(line)
        if not isinstance(record, dict):
            return self.bad(lineno, line, "not a JSON or Python-literal object")
        return record

    def bad(self, lineno: int, line: bytes, why: str) -> None:
        snippet = line[:80].decode("utf-8", errors="replace").strip()
        message = f"{self.path}:{lineno}: malformed line ({why}): {snippet!r}"
        if self.on_bad_lines == "error":
            raise ValueError(message + " (on_bad_lines=warn skips such lines)")
        self.problems[self.bad_key] += 1
        if self.problems[self.bad_key] <= BAD_LINES_LOGGED:
            log.warning("%s; skipped", message)
        return None
