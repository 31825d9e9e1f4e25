"""``gream sft build``: alignment + reasoning + curriculum datasets for LLaMA-Factory, one folder.

Writes into ``out``: ``gream_align.json``, ``gream_reason.json``, ``gream_curriculum.json``
(alpaca), ``dataset_info.json`` (use ``out`` as LLaMA-Factory's ``dataset_dir``),
``reason_rejected.jsonl`` (a few rejected teacher outputs, to inspect) and ``build_report.json``.
Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from gream_verl.config import load_config, to_dict
from gream_verl.data.dataset import RecDataset, load_dataset
from gream_verl.index.tokens import ItemIndex, load_index
from gream_verl.io import read_json, write_json, write_jsonl
from gream_verl.tasks.alignment import (
    ALIGN_FAMILIES,
    AlignConfig,
    build_alignment,
    preference_histories,
    preference_request,
)
from gream_verl.tasks.batch_curriculum import ALIGN, CurriculumConfig, build_curriculum
from gream_verl.tasks.export import DATASET_NAMES, write_alpaca, write_dataset_info
from gream_verl.tasks.reasoning import REJECT_REASONS, TEACHER_MODES, build_reasoning, reasoning_examples

log = logging.getLogger(__name__)

TEMPLATE_LABEL = "template (structural stand-in from item metadata, not LLM reasoning)"
TEACHER_KEYS = ("base_url", "model", "api_key", "cache_dir", "max_concurrency", "max_retries", "timeout",
                "temperature", "max_tokens")


def sft_config(config_file: str | Path | None = None, overrides: list[str] | None = None,
               teacher: str | None = None) -> DictConfig:
    extra = [f"teacher.mode={teacher}"] if teacher else []
    cfg = load_config("sft_data", config_file, extra + list(overrides or []))
    if cfg.teacher.mode not in TEACHER_MODES:
        raise ValueError(f"teacher.mode must be one of {TEACHER_MODES}, got {cfg.teacher.mode!r}")
    return cfg


def make_teacher(cfg: DictConfig, out_dir: Path):
    """A TeacherClient from config (unset keys fall back to OPENAI_BASE_URL / OPENAI_API_KEY /
    GREAM_TEACHER_MODEL); the cache defaults to ``out/teacher_cache`` so reruns resume."""
    from gream_verl.teacher import TeacherClient, TeacherConfig

    values = {k: cfg.teacher.get(k) for k in TEACHER_KEYS}
    values["cache_dir"] = values["cache_dir"] or str(out_dir / "teacher_cache")
    return TeacherClient(TeacherConfig.from_env(**values))


def align_config(cfg: DictConfig) -> AlignConfig:
    tasks = cfg.tasks
    return AlignConfig(
        seed=int(cfg.seed),
        max_history=int(cfg.max_history),
        max_description_chars=int(cfg.max_description_chars),
        families=tuple(name for name in ALIGN_FAMILIES if name in tasks and tasks[name].enabled),
        seqrec_max_per_user=tasks.seqrec.max_per_user,
        seqrec_max_total=tasks.seqrec.max_total,
        fusedrec_max_per_user=tasks.fusedrec.max_per_user,
        fusedrec_max_total=tasks.fusedrec.max_total,
        preference_max_users=tasks.preference.max_users,
    )


def preference_summaries(cfg: DictConfig, acfg: AlignConfig, dataset: RecDataset, teacher) -> dict[str, str] | None:
    """User summaries from ``tasks.preference.summaries_file``, else from the LLM teacher, else None."""
    if "preference" not in acfg.families:
        return None
    path = cfg.tasks.preference.summaries_file
    if path:
        raw = read_json(path)
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError(f"{path}: expected an object of user id -> summary text")
        return {str(u): v for u, v in raw.items()}
    if teacher is None:
        return None
    histories = preference_histories(dataset, acfg.max_history, acfg.preference_max_users, acfg.seed)
    requests = {u: preference_request(dataset, h) for u, h in histories.items()}
    return teacher.complete_many(requests, desc="preference teacher")


def build_sft_data(data: str | Path, index_path: str | Path, out: str | Path, cfg: DictConfig,
                   dataset: RecDataset | None = None, index: ItemIndex | None = None) -> dict:
    """Build everything; returns the build report (also written to ``out/build_report.json``)."""
    start = time.perf_counter()
    out = Path(out)
    dataset = dataset or load_dataset(data)
    index = index or load_index(index_path)
    mode = cfg.teacher.mode
    teacher = make_teacher(cfg, out) if mode == "llm" else None
    if mode == "template":
        log.warning("teacher mode 'template': reasoning chains are a %s", TEMPLATE_LABEL)

    acfg = align_config(cfg)
    summaries = preference_summaries(cfg, acfg, dataset, teacher)
    align_start = time.perf_counter()
    align = build_alignment(dataset, index, acfg, summaries)
    align_seconds = round(time.perf_counter() - align_start, 2)

    reason_rows: list[dict] = []
    reasoning: dict = {"enabled": bool(cfg.reasoning.enabled)}
    if cfg.reasoning.enabled:
        examples = reasoning_examples(dataset, acfg.max_history, cfg.reasoning.max_samples, acfg.seed)
        result = build_reasoning(dataset, index, examples, mode,
                                 teacher.complete_many if teacher is not None else None)
        reason_rows = result.rows
        reasoning.update(requested=result.requested, accepted=len(result.rows),
                         rejected_total=sum(result.rejected.values()),
                         rejected={reason: result.rejected.get(reason, 0) for reason in REJECT_REASONS})
        write_jsonl(out / "reason_rejected.jsonl", result.rejected_examples)
        if not reason_rows:
            log.warning("no reasoning sample was accepted; gream_reason is empty")

    files = {DATASET_NAMES["align"]: "gream_align.json"}
    write_alpaca(out / "gream_align.json", align.rows)
    if cfg.reasoning.enabled:
        files[DATASET_NAMES["reason"]] = "gream_reason.json"
        write_alpaca(out / "gream_reason.json", reason_rows)
    else:  # files of an earlier build must not pass for this one
        (out / "gream_reason.json").unlink(missing_ok=True)

    curriculum: dict = {"enabled": bool(cfg.curriculum.enabled)}
    layout: list[dict] = []
    if cfg.curriculum.enabled:
        ccfg = CurriculumConfig(seed=acfg.seed, **{k: v for k, v in to_dict(cfg.curriculum).items() if k != "enabled"})
        order, layout = build_curriculum(len(align.rows), len(reason_rows), ccfg)
        rows = [align.rows[r] if kind == ALIGN else reason_rows[r] for kind, r in order]
        files[DATASET_NAMES["curriculum"]] = "gream_curriculum.json"
        write_alpaca(out / files[DATASET_NAMES["curriculum"]], rows)
        curriculum.update(
            global_batch_size=ccfg.global_batch_size, rows=len(rows),
            usage="train with disable_shuffling: true, num_train_epochs: 1 (epochs are unrolled in the file), "
                  "no val_size / packing / max_samples, and the same batch size x accumulation x world size",
            epochs={f"epoch_{e['epoch']}": {k: v for k, v in e.items() if k not in ("epoch", "pattern")}
                    for e in layout},
        )
    else:
        (out / "gream_curriculum.json").unlink(missing_ok=True)
    write_dataset_info(out, files, drop=tuple(set(DATASET_NAMES.values()) - set(files)))

    report = {
        "dataset": dataset.name,
        "out": str(out),
        "teacher": TEMPLATE_LABEL if mode == "template" else f"llm: {teacher.config.model}",
        "alignment": {"total": len(align.rows), "per_task": align.counts, "per_template": align.template_counts,
                      "skipped": align.skipped, "seconds": align_seconds},
        "reasoning": reasoning,
        "curriculum": curriculum,
        "datasets": files,
        "teacher_stats": dict(teacher.stats) if teacher is not None else {},
        "seconds": round(time.perf_counter() - start, 2),
    }
    full = {**report, "config": to_dict(cfg), "align_config": dataclasses.asdict(acfg),
            "curriculum_layout": layout}
    if full["config"]["teacher"].get("api_key"):
        full["config"]["teacher"]["api_key"] = "***"
    write_json(out / "build_report.json", full)
    return report
