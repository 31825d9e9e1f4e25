import math

import pytest
import torch

from gream_verl.index.tokens import ItemIndex
from gream_verl.index.trie import build_trie
from gream_verl.infer.constrained import (
    TrieLogitsProcessor,
    constrained_beam_search,
    item_eos_token_id,
    make_prefix_allowed_tokens_fn,
)


@pytest.fixture(scope="module")
def setup(tiny_index, tiny_lm):
    model, tokenizer = tiny_lm
    trie = build_trie(tiny_index, tokenizer, model.config.vocab_size)
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in ("a user who bought pens", "notebook", "guitar strings and a stand, then a yoga mat")
    ]
    return model, tokenizer, trie, prompts


def test_processor_allows_exactly_the_callbacks_tokens(setup, tiny_index):
    model, tokenizer, trie, _ = setup
    eos = item_eos_token_id(model, tokenizer)
    prompt = [5, 6, 7]
    rows = [prompt]
    for toks in list(tiny_index.tokens.values())[:15]:
        ids = tokenizer.convert_tokens_to_ids(toks)
        rows += [prompt + ids[:j] for j in range(1, len(ids) + 1)]
    rows.append(prompt + tokenizer.convert_tokens_to_ids(["<a_0>", "<a_0>"]))  # left the trie
    width = max(len(r) for r in rows)
    # right-pad with prompt-irrelevant rows of equal length: test rows one length at a time
    callback = make_prefix_allowed_tokens_fn(trie, len(prompt), eos)
    proc = TrieLogitsProcessor(trie, len(prompt), eos)
    vocab = model.config.vocab_size
    for length in range(len(prompt), width + 1):
        batch = [r for r in rows if len(r) == length]
        if not batch:
            continue
        ids = torch.tensor(batch)
        scores = torch.log_softmax(torch.randn(len(batch), vocab), dim=-1)
        out = proc(ids, scores.clone())
        for i, r in enumerate(batch):
            allowed = set(torch.nonzero(out[i] > -math.inf).flatten().tolist())
            assert allowed == set(callback(0, torch.tensor(r)))
            kept = sorted(allowed)
            assert torch.equal(out[i, kept], scores[i, kept])  # allowed scores untouched


def test_every_candidate_is_a_distinct_valid_item(setup, tiny_index):
    model, tokenizer, trie, prompts = setup
    results = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=12)
    assert len(results) == len(prompts)
    for row in results:
        items = [c.item for c in row]
        assert len(items) == 12
        assert len(set(items)) == 12
        assert all(i in tiny_index for i in items)
        scores = [c.score for c in row]
        assert scores == sorted(scores, reverse=True)
        assert all(math.isfinite(s) and s < 0 for s in scores)


def test_same_result_as_the_per_beam_callback(setup):
    model, tokenizer, trie, prompts = setup
    fast = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=8)
    slow = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=8, use_callback=True)
    assert [[c.item for c in r] for r in fast] == [[c.item for c in r] for r in slow]
    for r_fast, r_slow in zip(fast, slow, strict=True):
        assert [c.score for c in r_fast] == pytest.approx([c.score for c in r_slow], abs=1e-4)


def test_scores_are_sequence_log_probabilities(setup, tiny_index):
    model, tokenizer, trie, prompts = setup
    best = constrained_beam_search(model, tokenizer, trie, prompts[:1], num_beams=4)[0][0]
    ids = tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False).input_ids
    answer = tokenizer.convert_tokens_to_ids(tiny_index.tokens[best.item]) + [item_eos_token_id(model, tokenizer)]
    full = torch.cat([ids, torch.tensor([answer])], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(model(full).logits[0, :-1].float(), dim=-1)
    n = ids.shape[1]
    expected = sum(logp[n - 1 + j, tok].item() for j, tok in enumerate(answer))
    assert best.score == pytest.approx(expected, abs=1e-3)


def test_more_beams_than_items_returns_each_item_once(tiny_lm):
    model, tokenizer = tiny_lm
    index = ItemIndex({"x": ["<a_1>", "<b_2>"], "y": ["<a_1>", "<b_3>"], "z": ["<a_2>", "<b_2>", "<c_0>"]})
    trie = build_trie(index, tokenizer, model.config.vocab_size)
    (row,) = constrained_beam_search(model, tokenizer, trie, ["hello"], num_beams=10)
    assert sorted(c.item for c in row) == ["x", "y", "z"]


def test_sampling_defaults_in_generation_config_are_overridden(setup):
    model, tokenizer, trie, prompts = setup
    before = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=6)
    saved = model.generation_config
    try:
        model.generation_config = saved.__class__(**{**saved.to_dict(), "do_sample": True, "temperature": 0.6, "top_k": 2})
        torch.manual_seed(123)
        after = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=6)
    finally:
        model.generation_config = saved
    assert [[c.item for c in r] for r in after] == [[c.item for c in r] for r in before]


def test_left_padding_does_not_change_a_prompts_result(setup):
    model, tokenizer, trie, prompts = setup
    alone = constrained_beam_search(model, tokenizer, trie, prompts[1:2], num_beams=6)
    batched = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=6)
    assert [c.item for c in alone[0]] == [c.item for c in batched[1]]
