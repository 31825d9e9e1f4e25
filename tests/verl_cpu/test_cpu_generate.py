"""The sampling maths of the CPU rollout (gream_verl.verl_cpu.generate)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gream_verl.verl_cpu.generate import (
    AnswerFormat,
    SamplingParams,
    decode,
    filter_logits,
    generate,
    sample_next,
)

VOCAB = 48
EOS = 3
PAD = 0


def _logits(seed: int, rows: int = 3, vocab: int = 12) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 12))
def test_top_k_keeps_exactly_the_k_largest(seed, k):
    logits = _logits(seed)
    kept = torch.isfinite(filter_logits(logits, torch.full((3,), k), torch.ones(3)))
    assert kept.sum(-1).tolist() == [k] * 3
    expected = logits.topk(k, dim=-1).indices
    assert bool(kept.gather(-1, expected).all())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.05, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(seed, p):
    logits = _logits(seed)
    out = filter_logits(logits, torch.zeros(3, dtype=torch.long), torch.full((3,), p))
    probs = torch.softmax(logits, -1)
    for row in range(3):
        kept = torch.isfinite(out[row])
        mass = float(probs[row][kept].sum())
        assert mass >= min(p, 1.0) - 1e-5  # the kept set reaches p ...
        smallest = float(probs[row][kept].min())
        assert mass - smallest < p + 1e-5  # ... and is minimal: without its smallest member it would not
        assert bool(kept[logits[row].argmax()])


def test_filters_are_per_row():
    logits = _logits(1, rows=2)
    out = filter_logits(logits, torch.tensor([1, 0]), torch.tensor([1.0, 1.0]))
    assert torch.isfinite(out[0]).sum() == 1
    assert torch.isfinite(out[1]).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), temperature=st.floats(0.2, 2.0))
def test_log_probs_are_those_of_the_temperature_scaled_distribution(seed, temperature):
    logits = _logits(seed)
    t = torch.full((3,), temperature)
    tokens, log_probs = sample_next(logits, t, torch.zeros(3, dtype=torch.long), torch.ones(3),
                                    torch.Generator().manual_seed(seed))
    expected = torch.log_softmax(logits / temperature, -1).gather(-1, tokens[:, None]).squeeze(-1)
    assert torch.allclose(log_probs, expected, atol=1e-5)
    assert bool(torch.isfinite(log_probs).all())


def test_temperature_zero_is_greedy():
    logits = _logits(7)
    tokens, _ = sample_next(logits, torch.zeros(3), torch.zeros(3, dtype=torch.long), torch.ones(3))
    assert tokens.tolist() == logits.argmax(-1).tolist()


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4000, 3)
    tokens, _ = sample_next(logits, torch.ones(4000), torch.zeros(4000, dtype=torch.long), torch.ones(4000),
                            torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=3).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


@pytest.mark.parametrize(("bad", "message"), [
    (dict(max_tokens=0), "max_tokens must be >= 1, got 0"), (dict(max_tokens=4, temperature=-1), "temperature must be >= 0"),
    (dict(max_tokens=4, top_p=0.0), r"top_p must be in \(0, 1\], got 0.0"), (dict(max_tokens=4, n=0), "n must be >= 1, got 0"),
])  # fmt: skip
def test_invalid_sampling_params_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**bad)


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=PAD)
    return Qwen3ForCausalLM(config).eval()


def test_generate_respects_max_tokens_n_and_batches_mixed_prompts(model):
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]]
    params = [SamplingParams(max_tokens=4, n=2), SamplingParams(max_tokens=1), SamplingParams(max_tokens=6, temperature=0)]
    out = generate(model, prompts, params, eos_token_ids=[EOS], pad_token_id=PAD,
                   generator=torch.Generator().manual_seed(0))
    assert [len(g) for g in out] == [2, 1, 1]
    for gens, sp in zip(out, params, strict=True):
        for g in gens:
            assert 1 <= len(g.token_ids) <= sp.max_tokens
            assert len(g.log_probs) == len(g.token_ids)
            assert (g.finish_reason == "stop") == (g.token_ids[-1] == EOS)
            assert EOS not in g.token_ids[:-1]


def test_generated_log_probs_match_a_full_forward_pass(model):
    """Batched, left-padded, KV-cached decoding scores tokens as one unpadded forward pass does."""
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12]]
    params = [SamplingParams(max_tokens=5, temperature=0.7), SamplingParams(max_tokens=5, temperature=1.3)]
    out = generate(model, prompts, params, eos_token_ids=[EOS], pad_token_id=PAD,
                   generator=torch.Generator().manual_seed(3))
    for prompt, sp, (g,) in zip(prompts, params, out, strict=True):
        ids = torch.tensor([prompt + g.token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        expected = torch.log_softmax(logits / sp.temperature, -1).gather(-1, torch.tensor(g.token_ids)[:, None])
        assert torch.allclose(torch.tensor(g.log_probs), expected.squeeze(-1), atol=1e-4)


def test_greedy_generation_is_deterministic_and_matches_argmax_decoding(model):
    prompt = [5, 6, 7]
    (g,), = generate(model, [prompt], [SamplingParams(max_tokens=5, temperature=0)], [EOS], PAD)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(g.token_ids)):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert g.token_ids == ids[len(prompt):]


def test_generate_refuses_bad_input(model):
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, [[]], [SamplingParams(max_tokens=2)], [EOS], PAD)
    with pytest.raises(ValueError, match="sampling params"):
        generate(model, [[1, 2]], [], [EOS], PAD)
    assert generate(model, [], [], [EOS], PAD) == []


# --- shared prefill, dropping finished rows, constrained answers -------------------------------------

def _greedy_alone(model, prompt, max_tokens):
    (g,), = generate(model, [prompt], [SamplingParams(max_tokens=max_tokens, temperature=0)], [EOS], PAD)
    return g.token_ids


def test_shared_prompts_and_dropped_rows_decode_as_each_row_alone(model):
    """Rows that share a prompt share its prefill; rows that finish early leave the batch. Neither
    may change what a row generates: greedy rows equal their one-row decode."""
    a, b = [5, 6, 7, 8], [9, 10]
    prompts = [a, b, a, a, b]
    budgets = [6, 1, 1, 6, 1]  # 3 of 5 rows finish after one token: the batch is compacted
    out = decode(model, prompts, [SamplingParams(max_tokens=m, temperature=0) for m in budgets], [EOS], PAD)
    for prompt, budget, g in zip(prompts, budgets, out, strict=True):
        assert g.token_ids == _greedy_alone(model, prompt, budget)


class _Biased(torch.nn.Module):
    """A model whose next-token logits get ``bias`` added (steers sampling in the tests)."""

    def __init__(self, inner, bias):
        super().__init__()
        self.inner, self.bias = inner, bias

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        out.logits = out.logits + self.bias
        return out


ITEM_CODES = [[20, 30], [20, 31], [21, 32, 40], [21, 32, 41]]  # indices of different lengths
OPEN, CLOSE = (11, 12), (13,)


def _format(mode):
    import numpy as np

    from gream_verl.index.trie import build_trie_from_codes

    codes = np.array([c + [-1] * (3 - len(c)) for c in ITEM_CODES])
    trie = build_trie_from_codes(codes, [f"i{k}" for k in range(len(ITEM_CODES))], key_base=VOCAB)
    if mode == "direct":
        return AnswerFormat("direct", trie, tail_ids=(EOS,))
    return AnswerFormat("reason", trie, open_ids=OPEN, tail_ids=(*CLOSE, EOS))


def _scored_by_full_forward(model, prompt, g, temperature):
    ids = torch.tensor([prompt + g.token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(g.token_ids)[:, None]).squeeze(-1)


def test_direct_answers_are_valid_items_then_the_end_token(model):
    prompts = [[5, 6, 7], [8, 9]] * 20
    out = decode(model, prompts, [SamplingParams(max_tokens=8, temperature=1.5)] * len(prompts), [EOS], PAD,
                 torch.Generator().manual_seed(0), _format("direct"))
    seen = set()
    for prompt, g in zip(prompts, out, strict=True):
        assert g.token_ids[-1] == EOS and g.finish_reason == "stop"
        assert g.token_ids[:-1] in ITEM_CODES, g.token_ids
        seen.add(tuple(g.token_ids[:-1]))
        # log-probs are the unconstrained policy's, as verl's actor recomputes them
        assert torch.allclose(torch.tensor(g.log_probs), _scored_by_full_forward(model, prompt, g, 1.5), atol=1e-4)
    assert len(seen) > 1  # sampled, not one fixed answer


def test_reason_answers_follow_the_free_text_and_end_with_the_closing_tag(model):
    bias = torch.zeros(VOCAB)
    bias[OPEN[0]] = 4.0  # the first token of <answer> is likely, the second is left to the model
    bias[OPEN[1]] = 6.0
    bias[EOS] = -30.0  # no end token inside the free text
    steered = _Biased(model, bias)
    prompts = [[5, 6, 7]] * 30
    out = decode(steered, prompts, [SamplingParams(max_tokens=40)] * 30, [EOS], PAD,
                 torch.Generator().manual_seed(1), _format("reason"))
    answered = 0
    for g in out:
        ids = g.token_ids
        if g.finish_reason == "length":  # no <answer> within the free budget: nothing forced
            assert len(ids) == 40 - (3 + len(CLOSE) + 1)
            continue
        answered += 1
        starts = [k for k in range(len(ids) - 1) if tuple(ids[k : k + 2]) == OPEN]
        k = starts[0] + 2  # the index starts right after the first <answer>
        assert EOS not in ids[:k]
        body, tail = ids[k:-2], ids[-2:]
        assert body in ITEM_CODES and tail == [*CLOSE, EOS]
        assert torch.allclose(torch.tensor(g.log_probs), _scored_by_full_forward(steered, [5, 6, 7], g, 1.0), atol=1e-4)
    assert answered >= 20


def test_reason_rows_that_never_open_an_answer_stop_with_room_left(model):
    bias = torch.zeros(VOCAB)
    bias[[OPEN[0], EOS]] = -30.0
    steered = _Biased(model, bias)
    out = decode(steered, [[5, 6]] * 4, [SamplingParams(max_tokens=12)] * 4, [EOS], PAD,
                 torch.Generator().manual_seed(0), _format("reason"))
    for g in out:  # 12 - (deepest index 3 + </answer> + end token) = 7 free tokens, then stop
        assert g.finish_reason == "length" and len(g.token_ids) == 7


def test_answer_formats_refuse_missing_pieces():
    with pytest.raises(ValueError, match="one of"):
        AnswerFormat("beam")
    with pytest.raises(ValueError, match="trie"):
        AnswerFormat("direct")
    with pytest.raises(ValueError, match="<answer>"):
        AnswerFormat("reason", trie=_format("direct").trie, tail_ids=(EOS,))
