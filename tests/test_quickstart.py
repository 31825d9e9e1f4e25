"""gream quickstart: configuration, data folder errors, the report, and the smoke preset end to end."""

from __future__ import annotations

import json
import re

import pytest

from gream_verl.pipeline import StageResult
from gream_verl.plots import goal_verdict, write_report
from gream_verl.quickstart import DATA_ENV, quickstart_config, resolve_data_dir

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


def test_goal_verdict():
    rows = [{"model": "GREAM (direct, SFT)", "recall@10": 0.09}, {"model": "MostPop", "recall@10": 0.01},
            {"model": "SASRec", "recall@10": 0.1}]
    text, facts = goal_verdict(rows, 0.8)
    assert facts["reached"] and "REACHED" in text and facts["ratio_to_sasrec"] == pytest.approx(0.9)
    rows[0]["recall@10"] = 0.05
    text, facts = goal_verdict(rows, 0.8)
    assert not facts["reached"] and "NOT reached" in text
    assert goal_verdict(rows[1:], 0.8)[1] == {}
    rows[2]["recall@10"] = 0.0  # tiny smoke runs: SASRec can score 0, and no ratio to it means anything
    text, facts = goal_verdict(rows, 0.8)
    assert not facts["reached"] and "not measurable" in text and "inf" not in text


def test_report_scores_baselines_on_the_evaluated_users(tmp_path):
    base = tmp_path / "baselines"
    base.mkdir()
    ranks = [50, 50, 0, 0]  # misses for the two evaluated users, hits for the others
    (base / "baselines.json").write_text(json.dumps({
        "MostPop": {**dict.fromkeys(METRICS, 0.25), "examples": 4, "ranks": ranks},
        "SASRec": {**dict.fromkeys(METRICS, 0.25), "examples": 4, "ranks": [50, 0, 50, 50]},
    }))
    results = {
        "baselines": StageResult("baselines", base, "h", {"SASRec": {"train_loss": [3.0, 2.0]}}),
        "sft": StageResult("sft", tmp_path / "sft", "h", {"loss_curve": [[1, 5.0], [2, 4.0]]}),
        "eval": StageResult("eval", tmp_path / "eval", "h", {"metrics": dict.fromkeys(METRICS, 0.5), "num_users": 2}),
    }
    out = write_report(tmp_path, results, {"dataset": "Toy", "preset": "smoke"}, 0.8)
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["MostPop"]["recall@1"] == 0.0 and rows["MostPop"]["users"] == 2  # ranks[:2], not all 4
    assert rows["SASRec"]["recall@1"] == 0.5
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report.md").read_text()
    assert "| GREAM (direct, SFT)" in text and "REACHED" in text
    assert json.loads((tmp_path / "metrics.json").read_text())["goal"]["reached"] is True


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
