import json

import pytest

from gream_verl.cli import main
from gream_verl.data.dataset import load_dataset
from gream_verl.data.split import leave_one_out


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_direct_writes_results_and_valid_predictions(capsys, tmp_path, tiny_data_dir, tiny_model_dir, tiny_index):
    out, preds = tmp_path / "res.json", tmp_path / "pred.jsonl"
    code, stdout, err = run_cli(
        capsys, "eval", "direct", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
        "--index", str(tiny_data_dir / "Tiny.index.json"), "--beams", "10", "--batch-size", "4", "--limit", "9",
        "--out", str(out), "--save-predictions", str(preds), "--json", "progress=false",
    )  # fmt: skip
    assert code == 0, err
    printed = json.loads(stdout)
    saved = json.loads(out.read_text())
    assert printed["metrics"] == saved["metrics"]
    assert set(saved["metrics"]) == {"recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert all(0.0 <= v <= 1.0 for v in saved["metrics"].values())
    assert saved["trie"]["items"] == len(tiny_index) - tiny_index.num_collisions
    assert saved["settings"]["beams"] == 10 and saved["settings"]["split"] == "test" and saved["num_users"] == 9
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    examples = leave_one_out(load_dataset(tiny_data_dir).sequences, "test")[:9]
    assert [r["target"] for r in rows] == [e.target for e in examples]
    hits = 0
    for r in rows:
        assert len(r["predictions"]) == 10 == len(set(r["predictions"]))
        assert all(p in tiny_index for p in r["predictions"])
        hits += r["target"] in r["predictions"][:5]
    assert saved["metrics"]["recall@5"] == pytest.approx(hits / 9)


def test_eval_direct_is_deterministic_and_batch_size_independent(capsys, tmp_path, tiny_data_dir, tiny_model_dir):
    results = []
    for bs in ("1", "5"):
        path = tmp_path / f"p{bs}.jsonl"
        code, _, err = run_cli(
            capsys, "eval", "direct", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
            "--index", str(tiny_data_dir / "Tiny.index.json"), "--beams", "5", "--batch-size", bs, "--limit", "5",
            "--split", "valid", "--out", str(tmp_path / "r.json"), "--save-predictions", str(path), "progress=false",
        )  # fmt: skip
        assert code == 0, err
        results.append([json.loads(line)["predictions"] for line in path.read_text().splitlines()])
    assert results[0] == results[1]


def test_eval_direct_bad_input_is_a_clear_error(capsys, tmp_path, tiny_data_dir, tiny_model_dir):
    code, _, err = run_cli(capsys, "eval", "direct", "--model", str(tmp_path), "--data", str(tiny_data_dir),
                           "--index", str(tiny_data_dir / "Tiny.index.json"))  # fmt: skip
    assert code == 1 and "not a model folder" in err
    small = tmp_path / "small.index.json"
    small.write_text(json.dumps({"0": ["<a_1>", "<b_2>", "<c_3>"]}))
    code, _, err = run_cli(capsys, "eval", "direct", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
                           "--index", str(small))  # fmt: skip
    assert code == 1 and "not in the index" in err
    code, _, err = run_cli(capsys, "eval", "direct", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
                           "--index", str(tiny_data_dir / "Tiny.index.json"), "beemz=3")  # fmt: skip
    assert code == 1 and "beemz" in err


def test_recommend_direct_lists_titles(capsys, tiny_data_dir, tiny_model_dir, tiny_index):
    code, stdout, err = run_cli(
        capsys, "recommend", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
        "--index", str(tiny_data_dir / "Tiny.index.json"), "--history", "1,2,3", "-k", "4", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    recs = result["recommendations"]
    assert [r["rank"] for r in recs] == [1, 2, 3, 4]
    assert len({r["item"] for r in recs}) == 4
    for r in recs:
        assert r["title"] == f"product number {r['item']}"
        assert r["index"] == tiny_index.string(r["item"])
    code, stdout, _ = run_cli(
        capsys, "recommend", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
        "--index", str(tiny_data_dir / "Tiny.index.json"), "--history", "1,2,3", "-k", "4",
    )  # fmt: skip
    assert code == 0 and "product number" in stdout and "| rank" in stdout


def test_recommend_unknown_items_are_named(capsys, tiny_data_dir, tiny_model_dir):
    code, _, err = run_cli(
        capsys, "recommend", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
        "--index", str(tiny_data_dir / "Tiny.index.json"), "--history", "1,nope,999",
    )  # fmt: skip
    assert code == 1
    assert "unknown item ids" in err and "nope" in err and "999" in err


def test_chat_template_kwargs_pass_through_and_nulls_are_dropped(tiny_lm):
    from gream_verl.infer.common import chat_text

    _, tokenizer = tiny_lm
    messages = [{"role": "user", "content": "hi"}]
    assert chat_text(tokenizer, messages, {"enable_thinking": None}) == chat_text(tokenizer, messages)
    assert chat_text(tokenizer, messages).endswith("<|im_start|>assistant\n")
    assert chat_text(tokenizer, messages, {"enable_thinking": False}).endswith("<think>\n\n</think>\n\n")


def test_eval_direct_engines_agree(capsys, tmp_path, tiny_data_dir, tiny_model_dir):
    """``engine=hf`` (generate()) and the default item decoder rank the same items."""
    runs = {}
    for engine in ("auto", "hf"):
        path = tmp_path / f"{engine}.jsonl"
        code, stdout, err = run_cli(
            capsys, "eval", "direct", "--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
            "--index", str(tiny_data_dir / "Tiny.index.json"), "--beams", "8", "--limit", "6", "--json",
            "--out", str(tmp_path / f"{engine}.json"), "--save-predictions", str(path), "progress=false", f"engine={engine}",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(stdout)["settings"]["engine"] == engine
        runs[engine] = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["predictions"] for r in runs["auto"]] == [r["predictions"] for r in runs["hf"]]
    for a, b in zip(runs["auto"], runs["hf"], strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
