"""RL parquet for verl: layout, leave-one-out targets, loading with verl's RLHFDataset, curriculum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from gream_verl.data.dataset import RecDataset
from gream_verl.index.tokens import ItemIndex
from gream_verl.srpo.reward import compute_score
from gream_verl.srpo.rl_data import build_rl_data, rl_rows


def toy():
    rng = np.random.default_rng(0)
    items = [str(i) for i in range(12)]
    sequences = {f"u{u}": [str(x) for x in rng.choice(12, size=int(rng.integers(3, 9)), replace=False)] for u in range(10)}
    meta = {i: {"title": f"Item number {i}"} for i in items}
    index = ItemIndex({i: [f"<a_{int(i) % 4}>", f"<b_{int(i) // 4}>", f"<c_{int(i) % 3}>", f"<d_{int(i)}>"] for i in items})
    return RecDataset("Toy", sequences, meta, source="toy"), index


@pytest.mark.parametrize("mode", ["direct", "reason"])
def test_layout_and_targets(tmp_path, mode):
    ds, index = toy()
    summary = build_rl_data(ds, index, tmp_path, mode=mode, max_history=3)
    train = pd.read_parquet(tmp_path / "train.parquet")
    val = pd.read_parquet(tmp_path / "val.parquet")
    assert summary["train_rows"] == sum(len(s) - 3 for s in ds.sequences.values()) == len(train)
    assert len(val) == len(ds.sequences)
    assert set(train.columns) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    for _, row in val.iterrows():
        seq = ds.sequences[row.extra_info["user"]]
        assert row.reward_model["ground_truth"] == index.string(seq[-2])  # valid item s[-2]
        assert row.extra_info["split"] == "val" and row.extra_info["mode"] == mode and row.extra_info["levels"] == 4
        assert row.extra_info["history_len"] == min(3, len(seq) - 2)
        content = row.prompt[0]["content"]
        assert row.prompt[0]["role"] == "user"
        assert index.string(seq[-3]) in content and index.string(seq[-2]) not in content  # no leakage
        assert row.data_source == "gream/Toy"
        # the row's own ground truth, answered in its mode, earns reward 1
        answer = row.reward_model["ground_truth"]
        if mode == "reason":
            answer = f"<think>x</think><answer>{answer}</answer>"
        assert compute_score(row.data_source, answer, row.reward_model["ground_truth"], row.extra_info)["score"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl_data.json", "train.parquet", "val.parquet"]


def test_unknown_items_and_mode_fail_clearly():
    ds, index = toy()
    small = ItemIndex({k: v for k, v in index.tokens.items() if k != "3"})
    with pytest.raises(KeyError, match="not in the index"):
        rl_rows(ds, small, "train")
    with pytest.raises(ValueError, match="mode"):
        rl_rows(ds, index, "train", mode="chat")


def rlhf_config(tmp_path, **extra):
    return OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 4096, "truncation": "error",
                             "filter_overlong_prompts": True, "cache_dir": str(tmp_path / "cache"),
                             "filter_overlong_prompts_workers": 1, "shuffle": False, **extra})


def test_loads_with_verl_rlhf_dataset(tmp_path, tokenizer):
    pytest.importorskip("verl")
    from verl.utils.dataset.rl_dataset import RLHFDataset

    ds, index = toy()
    build_rl_data(ds, index, tmp_path, mode="reason")
    data = RLHFDataset(str(tmp_path / "train.parquet"), tokenizer, rlhf_config(tmp_path))
    assert len(data) == len(pd.read_parquet(tmp_path / "train.parquet"))
    row = data[0]
    assert row["raw_prompt"][0]["role"] == "user" and "<think>" in row["raw_prompt"][0]["content"]
    assert row["reward_model"]["ground_truth"].startswith("<a_")
    assert row["index"] == row["extra_info"]["index"] == 0


def test_curriculum_dataset_orders_easy_first(tmp_path, tokenizer):
    pytest.importorskip("verl")
    from verl.utils.dataset.rl_dataset import RLHFDataset, get_dataset_class

    ds, index = toy()
    build_rl_data(ds, index, tmp_path, max_history=20)
    cfg = rlhf_config(tmp_path, custom_cls={"path": "pkg://gream_verl.srpo.prompt_curriculum", "name": "CurriculumRLHFDataset"},
                      curriculum={"pace": 1.0, "c0": 0.01})
    cls = get_dataset_class(cfg)
    assert issubclass(cls, RLHFDataset) and cls.__name__ == "CurriculumRLHFDataset"
    data = cls(str(tmp_path / "train.parquet"), tokenizer, cfg)
    lengths = [data[i]["extra_info"]["history_len"] for i in range(len(data))]
    half = len(lengths) // 2
    assert np.mean(lengths[:half]) < np.mean(lengths[half:])
    assert sorted(lengths) == sorted(pd.read_parquet(tmp_path / "train.parquet").extra_info.map(lambda e: e["history_len"]))
    with pytest.raises(ValueError, match="shuffle=False"):
        cls(str(tmp_path / "train.parquet"), tokenizer, rlhf_config(tmp_path, shuffle=True))
    with pytest.raises(KeyError, match="nope"):
        cls(str(tmp_path / "train.parquet"), tokenizer, rlhf_config(tmp_path, curriculum={"key": "extra_info.nope"}))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=300), st.floats(0.0, 2.0), st.floats(0.01, 1.0), st.integers(0, 5))
def test_curriculum_order_is_a_permutation_respecting_competence(d, pace, c0, seed):
    from gream_verl.srpo.prompt_curriculum import competence, curriculum_order

    order = curriculum_order(d, pace, c0, seed)
    n = len(d)
    assert sorted(order.tolist()) == list(range(n))
    if n:
        # the prompt at position i is never harder than the competence allows
        rank = np.empty(n, dtype=np.int64)
        rank[np.lexsort((np.random.default_rng(seed).random(n), np.asarray(d, dtype=float)))] = np.arange(n)
        allowed = np.maximum(np.ceil(competence(np.arange(n) / n, pace, c0) * n), np.arange(n) + 1)
        assert (rank[order] < allowed).all()


def test_cli_rl_build_on_office(tmp_path, office_dir):
    from gream_verl.cli import main

    rc = main(["rl", "build", "--data", str(office_dir), "--index", str(office_dir / "Office.index.reference.json"),
               "--out", str(tmp_path), "--mode", "direct", "--max-train", "200", "--json", "max_val=50"])
    assert rc == 0
    train = pd.read_parquet(tmp_path / "train.parquet")
    val = pd.read_parquet(tmp_path / "val.parquet")
    assert (len(train), len(val)) == (200, 50)
    assert train.data_source.eq("gream/Office").all()
    assert train.reward_model.map(lambda r: r["ground_truth"].count("<")).eq(4).all()
    assert main(["rl", "build", "--data", str(office_dir), "--index", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 1
