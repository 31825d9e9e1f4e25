"""Run LLaMA-Factory 0.9.5 SFT (``llamafactory.train.tuner.run_exp``) in a child process.

``run_sft(config, overrides)`` resolves the YAML (plus ``key=value`` overrides) into a plain
dict, checks the things that otherwise fail late or silently, writes the resolved config to
``<output_dir>/gream_sft_config.yaml`` and trains in a subprocess, so a crash (OOM, CUDA error,
a bad argument) cannot take the caller down; it then reads the trainer's log history.

Checked up front, because each one is a measured pitfall:

* ``dataset_dir`` must be set: the LLaMA-Factory wheel ships no ``data/`` folder; every dataset
  named must be in ``<dataset_dir>/dataset_info.json``;
* ``report_to`` defaults to ``none`` (no wandb/tensorboard surprises);
* curriculum training needs ``disable_shuffling: true`` and no ``val_size`` / ``streaming`` /
  ``packing`` nor a ``num_samples`` in its ``dataset_info.json`` entry (all of which reorder or
  shift the file; ``max_samples`` is fine: it keeps the first rows, in order);
* ``resize_vocab`` must stay off: LLaMA-Factory's in-run resize initialises the wrong rows of
  Qwen3's padded embedding; give it a checkpoint from ``gream vocab extend`` instead.

One key is ours, not LLaMA-Factory's: ``group_by_length: true`` trains on a length-grouped copy
of the datasets (:mod:`gream_verl.tasks.length_group`; 2x faster on the quickstart's data).

The child runs ``python -m gream_verl.tasks.sft_train RESOLVED.yaml``, i.e. :func:`train`;
``train(config, callbacks)`` is also the place to hand LLaMA-Factory extra ``TrainerCallback``s
(the tests record the order in which samples reach the model this way).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gream_verl.io import read_jsonl

RESOLVED_CONFIG = "gream_sft_config.yaml"
ORDER_BREAKING_KEYS = ("val_size", "streaming", "packing", "neat_packing")  # training arguments
ORDER_BREAKING_DATASET_KEYS = ("num_samples",)  # dataset_info.json attributes (random subsample)


def resolve_config(config: str | Path | dict, overrides: list[str] | None = None) -> dict:
    """YAML file or dict, then ``key=value`` overrides, as a plain dict with defaults filled in."""
    from omegaconf import OmegaConf

    if isinstance(config, dict):
        cfg = OmegaConf.create(config)
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"SFT config {path} does not exist")
        cfg = OmegaConf.load(path)
    if overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        except Exception as e:  # omegaconf raises several types; all mean "bad override"
            raise ValueError(f"bad SFT config override {overrides}: {e}") from e
    args: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if not isinstance(args, dict):
        raise ValueError(f"SFT config {config}: expected a mapping of LLaMA-Factory arguments")
    args.setdefault("report_to", "none")
    check_config(args)
    return args


def _as_list(value) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value or []]


def check_config(args: dict) -> None:
    """Raise a clear error for settings known to fail late, or to train on the wrong thing."""
    for key in ("model_name_or_path", "output_dir", "dataset"):
        if not args.get(key):
            raise ValueError(f"SFT config: '{key}' is required")
    model = str(args["model_name_or_path"])
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1  # hub ids are org/name
    if looks_like_path and not Path(model).expanduser().exists():
        raise FileNotFoundError(f"SFT config: model_name_or_path {model} does not exist")
    if not args.get("dataset_dir"):
        raise ValueError(
            "SFT config: 'dataset_dir' is required (the LLaMA-Factory wheel has no data/ folder); "
            "point it at the folder written by `gream sft build`"
        )
    info_path = Path(args["dataset_dir"]) / "dataset_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"SFT config: {info_path} does not exist (run `gream sft build` first)")
    from gream_verl.io import read_json

    info = read_json(info_path)
    if not isinstance(info, dict):
        raise ValueError(f"{info_path}: expected an object of dataset name -> settings")
    missing = [name for name in _as_list(args["dataset"]) if name not in info]
    if missing:
        raise KeyError(f"SFT config: dataset(s) {missing} are not in {info_path} (it has {sorted(info)})")
    for name in _as_list(args["dataset"]):
        file_name = info[name].get("file_name") if isinstance(info[name], dict) else None
        if file_name and not (Path(args["dataset_dir"]) / file_name).exists():
            raise FileNotFoundError(f"SFT config: dataset {name} file {Path(args['dataset_dir']) / file_name} does not exist")
    if args.get("resize_vocab"):
        raise ValueError(
            "SFT config: resize_vocab would initialise the wrong rows of a padded Qwen3 embedding; "
            "extend the vocabulary first with `gream vocab extend` and set resize_vocab: false"
        )
    curricula = [name for name in _as_list(args["dataset"]) if "curriculum" in name]
    if curricula:
        if not args.get("disable_shuffling"):
            raise ValueError("SFT config: the curriculum dataset must be trained with disable_shuffling: true")
        breaking = [k for k in ORDER_BREAKING_KEYS if args.get(k)]
        breaking += [
            f"{info_path}:{name}.{k}" for name in curricula for k in ORDER_BREAKING_DATASET_KEYS
            if isinstance(info[name], dict) and info[name].get(k)
        ]
        if breaking:
            raise ValueError(f"SFT config: {breaking} reorder or shift the curriculum file; remove them")


def num_processes() -> int:
    """Training processes: ``NPROC_PER_NODE``, else every visible GPU, else one CPU process."""
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA means one CPU process
        gpus = 0
    return max(int(os.environ.get("NPROC_PER_NODE", gpus)), 1)


def launcher() -> list[str]:
    """``torchrun`` over all visible GPUs when there are several (as ``llamafactory-cli`` does),
    otherwise a plain interpreter."""
    nproc = num_processes()
    if nproc > 1 or os.environ.get("FORCE_TORCHRUN", "0").lower() in ("1", "true"):
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    return [sys.executable]


def read_log_history(output_dir: Path) -> tuple[list[dict], Path | None]:
    """The trainer's log history: ``trainer_state.json`` if saved, else LLaMA-Factory's
    ``trainer_log.jsonl``."""
    state = output_dir / "trainer_state.json"
    if state.is_file():
        return list(json.loads(state.read_text(encoding="utf-8")).get("log_history", [])), state
    log = output_dir / "trainer_log.jsonl"
    if log.is_file():
        rows = read_jsonl(log)
        return rows, log
    return [], None


def run_sft(
    config: str | Path | dict,
    overrides: list[str] | None = None,
    echo: bool = True,
) -> dict:
    """Train with LLaMA-Factory in a subprocess; return the final train loss, log path and
    output folder. Raises RuntimeError (with the end of the child's output) if training fails."""
    args = resolve_config(config, overrides)
    from gream_verl.io import write_text

    output_dir = Path(args["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    grouped = None
    if args.pop("group_by_length", False):
        from gream_verl.tasks.length_group import prepare_grouped_dataset

        grouped = output_dir / "length_grouped_data"
        args.update(prepare_grouped_dataset(args, grouped, num_processes()))
    from omegaconf import OmegaConf

    resolved = write_text(output_dir / RESOLVED_CONFIG, OmegaConf.to_yaml(OmegaConf.create(args)))
    cmd = [*launcher(), "-m", "gream_verl.tasks.sft_train", str(resolved)]
    env = {**os.environ, "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false"}
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            tail.append(line)
            if echo:
                sys.stderr.write(line)
        returncode = child.wait()
    if returncode != 0:
        raise RuntimeError(
            f"LLaMA-Factory SFT failed (exit {returncode}, config {resolved}); last output:\n" + "".join(tail)
        )
    if grouped is not None:  # derived from the datasets and the seed: rebuilt by a rerun, not kept
        shutil.rmtree(grouped, ignore_errors=True)
    history, log_path = read_log_history(output_dir)
    losses = [row["loss"] for row in history if "loss" in row]
    summary = next((row for row in reversed(history) if "train_loss" in row), {})
    return {
        "output_dir": str(output_dir),
        "config": str(resolved),
        "log_history": str(log_path) if log_path else None,
        "steps": int(summary.get("step", history[-1].get("step", 0) if history else 0)),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": summary.get("train_loss"),
    }


def train(config: str | Path, callbacks: list | None = None) -> None:
    """Train in this process from a resolved YAML (what :func:`run_sft` writes), with extra
    ``transformers.TrainerCallback``s."""
    from llamafactory.train.tuner import run_exp
    from omegaconf import OmegaConf

    run_exp(OmegaConf.to_container(OmegaConf.load(config), resolve=True), callbacks=list(callbacks or []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run LLaMA-Factory SFT from a resolved YAML (child of run_sft).")
    parser.add_argument("config", help="resolved SFT config YAML")
    train(parser.parse_args(argv).config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
