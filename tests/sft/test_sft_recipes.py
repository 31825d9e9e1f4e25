"""The recipes in sft/ and the checks ``run_sft`` makes before it starts LLaMA-Factory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from gream_verl.tasks.sft_train import check_config, read_log_history, resolve_config

REPO = Path(__file__).resolve().parents[2]
RECIPES = {name: REPO / "sft" / name for name in ("qwen3_4b_gream.yaml", "tiny_cpu.yaml")}


def _recipe(name: str) -> dict:
    return yaml.safe_load(RECIPES[name].read_text(encoding="utf-8"))


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    info = {name: {"file_name": f"{name}.json"} for name in ("gream_align", "gream_reason", "gream_curriculum")}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    for name in info:
        (tmp_path / f"{name}.json").write_text("[]", encoding="utf-8")
    return tmp_path


def _tiny(data_dir: Path, **changes) -> dict:
    args = {**_recipe("tiny_cpu.yaml"), "model_name_or_path": str(data_dir), "dataset_dir": str(data_dir),
            "output_dir": str(data_dir / "out")}
    args.update(changes)
    return args


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_follow_the_gream_rules(name):
    r = _recipe(name)
    assert r["stage"] == "sft" and r["finetuning_type"] == "full"
    assert r["dataset"] == "gream_curriculum" and r["disable_shuffling"] is True
    assert r["template"] == "qwen3_nothink"  # no empty <think></think> added to direct answers
    assert r["report_to"] == "none" and r["dataset_dir"] and not r.get("resize_vocab")
    assert not any(r.get(k) for k in ("val_size", "streaming", "packing", "neat_packing"))
    assert r["num_train_epochs"] == 1.0  # the curriculum file already unrolls its epochs


def test_4b_recipe_uses_zero3_in_bf16():
    r = _recipe("qwen3_4b_gream.yaml")
    assert r["learning_rate"] == pytest.approx(5e-5) and r["bf16"] is True and r["cutoff_len"] >= 2048
    ds = json.loads((REPO / r["deepspeed"]).read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_resolve_applies_overrides_and_defaults(data_dir):
    args = resolve_config(_tiny(data_dir, report_to=None), ["max_steps=3", "learning_rate=1e-4"])
    assert args["max_steps"] == 3 and args["learning_rate"] == pytest.approx(1e-4)
    args = resolve_config({k: v for k, v in _tiny(data_dir).items() if k != "report_to"})
    assert args["report_to"] == "none"


@pytest.mark.parametrize(
    "changes,error,match",
    [
        ({"dataset_dir": None}, ValueError, "dataset_dir"),
        ({"dataset": "gream_nope"}, KeyError, "gream_nope"),
        ({"dataset": "gream_align,gream_missing"}, KeyError, "gream_missing"),
        ({"resize_vocab": True}, ValueError, "gream vocab extend"),
        ({"disable_shuffling": False}, ValueError, "disable_shuffling"),
        ({"val_size": 0.1}, ValueError, "val_size"),
        ({"packing": True}, ValueError, "packing"),
        ({"streaming": True}, ValueError, "streaming"),
        ({"model_name_or_path": "/no/such/model"}, FileNotFoundError, "does not exist"),
        ({"output_dir": None}, ValueError, "output_dir"),
    ],
)
def test_config_checks_fail_early_and_clearly(data_dir, changes, error, match):
    with pytest.raises(error, match=match):
        check_config(_tiny(data_dir, **changes))


def test_num_samples_in_dataset_info_is_rejected_for_the_curriculum(data_dir):
    info = json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8"))
    info["gream_curriculum"]["num_samples"] = 10
    (data_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(ValueError, match="num_samples"):
        check_config(_tiny(data_dir))
    check_config(_tiny(data_dir, dataset="gream_align"))


def test_config_checks_accept_hub_ids_and_non_curriculum_shuffling(data_dir):
    check_config(_tiny(data_dir, model_name_or_path="Qwen/Qwen3-4B-Instruct-2507"))
    check_config(_tiny(data_dir, dataset="gream_align,gream_reason", disable_shuffling=False))


def test_missing_dataset_file_names_the_path(data_dir):
    (data_dir / "gream_curriculum.json").unlink()
    with pytest.raises(FileNotFoundError, match="gream_curriculum.json"):
        check_config(_tiny(data_dir))


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        resolve_config(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="dataset_info.json"):
        check_config(_tiny(tmp_path))


def test_read_log_history_prefers_trainer_state(tmp_path):
    assert read_log_history(tmp_path) == ([], None)
    (tmp_path / "trainer_log.jsonl").write_text('{"loss": 2.0}\n{"loss": 1.0}\n', encoding="utf-8")
    assert read_log_history(tmp_path)[0] == [{"loss": 2.0}, {"loss": 1.0}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 3.0}]}), encoding="utf-8")
    assert read_log_history(tmp_path) == ([{"loss": 3.0}], tmp_path / "trainer_state.json")


def _llamafactory_keys() -> set[str]:
    from llamafactory.hparams import (
        DataArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )

    classes = (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments)
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


@pytest.mark.slow
def test_recipe_keys_are_llamafactory_arguments_and_a_typo_fails_parsing(data_dir):
    from llamafactory.hparams import get_train_args

    known = _llamafactory_keys()
    for name in RECIPES:
        assert set(_recipe(name)) <= known, (name, set(_recipe(name)) - known)
    get_train_args(_tiny(data_dir))  # the CPU recipe parses as is
    with pytest.raises(ValueError, match="learning_rat"):
        get_train_args(_tiny(data_dir, learning_rat=1e-3))


def test_launcher_uses_torchrun_for_several_processes(monkeypatch):
    from gream_verl.tasks.sft_train import launcher

    monkeypatch.setenv("NPROC_PER_NODE", "1")
    monkeypatch.delenv("FORCE_TORCHRUN", raising=False)
    assert "torch.distributed.run" not in launcher()
    monkeypatch.setenv("NPROC_PER_NODE", "4")
    assert launcher()[-2:] == ["torch.distributed.run", "--nproc_per_node=4"]
