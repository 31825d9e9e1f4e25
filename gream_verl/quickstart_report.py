"""The quickstart report: ``report.md`` (stages, data, index, training, metrics against the
baselines with 95% confidence intervals, whether the accuracy goal was reached) and
``report.png`` (training loss curves; Recall@k / NDCG@k bars of GREAM against MostPop and SASRec).

Every accuracy number names its users. GREAM's per-user ranks come from the eval stage's
``predictions.jsonl``, the baselines' from ``baselines.json``; all systems are scored on the users
GREAM was scored on (matched by user id), so the rows and the paired differences compare like
with like. Intervals are percentile bootstraps over users (:mod:`gream_verl.metrics`); the
difference GREAM - SASRec is a *paired* bootstrap, much tighter than the two separate intervals.

The goal (issue 13): GREAM direct mode >= a SASRec trained to convergence on both Recall@10 and
NDCG@10, over *all* test users. A run that scored a subset, or whose SASRec was cut short by a
time cap, is reported but never called a success.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gream_verl.io import atomic_path, read_json, read_jsonl, write_json, write_text
from gream_verl.metrics import bootstrap_ci, paired_bootstrap_diff, per_user_metrics, target_ranks
from gream_verl.tables import format_table

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")
GOAL_METRICS = ("recall@10", "ndcg@10")
GREAM = "GREAM (direct, SFT)"


def _sasrec_label(m: Mapping[str, Any]) -> str:
    if m.get("converged"):
        return "SASRec (converged)"
    if "converged" in m:
        return f"SASRec (NOT converged: {m.get('stopped_by')})"
    return "SASRec (early-stopped)"  # a baselines.json from before convergence was the default


def per_user_ranks(results: Mapping[str, Any]) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{model label: (user ids, 1-based target ranks, 0 = not ranked)}`` for every model that
    has per-user results: GREAM from ``eval/predictions.jsonl``, the baselines from
    ``baselines/baselines.json``."""
    out = {}
    if "eval" in results:
        path = Path(results["eval"].path) / "predictions.jsonl"
        if path.is_file():
            rows = read_jsonl(path)
            out[GREAM] = ([str(r["user"]) for r in rows],
                          target_ranks([r["predictions"] for r in rows], [r["target"] for r in rows]))
    if "baselines" in results:
        for name, m in read_json(Path(results["baselines"].path) / "baselines.json").items():
            if "ranks" not in m:
                continue
            label = _sasrec_label(m) if name == "SASRec" else name
            ranks = np.asarray(m["ranks"], dtype=np.int64) + 1  # baselines rank from 0, always ranked
            # older baselines.json files have no user ids: their ranks are in leave_one_out order,
            # the order the evaluation uses too
            out[label] = (list(m["users"]) if "users" in m else None, ranks)
    return out


def _align(per_model: dict[str, tuple[list[str] | None, np.ndarray]]) -> tuple[dict[str, np.ndarray], int]:
    """Every model's ranks on the users GREAM was scored on (all users if GREAM has none), in
    GREAM's order; also the number of test users the baselines ranked (the whole split)."""
    total = max((len(r) for _, r in per_model.values()), default=0)
    if GREAM not in per_model:
        return {name: ranks for name, (_, ranks) in per_model.items()}, total
    users = per_model[GREAM][0]
    aligned = {GREAM: per_model[GREAM][1]}
    for name, (ids, ranks) in per_model.items():
        if name == GREAM:
            continue
        if ids is None:
            aligned[name] = ranks[: len(users)]
            continue
        where = {u: i for i, u in enumerate(ids)}
        missing = [u for u in users if u not in where]
        if missing:
            raise ValueError(f"{name} has no test result for {len(missing)} users GREAM was scored on, "
                             f"e.g. {missing[:3]}: rerun the baselines stage on the same data")
        aligned[name] = ranks[[where[u] for u in users]]
    return aligned, total


def metric_rows(results: Mapping[str, Any], seed: int = 0) -> tuple[list[dict], list[dict], int]:
    """``(rows, differences, test_users)``.

    ``rows``: one per model (GREAM first) with every metric, the 95% CI of each as
    ``"<metric> CI": [low, high]`` and ``users``, the number of users scored. ``differences``:
    GREAM minus each SASRec row on Recall@10 and NDCG@10 with its paired-bootstrap 95% CI.
    ``test_users``: how many test users the split has (0 when no baseline ran). A model without
    per-user results (an old run) gets its summary metrics and no CI.
    """
    aligned, total = _align(per_user_ranks(results))
    rows = []
    if "eval" in results and GREAM not in aligned:
        summary = results["eval"].summary
        rows.append({"model": GREAM, **_pick(summary.get("metrics", {})), "users": summary.get("num_users")})
    per_user = {name: per_user_metrics(ranks, METRICS) for name, ranks in aligned.items()}
    for name, values in per_user.items():
        row = {"model": name}
        for metric in METRICS:
            ci = bootstrap_ci(values[metric], seed=seed)
            row[metric], row[f"{metric} CI"] = ci["mean"], [ci["low"], ci["high"]]
        rows.append({**row, "users": len(aligned[name])})
    differences = []
    if GREAM in per_user:
        for name in per_user:
            if name.startswith("SASRec"):
                for metric in GOAL_METRICS:
                    d = paired_bootstrap_diff(per_user[GREAM][metric], per_user[name][metric], seed=seed)
                    differences.append({"comparison": f"GREAM - {name}", "metric": metric, "difference": d["mean"],
                                        "CI": [d["low"], d["high"]], "users": d["users"]})
    return rows, differences, total


def _pick(metrics: Mapping[str, Any]) -> dict:
    return {k: float(metrics[k]) for k in METRICS if k in metrics}


def _ci(pair) -> str:
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]" if pair else ""


def table_rows(rows: list[dict]) -> list[dict]:
    """The metric rows as printed: Recall@10 and NDCG@10 with their intervals, and the users."""
    out = []
    for r in rows:
        line = {"model": r["model"]}
        for m in METRICS:
            line[m] = r.get(m)
            if m in GOAL_METRICS:
                line[f"{m} 95% CI"] = _ci(r.get(f"{m} CI"))
        out.append({**line, "users": r.get("users")})
    return out


def difference_rows(differences: list[dict]) -> list[dict]:
    return [{"comparison": d["comparison"], "metric": d["metric"], "difference": d["difference"],
             "95% CI (paired bootstrap)": _ci(d["CI"]), "users": d["users"]} for d in differences]


def goal_verdict(rows: list[dict], differences: list[dict], test_users: int) -> tuple[str, dict]:
    """Whether GREAM reaches a converged SASRec on Recall@10 and NDCG@10 over all test users.

    Reached needs: every test user scored, SASRec trained to convergence, GREAM's mean >=
    SASRec's on both metrics. The text gives both means, the ratio and the paired 95% CI of the
    difference, and says when the difference is within the noise of the user sample.
    """
    by_name = {r["model"].split(" ")[0]: r for r in rows}
    gream, pop, sas = by_name.get("GREAM"), by_name.get("MostPop"), by_name.get("SASRec")
    if gream is None or sas is None or pop is None:
        return "accuracy goal: not measured (GREAM or a baseline did not run)", {}
    users = int(gream.get("users") or 0)
    converged = sas["model"] == "SASRec (converged)"
    diffs = {d["metric"]: d for d in differences if d["comparison"] == f"GREAM - {sas['model']}"}
    facts: dict[str, Any] = {"users": users, "test_users": test_users, "all_users": users == test_users,
                             "sasrec": sas["model"], "sasrec_converged": converged}
    parts, ahead = [], True
    for m in GOAL_METRICS:
        g, s = gream[m], sas[m]
        ahead = ahead and g >= s
        facts[f"gream_{m}"], facts[f"sasrec_{m}"] = g, s
        facts[f"ratio_{m}"] = g / s if s > 0 else None
        ratio = f" ({g / s:.0%})" if s > 0 else ""
        part = f"{m} GREAM {g:.4f} vs SASRec {s:.4f}{ratio}"
        if m in diffs:
            lo, hi = diffs[m]["CI"]
            facts[f"diff_{m}"], facts[f"diff_{m}_ci"] = diffs[m]["difference"], [lo, hi]
            noise = " (within noise)" if lo <= 0.0 <= hi else ""
            part += f", difference {diffs[m]['difference']:+.4f} [95% CI {lo:+.4f}, {hi:+.4f}]{noise}"
        parts.append(part)
    facts["beats_mostpop"] = gream["recall@10"] > 2 * pop["recall@10"]
    facts["reached"] = bool(ahead and converged and facts["all_users"] and facts["beats_mostpop"])
    if not facts["all_users"]:
        status = f"NOT assessed - only {users} of {test_users} test users scored (set eval.limit=null)"
    elif not converged:
        status = f"NOT assessed - the baseline is {sas['model']}"
    else:
        status = "REACHED" if facts["reached"] else "NOT reached"
    text = (f"accuracy goal (GREAM >= converged SASRec on Recall@10 and NDCG@10, all test users): {status}; "
            f"{users} users: " + "; ".join(parts) + f"; MostPop Recall@10 {pop['recall@10']:.4f}")
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
        heights = np.asarray([row.get(m, 0.0) for m in METRICS])
        cis = [row.get(f"{m} CI") or [h, h] for m, h in zip(METRICS, heights, strict=True)]
        err = np.abs(np.asarray(cis).T - heights[None, :])  # (2, metrics): below, above
        ax_bar.bar(x + k * width, heights, width, yerr=err, capsize=2, label=f"{row['model']} ({row.get('users')} users)")
    ax_bar.set_xticks(x + width * (len(rows) - 1) / 2, METRICS)
    ax_bar.set_ylabel("test metric (full ranking), 95% CI")
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


def _sasrec_lines(results: Mapping[str, Any]) -> list[str]:
    """How the SASRec baseline was trained: each dropout candidate's epochs, stop and time."""
    s = results["baselines"].summary.get("SASRec", {}) if "baselines" in results else {}
    if not s.get("candidates"):
        return []
    cands = [{"dropout": c["dropout"], "valid ndcg@10": c["valid_ndcg@10"], "best_epoch": c["best_epoch"],
              "epochs": c["epochs"], "stopped_by": c["stopped_by"], "wall_s": f"{c['wall_s']:.0f}"}
             for c in s["candidates"]]
    return ["## SASRec baseline", "",
            f"Early stopping on valid NDCG@10 (patience {s.get('patience')} epochs), dropout chosen on the "
            f"validation split (chosen: {s.get('dropout')}); {s.get('wall_s', 0) / 60:.1f} min in all; "
            + ("converged (every candidate stopped by patience)." if s.get("converged")
               else "**NOT converged** (a candidate was stopped by the time cap or max_epochs)."),
            "", format_table(cands), ""]


def serve_command(results: Mapping[str, Any]) -> str | None:
    """``gream serve`` for the run's SFT model, index and dataset (None until those stages exist)."""
    if not all(k in results for k in ("data", "index", "sft")):
        return None
    indexes = sorted(Path(results["index"].path).glob("*.index.json"))
    datasets = sorted(p for p in Path(results["data"].path).iterdir() if p.is_dir())
    if not indexes or not datasets:
        return None
    return (f"gream serve --model {results['sft'].path} --index {indexes[0]} --data {datasets[0]} "
            "--port 8000")


def write_report(root: Path, results: Mapping[str, Any], config: dict) -> dict:
    """Write ``report.md``, ``report.png`` and ``metrics.json`` under ``root``; return the table."""
    root = Path(root)
    rows, differences, test_users = metric_rows(results, seed=int(config.get("seed") or 0))
    verdict, facts = goal_verdict(rows, differences, test_users)
    curves = {}
    if "sft" in results:
        curves["GREAM SFT"] = results["sft"].summary.get("loss_curve") or []
    if "baselines" in results:
        losses = results["baselines"].summary.get("SASRec", {}).get("train_loss") or []
        curves["SASRec"] = [[i + 1, v] for i, v in enumerate(losses)]
    name = root.name
    plot = plot_report(root / "report.png", rows, curves, f"GREAM quickstart: {name}")
    table = format_table(table_rows(rows)) if rows else "(no metrics: the eval stage did not run)"
    if differences:
        table += "\n\n" + format_table(difference_rows(differences))
    users = rows[0].get("users") if rows else None
    scored = (f"Scored on {users} of {test_users} test users" if test_users else f"Scored on {users} test users") \
        + " (95% CIs: percentile bootstrap over users, 2,000 resamples; differences paired by user)."

    lines = [f"# GREAM quickstart report: {name}", "",
             f"Dataset `{config.get('dataset')}`, preset `{config.get('preset')}`, seed {config.get('seed')}, "
             f"history cap {config.get('max_history')}. Leave-one-out test split, full ranking over all items, "
             "no filtering of history items.", "",
             "## Recommendation quality (test split)", "", scored, "", table, "", verdict, "", "![report](report.png)", "",
             *_sasrec_lines(results),
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
    serve = serve_command(results)
    if serve:
        lines += ["## Serve the model", "", "A recommendation service for the SFT model (OpenAPI docs at "
                  "http://127.0.0.1:8000/docs; see README, Serving):", "", "```bash", serve, "```", ""]
    report = write_text(root / "report.md", "\n".join(lines))
    out = {"table": table, "verdict": verdict, "goal": facts, "rows": rows, "differences": differences,
           "test_users": test_users, "report": str(report), "plot": str(plot)}
    write_json(root / "metrics.json", {k: v for k, v in out.items() if k != "table"})
    return out
