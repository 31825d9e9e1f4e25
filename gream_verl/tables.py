"""Printing results: JSON for machines, aligned tables for people."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, floatfmt: str = ".4f") -> str:
    """A Markdown table (readable in a terminal, renders in report.md)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(b) for b in body)])


def format_result(result: Mapping) -> str:
    """Scalars as a two-column key/value table; nested mappings flattened with dots."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)) and len(value) > 8:
            flat[prefix] = f"[{len(value)} values]"
        else:
            flat[prefix] = value

    walk("", result)
    return format_table([{"key": k, "value": v} for k, v in flat.items()])


def emit(result: Mapping, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_result(result))
