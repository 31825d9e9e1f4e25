"""The tiny-model setup of the CPU recipe: SFT examples and the warm-up that gives RL a signal."""

from __future__ import annotations

import pytest
import torch

from gream_verl.verl_cpu.tiny_setup import sft_examples, warm_up


def _tokenizer_and_model():
    from gream_verl.model.tiny import build_tiny_qwen3, train_tokenizer
    from gream_verl.model.vocab import extend_vocabulary

    tokenizer = train_tokenizer(["history of items bought by a user"] * 20, vocab_size=300)
    model = build_tiny_qwen3(tokenizer, hidden_size=32, num_layers=1, heads=4, kv_heads=2, intermediate=64)
    extend_vocabulary(model, tokenizer, ["<a_1>", "<a_2>", "<b_1>", "<b_2>"])
    return tokenizer, model


ROWS = [
    {"prompt": [{"role": "user", "content": "history <a_1><b_2>"}], "reward_model": {"ground_truth": "<a_2><b_1>"}},
    {"prompt": [{"role": "user", "content": "history <a_2><b_1>"}], "reward_model": {"ground_truth": "<a_1><b_2>"}},
]


def test_sft_examples_put_the_target_after_verls_chat_prompt():
    tokenizer, _ = _tokenizer_and_model()
    for (ids, prompt_len), row in zip(sft_examples(tokenizer, ROWS), ROWS, strict=True):
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert tokenizer.decode(ids[:prompt_len]) == prompt
        assert tokenizer.decode(ids[prompt_len:]) == row["reward_model"]["ground_truth"] + "<|im_end|>"


def test_warm_up_learns_the_targets():
    tokenizer, model = _tokenizer_and_model()
    examples = sft_examples(tokenizer, ROWS)
    losses = warm_up(model, examples, tokenizer.pad_token_id, steps=60, lr=1e-2, seed=0)
    assert losses[-1] < 0.2 * losses[0]
    ids, prompt_len = examples[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, prompt_len - 1 : -1]
    assert logits.argmax(-1).tolist() == ids[prompt_len:]


def test_data_folder_comes_from_the_argument_or_gream_data_dir(tmp_path, monkeypatch):
    from gream_verl.verl_cpu.tiny_setup import resolve_data_dir

    (tmp_path / "Office").mkdir()
    (tmp_path / "Mine").mkdir()
    monkeypatch.delenv("GREAM_DATA_DIR", raising=False)
    assert resolve_data_dir(tmp_path / "Mine") == tmp_path / "Mine"
    with pytest.raises(ValueError, match="pass --data DIR .* or set GREAM_DATA_DIR"):
        resolve_data_dir()
    monkeypatch.setenv("GREAM_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path / "Office"
    assert resolve_data_dir(tmp_path / "Mine") == tmp_path / "Mine"  # the argument wins
    with pytest.raises(FileNotFoundError, match=r"dataset folder .*nowhere does not exist"):
        resolve_data_dir(tmp_path / "nowhere")


def test_cli_without_a_data_folder_says_how_to_give_one(monkeypatch, tmp_path, capsys):
    from gream_verl.verl_cpu.tiny_setup import main

    monkeypatch.delenv("GREAM_DATA_DIR", raising=False)
    with pytest.raises(SystemExit, match="2"):
        main([str(tmp_path / "out")])
    assert "set GREAM_DATA_DIR" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
