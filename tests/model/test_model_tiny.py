from __future__ import annotations

import json

import pytest

from gream_verl.model.tiny import build_tiny_qwen3, padded_vocab_rows, save_tiny_model, train_tokenizer


def test_tokenizer_has_qwen3_special_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|endoftext|>"
    assert {"<|im_start|>", "<|im_end|>"} <= set(tok.all_special_tokens)
    # <think> / </think> are single ordinary tokens that survive skip_special_tokens, as in Qwen3.
    for t in ("<think>", "</think>"):
        assert t not in tok.all_special_tokens
        assert len(tok(t, add_special_tokens=False).input_ids) == 1
    ids = tok("<think>why</think>done", add_special_tokens=False).input_ids
    assert tok.decode(ids, skip_special_tokens=True) == "<think>why</think>done"


def test_chat_template_renders_chatml(tiny_tokenizer):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    nothink = tiny_tokenizer.apply_chat_template(
        messages[1:], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert nothink.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    turn = tiny_tokenizer.apply_chat_template(
        [*messages[1:], {"role": "assistant", "content": "ok"}], tokenize=False
    )
    assert turn.endswith("<|im_start|>assistant\nok<|im_end|>\n")


def test_embedding_is_padded_beyond_tokenizer(tiny_tokenizer):
    model = build_tiny_qwen3(tiny_tokenizer, pad_vocab_to_multiple_of=64)
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows > len(tiny_tokenizer) and rows % 64 == 0
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    untied = build_tiny_qwen3(tiny_tokenizer, tie_word_embeddings=False)
    assert untied.get_output_embeddings().weight.data_ptr() != untied.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("n,multiple,expected", [(1, 64, 64), (63, 64, 64), (64, 64, 128), (151669, 128, 151680)])
def test_padded_vocab_rows(n, multiple, expected):
    assert padded_vocab_rows(n, multiple) == expected


def test_bad_sizes_are_clear_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_qwen3(tiny_tokenizer, hidden_size=64, heads=5)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["x"], vocab_size=100)


def test_saved_model_reloads_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = save_tiny_model(tmp_path / "tiny", ["pens and paper"], vocab_size=512)
    assert info["embedding_rows"] > info["tokenizer_size"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder renamed away
    tok = AutoTokenizer.from_pretrained(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny")
    assert len(tok) == info["tokenizer_size"] and model.config.model_type == "qwen3"
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > enc.input_ids.shape[1]
    assert int(out.max()) < model.config.vocab_size
    with pytest.raises(FileExistsError, match="tiny exists and is not an empty folder"):
        save_tiny_model(tmp_path / "tiny")


def test_cli_model_tiny(tmp_path, capsys):
    from gream_verl.cli import main

    assert main(["model", "tiny", "--out", str(tmp_path / "m"), "--hidden-size", "32", "--untied", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hidden_size"] == 32 and info["tie_word_embeddings"] is False
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    assert main(["model", "tiny", "--out", str(tmp_path / "m")]) == 1  # not empty: clear error


def test_texts_from_real_data_train_a_tokenizer(office_dir):
    from gream_verl.model.tiny import texts_from_data

    texts = texts_from_data(office_dir, limit=200)
    assert len(texts) == 200 and all(t.strip() for t in texts)
    tok = train_tokenizer(texts, vocab_size=2048)
    assert len(tok) > 1024  # real text gives many more merges than the built-in corpus
    sample = texts[0][:200]
    assert tok.decode(tok(sample, add_special_tokens=False).input_ids) == sample


def test_texts_from_missing_data_is_a_clear_error(tmp_path):
    from gream_verl.model.tiny import texts_from_data

    with pytest.raises(FileNotFoundError, match="nope"):
        texts_from_data(tmp_path / "nope")
