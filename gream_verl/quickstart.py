"""``gream quickstart``: the whole GREAM pipeline on real data on a CPU, ending in a metrics table.

Stages (each a folder ``runs/<name>/<stage>/`` with its ``stage_config.json`` and a done-marker; see
:mod:`gream_verl.pipeline`), each calling the package's own code for that step:

  data       the dataset as an LC-Rec folder (optionally the first N users) + statistics
  baselines  MostPop and SASRec on the same leave-one-out split (:mod:`gream_verl.baselines`)
  embed      item text embeddings (offline all-MiniLM-L6-v2 by default)
  index      RQ-KMeans item index with its collision report
  model      tiny Qwen3 from a config, locally trained tokenizer, index tokens added
  sft_data   LLaMA-Factory datasets: alignment tasks + template-teacher reasoning
  sft        SFT through LLaMA-Factory
  eval       direct mode: trie-constrained beam search on the test split
  rl         SRPO in verl: run where a GPU (or the CPU backend) is there, else print the command

then ``runs/<name>/report.md`` and ``report.png``. Presets (``--preset default|smoke``) live in
``gream_verl/configs/quickstart.yaml`` under ``presets``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "GREAM_DATA_DIR"
METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")

log = logging.getLogger(__name__)


# --- configuration -----------------------------------------------------------------------------


def quickstart_config(config_file: str | None = None, preset: str = "default", overrides: list[str] | None = None):
    """Packaged quickstart.yaml, the user's file, the preset's values, then ``key=value`` overrides."""
    from omegaconf import OmegaConf

    from gream_verl.config import apply_overrides, load_config

    cfg = load_config("quickstart", config_file)
    presets = cfg.get("presets") or {}
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    cfg = OmegaConf.merge(cfg, presets[preset])  # presets are checked by load_config
    cfg = apply_overrides("quickstart", cfg, overrides)
    cfg.preset = preset
    if cfg.rl.enabled not in ("auto", True, False):
        raise ValueError(f"rl.enabled must be auto, true or false, got {cfg.rl.enabled!r}")
    return cfg


def resolve_data_dir(flag: str | None, configured: str | None) -> Path:
    """``--data-dir``, else ``$GREAM_DATA_DIR``, else the config's ``data_dir``, else
    ``../shared/data`` beside the repository."""
    candidates = [flag, os.environ.get(DATA_ENV), configured]
    chosen = next((c for c in candidates if c), None)
    path = Path(chosen) if chosen else REPO.parent / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"data folder {path} not found. Pass --data-dir DIR or set {DATA_ENV}=DIR, where DIR holds "
            "one folder per dataset in LC-Rec format (e.g. Office/Office.inter.json + Office.item.json). "
            "The Amazon review data (McAuley et al. 2015, 2014 release; Ni et al. 2019, 2018 release) "
            "is at https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html and "
            "https://nijianmo.github.io/amazon/; `gream data` converts raw dumps to LC-Rec format."
        )
    return path.resolve()


def _plain(node) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if node is not None else None


# --- stages ------------------------------------------------------------------------------------


def stage_data(out: Path, source: Path, name: str, max_users: int | None, max_history: int) -> dict:
    """Copy the dataset (or its first ``max_users`` users) as an LC-Rec folder and describe it."""
    from gream_verl.data.dataset import RecDataset, load_dataset
    from gream_verl.data.stats import dataset_stats
    from gream_verl.io import write_json

    dataset = load_dataset(source)
    if max_users is not None:
        users = sorted(dataset.sequences, key=lambda u: (0, int(u), "") if u.isdigit() else (1, 0, u))
        sequences = {u: dataset.sequences[u] for u in users[: int(max_users)]}
        used = {i for s in sequences.values() for i in s}
        items = {i: meta for i, meta in dataset.items.items() if i in used}
        dataset = RecDataset(dataset.name, sequences, items, str(source))
    folder = out / name
    write_json(folder / f"{name}.inter.json", dataset.sequences, indent=None)
    write_json(folder / f"{name}.item.json", dataset.items, indent=None)
    stats = dataset_stats(dataset, max_history=max_history)
    write_json(out / "stats.json", stats)
    keep = ("users", "items", "interactions", "sparsity", "splits", "test_history_length_mean")
    return {"dataset": name, **{k: stats[k] for k in keep}}


def stage_baselines(out: Path, data_path: Path, sasrec: dict, max_history: int, seed: int) -> dict:
    from gream_verl.baselines import SASRecConfig, run_baselines
    from gream_verl.data.dataset import load_dataset
    from gream_verl.io import write_json

    dataset = load_dataset(data_path)
    cfg = SASRecConfig(**{**sasrec, "max_len": max_history, "seed": seed})
    results = run_baselines(dataset.sequences, cfg)
    write_json(out / "baselines.json", results)
    keep = (*METRICS, "wall_s", "examples", "train_loss", "dropout", "best_epoch", "epochs", "stopped_by",
            "converged")
    summary = {name: {k: m[k] for k in keep if k in m} for name, m in results.items()}
    summary["SASRec"]["patience"] = cfg.patience
    summary["SASRec"]["candidates"] = [{k: v for k, v in c.items() if k != "valid_curve"}
                                       for c in results["SASRec"]["candidates"]]
    return summary


def _index_config(index_section: dict, embeddings: Path | None = None):
    from omegaconf import OmegaConf

    from gream_verl.config import load_config

    cfg = OmegaConf.merge(load_config("index"), index_section or {})
    cfg.embedding.cache = False  # the embed stage's artifact is the cache
    if embeddings is not None:
        cfg.embedding.path = str(embeddings)
    return cfg


def stage_embed(out: Path, data_path: Path, index_section: dict) -> dict:
    import numpy as np

    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.build import item_embeddings

    dataset = load_dataset(data_path)
    vectors, info = item_embeddings(dataset, _index_config(index_section), out_dir=None)
    np.save(out / "embeddings.npy", vectors)
    return {"items": int(vectors.shape[0]), **info}


def stage_index(out: Path, data_path: Path, index_section: dict, embeddings: Path, name: str) -> dict:
    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.build import build_index
    from gream_verl.index.tokens import save_index
    from gream_verl.io import write_json

    dataset = load_dataset(data_path)
    index, report = build_index(dataset, _index_config(index_section, embeddings), out_dir=None)
    save_index(index, out / f"{name}.index.json")
    write_json(out / f"{name}.index.report.json", report)
    keep = ("items", "levels", "codebook_size", "collision_rate_before", "collisions_before",
            "max_collision_group", "collisions_after", "codes_used_per_level", "embedding_dim")
    summary = {k: report[k] for k in keep if k in report}
    collab = report.get("collaborative")
    summary["collaborative"] = f"{collab['dim']}-dim, window {collab['window']}" if collab else "off"
    return summary


def stage_model(out: Path, data_path: Path, index_path: Path, model: dict, seed: int) -> dict:
    """Tokenizer trained on item text and the prompt templates, tiny Qwen3, index tokens added."""
    from gream_verl.index.tokens import load_index
    from gream_verl.model.checkpoint import describe, save_pretrained_atomic
    from gream_verl.model.tiny import build_tiny_qwen3, texts_from_data, train_tokenizer
    from gream_verl.model.vocab import extend_vocabulary
    from gream_verl.tasks.prompts import TEMPLATES

    model = dict(model)
    item_texts = texts_from_data(data_path)
    # Every SFT row carries a prompt and the chat roles, so they weigh as much as all item texts
    # together: otherwise the merges follow product titles and a prompt costs twice the tokens.
    prompt_texts = [f"user\n{t.instruction} {t.input}" for ts in TEMPLATES.values() for t in ts] + ["assistant\n"]
    texts = item_texts + prompt_texts * max(1, len(item_texts) // len(prompt_texts))
    tokenizer = train_tokenizer(texts, vocab_size=int(model.pop("vocab_size")))
    noise = {"noise_scale": float(model.pop("new_token_noise"))} if "new_token_noise" in model else {}
    qwen3 = build_tiny_qwen3(tokenizer, seed=seed, **model)
    extension = extend_vocabulary(qwen3, tokenizer, load_index(index_path).vocabulary(), seed=seed, **noise)
    save_pretrained_atomic(qwen3, tokenizer, out / "model")
    return {**describe(qwen3, tokenizer), "index_tokens_added": extension["tokens_added"]}


def stage_sft_data(out: Path, data_path: Path, index_path: Path, section: dict, seed: int, max_history: int) -> dict:
    from omegaconf import OmegaConf

    from gream_verl.tasks.build import build_sft_data, sft_config

    cfg = OmegaConf.merge(sft_config(teacher="template"), section or {}, {"seed": seed, "max_history": max_history})
    report = build_sft_data(data_path, index_path, out, cfg)
    return {"alignment": report["alignment"]["per_task"], "alignment_total": report["alignment"]["total"],
            "reasoning": {k: report["reasoning"].get(k) for k in ("enabled", "requested", "accepted")},
            "teacher": report["teacher"]}


def stage_sft(out: Path, model_path: Path, sft_data: Path, section: dict, seed: int) -> dict:
    from gream_verl.tasks.sft_train import read_log_history, run_sft

    args = {
        "model_name_or_path": str(model_path), "trust_remote_code": False, "resize_vocab": False,
        "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset_dir": str(sft_data), "overwrite_cache": True, "dataloader_num_workers": 0,
        "output_dir": str(out), "save_strategy": "no", "overwrite_output_dir": True, "report_to": "none",
        "bf16": False, "fp16": False, "use_cpu": True, "seed": seed, "plot_loss": False,
        **(section or {}),
    }
    summary = run_sft(args)
    history, _ = read_log_history(out)
    curve = [[int(row["step"]), float(row["loss"])] for row in history if "loss" in row and "step" in row]
    return {k: summary.get(k) for k in ("steps", "first_loss", "final_loss", "train_loss")} | {"loss_curve": curve}


def stage_eval(out: Path, model_path: Path, data_path: Path, index_path: Path, section: dict, max_history: int) -> dict:
    from omegaconf import OmegaConf

    from gream_verl.config import load_config
    from gream_verl.infer.direct import evaluate_direct

    cfg = OmegaConf.merge(load_config("eval"), section or {}, {
        "model": str(model_path), "data": str(data_path), "index": str(index_path), "max_history": max_history,
        "out": str(out / "results.json"), "save_predictions": str(out / "predictions.jsonl"), "device": "cpu",
    })
    result = evaluate_direct(cfg)
    return {"metrics": result["metrics"], "num_users": result["num_users"], "seconds": result.get("seconds")}


def gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no usable CUDA
        return False


def cpu_backend_available() -> tuple[bool, str]:
    """Whether ``gream_verl.verl_cpu`` imports and its CPU SRPO recipe (package data) is there."""
    from importlib import resources

    script = Path(str(resources.files("gream_verl.verl_cpu").joinpath("cpu_tiny.sh")))
    try:
        import gream_verl.verl_cpu  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means "not usable"
        return False, f"gream_verl.verl_cpu does not import: {e}"
    if not script.is_file():
        return False, f"{script} is missing"
    return True, str(script)


def srpo_command(data_dir: Path, model: Path, dataset: str) -> list[str]:
    """``python -m verl.trainer.main_ppo ...`` for one GPU: the SRPO recipe of recipes/srpo/
    (recipes.yaml, as run.sh uses it) with this run's SFT model and RL data filled in."""
    from gream_verl.srpo.recipes import recipe_overrides

    env = {"GREAM_MODEL_PATH": str(model), "GREAM_RL_DATA": str(data_dir), "GREAM_N_GPUS": "1",
           "GREAM_MAX_RESPONSE_LENGTH": "16"}
    overrides = [o for o in recipe_overrides("instruments", env) if not o.startswith("trainer.experiment_name=")]
    return ["python", "-m", "verl.trainer.main_ppo", *overrides, f"trainer.experiment_name=srpo_{dataset.lower()}"]


def stage_rl(out: Path, final: Path, data_path: Path, index_path: Path, model_path: Path, section: dict, max_history: int,
             seed: int) -> dict:
    """Build verl's parquet files; run SRPO where possible, else write the command to run.
    ``final`` is where ``out`` will be once the stage is done (paths in the command point there)."""
    import subprocess

    from gream_verl.data.dataset import load_dataset
    from gream_verl.index.tokens import load_index
    from gream_verl.io import read_jsonl, write_text
    from gream_verl.srpo.rl_data import build_rl_data

    built = build_rl_data(load_dataset(data_path), load_index(index_path), out / "data", mode=section["mode"],
                          max_history=max_history, max_train=section["max_train"], max_val=section["max_val"],
                          seed=seed, ability="recommendation")
    cmd = srpo_command(final / "data", model_path, data_path.name)
    text = " ".join(cmd[:3]) + " \\\n  " + " \\\n  ".join(shlex.quote(c) for c in cmd[3:])
    write_text(out / "srpo_command.sh", "#!/usr/bin/env bash\n# SRPO on a GPU machine (gream_verl/srpo/recipes.yaml)\n"
               + text + "\n")
    summary = {"rows": {k: built.get(f"{k}_rows") for k in ("train", "valid")},
               "command_file": str(final / "srpo_command.sh")}
    enabled = section["enabled"]
    if gpu_available() and enabled in (True, "auto"):
        import sys

        here = srpo_command(out / "data", model_path, data_path.name)  # the data is not renamed yet
        subprocess.run([sys.executable, *here[1:]], check=True)
        return {**summary, "status": "trained on GPU"}
    cpu_ok, why = cpu_backend_available()
    if cpu_ok and (enabled is True or section.get("cpu_fallback")):
        import sys

        # The SFT model and this stage's parquet go through verl's real trainer on CPU (2 SRPO steps).
        env = {**os.environ, "PYTHON": sys.executable, "GREAM_CPU_WORK": str(out / "cpu_srpo"),
               "GREAM_MODEL_PATH": str(model_path), "GREAM_RL_DATA": str(out / "data"),
               "GREAM_INDEX": str(index_path)}  # rollouts answer with valid items (trie-constrained)
        overrides = [f"{k}={v}" for k, v in (section.get("cpu_overrides") or {}).items()]
        try:
            subprocess.run(["bash", why, *overrides], check=True, env=env,
                           timeout=float(section.get("cpu_timeout_minutes", 30)) * 60)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(
                f"CPU SRPO run exceeded {e.timeout:.0f} s; if every group had zero reward variance, verl's "
                "dynamic sampling refills forever: add algorithm.filter_groups.enable: false to rl.cpu_overrides"
            ) from None
        metrics = out / "cpu_srpo" / "metrics.jsonl"
        steps = read_jsonl(metrics) if metrics.exists() else []
        last = steps[-1]["data"] if steps else {}
        return {**summary, "status": f"trained with the CPU backend (gream_verl/verl_cpu/cpu_tiny.sh, {len(steps)} SRPO steps)",
                "score_mean_last_step": last.get("critic/score/mean"),
                "zero_variance_groups_dropped": sum(s["data"].get("training/filter_groups/evicted_samples", 0)
                                                    for s in steps)}
    if enabled is True:
        raise RuntimeError(f"rl.enabled=true but there is no GPU and the CPU backend is not usable: {why}")
    print("no GPU rollout engine here; run SRPO on a GPU machine with:\n  " + text)
    return {**summary, "status": "not run (no GPU); command written", "cpu_backend": why}


# --- the run -----------------------------------------------------------------------------------


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads here and in child processes (LLaMA-Factory SFT)."""
    import torch

    torch.set_num_threads(threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def run_quickstart(cfg, data_dir: Path, progress_echo=print) -> dict:
    """Run (or resume) every stage, then write the report; returns the metrics table rows."""
    from gream_verl.pipeline import Pipeline
    from gream_verl.quickstart_report import write_report

    name = cfg.name or f"{str(cfg.dataset).lower()}-{cfg.preset}"
    root = Path(cfg.runs_dir) / name
    source = data_dir / str(cfg.dataset)
    if not source.exists():
        raise FileNotFoundError(f"dataset {cfg.dataset!r} not found in {data_dir} (expected folder {source})")
    ds, seed, hist = str(cfg.dataset), int(cfg.seed), int(cfg.max_history)
    if cfg.get("threads"):
        set_threads(int(cfg.threads))
    p = Pipeline(root, echo=progress_echo)
    data_cfg = {"source": str(source), "max_users": cfg.data.max_users, "max_history": hist}
    data = p.stage("data", data_cfg, lambda o: stage_data(o, source, ds, cfg.data.max_users, hist))
    data_path = data.path / ds
    if cfg.baselines.enabled:
        sasrec = _plain(cfg.baselines.sasrec)
        p.stage("baselines", {"sasrec": sasrec, "max_history": hist, "seed": seed},
                lambda o: stage_baselines(o, data_path, sasrec, hist, seed), after=["data"])
    index_section = _plain(cfg.index)
    emb_section = {"embedding": index_section.get("embedding", {})}
    emb = p.stage("embed", emb_section, lambda o: stage_embed(o, data_path, emb_section), after=["data"])
    index = p.stage("index", index_section, lambda o: stage_index(o, data_path, index_section, emb.path / "embeddings.npy", ds),
                    after=["data", "embed"])
    index_path = index.path / f"{ds}.index.json"
    model_section = _plain(cfg.model)
    model = p.stage("model", {**model_section, "seed": seed},
                    lambda o: stage_model(o, data_path, index_path, model_section, seed), after=["data", "index"])
    sft_data_section = _plain(cfg.sft_data)
    sft_data = p.stage("sft_data", {**sft_data_section, "seed": seed, "max_history": hist},
                       lambda o: stage_sft_data(o, data_path, index_path, sft_data_section, seed, hist),
                       after=["data", "index"])
    sft_section = _plain(cfg.sft)
    sft = p.stage("sft", {**sft_section, "seed": seed},
                  lambda o: stage_sft(o, model.path / "model", sft_data.path, sft_section, seed),
                  after=["model", "sft_data"])
    eval_section = _plain(cfg.eval)
    p.stage("eval", {**eval_section, "max_history": hist},
            lambda o: stage_eval(o, sft.path, data_path, index_path, eval_section, hist), after=["sft"])
    rl_section = _plain(cfg.rl)
    if rl_section["enabled"] is not False:
        p.stage("rl", {**rl_section, "gpu": gpu_available(), "max_history": hist},
                lambda o: stage_rl(o, p.path("rl"), data_path, index_path, sft.path, rl_section, hist, seed), after=["eval"])
    return write_report(root, p.results, _plain(cfg))


def _handler(args: argparse.Namespace) -> dict:
    cfg = quickstart_config(args.config, args.preset, list(args.overrides or []))
    data_dir = resolve_data_dir(args.data_dir, cfg.data_dir)
    result = run_quickstart(cfg, data_dir)
    if not args.json:
        print(result["table"])
        print(f"\n{result['verdict']}\nreport: {result['report']}\nplot:   {result['plot']}")
        return 0
    return result


def add_commands(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="run the whole GREAM pipeline on real data on a CPU and print a metrics table",
        description="Stages data -> baselines -> embed -> index -> model -> sft_data -> sft -> eval -> rl, "
        "each cached in runs/<name>/<stage>/ by config hash (an interrupted run resumes); ends with "
        "runs/<name>/report.md and report.png. Settings: gream_verl/configs/quickstart.yaml.",
    )
    p.add_argument("--config", help="YAML merged over the packaged quickstart.yaml")
    p.add_argument("--preset", default="default",
                   help="default (every test user, converged SASRec) or smoke (~1 min); full is the same as default")
    p.add_argument("--data-dir", help=f"folder holding <dataset>/ (else ${DATA_ENV}, else ../shared/data)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. sft.max_steps=50")
    p.set_defaults(func=_handler)
