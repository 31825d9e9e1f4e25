"""gream quickstart: configuration, data folder errors, the report, and the smoke preset end to end."""

from __future__ import annotations

import json
import re

import pytest

from gream_verl.pipeline import StageResult
from gream_verl.quickstart import DATA_ENV, quickstart_config, resolve_data_dir
from gream_verl.quickstart_report import goal_verdict, write_report

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def test_presets_merge_over_the_base_config():
    default = quickstart_config(preset="default")
    smoke = quickstart_config(preset="smoke", overrides=["sft.max_steps=3"])
    assert default.preset == "default" and smoke.preset == "smoke"
    assert smoke.data.max_users is not None and default.data.max_users is None
    assert smoke.sft.max_steps == 3
    assert smoke.sft.dataset == default.sft.dataset  # keys the preset leaves alone stay
    assert smoke.rl.enabled is False and default.rl.enabled == "auto"


def test_bad_preset_and_rl_switch_are_clear_errors():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        quickstart_config(preset="huge")
    with pytest.raises(ValueError, match="rl.enabled"):
        quickstart_config(overrides=["rl.enabled=sometimes"])


def test_missing_data_dir_says_where_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=DATA_ENV) as err:
        resolve_data_dir(str(tmp_path / "nope"), None)
    assert "amazon" in str(err.value).lower()
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_dir(None, None) == tmp_path.resolve()
    assert resolve_data_dir(None, "/somewhere/else") == tmp_path.resolve()  # env beats config


def _rows(gream, sasrec, pop=0.001, users=100, sasrec_name="SASRec (converged)"):
    return [{"model": "GREAM (direct, SFT)", "recall@10": gream, "ndcg@10": gream / 2, "users": users},
            {"model": "MostPop", "recall@10": pop, "ndcg@10": pop / 2, "users": users},
            {"model": sasrec_name, "recall@10": sasrec, "ndcg@10": sasrec / 2, "users": users}]


def test_goal_verdict_needs_all_users_a_converged_sasrec_and_both_metrics():
    text, facts = goal_verdict(_rows(0.12, 0.11), [], test_users=100)
    assert facts["reached"] and "REACHED" in text and facts["ratio_recall@10"] == pytest.approx(12 / 11)
    text, facts = goal_verdict(_rows(0.10, 0.11), [], test_users=100)
    assert not facts["reached"] and "NOT reached" in text and "(91%)" in text
    rows = _rows(0.12, 0.11)
    rows[0]["ndcg@10"] = 0.05  # ahead on Recall@10, behind on NDCG@10 (0.055)
    assert not goal_verdict(rows, [], test_users=100)[1]["reached"]
    text, facts = goal_verdict(_rows(0.12, 0.11), [], test_users=400)  # a subset of the test users
    assert not facts["reached"] and "only 100 of 400 test users" in text
    text, facts = goal_verdict(_rows(0.12, 0.11, sasrec_name="SASRec (NOT converged: time cap)"), [], 100)
    assert not facts["reached"] and "NOT assessed" in text
    assert goal_verdict(_rows(0.12, 0.11)[1:], [], 100)[1] == {}
    text, facts = goal_verdict(_rows(0.0, 0.0, pop=0.0), [], 100)  # tiny runs: no ratio to 0, no inf
    assert not facts["reached"] and "inf" not in text and facts["ratio_recall@10"] is None


def _write_run(tmp_path, gream_users, gream_ranks, baseline_users, sasrec_ranks, pop_ranks):
    """A fake run: eval predictions (ranked item lists) and baselines.json with 0-based ranks."""
    base, ev = tmp_path / "baselines", tmp_path / "eval"
    base.mkdir(parents=True)
    ev.mkdir(parents=True)
    (base / "baselines.json").write_text(json.dumps({
        "MostPop": {**dict.fromkeys(METRICS, 0.0), "examples": len(baseline_users), "users": baseline_users,
                    "ranks": pop_ranks},
        "SASRec": {**dict.fromkeys(METRICS, 0.0), "examples": len(baseline_users), "users": baseline_users,
                   "ranks": sasrec_ranks, "converged": True, "stopped_by": "patience"},
    }))
    items = [f"i{j}" for j in range(20)]
    lines = []
    for user, rank in zip(gream_users, gream_ranks, strict=True):  # rank 1-based, 0 = target not in the list
        target = items[rank - 1] if rank else "missing"
        lines.append(json.dumps({"user": user, "target": target, "predictions": items}))
    (ev / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "baselines": StageResult("baselines", base, "h", {"SASRec": {
            "train_loss": [3.0, 2.0], "patience": 20, "dropout": 0.5, "converged": False, "wall_s": 60.0,
            "candidates": [{"dropout": 0.5, "valid_ndcg@10": 0.05, "best_epoch": 2, "epochs": 2,
                            "stopped_by": "time cap", "wall_s": 60.0}]}}),
        "sft": StageResult("sft", tmp_path / "sft", "h", {"loss_curve": [[1, 5.0], [2, 4.0]]}),
        "eval": StageResult("eval", ev, "h", {"metrics": {}, "num_users": len(gream_users)}),
    }


def test_report_pairs_users_by_id_and_gives_cis_and_paired_differences(tmp_path):
    # baselines ranked users a, b, c, d; GREAM scored d and b only (in that order)
    results = _write_run(tmp_path, ["d", "b"], [1, 0], ["a", "b", "c", "d"],
                         sasrec_ranks=[0, 50, 0, 0], pop_ranks=[50, 0, 50, 50])
    out = write_report(tmp_path, results, {"dataset": "Toy", "preset": "smoke", "seed": 0})
    rows = {r["model"]: r for r in out["rows"]}
    assert set(rows) == {"GREAM (direct, SFT)", "MostPop", "SASRec (converged)"}
    # on users (d, b): GREAM hits d at rank 1, misses b; SASRec hits d, misses b; MostPop the reverse
    assert rows["GREAM (direct, SFT)"]["recall@1"] == 0.5 and rows["SASRec (converged)"]["recall@1"] == 0.5
    assert rows["MostPop"]["recall@1"] == 0.5 and all(r["users"] == 2 for r in rows.values())
    low, high = rows["MostPop"]["recall@1 CI"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    diffs = {d["metric"]: d for d in out["differences"]}
    assert set(diffs) == {"recall@10", "ndcg@10"} and diffs["recall@10"]["CI"] == [0.0, 0.0]
    assert out["test_users"] == 4 and "only 2 of 4 test users" in out["verdict"]
    assert not out["goal"]["reached"]
    text = (tmp_path / "report.md").read_text()
    assert "| GREAM (direct, SFT)" in text and "Scored on 2 of 4 test users" in text and "95% CI" in text
    assert "patience 20 epochs" in text and "**NOT converged**" in text and "| time cap" in text
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "metrics.json").read_text())["goal"]["users"] == 2


def test_report_on_all_users_reaches_the_goal_when_gream_is_ahead(tmp_path):
    users = [f"u{i}" for i in range(200)]
    gream = [1 if i % 4 == 0 else 0 for i in range(200)]  # Recall@10 0.25
    sasrec = [0 if i % 5 == 0 else 99 for i in range(200)]  # 0-based: Recall@10 0.20
    results = _write_run(tmp_path, users, gream, users, sasrec, pop_ranks=[99] * 200)
    out = write_report(tmp_path, results, {"dataset": "Toy", "preset": "default", "seed": 0})
    assert out["goal"]["reached"] and "REACHED" in out["verdict"] and out["goal"]["all_users"]
    d = out["goal"]["diff_recall@10_ci"]
    assert out["goal"]["diff_recall@10"] == pytest.approx(0.05) and d[0] < 0.05 < d[1]
    # a subset of the users must not be mistaken for all of them (a missing user is a clear error)
    results = _write_run(tmp_path / "bad", ["zz"], [1], users, sasrec, [99] * 200)
    with pytest.raises(ValueError, match="no test result for 1 users"):
        write_report(tmp_path / "bad", results, {"seed": 0})


@pytest.mark.slow
def test_smoke_preset_end_to_end_then_resumes(tmp_path, shared_data, capsys):
    from gream_verl.cli import main

    argv = ["quickstart", "--preset", "smoke", "--data-dir", str(shared_data), f"runs_dir={tmp_path}", "name=smoke"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\| GREAM \(direct, SFT\) +\|", printed) and "| SASRec" in printed and "| MostPop" in printed
    root = tmp_path / "smoke"
    assert (root / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy goal" in (root / "report.md").read_text()
    metrics = json.loads((root / "metrics.json").read_text())
    assert {r["model"].split(" ")[0] for r in metrics["rows"]} == {"GREAM", "MostPop", "SASRec"}
    for row in metrics["rows"]:
        assert all(0.0 <= row[m] <= 1.0 for m in METRICS)
    stages = ["data", "baselines", "embed", "index", "model", "sft_data", "sft", "eval"]
    for stage in stages:
        assert (root / stage / ".done.json").is_file()

    assert main(argv) == 0
    printed = capsys.readouterr().out
    for stage in stages:
        assert re.search(rf"\] {stage}: up to date", printed), f"{stage} ran again"
    assert "running" not in printed


def test_report_ends_with_the_serve_command_for_the_run(tmp_path):
    from gream_verl.pipeline import StageResult
    from gream_verl.quickstart_report import serve_command

    (tmp_path / "data" / "Office").mkdir(parents=True)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "Office.index.json").write_text("{}")
    (tmp_path / "index" / "Office.index.report.json").write_text("{}")
    (tmp_path / "sft").mkdir()
    results = {k: StageResult(k, tmp_path / k, "h") for k in ("data", "index", "sft")}
    assert serve_command(results) == (f"gream serve --model {tmp_path / 'sft'} --index {tmp_path / 'index' / 'Office.index.json'}"
                                      f" --data {tmp_path / 'data' / 'Office'} --port 8000")
    assert serve_command({k: v for k, v in results.items() if k != "sft"}) is None
