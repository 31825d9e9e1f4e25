"""Arguments of ``gream eval direct`` and ``gream eval reason``, shared by the ``gream`` CLI and
the torchrun entry points ``python -m gream_verl.infer.direct`` / ``.reason``; kept free of torch
so ``gream --help`` starts fast (and so the entry points need not import the CLI)."""

from __future__ import annotations

import argparse

from omegaconf import DictConfig


def add_direct_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="HF model folder (vocabulary extended with the index)")
    parser.add_argument("--data", help="LC-Rec dataset folder or file")
    parser.add_argument("--index", help="X.index.json")
    parser.add_argument("--split", choices=["test", "valid"], default=None)
    parser.add_argument("--beams", type=int, default=None, help="beam width = ranking length (default 20)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N users only")
    parser.add_argument("--save-predictions", default=None, help="per-user predictions JSONL")
    parser.add_argument("--out", default=None, help="results JSON (default runs/eval/<dataset>_direct_<split>.json)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda")
    parser.add_argument("--config", default=None, help="YAML merged over gream_verl/configs/eval.yaml")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")


def direct_config_from_args(args: argparse.Namespace) -> DictConfig:
    from gream_verl.config import load_config

    values = {k: getattr(args, k, None) for k in (
        "model", "data", "index", "split", "beams", "batch_size", "limit", "save_predictions", "out", "device",
    )}  # fmt: skip
    return load_config("eval", args.config, args.overrides, **values)


def add_reason_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="HF model folder (needed for constrained answers and local sampling)")
    parser.add_argument("--data", help="LC-Rec dataset folder or file")
    parser.add_argument("--index", help="X.index.json")
    parser.add_argument("--split", choices=["test", "valid"], default=None)
    parser.add_argument("--num-samples", type=int, default=None, help="chains per user (default 10)")
    parser.add_argument("--server", default=None,
                        help="OpenAI-compatible base URL (vLLM/SGLang), e.g. http://host:8000/v1")  # fmt: skip
    parser.add_argument("--server-model", default=None, help="model name on the server")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N users only")
    parser.add_argument("--save-predictions", default=None, help="per-user samples JSONL")
    parser.add_argument("--out", default=None, help="results JSON (default runs/eval/<dataset>_reason_<split>.json)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--config", default=None, help="YAML merged over gream_verl/configs/eval.yaml")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. reason.temperature=1.0")


def reason_config_from_args(args: argparse.Namespace) -> DictConfig:
    from gream_verl.config import load_config

    values = {k: getattr(args, k, None) for k in (
        "model", "data", "index", "split", "batch_size", "limit", "save_predictions", "out", "device",
    )}  # fmt: skip
    cfg = load_config("eval", args.config, args.overrides, **values)
    for key in ("num_samples", "server", "server_model"):
        if getattr(args, key, None) is not None:
            cfg.reason[key] = getattr(args, key)
    return cfg
