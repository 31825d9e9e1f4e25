from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.index.tokens import ItemIndex, save_index
from gream_verl.model.tiny import build_tiny_qwen3
from gream_verl.model.vocab import extend_vocabulary

INDEX = ItemIndex(
    {
        "i1": ["<a_1>", "<b_2>", "<c_3>"],
        "i2": ["<a_1>", "<b_7>", "<c_0>"],
        "i3": ["<a_20>", "<b_2>", "<c_255>", "<d_1>"],
    }
)


def _fresh(tiny_tokenizer, tied=True, multiple=64):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    model = build_tiny_qwen3(tok, tie_word_embeddings=tied, pad_vocab_to_multiple_of=multiple, hidden_size=32)
    return model, tok


def _many_tokens(n):
    return [f"<a_{i}>" for i in range(n)]


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("grow", [False, True], ids=["fits-in-padding", "matrix-grows"])
def test_extension_keeps_old_rows_and_encodes_single_ids(tiny_tokenizer, tied, grow):
    model, tok = _fresh(tiny_tokenizer, tied=tied)
    old_size, old_rows = len(tok), model.get_input_embeddings().weight.shape[0]
    old_vocab = tok.get_vocab()
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    tokens = INDEX.vocabulary() + (_many_tokens(200) if grow else [])
    tokens = list(dict.fromkeys(tokens))
    info = extend_vocabulary(model, tok, tokens, seed=1)

    assert info["tokens_added"] == len(tokens) and info["new_vocab"] == old_size + len(tokens)
    assert (info["embedding_rows"] > old_rows) == grow
    emb_in, emb_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb_in.shape[0] >= len(tok) and emb_out.shape[0] == emb_in.shape[0]
    # old vocabulary: same ids, bit-identical rows (input and output)
    assert {t: tok.get_vocab()[t] for t in old_vocab} == old_vocab
    assert torch.equal(emb_in[:old_size], old_in[:old_size])
    assert torch.equal(emb_out[:old_size], old_out[:old_size])
    assert (emb_out.data_ptr() == emb_in.data_ptr()) == tied
    # new rows: ids follow the old vocabulary, rows near the old mean, distinct, finite
    ids = tok.convert_tokens_to_ids(tokens)
    assert ids == list(range(old_size, old_size + len(tokens)))
    new_rows = emb_in[old_size : old_size + len(tokens)]
    assert torch.isfinite(emb_in).all() and torch.isfinite(emb_out).all()
    mean = old_in[:old_size].mean(0)
    assert (new_rows - mean).abs().max() < old_in[:old_size].std() * 1.0
    out_mean = old_out[:old_size].mean(0)
    assert (emb_out[old_size : old_size + len(tokens)] - out_mean).abs().max() < old_out[:old_size].std()
    assert not torch.equal(new_rows[0], new_rows[1])
    if not grow:  # untouched padding rows keep their values
        assert torch.equal(emb_in[old_size + len(tokens) :], old_in[old_size + len(tokens) :])
    for t in tokens:
        one = tok(t, add_special_tokens=False).input_ids
        assert len(one) == 1 and tok.decode(one, skip_special_tokens=True) == t
    for item in INDEX.tokens:
        s = INDEX.string(item)
        enc = tok(s, add_special_tokens=False).input_ids
        assert len(enc) == len(INDEX.tokens[item])
        assert tok.decode(enc, skip_special_tokens=True) == s
    # the model runs on the new ids
    out = model(torch.tensor([ids[:5]]))
    assert out.logits.shape[-1] == emb_in.shape[0] and torch.isfinite(out.logits).all()


def test_extension_is_seeded_and_idempotent(tiny_tokenizer):
    a, tok_a = _fresh(tiny_tokenizer)
    b, tok_b = _fresh(tiny_tokenizer)
    extend_vocabulary(a, tok_a, INDEX.vocabulary(), seed=3)
    extend_vocabulary(b, tok_b, INDEX.vocabulary(), seed=3)
    assert torch.equal(a.get_input_embeddings().weight, b.get_input_embeddings().weight)
    again = extend_vocabulary(a, tok_a, INDEX.vocabulary(), seed=3)
    assert again["tokens_added"] == 0 and again["tokens_already_present"] == len(INDEX.vocabulary())


def test_bad_tokens_are_rejected(tiny_tokenizer):
    model, tok = _fresh(tiny_tokenizer)
    with pytest.raises(ValueError, match="no tokens"):
        extend_vocabulary(model, tok, [])
    with pytest.raises(ValueError, match="spaces"):
        extend_vocabulary(model, tok, [" <a_1>"])


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 150), multiple=st.sampled_from([1, 8, 64]), tied=st.booleans())
def test_rows_cover_tokenizer_for_any_count(tiny_tokenizer, n, multiple, tied):
    model, tok = _fresh(tiny_tokenizer, tied=tied, multiple=multiple)
    old_size = len(tok)
    before = model.get_input_embeddings().weight[:old_size].detach().clone()
    info = extend_vocabulary(model, tok, _many_tokens(n), pad_to_multiple_of=multiple)
    rows = model.get_input_embeddings().weight
    assert rows.shape[0] >= old_size + n == info["new_vocab"]
    assert torch.equal(rows[:old_size], before)
    assert torch.isfinite(rows).all()


def test_cli_vocab_extend_roundtrip(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gream_verl.cli import main

    assert main(["model", "tiny", "--out", str(tmp_path / "base"), "--hidden-size", "32"]) == 0
    save_index(INDEX, tmp_path / "X.index.json")
    capsys.readouterr()
    argv = ["vocab", "extend", "--model", str(tmp_path / "base"), "--index", str(tmp_path / "X.index.json")]
    assert main([*argv, "--out", str(tmp_path / "ext"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tokens_added"] == len(INDEX.vocabulary())
    base_tok = AutoTokenizer.from_pretrained(tmp_path / "base")
    tok = AutoTokenizer.from_pretrained(tmp_path / "ext")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ext")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    assert len(tok) == info["new_vocab"] == len(base_tok) + info["tokens_added"]
    assert model.get_input_embeddings().weight.shape[0] == info["embedding_rows"]
    assert torch.equal(
        model.get_input_embeddings().weight[: len(base_tok)], base.get_input_embeddings().weight[: len(base_tok)]
    )
    assert len(tok("<a_1><b_2><c_3>", add_special_tokens=False).input_ids) == 3
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False).startswith("<|im_start|>")
    # output folder exists now: refusing to overwrite is a clear error, not a crash
    assert main([*argv, "--out", str(tmp_path / "ext")]) == 1
    assert main([*argv[:-1], str(tmp_path / "missing.json"), "--out", str(tmp_path / "ext2")]) == 1
    assert not (tmp_path / "ext2").exists()


def test_extend_checkpoint_keeps_bf16(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from gream_verl.model.checkpoint import save_pretrained_atomic
    from gream_verl.model.vocab import extend_checkpoint

    model, tok = _fresh(tiny_tokenizer)
    save_pretrained_atomic(model.to(torch.bfloat16), tok, tmp_path / "bf16")
    save_index(INDEX, tmp_path / "X.index.json")
    info = extend_checkpoint(tmp_path / "bf16", tmp_path / "X.index.json", tmp_path / "ext")
    ext = AutoModelForCausalLM.from_pretrained(tmp_path / "ext", dtype="auto")
    weight = ext.get_input_embeddings().weight
    assert weight.dtype == torch.bfloat16 and torch.isfinite(weight.float()).all()
    old = model.get_input_embeddings().weight
    assert torch.equal(weight[: info["old_vocab"]], old[: info["old_vocab"]])
    assert not torch.equal(weight[info["old_vocab"]], weight[info["old_vocab"] + 1])
