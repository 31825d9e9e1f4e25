"""LLaMA-Factory dataset files: alpaca JSON arrays plus the ``dataset_info.json`` that names them,
so the output folder can be used directly as ``dataset_dir``."""

from __future__ import annotations

import json
from pathlib import Path

from gream_verl.io import atomic_path, read_json, write_json

DATASET_NAMES = {"align": "gream_align", "reason": "gream_reason", "curriculum": "gream_curriculum"}
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}


def write_alpaca(path: str | Path, rows: list[dict]) -> Path:
    """A JSON array, one row per line (readable with ``head``, loadable by ``datasets``)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("[\n")
        for k, row in enumerate(rows):
            f.write(("," if k else "") + json.dumps(row, ensure_ascii=False) + "\n")
        f.write("]\n")
    return Path(path)


def dataset_info_entry(file_name: str) -> dict:
    return {"file_name": file_name, "formatting": "alpaca", "columns": dict(ALPACA_COLUMNS)}


def write_dataset_info(out_dir: str | Path, files: dict[str, str], drop: tuple[str, ...] = ()) -> Path:
    """Write (or update, keeping other datasets) ``dataset_info.json``; ``files`` maps dataset
    name -> file name inside ``out_dir``; ``drop`` names entries of an earlier build to remove."""
    path = Path(out_dir) / "dataset_info.json"
    info = read_json(path) if path.is_file() else {}
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected an object of dataset name -> settings")
    for name in drop:
        info.pop(name, None)
    info.update({name: dataset_info_entry(file) for name, file in files.items()})
    return write_json(path, info)
