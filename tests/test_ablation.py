"""gream ablate: configuration, the rows' verl overrides, the binary reward, per-user metrics, the paired
differences of the report, and (slow) the smoke ablation end to end."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from gream_verl.ablation import ablation_config, binary_exact_score, rl_overrides, sft_runs
from gream_verl.ablation_report import direct_per_user, reason_per_user, summarise
from gream_verl.config import ConfigError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_default_rows_are_the_papers_and_ours_in_order():
    cfg = ablation_config()
    assert list(cfg.sft_rows) == ["align", "reason", "d_then_r", "curriculum", "sequence", "copurchase"]
    assert list(cfg.rl_rows) == ["grpo", "residual", "srpo"]
    assert cfg.rl.start_from == "curriculum" and cfg.rl.dynamic_sampling is True
    assert cfg.sft_data.curriculum.gamma == 1.5 and cfg.sft_data.curriculum.num_epochs == 3
    assert cfg.eval.ndcg_ks == [1, 5, 10] and cfg.eval.reason.temperature == 0.7 and cfg.eval.reason.top_p == 0.9
    assert cfg.teacher == "template" and cfg.seeds == [42]


def test_smoke_preset_overrides_and_teacher_flag():
    cfg = ablation_config(preset="smoke", overrides=["runs_dir=/x", "seeds=[1,2]"], teacher="llm")
    assert cfg.runs_dir == "/x" and cfg.seeds == [1, 2] and cfg.teacher == "llm"
    assert cfg.rl.steps == 1 and cfg.data.max_users == 60
    assert cfg.rl.cpu_overrides["data.max_prompt_length"] == 1024  # the base mapping is merged, not replaced


@pytest.mark.parametrize("override, match", [
    (["rl_rows.grpo.reward=dense"], "rl_rows.grpo.reward must be one of"),
    (["rl_rows.srpo.estimator=ppo"], "rl_rows.srpo.estimator must be one of"),
    (["sft_rows.align.index=graph"], "sft_rows.align.index must be one of"),
    (["rl.start_from=nope"], "rl.start_from 'nope' is not an SFT row"),
    (["seeds=[]"], "seeds is empty"),
    (["rl.stepz=3"], "unknown key 'rl.stepz'"),
])
def test_bad_settings_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        ablation_config(overrides=override)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ablation_config(preset="huge")


def test_rl_rows_select_reward_and_estimator():
    row = OmegaConf.create({"label": "x", "reward": "binary", "estimator": "grpo"})
    o = rl_overrides(row, steps=7, dynamic_sampling=True)
    assert o["reward.custom_reward_function.path"] == "pkg://gream_verl.ablation"
    assert o["reward.custom_reward_function.name"] == "binary_exact_score"
    assert o["algorithm.adv_estimator"] == "grpo" and o["algorithm.filter_groups.enable"] is True
    assert o["trainer.total_training_steps"] == 7 == o["trainer.save_freq"]
    assert "hf_model" in o["actor_rollout_ref.actor.checkpoint.save_contents"]
    srpo = rl_overrides(OmegaConf.create({"label": "y", "reward": "residual", "estimator": "srpo"}), 3, False)
    assert srpo["reward.custom_reward_function.path"] == "pkg://gream_verl.srpo.reward"
    assert srpo["algorithm.adv_estimator"] == "srpo" and srpo["algorithm.filter_groups.enable"] is False


def test_binary_reward_gives_no_credit_for_a_prefix():
    truth = "<a_1><b_2><c_3>"
    assert binary_exact_score("gream/Office", "<a_1><b_2><c_3>", truth)["score"] == 1.0
    prefix = binary_exact_score("gream/Office", "<a_1><b_2><c_9>", truth)
    assert prefix["score"] == 0.0 and prefix["prefix_len"] == 2
    # the residual reward of the same response: (2/3) ** 0.5
    from gream_verl.srpo.reward import compute_score

    assert compute_score("gream/Office", "<a_1><b_2><c_9>", truth)["score"] == pytest.approx(math.sqrt(2 / 3))
    assert binary_exact_score("gream/Office", "garbage", truth)["score"] == 0.0


def test_curriculum_is_read_once_in_order_other_datasets_for_the_epochs():
    runs = sft_runs({"learning_rate": 1.0, "group_by_length": True}, ["gream_align", "gream_curriculum"], 3)
    assert runs[0]["dataset"] == "gream_align" and runs[0]["num_train_epochs"] == 3.0
    assert runs[1] == {"learning_rate": 1.0, "group_by_length": False, "dataset": "gream_curriculum",
                       "num_train_epochs": 1.0, "disable_shuffling": True}


def test_per_user_metrics_by_hand():
    rows = [{"user": "1", "target": "a", "predictions": ["a", "b"]},        # rank 1
            {"user": "2", "target": "c", "predictions": ["b", "b", "c"]},   # rank 2 after dedupe
            {"user": "3", "target": "z", "predictions": ["b"]}]             # absent
    d = direct_per_user(rows)
    n2 = 1 / math.log2(3)
    # user 2: R@1 0, R@5 1, R@10 1, N@1 0, N@5 n2, N@10 n2
    assert d["avg"] == pytest.approx([1.0, (2 + 2 * n2) / 6, 0.0])
    assert d["users"] == ["1", "2", "3"]
    r = reason_per_user([{"user": "1", "target": "a", "answers": [None, "b", "b", "a"]}])  # 2nd distinct answer
    assert r["pass@1"].tolist() == [0.0] and r["pass@5"].tolist() == [1.0]
    assert r["avg"] == pytest.approx([2 / 3])


def _scores(avgs):
    per = {"users": [str(i) for i in range(len(avgs))], "avg": np.asarray(avgs, float)}
    names = ("recall@1", "recall@5", "recall@10", "ndcg@1", "ndcg@5", "ndcg@10", "pass@1", "pass@5", "pass@10")
    return {**per, **{n: np.asarray(avgs, float) for n in names}}


def test_summary_differences_are_paired_over_users():
    # row b beats a by exactly 0.5 on every user: any paired resample gives +0.5
    a, b = _scores([0.0, 0.5, 0.2, 0.1]), _scores([0.5, 1.0, 0.7, 0.6])
    out = summarise({"a": {"direct": [a], "reason": [a]}, "b": {"direct": [b], "reason": [b]}}, resamples=50)
    assert "diff" not in out["a"]["direct"]
    diff = out["b"]["direct"]["diff"]
    assert diff["mean"] == pytest.approx(0.5) and diff["low"] == pytest.approx(0.5) and diff["high"] == pytest.approx(0.5)
    assert out["b"]["direct"]["avg"] == pytest.approx(0.7) and out["b"]["direct"]["std"] == 0.0


def test_summary_mean_and_std_over_seeds():
    s1, s2 = _scores([0.2, 0.4]), _scores([0.4, 0.6])  # seed means 0.3 and 0.5
    out = summarise({"a": {"direct": [s1, s2], "reason": [s1, s2]}}, resamples=20)
    assert out["a"]["direct"]["avg"] == pytest.approx(0.4)
    assert out["a"]["direct"]["std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))


@pytest.mark.slow
@pytest.mark.ablation
def test_smoke_ablation_end_to_end(tmp_path, capsys):
    """Every row on a tiny slice: 6 SFT rows, 3 RL rows through verl on CPU (1 step each)."""
    if not (DATA / "Office").is_dir() and not os.environ.get("GREAM_DATA_DIR"):
        pytest.skip("the Office data folder is not here")
    from gream_verl.ablation import run_ablation
    from gream_verl.quickstart import resolve_data_dir

    cfg = ablation_config(preset="smoke", overrides=[f"runs_dir={tmp_path}"])
    result = run_ablation(cfg, resolve_data_dir(None, None))
    report = Path(result["report"]).read_text()
    for label in ("Alignment tasks only", "Reasoning data only", "D -> R", "Mixed with curriculum",
                  "+ whole-sequence rows", "+ co-purchase index", "GRPO, binary exact reward",
                  "+ residual-sensitive reward", "SRPO"):
        assert label in report
    assert "template teacher" in report and "Instruments, Qwen3-4B, 8 GPUs, GPT-5 teacher" in report
    assert Path(result["plot"]).stat().st_size > 1000
    results = json.loads(Path(result["results"]).read_text())
    assert set(results["rl"]) == {"curriculum", "grpo", "residual", "srpo"}
    assert results["sft"]["reason"]["direct"]["diff"]["users"] == results["sft"]["reason"]["direct"]["users"] == 10
    assert re.search(r"\| rl-srpo-s42 \| [0-9.]+ \| ran \|", report)
    # resumable: a second run skips every stage
    again = run_ablation(cfg, resolve_data_dir(None, None))
    assert "| ran |" not in Path(again["report"]).read_text()
