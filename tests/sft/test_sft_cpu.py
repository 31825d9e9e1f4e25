"""Real LLaMA-Factory SFT steps on CPU with a tiny vocabulary-extended Qwen3 and the
``sft/tiny_cpu.yaml`` recipe (data and model paths overridden into tmp_path)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from gream_verl.index.tokens import ItemIndex

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "sft" / "tiny_cpu.yaml"
RECORDER = Path(__file__).with_name("record_inputs.py")  # run_sft's child, recording each forward
NUM_SAMPLES = 32
INDEX = ItemIndex({f"i{k}": [f"<a_{k % 4}>", f"<b_{k % 7}>", f"<c_{k}>"] for k in range(12)})


def _samples() -> list[dict]:
    """Alpaca rows whose answer is an item index; ``#k`` marks the row's position in the file."""
    rows = []
    items = list(INDEX.tokens)
    for k in range(NUM_SAMPLES):
        history = [items[(k + j) % len(items)] for j in range(3)]
        target = items[(k + 3) % len(items)]
        rows.append(
            {
                "instruction": f"#{k} The user bought these items in order. What comes next?",
                "input": ", ".join(INDEX.string(i) for i in history),
                "output": INDEX.string(target),
            }
        )
    return rows


@pytest.fixture(scope="module")
def extended_model(tmp_path_factory) -> Path:
    from gream_verl.index.tokens import save_index
    from gream_verl.model.tiny import save_tiny_model
    from gream_verl.model.vocab import extend_checkpoint

    root = tmp_path_factory.mktemp("sft_model")
    save_tiny_model(root / "base", [r["instruction"] for r in _samples()], vocab_size=600)
    save_index(INDEX, root / "X.index.json")
    extend_checkpoint(root / "base", root / "X.index.json", root / "ext")
    return root / "ext"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft_data")
    (root / "gream_curriculum.json").write_text(json.dumps(_samples()), encoding="utf-8")
    info = {"gream_curriculum": {"file_name": "gream_curriculum.json", "formatting": "alpaca",
                                 "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}
    (root / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return root


@pytest.fixture
def recorded_inputs(monkeypatch, tmp_path) -> Path:
    """The JSON-lines file that receives every training forward's input_ids during this test."""
    from gream_verl.tasks import sft_train

    record = tmp_path / "inputs.jsonl"
    monkeypatch.setattr(sft_train, "launcher", lambda: [sys.executable, str(RECORDER), "--record-inputs", str(record)])
    return record


def _overrides(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [f"model_name_or_path={model}", f"dataset_dir={data}", f"output_dir={out}", *extra]


@pytest.mark.slow
def test_tiny_sft_trains_in_file_order_and_keeps_index_tokens(extended_model, dataset_dir, tmp_path, recorded_inputs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gream_verl.tasks.sft_train import run_sft

    out, record = tmp_path / "sft", recorded_inputs
    result = run_sft(
        RECIPE,
        _overrides(extended_model, dataset_dir, out, "max_steps=16", "save_strategy=steps", "save_steps=1000"),
        echo=False,
    )
    assert result["steps"] == 16 and result["output_dir"] == str(out)
    assert Path(result["log_history"]).is_file()
    assert result["final_loss"] < result["first_loss"] * 0.7, result

    # samples reached the model in file order (epochs repeat the file)
    base_tok = AutoTokenizer.from_pretrained(extended_model)
    seen = [int(re.search(r"#(\d+)", base_tok.decode(json.loads(line))).group(1)) for line in record.open()]
    assert len(seen) == 16 * 4
    assert seen == [k % NUM_SAMPLES for k in range(len(seen))]
    # qwen3_nothink: plain ChatML, the direct-mode target is exactly the index (no <think> block)
    first, row = base_tok.decode(json.loads(record.open().readline())), _samples()[0]
    assert first == (
        f"<|im_start|>user\n{row['instruction']}\n{row['input']}<|im_end|>\n"
        f"<|im_start|>assistant\n{row['output']}<|im_end|>\n"
    )

    # the saved checkpoint reloads with the index tokens intact
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    for t in INDEX.vocabulary():
        assert tok.convert_tokens_to_ids(t) == base_tok.convert_tokens_to_ids(t)
        assert tok(t, add_special_tokens=False).input_ids == [base_tok.convert_tokens_to_ids(t)]
    assert len(tok("<a_1><b_2><c_3>", add_special_tokens=False).input_ids) == 3
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)


@pytest.mark.slow
def test_failed_training_raises_with_the_childs_error(extended_model, dataset_dir, tmp_path):
    from gream_verl.tasks.sft_train import run_sft

    with pytest.raises(RuntimeError, match="learning_rat"):
        run_sft(RECIPE, _overrides(extended_model, dataset_dir, tmp_path / "o", "learning_rat=0.1"), echo=False)


@pytest.mark.slow
def test_group_by_length_trains_batches_of_similar_length(extended_model, tmp_path, recorded_inputs):
    from transformers import AutoTokenizer

    from gream_verl.tasks.sft_train import run_sft

    items = list(INDEX.tokens)
    rows = [{"instruction": f"#{k} Next item?", "input": ", ".join(INDEX.string(items[j % 12]) for j in range(k % 7 + 1)),
             "output": INDEX.string(items[k % 12])} for k in range(NUM_SAMPLES + 2)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"rows": {"file_name": "rows.json"}}), encoding="utf-8")
    out, record = tmp_path / "sft", recorded_inputs
    extra = ("dataset=rows", "max_samples=null", "max_steps=-1", "num_train_epochs=2", "group_by_length=true")
    result = run_sft(RECIPE, _overrides(extended_model, data, out, *extra), echo=False)

    assert result["steps"] == 2 * NUM_SAMPLES // 4  # two unrolled epochs, the 2 leftover rows dropped
    tok = AutoTokenizer.from_pretrained(extended_model)
    lines = [json.loads(line) for line in record.open()]
    seen = [int(re.search(r"#(\d+)", tok.decode(ids)).group(1)) for ids in lines]
    for epoch in (seen[:NUM_SAMPLES], seen[NUM_SAMPLES:]):
        assert len(set(epoch)) == NUM_SAMPLES
    lengths = [len(ids) for ids in lines]
    batches = [lengths[i:i + 4] for i in range(0, len(lengths), 4)]
    assert all(b == sorted(b, reverse=True) for b in batches), batches
    assert not (out / "length_grouped_data").exists()  # derived data is not kept with the checkpoint
