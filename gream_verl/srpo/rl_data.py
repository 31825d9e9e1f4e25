"""verl RL data: ``train.parquet`` / ``val.parquet`` in the layout verl's ``RLHFDataset`` reads.

One row per leave-one-out example (train: every position of a user's training part ``s[:-2]``;
val: the valid item ``s[-2]``, as the paper's reference does), history capped at ``max_history``:

* ``data_source``: ``gream/<dataset>``: the srpo reward scores every ``gream/*`` row;
* ``prompt``: chat messages (one user turn), the same wording as the SFT data
  (``seqrec`` template 0 in direct mode, the ``reason`` template in reasoning mode);
* ``ability``: ``recommendation``;
* ``reward_model``: ``{"style": "rule", "ground_truth": "<a_..><b_..>..."}`` (target's index);
* ``extra_info``: ``mode``, ``levels``, ``user``, ``split``, ``index`` (row number), ``item``
  (target id) and ``history_len`` (used by the curriculum dataset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example, leave_one_out
from gream_verl.index.tokens import ItemIndex
from gream_verl.io import atomic_path, write_json

MODES = ("direct", "reason")
SPLIT_FILES = {"train": "train.parquet", "valid": "val.parquet"}


def user_message(example: Example, dataset: RecDataset, index: ItemIndex, mode: str) -> str:
    from gream_verl.tasks import prompts

    if mode == "reason":
        from gream_verl.tasks.reasoning import reason_prompt

        instruction, input_ = reason_prompt(example, dataset, index)
    else:
        template = prompts.templates("seqrec")[0]
        instruction, input_ = template.render(history=prompts.format_history([index.string(i) for i in example.history]))
    return f"{instruction}\n{input_}" if input_ else instruction


def rl_rows(dataset: RecDataset, index: ItemIndex, split: str, mode: str = "direct", max_history: int = 20,
            max_rows: int | None = None, seed: int = 42, ability: str = "recommendation") -> list[dict]:
    """verl rows of one split (``train`` or ``valid``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    examples = leave_one_out(dataset.sequences, split, max_history=max_history)
    missing = sorted({i for e in examples for i in (*e.history, e.target) if i not in index})
    if missing:
        raise KeyError(f"{len(missing)} items of {dataset.source or dataset.name} are not in the index, e.g. {missing[:5]}")
    if max_rows is not None and max_rows < len(examples):
        keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=max_rows, replace=False))
        examples = [examples[k] for k in keep]
    rows = []
    for row, e in enumerate(examples):
        target = index.string(e.target)
        rows.append({
            "data_source": f"gream/{dataset.name}",
            "prompt": [{"role": "user", "content": user_message(e, dataset, index, mode)}],
            "ability": ability,
            "reward_model": {"style": "rule", "ground_truth": target},
            "extra_info": {
                "mode": mode,
                "levels": len(index.tokens[e.target]),
                "user": e.user,
                "split": "val" if split == "valid" else split,
                "index": row,
                "item": e.target,
                "history_len": len(e.history),
            },
        })
    return rows


def write_parquet(rows: list[dict], path: str | Path) -> Path:
    """Atomic parquet write (a crash never leaves a half-written file verl would read)."""
    import pandas as pd

    if not rows:
        raise ValueError(f"no rows to write to {path}")
    with atomic_path(path, suffix=".parquet") as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    return Path(path)


def build_rl_data(dataset: RecDataset, index: ItemIndex, out_dir: str | Path, mode: str = "direct", max_history: int = 20,
                  max_train: int | None = None, max_val: int | None = None, seed: int = 42,
                  ability: str = "recommendation") -> dict:
    """Write ``train.parquet``, ``val.parquet`` and ``rl_data.json`` (what was built) to ``out_dir``."""
    out_dir = Path(out_dir)
    limits = {"train": max_train, "valid": max_val}
    summary: dict = {"dataset": dataset.name, "mode": mode, "max_history": max_history, "levels": index.num_levels}
    for split, name in SPLIT_FILES.items():
        rows = rl_rows(dataset, index, split, mode, max_history, limits[split], seed, ability)
        path = write_parquet(rows, out_dir / name)
        summary[f"{split}_rows"] = len(rows)
        summary[f"{split}_file"] = str(path)
    write_json(out_dir / "rl_data.json", summary)
    return summary
