"""The quickstart report: ``report.md`` (stages, data, index, training, metrics against the
baselines, whether the accuracy goal was reached) and ``report.png`` (training loss curves;
Recall@k / NDCG@k bars of GREAM against MostPop and SASRec)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gream_verl.baselines import rank_metrics
from gream_verl.io import atomic_path, read_json, write_json, write_text
from gream_verl.report import format_table

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def metric_rows(results: Mapping[str, Any]) -> list[dict]:
    """One row per model that has test metrics: GREAM (direct), then the baselines.

    When the evaluation covered only the first N test users (``eval.limit``), the baselines are
    scored on the same N users (from their per-user ranks), so every row compares like with like.
    """
    rows = []
    users = None
    if "eval" in results:
        users = results["eval"].summary.get("num_users")
        rows.append({"model": "GREAM (direct, SFT)", **_pick(results["eval"].summary.get("metrics", {})),
                     "users": users})
    if "baselines" in results:
        full = read_json(results["baselines"].path / "baselines.json")
        for name, m in full.items():
            if users is not None and "ranks" in m and users < len(m["ranks"]):
                rows.append({"model": name, **rank_metrics(np.asarray(m["ranks"][:users])), "users": users})
            else:
                rows.append({"model": name, **_pick(m), "users": m.get("examples")})
    return rows


def _pick(metrics: Mapping[str, Any]) -> dict:
    return {k: float(metrics[k]) for k in METRICS if k in metrics}


def goal_verdict(rows: list[dict], goal: float) -> tuple[str, dict]:
    """Whether GREAM's Recall@10 beats MostPop clearly and reaches ``goal`` x SASRec's."""
    by_name = {r["model"].split(" ")[0]: r for r in rows}
    gream, pop, sas = by_name.get("GREAM"), by_name.get("MostPop"), by_name.get("SASRec")
    if gream is None or sas is None or pop is None:
        return "accuracy goal: not measured (GREAM or a baseline did not run)", {}
    g, p, s = gream["recall@10"], pop["recall@10"], sas["recall@10"]
    if s <= 0:  # a ratio to 0 says nothing (tiny smoke runs): report that instead of inf%
        facts = {"gream_recall@10": g, "mostpop_recall@10": p, "sasrec_recall@10": s, "ratio_to_sasrec": None,
                 "beats_mostpop": g > 2 * p, "reached": False}
        return (f"accuracy goal: not measurable - SASRec Recall@10 is 0 on these users (GREAM {g:.4f}, "
                f"MostPop {p:.4f})"), facts
    ratio = g / s
    facts = {"gream_recall@10": g, "mostpop_recall@10": p, "sasrec_recall@10": s, "ratio_to_sasrec": ratio,
             "beats_mostpop": g > 2 * p, "reached": s > 0 and g > 2 * p and ratio >= goal}
    status = "REACHED" if facts["reached"] else "NOT reached"
    text = (f"accuracy goal ({goal:.0%} of SASRec Recall@10, well above MostPop): {status} - GREAM Recall@10 "
            f"{g:.4f} = {ratio:.0%} of SASRec ({s:.4f}); MostPop {p:.4f}")
    return text, facts


def plot_report(path: Path, rows: list[dict], curves: Mapping[str, list], title: str) -> Path:
    """Left: training loss curves; right: grouped bars of every metric for every model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_bar) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax_loss.plot(np.asarray(xs, dtype=float) / max(xs), ys, label=label)
    ax_loss.set_xlabel("fraction of training (SFT steps, SASRec epochs)")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss")
    if any(curves.values()):
        ax_loss.legend()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(METRICS))
    for k, row in enumerate(rows):
        ax_bar.bar(x + k * width, [row.get(m, 0.0) for m in METRICS], width, label=row["model"])
    ax_bar.set_xticks(x + width * (len(rows) - 1) / 2, METRICS)
    ax_bar.set_ylabel("test metric (full ranking)")
    ax_bar.set_title("recommendation quality")
    if rows:
        ax_bar.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _stage_line(result) -> dict:
    summary = {k: v for k, v in result.summary.items() if k not in ("loss_curve", "train_loss")}
    brief = ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list)))
    return {"stage": result.name, "status": "skipped (up to date)" if result.skipped else "ran",
            "wall_s": f"{result.wall_s:.1f}", "artifact": str(result.path), "summary": brief[:120]}


def write_report(root: Path, results: Mapping[str, Any], config: dict, goal: float) -> dict:
    """Write ``report.md``, ``report.png`` and ``metrics.json`` under ``root``; return the table."""
    root = Path(root)
    rows = metric_rows(results)
    verdict, facts = goal_verdict(rows, goal)
    curves = {}
    if "sft" in results:
        curves["GREAM SFT"] = results["sft"].summary.get("loss_curve") or []
    if "baselines" in results:
        losses = results["baselines"].summary.get("SASRec", {}).get("train_loss") or []
        curves["SASRec"] = [[i + 1, v] for i, v in enumerate(losses)]
    name = root.name
    plot = plot_report(root / "report.png", rows, curves, f"GREAM quickstart: {name}")
    table = format_table(rows) if rows else "(no metrics: the eval stage did not run)"

    lines = [f"# GREAM quickstart report: {name}", "",
             f"Dataset `{config.get('dataset')}`, preset `{config.get('preset')}`, seed {config.get('seed')}, "
             f"history cap {config.get('max_history')}. Leave-one-out test split, full ranking over all items, "
             "no filtering of history items.", "",
             "## Recommendation quality (test split)", "", table, "", verdict, "", "![report](report.png)", "",
             "## Stages", "", format_table([_stage_line(r) for r in results.values()]), "",
             f"Stage time when each stage ran: {sum(r.wall_s for r in results.values()) / 60:.1f} min in all "
             f"({sum(r.wall_s for r in results.values() if not r.skipped) / 60:.1f} min in this invocation).", ""]
    if "data" in results:
        d = results["data"].summary
        lines += ["## Data", "", format_table([{k: d.get(k) for k in ("users", "items", "interactions", "sparsity")}]), ""]
    if "index" in results:
        lines += ["## Item index (RQ-KMeans)", "",
                  format_table([{k: v for k, v in results["index"].summary.items() if not isinstance(v, (list, dict))}]), ""]
    if "sft" in results:
        s = results["sft"].summary
        lines += ["## SFT (LLaMA-Factory)", "",
                  format_table([{k: s.get(k) for k in ("steps", "first_loss", "final_loss", "train_loss")}]), ""]
    if "rl" in results:
        r = results["rl"].summary
        lines += ["## RL (SRPO in verl)", "", f"Status: {r.get('status')}.", "",
                  f"Command for a GPU machine: `{r.get('command_file')}`", ""]
    report = write_text(root / "report.md", "\n".join(lines))
    out = {"table": table, "verdict": verdict, "goal": facts, "rows": rows,
           "report": str(report), "plot": str(plot)}
    write_json(root / "metrics.json", {k: v for k, v in out.items() if k != "table"})
    return out
