"""Inputs for the CPU SRPO recipe: a tiny vocabulary-extended Qwen3 and a few rows of verl RL data.

A randomly initialised model never writes a well-formed index, so every SRPO group would score 0,
dynamic sampling would drop every group and verl would refill forever. The GREAM pipeline starts
RL from the SFT model; here a short supervised warm-up on the same rows (prompt -> target index)
plays that part, so sampled groups have mixed rewards and the RL step has something to learn.

``python -m gream_verl.verl_cpu.tiny_setup OUT [--data DIR] [--index FILE]`` writes
``OUT/model`` (HF checkpoint), ``OUT/train.parquet``, ``OUT/val.parquet`` and ``OUT/setup.json``.
The dataset is ``--data``, else ``$GREAM_DATA_DIR/Office`` (the folder of datasets, as for the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

DATA_ENV = "GREAM_DATA_DIR"  # folder holding the LC-Rec dataset folders
DEFAULT_DATASET = "Office"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` if given, else ``$GREAM_DATA_DIR/Office``; an error names what is missing."""
    if data_dir is None or str(data_dir) == "":
        root = os.environ.get(DATA_ENV)
        if not root:
            raise ValueError(f"no dataset folder: pass --data DIR (an LC-Rec dataset folder) or set {DATA_ENV} "
                             f"to the folder that holds {DEFAULT_DATASET}/")  # fmt: skip
        data_dir = Path(root) / DEFAULT_DATASET
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"dataset folder {data_dir} does not exist")
    return data_dir


def _default_index(data_dir: Path) -> Path:
    found = sorted(data_dir.glob("*.index*.json"))
    if not found:
        raise FileNotFoundError(f"no *.index*.json in {data_dir}; pass --index")
    return found[0]


def sft_examples(tokenizer, rows: list[dict]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + target + <|im_end|>, prompt length) per row, prompts rendered with the
    chat template exactly as verl's RLHFDataset renders them."""
    from gream_verl.model.tiny import IM_END

    examples = []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(row["reward_model"]["ground_truth"] + IM_END, add_special_tokens=False)["input_ids"]
        examples.append((prompt_ids + answer_ids, len(prompt_ids)))
    return examples


def warm_up(model, examples: list[tuple[list[int], int]], pad_id: int, steps: int, lr: float, seed: int) -> list[float]:
    """Full-batch supervised steps on the answer tokens only; returns the loss per step."""
    torch.manual_seed(seed)
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    mask = torch.zeros_like(input_ids)
    for r, (ids, prompt_len) in enumerate(examples):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
        mask[r, : len(ids)] = 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def prepare(
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    index_path: str | Path | None = None,
    train_rows: int = 16,
    val_rows: int = 4,
    max_history: int = 3,
    warmup_steps: int = 120,
    warmup_lr: float = 3e-3,
    seed: int = 0,
) -> dict:
    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.tokens import load_index
    from gream_verl.io import write_json
    from gream_verl.model.checkpoint import save_pretrained_atomic
    from gream_verl.model.tiny import build_tiny_qwen3, texts_from_data, train_tokenizer
    from gream_verl.model.vocab import extend_vocabulary
    from gream_verl.srpo.rl_data import rl_rows, write_parquet

    out_dir, data_dir = Path(out_dir), resolve_data_dir(data_dir)
    index_path = Path(index_path) if index_path else _default_index(data_dir)
    dataset = load_dataset(data_dir)
    index = load_index(index_path)
    train = rl_rows(dataset, index, "train", max_history=max_history, max_rows=train_rows, seed=seed)
    val = rl_rows(dataset, index, "valid", max_history=max_history, max_rows=val_rows, seed=seed)

    prompts = [m["content"] for row in train + val for m in row["prompt"]]
    tokenizer = train_tokenizer(texts_from_data(data_dir, 500) + prompts, vocab_size=600)
    model = build_tiny_qwen3(tokenizer, seed=seed)
    extend_vocabulary(model, tokenizer, sorted(index.vocabulary()), seed=seed)
    losses = warm_up(model, sft_examples(tokenizer, train), tokenizer.pad_token_id, warmup_steps, warmup_lr, seed)

    model_dir = out_dir / "model"
    if model_dir.exists():
        raise FileExistsError(f"{model_dir} exists; choose a new output folder")
    save_pretrained_atomic(model, tokenizer, model_dir)
    write_parquet(train, out_dir / "train.parquet")
    write_parquet(val, out_dir / "val.parquet")
    summary = {
        "model": str(model_dir),
        "train_file": str(out_dir / "train.parquet"),
        "val_file": str(out_dir / "val.parquet"),
        "train_rows": len(train),
        "val_rows": len(val),
        "index": str(index_path),
        "vocab": len(tokenizer),
        "warmup_loss_first": losses[0] if losses else None,
        "warmup_loss_last": losses[-1] if losses else None,
    }
    write_json(out_dir / "setup.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (model/, train.parquet, val.parquet, setup.json)")
    parser.add_argument("--data", default=None, help=f"LC-Rec dataset folder (default: ${DATA_ENV}/{DEFAULT_DATASET})")
    parser.add_argument("--index", default=None, help="item index JSON (default: the folder's *.index*.json)")
    parser.add_argument("--train-rows", type=int, default=16)
    parser.add_argument("--val-rows", type=int, default=4)
    parser.add_argument("--warmup-steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        data_dir = resolve_data_dir(args.data)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    summary = prepare(args.out, data_dir, args.index, train_rows=args.train_rows, val_rows=args.val_rows,
                      warmup_steps=args.warmup_steps, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
