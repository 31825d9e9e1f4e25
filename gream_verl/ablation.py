"""``gream ablate``: the paper's ablations (Table 4: SFT data and curriculum; Table 3: RL reward and
advantage) as one config-driven, resumable run on CPU, ending in ``runs/<name>/report.md``.

Why one runner and not a script per row: the rows only answer the paper's questions when they share
everything but the one thing each row changes (data slice, index, tiny model, seeds, epochs, evaluation
users), and the easiest way to guarantee that is to build the shared parts once and key every row's
stages by their config. Each row is a chain of :class:`gream_verl.pipeline.Pipeline` stages under
``runs/<name>/`` named ``<what>-<row>-s<seed>``, so an interrupted ablation resumes, and editing one
row's settings re-runs that row only.

What runs (the quickstart's stage functions, imported, not copied):

  data, embed                    once: the dataset slice and its text embeddings
  index-text, index-collab       RQ-KMeans over text (the paper's), and text + co-purchase (ours)
  model-<index>-s<seed>          the tiny Qwen3 with that index's tokens
  sft_data-<index>[-seq]-s<seed> D_align (paper families; + whole-sequence rows), D_reason, curriculum
  sft-<row>-s<seed>              LLaMA-Factory, one run per dataset in the row's ``train`` list, in order
  direct-<row>-s<seed>           trie-constrained beam search: Recall/NDCG@{1,5,10}
  reason-<row>-s<seed>           reasoning mode, n samples at temperature / top-p: Pass@{1,5,10}
  rl-<row>-s<seed>               verl's real trainer on CPU from the ``rl.start_from`` SFT model

Metrics as the paper defines them: Avg Direct = mean of Recall@{1,5,10} and NDCG@{1,5,10} (NDCG@1 equals
Recall@1 with one target); Avg Reason = mean of Pass@{1,5,10}. Both are means over users of a per-user
value, so each row's difference to the row above gets a paired bootstrap interval over the same users
(per-user values averaged over seeds first).
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path
from typing import Any

from gream_verl.quickstart import DATA_ENV, _plain, resolve_data_dir

REWARD_FUNCTIONS = {  # reward -> verl's reward.custom_reward_function (path, name)
    "binary": ("pkg://gream_verl.ablation", "binary_exact_score"),
    "residual": ("pkg://gream_verl.srpo.reward", "compute_score"),
}
ESTIMATORS = ("grpo", "srpo")
INDEX_KINDS = {"text": False, "collaborative": True}  # kind -> index.collaborative.enabled
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


# --- configuration -----------------------------------------------------------------------------


def ablation_config(config_file: str | None = None, preset: str = "default", overrides: list[str] | None = None,
                    teacher: str | None = None):
    """Packaged ablation.yaml, the user's file, the preset, ``key=value`` overrides, then ``--teacher``."""
    from omegaconf import OmegaConf

    from gream_verl.config import ConfigError, apply_overrides, load_config

    cfg = load_config("ablation", config_file)
    presets = cfg.get("presets") or {}
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    cfg = OmegaConf.merge(cfg, presets[preset])
    cfg = apply_overrides("ablation", cfg, overrides)
    if teacher is not None:
        cfg.teacher = teacher
    cfg.preset = preset
    if cfg.teacher not in ("template", "llm"):
        raise ConfigError(f"teacher must be template or llm, got {cfg.teacher!r}")
    if not cfg.seeds:
        raise ConfigError("seeds is empty: give at least one seed, e.g. seeds=[42]")
    for name, row in cfg.sft_rows.items():
        if row.index not in INDEX_KINDS:
            raise ConfigError(f"sft_rows.{name}.index must be one of {sorted(INDEX_KINDS)}, got {row.index!r}")
        if not row.train:
            raise ConfigError(f"sft_rows.{name}.train is empty: name the datasets to train, e.g. [gream_align]")
    for name, row in cfg.rl_rows.items():
        if row.reward not in REWARD_FUNCTIONS:
            raise ConfigError(f"rl_rows.{name}.reward must be one of {sorted(REWARD_FUNCTIONS)}, got {row.reward!r}")
        if row.estimator not in ESTIMATORS:
            raise ConfigError(f"rl_rows.{name}.estimator must be one of {list(ESTIMATORS)}, got {row.estimator!r}")
    shared = sorted(set(cfg.sft_rows) & set(cfg.rl_rows))
    if shared:
        raise ConfigError(f"row names {shared} are both in sft_rows and rl_rows; give each row its own name")
    if cfg.rl_rows and cfg.rl.start_from not in cfg.sft_rows:
        raise ConfigError(f"rl.start_from {cfg.rl.start_from!r} is not an SFT row; choose one of {list(cfg.sft_rows)}")
    return cfg


# --- rewards (verl's custom_reward_function signature) -----------------------------------------


def binary_exact_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """The GRPO baseline's reward: 1 for the exact item index, else 0 (no credit for a right prefix).
    The other keys are the residual reward's, so verl logs the same columns for every row."""
    from gream_verl.srpo.reward import compute_score

    result = dict(compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs))
    if "exact" in result:
        result["score"] = float(result["exact"])
    return result


def rl_overrides(row, steps: int, dynamic_sampling: bool) -> dict[str, Any]:
    """verl overrides of one RL row: reward function, advantage estimator, steps, dynamic sampling, and
    a Hugging Face copy of the final actor (for evaluation)."""
    path, name = REWARD_FUNCTIONS[row.reward]
    return {
        "reward.custom_reward_function.path": path,
        "reward.custom_reward_function.name": name,
        "algorithm.adv_estimator": row.estimator,
        "algorithm.filter_groups.enable": bool(dynamic_sampling),
        "trainer.total_training_steps": int(steps),
        "trainer.save_freq": int(steps),
        "actor_rollout_ref.actor.checkpoint.save_contents": "[model,hf_model]",
    }


# --- stages -------------------------------------------------------------------------------------


def index_section(base: dict, kind: str) -> dict:
    section = copy.deepcopy(base)
    section.setdefault("collaborative", {})["enabled"] = INDEX_KINDS[kind]
    return section


def sft_data_section(cfg, sequence: bool) -> dict:
    section = _plain(cfg.sft_data)
    section["tasks"]["sequence"] = {"enabled": bool(sequence)}
    section["teacher"]["mode"] = str(cfg.teacher)
    # the curriculum's global batch is the SFT run's, by construction (tasks/README.md "Curriculum")
    section["curriculum"].update(per_device_train_batch_size=int(cfg.sft.per_device_train_batch_size),
                                 gradient_accumulation_steps=int(cfg.sft.gradient_accumulation_steps), world_size=1)
    return section


def sft_runs(base: dict, train: list[str], epochs: int) -> list[dict]:
    """LLaMA-Factory arguments of each training run of a row: the curriculum file is read in order, once
    (its epochs are unrolled); any other dataset is shuffled and read ``epochs`` times."""
    runs = []
    for dataset in train:
        args = {**base, "dataset": dataset}
        if dataset == "gream_curriculum":
            args.update(num_train_epochs=1.0, disable_shuffling=True, group_by_length=False)
        else:
            args.update(num_train_epochs=float(epochs))
        runs.append(args)
    return runs


def stage_sft_row(out: Path, model_path: Path, sft_data: Path, runs: list[dict], seed: int) -> dict:
    """Train the row's datasets one after the other; the last run writes the model into ``out``."""
    from gream_verl.quickstart import stage_sft

    summaries, start = [], model_path
    for i, args in enumerate(runs):
        last = i == len(runs) - 1
        target = out if last else out / f"part{i}"
        summaries.append({"dataset": args["dataset"], **stage_sft(target, start, sft_data, args, seed)})
        start = target
    for i in range(len(runs) - 1):
        shutil.rmtree(out / f"part{i}", ignore_errors=True)
    return {"runs": summaries}


def stage_reason(out: Path, model_path: Path, data_path: Path, index_path: Path, section: dict, limit: int | None,
                 max_history: int) -> dict:
    from omegaconf import OmegaConf

    from gream_verl.config import load_config
    from gream_verl.infer.reason import evaluate_reason

    cfg = OmegaConf.merge(load_config("eval"), section or {}, {
        "model": str(model_path), "data": str(data_path), "index": str(index_path), "max_history": max_history,
        "limit": limit, "out": str(out / "results.json"), "save_predictions": str(out / "predictions.jsonl"),
        "device": "cpu",
    })
    result = evaluate_reason(cfg)
    keep = ("metrics", "num_users", "valid_answer_rate", "forced_answers", "mean_distinct_answers", "seconds")
    return {k: result.get(k) for k in keep}


def stage_rl_row(out: Path, final: Path, data_path: Path, index_path: Path, sft_model: Path, section: dict,
                 row, max_history: int, seed: int) -> dict:
    """One RL row through the quickstart's CPU SRPO stage, with the row's reward and estimator; the final
    actor is kept as a Hugging Face model in ``out/model`` (the optimizer checkpoint is dropped)."""
    from gream_verl.quickstart import gpu_available, stage_rl

    if gpu_available():
        raise RuntimeError("gream ablate runs its RL rows with the CPU backend only; on a GPU machine the "
                           "quickstart's rl stage runs the fixed SRPO recipe and would ignore the row's reward "
                           "and estimator")
    overrides = {**section["cpu_overrides"], **rl_overrides(row, section["steps"], section["dynamic_sampling"])}
    rl_section = {"enabled": True, "cpu_fallback": True, "cpu_timeout_minutes": section["cpu_timeout_minutes"],
                  "cpu_overrides": overrides, "mode": section["mode"], "max_train": section["max_train"],
                  "max_val": section["max_val"]}
    summary = stage_rl(out, final, data_path, index_path, sft_model, rl_section, max_history, seed)
    checkpoints = sorted((out / "cpu_srpo" / "ckpt").glob("global_step_*/actor/huggingface"),
                         key=lambda p: int(p.parts[-3].rsplit("_", 1)[1]))
    if not checkpoints:
        raise RuntimeError(f"verl wrote no Hugging Face actor under {out / 'cpu_srpo' / 'ckpt'} "
                           "(actor.checkpoint.save_contents must hold hf_model)")
    shutil.move(str(checkpoints[-1]), out / "model")
    for name in TOKENIZER_FILES:  # the tokenizer of the SFT model, whatever verl saved beside the weights
        if (sft_model / name).is_file() and not (out / "model" / name).is_file():
            shutil.copy2(sft_model / name, out / "model" / name)
    shutil.rmtree(out / "cpu_srpo" / "ckpt", ignore_errors=True)
    return {**summary, "steps": int(section["steps"]), "reward": row.reward, "estimator": row.estimator}


# --- the run ------------------------------------------------------------------------------------


def run_ablation(cfg, data_dir: Path, echo=print) -> dict:
    """Run (or resume) every row, then write the report; returns ``{"report", "plot", "results", "tables"}``."""
    from gream_verl.pipeline import Pipeline
    from gream_verl.quickstart import (
        set_threads,
        stage_data,
        stage_embed,
        stage_eval,
        stage_index,
        stage_model,
        stage_sft_data,
    )

    root = Path(cfg.runs_dir) / str(cfg.name)
    ds, hist = str(cfg.dataset), int(cfg.max_history)
    source = data_dir / ds
    if not source.exists():
        raise FileNotFoundError(f"dataset {ds!r} not found in {data_dir} (expected folder {source})")
    if cfg.get("threads"):
        set_threads(int(cfg.threads))
    p = Pipeline(root, echo=echo)
    data = p.stage("data", {"source": str(source), "max_users": cfg.data.max_users, "max_history": hist},
                   lambda o: stage_data(o, source, ds, cfg.data.max_users, hist))
    data_path = data.path / ds
    base_index = _plain(cfg.index)
    emb_section = {"embedding": base_index.get("embedding", {})}
    emb = p.stage("embed", emb_section, lambda o: stage_embed(o, data_path, emb_section), after=["data"])
    sft_rows, rl_rows = dict(cfg.sft_rows), dict(cfg.rl_rows)
    kinds = list(dict.fromkeys(row.index for row in sft_rows.values()))
    indexes = {}
    for kind in kinds:
        section = index_section(base_index, kind)
        stage = p.stage(f"index-{kind}", section,
                        lambda o, s=section: stage_index(o, data_path, s, emb.path / "embeddings.npy", ds),
                        after=["data", "embed"])
        indexes[kind] = stage.path / f"{ds}.index.json"
    model_section, sft_base = _plain(cfg.model), _plain(cfg.sft)
    eval_section, rl_section = _plain(cfg.eval), _plain(cfg.rl)
    direct_section = {k: v for k, v in eval_section.items() if k != "reason"}
    for seed in (int(s) for s in cfg.seeds):
        for kind in kinds:
            p.stage(f"model-{kind}-s{seed}", {**model_section, "seed": seed},
                    lambda o, k=kind, sd=seed: stage_model(o, data_path, indexes[k], model_section, sd),
                    after=["data", f"index-{kind}"])
        for name, row in sft_rows.items():
            data_stage = f"sft_data-{row.index}{'-seq' if row.sequence else ''}-s{seed}"
            if data_stage not in p.results:
                section = sft_data_section(cfg, row.sequence)
                p.stage(data_stage, {**section, "seed": seed, "max_history": hist},
                        lambda o, s=section, k=row.index, sd=seed: stage_sft_data(o, data_path, indexes[k], s, sd, hist),
                        after=["data", f"index-{row.index}"])
            runs = sft_runs(sft_base, list(row.train), int(cfg.epochs))
            model_stage = f"model-{row.index}-s{seed}"
            sft = p.stage(f"sft-{name}-s{seed}", {"runs": runs, "seed": seed},
                          lambda o, m=model_stage, d=data_stage, r=runs, sd=seed: stage_sft_row(
                              o, p.path(m) / "model", p.path(d), r, sd),
                          after=[model_stage, data_stage])
            _evaluate(p, name, seed, sft.name, sft.path, data_path, indexes[row.index], direct_section,
                      eval_section, cfg.reason_limit, hist, stage_eval)
        start = f"sft-{cfg.rl.start_from}-s{seed}"
        start_model = p.path(start)
        start_index = indexes[sft_rows[cfg.rl.start_from].index] if rl_rows else None
        for name, row in rl_rows.items():
            stage_name = f"rl-{name}-s{seed}"
            config = {**rl_section, "row": _plain(row), "seed": seed, "max_history": hist}
            rl = p.stage(stage_name, config,
                         lambda o, n=stage_name, r=row, i=start_index, m=start_model, sd=seed: stage_rl_row(
                             o, p.path(n), data_path, i, m, rl_section, r, hist, sd),
                         after=[start])
            _evaluate(p, name, seed, rl.name, rl.path / "model", data_path, start_index, direct_section,
                      eval_section, cfg.reason_limit, hist, stage_eval)
    from gream_verl.ablation_report import write_report

    return write_report(root, p, cfg)


def _evaluate(p, name: str, seed: int, trained: str, model: Path, data_path: Path, index_path: Path,
              direct_section: dict, eval_section: dict, limit: int | None, hist: int, stage_eval) -> None:
    """Direct and reasoning mode of the model that stage ``trained`` produced."""
    after = [trained]
    p.stage(f"direct-{name}-s{seed}", {**direct_section, "max_history": hist},
            lambda o: stage_eval(o, model, data_path, index_path, direct_section, hist), after=after)
    p.stage(f"reason-{name}-s{seed}", {**eval_section, "reason_limit": limit, "max_history": hist},
            lambda o: stage_reason(o, model, data_path, index_path, eval_section, limit, hist), after=after)


def _handler(args: argparse.Namespace) -> int | dict:
    cfg = ablation_config(args.config, args.preset, list(args.overrides or []), args.teacher)
    data_dir = resolve_data_dir(args.data_dir, cfg.data_dir)
    result = run_ablation(cfg, data_dir)
    if args.json:
        return result
    print(result["tables"])
    print(f"\nreport: {result['report']}\nplot:   {result['plot']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "ablate",
        help="the paper's ablations (Tables 3 and 4) on CPU: one cached run per row, then a report",
        description="SFT rows (alignment only, reasoning only, D -> R, curriculum, + whole-sequence rows, "
        "+ co-purchase index) and RL rows (GRPO binary, + residual reward, + bonus advantage = SRPO), each "
        "trained and evaluated in direct and reasoning mode, cached in runs/<name>/ by config hash (an "
        "interrupted run resumes); ends with runs/<name>/report.md and report.png. "
        "Settings: gream_verl/configs/ablation.yaml.",
    )
    p.add_argument("--config", help="YAML merged over the packaged ablation.yaml")
    p.add_argument("--preset", default="default", help="default (<= 2 h on 2 cores, estimated) or smoke (tiny slice)")
    p.add_argument("--data-dir", help=f"folder holding <dataset>/ (else ${DATA_ENV}, else ../shared/data)")
    p.add_argument("--teacher", choices=("template", "llm"), default=None,
                   help="reasoning chains: the offline template teacher (default) or an OpenAI-compatible LLM")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. rl.steps=5")
    p.set_defaults(func=_handler)
