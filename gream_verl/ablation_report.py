"""The report of ``gream ablate``: Table 4 (SFT rows) and Table 3 (RL rows) laid out like the paper's,
with our numbers, the paper's column, each row's paired-bootstrap difference to the row above, and a plot.

Per row and seed, the per-user values are read back from the evaluation stages' ``predictions.jsonl``
(so a cached row is reported exactly as it was scored). Across seeds: mean +- std of the row's Avg; the
difference to the row above is a paired bootstrap over users of the per-user Avg, first averaged over
seeds (rows share the users: the same data slice, split and ``limit``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from gream_verl.io import atomic_path, read_jsonl

PAPER_SETTING = "Instruments, Qwen3-4B, 8 GPUs, GPT-5 teacher"
DIRECT_NAMES = ("recall@1", "recall@5", "recall@10", "ndcg@1", "ndcg@5", "ndcg@10")
PASS_KS = (1, 5, 10)
TEMPLATE_NOTE = ("reasoning data: the offline **template teacher**, a structural stand-in filled from item "
                 "metadata, not reasoning (`--teacher llm` uses an OpenAI-compatible LLM)")



# --- per-user metrics ---------------------------------------------------------------------------


def direct_per_user(predictions: list[dict]) -> dict[str, Any]:
    """``{"users": [...], "avg": (users,), "recall@1": (users,), ...}`` from ``predictions.jsonl`` rows."""
    import numpy as np

    from gream_verl.metrics import per_user_metrics, target_ranks

    ranks = target_ranks([p["predictions"] for p in predictions], [p["target"] for p in predictions])
    per = per_user_metrics(ranks, DIRECT_NAMES)
    return {"users": [str(p["user"]) for p in predictions], **per,
            "avg": np.mean([per[n] for n in DIRECT_NAMES], axis=0) if predictions else np.zeros(0)}


def reason_per_user(predictions: list[dict]) -> dict[str, Any]:
    """Pass@k per user (target among the first k distinct answers, as ``gream eval reason``) and their mean."""
    import numpy as np

    from gream_verl.metrics import recall_per_user, target_ranks

    ranks = target_ranks([p["answers"] for p in predictions], [p["target"] for p in predictions])
    per = {f"pass@{k}": recall_per_user(ranks, k) for k in PASS_KS}
    return {"users": [str(p["user"]) for p in predictions], **per,
            "avg": np.mean(list(per.values()), axis=0) if predictions else np.zeros(0)}


def row_scores(p, name: str, seeds: list[int]) -> dict:
    """Per seed: direct and reason per-user values; plus their means over seeds."""
    direct = [direct_per_user(read_jsonl(p.path(f"direct-{name}-s{s}") / "predictions.jsonl")) for s in seeds]
    reason = [reason_per_user(read_jsonl(p.path(f"reason-{name}-s{s}") / "predictions.jsonl")) for s in seeds]
    for what, per_seed in (("direct", direct), ("reason", reason)):
        if any(d["users"] != per_seed[0]["users"] for d in per_seed):
            raise ValueError(f"row {name!r}: the seeds scored different {what} users; keep eval.limit fixed")
    return {"direct": direct, "reason": reason}


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarise(rows: dict[str, dict], resamples: int) -> dict[str, dict]:
    """``{row: {"direct": {...}, "reason": {...}}}``: per metric mean over seeds, Avg mean +- std, the Avg's
    bootstrap CI, and the paired bootstrap difference of the Avg to the row before it."""
    from gream_verl.metrics import bootstrap_ci, paired_bootstrap_diff

    out: dict[str, dict] = {}
    previous = None
    for name, scores in rows.items():
        out[name] = {}
        for mode, names in (("direct", DIRECT_NAMES), ("reason", tuple(f"pass@{k}" for k in PASS_KS))):
            per_seed = scores[mode]
            user_avg = np.mean([d["avg"] for d in per_seed], axis=0)
            mean, std = _mean_std([float(d["avg"].mean()) if d["avg"].size else 0.0 for d in per_seed])
            entry = {"avg": mean, "std": std, "seeds": len(per_seed), "users": int(user_avg.size),
                     "ci": bootstrap_ci(user_avg, resamples),
                     **{n: float(np.mean([d[n].mean() if d[n].size else 0.0 for d in per_seed])) for n in names}}
            if previous is not None:
                before = previous[mode]
                if before["users_list"] == per_seed[0]["users"]:
                    entry["diff"] = paired_bootstrap_diff(user_avg, before["user_avg"], resamples)
                else:
                    entry["diff"] = None  # different users: no paired comparison
            entry["users_list"], entry["user_avg"] = per_seed[0]["users"], user_avg
            out[name][mode] = entry
        previous = out[name]
    for row in out.values():  # keep the JSON small
        for entry in row.values():
            entry.pop("users_list"), entry.pop("user_avg")
    return out


def _pm(entry: dict) -> str:
    return f"{entry['avg']:.4f} ± {entry['std']:.4f}" if entry["seeds"] > 1 else f"{entry['avg']:.4f}"


def _diff(entry: dict) -> str:
    d = entry.get("diff")
    if d is None:
        return "—"
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def table(title: str, labels: dict[str, str], summary: dict[str, dict]) -> str:
    head = ("| row | Avg Direct | Δ vs row above [95% CI] | Avg Reason | Δ vs row above [95% CI] | "
            "R@1 | R@5 | R@10 | N@5 | N@10 | P@1 | P@5 | P@10 |")
    lines = [f"### {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for name, row in summary.items():
        d, r = row["direct"], row["reason"]
        cells = [labels[name], _pm(d), _diff(d), _pm(r), _diff(r),
                 *(f"{d[n]:.4f}" for n in ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")),
                 *(f"{r[f'pass@{k}']:.4f}" for k in PASS_KS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, labels: dict[str, str], summaries: list[dict[str, dict]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    merged = {k: v for s in summaries for k, v in s.items()}
    names = list(merged)
    for ax, mode, title in zip(axes, ("direct", "reason"), ("Avg Direct (Recall/NDCG@1,5,10)", "Avg Reason (Pass@1,5,10)"),
                               strict=True):
        means = np.array([merged[n][mode]["avg"] for n in names])
        low = np.array([merged[n][mode]["ci"]["low"] for n in names])
        high = np.array([merged[n][mode]["ci"]["high"] for n in names])
        colours = ["tab:blue" if n in summaries[0] else "tab:orange" for n in names]
        ax.bar(range(len(names)), means, yerr=[means - low, high - means], color=colours, capsize=3)
        ax.set_xticks(range(len(names)), [labels[n] for n in names], rotation=35, ha="right", fontsize=7)
        ax.set_title(title + "\n(bars: 95% bootstrap CI over users)", fontsize=9)
    fig.suptitle("gream ablate: SFT rows (blue, Table 4) and RL rows (orange, Table 3)", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def write_report(root: Path, p, cfg) -> dict:
    """Write ``report.md``, ``report.png`` and ``results.json`` under ``root``; return paths and tables."""
    from gream_verl.io import write_json, write_text

    seeds = [int(s) for s in cfg.seeds]
    resamples = int(cfg.bootstrap_resamples)
    start = str(cfg.rl.start_from)
    sft_labels = {n: str(r.label) for n, r in cfg.sft_rows.items()}
    rl_labels = {start: f"SFT: {sft_labels.get(start, start)}", **{n: str(r.label) for n, r in cfg.rl_rows.items()}}
    sft = summarise({n: row_scores(p, n, seeds) for n in cfg.sft_rows}, resamples)
    rl = summarise({n: row_scores(p, n, seeds) for n in ([start, *cfg.rl_rows] if cfg.rl_rows else [])}, resamples)
    tables = "\n\n".join([
        table("Table 4 analogue: SFT data and curriculum", sft_labels, sft),
        *([table("Table 3 analogue: RL from the curriculum SFT model", rl_labels, rl)] if rl else []),
    ])
    wall = sum(r.wall_s for r in p.results.values())
    data = p.results["data"].summary
    direct_users = next(iter(sft.values()))["direct"]["users"] if sft else 0
    reason_users = next(iter(sft.values()))["reason"]["users"] if sft else 0
    teacher = TEMPLATE_NOTE if cfg.teacher == "template" else "reasoning data: an LLM teacher (`--teacher llm`)"
    stages = "\n".join(f"| {r.name} | {r.wall_s:.1f} | {'cached' if r.skipped else 'ran'} |" for r in p.results.values())
    text = f"""# gream ablate: {cfg.dataset} ({cfg.preset} preset)

Ours: {cfg.dataset}, the first {cfg.data.max_users or 'all'} users ({data.get('users')} users, {data.get('items')} items),
tiny Qwen3 (hidden {cfg.model.hidden_size}, {cfg.model.num_layers} layers), {cfg.epochs} epoch(s) per SFT dataset,
RL {cfg.rl.steps} step(s) per row (dynamic sampling {'on' if cfg.rl.dynamic_sampling else 'OFF'}), seeds {seeds}
({len(seeds)} seed{'s' if len(seeds) > 1 else ''}: {'mean ± std' if len(seeds) > 1 else 'no std with one seed'}).
Scored: {direct_users} test users in direct mode (beam {cfg.eval.beams}), {reason_users} in reasoning mode
(n = {cfg.eval.reason.num_samples}, temperature {cfg.eval.reason.temperature}, top-p {cfg.eval.reason.top_p},
{cfg.eval.reason.max_new_tokens} new tokens at most).
{teacher}.
The paper's Tables 3 and 4 (arXiv 2510.20815) are measured on {PAPER_SETTING}; their numbers could
not be retrieved here, so none is quoted beside ours: compare the directions, not the values.

Avg Direct = mean of Recall@{{1,5,10}} and NDCG@{{1,5,10}}; Avg Reason = mean of Pass@{{1,5,10}}.
Δ: paired bootstrap ({resamples} resamples over users) of the row's Avg minus the row above's.
Machine: {platform.machine()}, {os.cpu_count()} CPUs; stage wall time in all: {wall / 60:.1f} min
(cached stages count their original time).

{tables}

![ablation](report.png)

## Stage timings (s)

| stage | wall s | this run |
|---|---|---|
{stages}
"""
    # report.md, which links the other two, is written last: a failure never leaves it pointing at
    # a missing or stale plot
    png = plot(root / "report.png", {**sft_labels, **rl_labels}, [sft, rl])
    results = write_json(root / "results.json", {"sft": sft, "rl": rl, "seeds": seeds, "preset": cfg.preset,
                                                 "teacher": cfg.teacher, "wall_s": wall,
                                                 "stages": {r.name: r.wall_s for r in p.results.values()}})
    report = write_text(root / "report.md", text)
    return {"report": str(report), "plot": str(png), "results": str(results), "tables": tables}
