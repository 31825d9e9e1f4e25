"""``gream sft build`` end to end: files, dataset_info.json for LLaMA-Factory, the report, and
the acceptance point on Office: no valid/test item is ever a target."""

import json
import re

import pytest
from fake_openai import FakeOpenAIServer
from sft_fixtures import fake_teacher_reply, make_dataset, make_index

from gream_verl.cli import main
from gream_verl.data.dataset import load_dataset
from gream_verl.data.split import train_items
from gream_verl.index.tokens import load_index, save_index


def write_lcrec(dataset, index, folder):
    folder.mkdir()
    (folder / "Synthetic.inter.json").write_text(json.dumps(dataset.sequences))
    (folder / "Synthetic.item.json").write_text(json.dumps(dataset.items))
    save_index(index, folder / "Synthetic.index.json")
    return folder


def run_build(capsys, *args):
    assert main(["sft", "build", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def read_rows(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def lcrec(tmp_path):
    dataset = make_dataset()
    return dataset, write_lcrec(dataset, make_index(dataset), tmp_path / "data")


def test_template_build_writes_llamafactory_datasets(lcrec, tmp_path, capsys):
    dataset, data = lcrec
    out = tmp_path / "sft"
    report = run_build(capsys, "--data", str(data), "--index", str(data / "Synthetic.index.json"),
                       "--out", str(out), "curriculum.per_device_train_batch_size=2",
                       "curriculum.gradient_accumulation_steps=1", "tasks.fusedrec.max_per_user=1")
    assert "structural stand-in" in report["teacher"]
    assert report["alignment"]["per_task"]["fusedrec"] == len(dataset.sequences)
    assert "preference" in report["alignment"]["skipped"]
    assert report["reasoning"]["accepted"] == len(dataset.sequences)
    assert sum(report["alignment"]["per_template"].values()) == report["alignment"]["total"]
    epochs = report["curriculum"]["epochs"]
    assert [e["kind"] for e in epochs.values()] == ["curriculum", "curriculum", "mixed"]

    align, reason, curriculum = (read_rows(out / f"gream_{n}.json") for n in ("align", "reason", "curriculum"))
    assert len(align) == report["alignment"]["total"] and len(reason) == report["reasoning"]["accepted"]
    assert len(curriculum) == report["curriculum"]["rows"]
    assert len(curriculum) == 2 * sum(e["alignment_batches"] + e["reasoning_batches"] for e in epochs.values())
    full = json.loads((out / "build_report.json").read_text())
    assert len(full["curriculum_layout"][0]["pattern"]) == len(curriculum) // 3 // 2


@pytest.mark.slow  # importing LLaMA-Factory alone takes ~20 s on the CI machine
def test_llamafactory_reads_the_datasets(lcrec, tmp_path, capsys):
    _, data = lcrec
    out = tmp_path / "sft"
    run_build(capsys, "--data", str(data), "--index", str(data / "Synthetic.index.json"), "--out", str(out))
    align, reason, curriculum = (read_rows(out / f"gream_{n}.json") for n in ("align", "reason", "curriculum"))

    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    attrs = get_dataset_list(["gream_align", "gream_reason", "gream_curriculum"], str(out))
    for attr, rows in zip(attrs, (align, reason, curriculum), strict=True):
        assert (out / attr.dataset_name).is_file() and attr.formatting == "alpaca"
        converted = get_dataset_converter("alpaca", attr, DataArguments())(rows[0])
        assert converted["_prompt"][-1]["content"] == "\n".join(x for x in (rows[0]["instruction"], rows[0]["input"]) if x)
        assert converted["_response"] == [{"role": "assistant", "content": rows[0]["output"]}]
    import datasets  # LLaMA-Factory reads local files with the "json" builder: nulls must not break it

    loaded = datasets.load_dataset("json", data_files=str(out / "gream_curriculum.json"), split="train",
                                   cache_dir=str(tmp_path / "hf_cache"))
    assert loaded.num_rows == len(curriculum) and loaded[0]["output"] == curriculum[0]["output"]


def test_llm_build_with_preference_summaries(lcrec, tmp_path, capsys):
    dataset, data = lcrec
    with FakeOpenAIServer(reply=fake_teacher_reply) as server:
        report = run_build(capsys, "--data", str(data), "--index", str(data / "Synthetic.index.json"),
                           "--out", str(tmp_path / "sft"), "--teacher", "llm", f"teacher.base_url={server.url}",
                           "teacher.model=fake", "curriculum.enabled=false", "reasoning.max_samples=12")
    assert report["teacher"] == "llm: fake"
    assert report["alignment"]["per_task"]["preference"] == len(dataset.sequences)
    assert report["reasoning"]["requested"] == 12
    assert report["reasoning"]["accepted"] + report["reasoning"]["rejected_total"] == 12
    assert server.count == len(dataset.sequences) + 12 == report["teacher_stats"]["requests_sent"]
    assert not (tmp_path / "sft" / "gream_curriculum.json").exists()
    assert (tmp_path / "sft" / "teacher_cache").is_dir()
    info = json.loads((tmp_path / "sft" / "dataset_info.json").read_text())
    assert set(info) == {"gream_align", "gream_reason"}


def test_bad_inputs_are_clear_errors(lcrec, tmp_path, capsys):
    _, data = lcrec
    index = str(data / "Synthetic.index.json")
    assert main(["sft", "build", "--data", str(data), "--index", index, "--out", str(tmp_path / "o"), "tasks.bogus=1"]) == 1
    assert "bad config override" in capsys.readouterr().err
    assert main(["sft", "build", "--data", str(data), "--index", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 1
    assert "none.json" in capsys.readouterr().err
    assert main(["sft", "build", "--data", str(data), "--index", index, "--out", str(tmp_path / "o"), "--teacher", "llm",
                 "teacher.base_url=", "teacher.model="]) == 1
    assert "base_url" in capsys.readouterr().err
    assert not (tmp_path / "o" / "gream_align.json").exists()


@pytest.mark.slow  # ~15-30 s on a shared 2-core machine; the synthetic leak test is the fast one
def test_office_no_valid_or_test_item_is_a_target(office_dir, tmp_path, capsys):
    out = tmp_path / "office"
    report = run_build(capsys, "--data", str(office_dir), "--index", str(office_dir / "Office.index.reference.json"),
                       "--out", str(out), "curriculum.num_epochs=1", "curriculum.curriculum_epochs=1")
    assert report["alignment"]["total"] > 80000 and report["reasoning"]["accepted"] == 4905
    assert report["seconds"] < 60
    sequences = load_dataset(office_dir).sequences
    train = train_items(sequences)
    index = load_index(office_dir / "Office.index.reference.json")
    train_strings = {index.string(i) for s in train.values() for i in s}
    for name in ("align", "reason", "curriculum"):
        for row in read_rows(out / f"gream_{name}.json"):
            target = row["target_item"]
            if target is None:
                continue
            if row["user"] is not None:  # user tasks: a training position of that user, never s[-2] / s[-1]
                assert target in train[row["user"]], row
            else:  # item tasks cover training items only
                assert target in train_strings or index.string(target) in train_strings, row
            answer = re.search(r"(?:<answer>)?((?:<[a-d]_\d+>){4})(?:</answer>)?$", row["output"])
            if answer:
                assert answer.group(1) == index.string(target)
    held = {u: set(s[-2:]) - set(s[:-2]) for u, s in sequences.items()}  # items first seen in valid/test
    for row in read_rows(out / "gream_align.json"):
        if row["user"] is not None:
            assert row["target_item"] not in held[row["user"]]


def test_sft_train_calls_run_sft_lazily(monkeypatch, tmp_path, capsys):
    import sys
    import types

    calls = []
    fake = types.ModuleType("gream_verl.tasks.sft_train")
    fake.run_sft = lambda config, overrides: calls.append((config, overrides)) or {"trained": True, "config": config}
    monkeypatch.setitem(sys.modules, "gream_verl.tasks.sft_train", fake)
    assert main(["sft", "train", "recipe.yaml", "learning_rate=1e-4", "num_train_epochs=1", "--json"]) == 0
    assert calls == [("recipe.yaml", ["learning_rate=1e-4", "num_train_epochs=1"])]
    assert json.loads(capsys.readouterr().out) == {"trained": True, "config": "recipe.yaml"}


def test_preference_from_summaries_file(lcrec, tmp_path, capsys):
    _, data = lcrec
    summaries = tmp_path / "summaries.json"
    summaries.write_text(json.dumps({"u0": "Likes pens.", "u3": "Buys paper in bulk."}))
    report = run_build(capsys, "--data", str(data), "--index", str(data / "Synthetic.index.json"),
                       "--out", str(tmp_path / "sft"), f"tasks.preference.summaries_file={summaries}",
                       "reasoning.enabled=false", "curriculum.enabled=false")
    assert report["alignment"]["per_task"]["preference"] == 2
    rows = [r for r in read_rows(tmp_path / "sft" / "gream_align.json") if r["task"] == "preference"]
    assert {(r["user"], r["output"]) for r in rows} == {("u0", "Likes pens."), ("u3", "Buys paper in bulk.")}
    assert set(json.loads((tmp_path / "sft" / "dataset_info.json").read_text())) == {"gream_align"}
    assert not (tmp_path / "sft" / "gream_reason.json").exists()
    summaries.write_text(json.dumps(["not", "an", "object"]))
    assert main(["sft", "build", "--data", str(data), "--index", str(data / "Synthetic.index.json"), "--out",
                 str(tmp_path / "sft2"), f"tasks.preference.summaries_file={summaries}"]) == 1
    assert "summaries.json: expected an object" in capsys.readouterr().err


def test_interrupted_llm_build_writes_nothing_and_resumes(lcrec, tmp_path, capsys):
    dataset, data = lcrec
    out = tmp_path / "sft"
    args = ["sft", "build", "--data", str(data), "--index", str(data / "Synthetic.index.json"), "--out", str(out),
            "--teacher", "llm", "teacher.model=fake", "teacher.max_retries=0", "teacher.max_concurrency=1",
            "tasks.preference.enabled=false", "curriculum.enabled=false"]
    with FakeOpenAIServer(reply=fake_teacher_reply, fail=lambda n: 500 if n == 9 else None) as first:
        assert main([*args, f"teacher.base_url={first.url}"]) == 1
    assert "re-run to resume" in capsys.readouterr().err
    assert not (out / "gream_reason.json").exists() and not (out / "dataset_info.json").exists()
    with FakeOpenAIServer(reply=fake_teacher_reply) as second:
        report = run_build(capsys, *args[2:], f"teacher.base_url={second.url}")
    answered = len(first.received)  # 8, plus the one the worker may have started before the stop
    assert 8 <= answered < len(dataset.sequences)
    assert second.count == len(dataset.sequences) - answered == report["teacher_stats"]["requests_sent"]
    assert report["teacher_stats"]["cache_hits"] == answered
