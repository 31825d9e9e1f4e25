"""The item decoder (gream_verl/infer/engine.py) against independent oracles: the Hugging Face
forward pass of whole sequences, ``generate()`` with the trie processor, and brute-force
scoring of every item."""

import math

import numpy as np
import pytest
import torch

from gream_verl.index.tokens import ItemIndex, load_index
from gream_verl.index.trie import build_trie
from gream_verl.infer.constrained import constrained_beam_search, item_eos_token_id
from gream_verl.infer.engine import (
    CacheCopyDecoder,
    SharedPrefixDecoder,
    constrained_sample,
    encode_batch,
    item_beam_search,
    make_decoder,
)

TEXTS = ("a user who bought pens", "notebook", "guitar strings and a stand, then a yoga mat", "ink", "a b c d e f g")


def chat(tokenizer, texts):
    return [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
            for t in texts]  # fmt: skip


def sharpen(model, std: float = 0.3, seed: int = 0):
    """Random weights with a larger spread, so that item scores are far from tied."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std, generator=g)
    return model.eval()


def tiny_other(kind: str, tokenizer, seed: int = 0):
    """A tiny Llama (grouped-query attention, handled by our decode step) or Qwen2 (not in our
    list: the generic cache-copy path) over ``tokenizer``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cls, config_cls = {"llama": (LlamaForCausalLM, LlamaConfig), "qwen2": (Qwen2ForCausalLM, Qwen2Config)}[kind]
    config = config_cls(vocab_size=len(tokenizer) + 5, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(seed)
    return sharpen(cls(config), std=0.2, seed=seed)


@pytest.fixture(scope="module")
def qwen3(tiny_lm, tiny_index):
    model, tokenizer = tiny_lm
    return model, tokenizer, build_trie(tiny_index, tokenizer, model.config.vocab_size)


@pytest.fixture(scope="module")
def models(tiny_lm, tiny_index):
    """name -> (model, tokenizer, trie) for the three architectures."""
    model, tokenizer = tiny_lm
    out = {"qwen3": (model, tokenizer)}
    for kind in ("llama", "qwen2"):
        out[kind] = (tiny_other(kind, tokenizer), tokenizer)
    return {k: (m, t, build_trie(tiny_index, t, m.config.vocab_size)) for k, (m, t) in out.items()}


def last_logits(model, sequences: list[list[int]]) -> torch.Tensor:
    """Oracle: the HF forward of each whole unpadded sequence, logits at its last position."""
    with torch.no_grad():
        return torch.stack([model(torch.tensor([s])).logits[0, -1].float() for s in sequences])


def sequence_logprobs(model, prompt_ids: list[int], answers: list[list[int]]) -> list[float]:
    """Oracle: sum of full-vocabulary log-probabilities of each answer after the prompt."""
    width = max(len(a) for a in answers)
    batch = torch.tensor([prompt_ids + a + [0] * (width - len(a)) for a in answers])  # right padding: causal, harmless
    with torch.no_grad():
        logp = model(batch).logits.float().log_softmax(-1)
    n = len(prompt_ids)
    return [sum(logp[r, n - 1 + j, t].item() for j, t in enumerate(a)) for r, a in enumerate(answers)]


def assert_same_ranking(got, expected, tol=1e-4):
    """Best-first Candidate lists that agree up to float rounding: equal scores rank by rank,
    the same score for each shared item, and items present in only one list (or swapped)
    only where scores tie within ``tol``."""
    assert len(got) == len(expected)
    for row_g, row_e in zip(got, expected, strict=True):
        assert len(row_g) == len(row_e)
        assert [c.score for c in row_g] == pytest.approx([c.score for c in row_e], abs=tol)
        score_e = {c.item: c.score for c in row_e}
        last = row_e[-1].score if row_e else 0.0
        for k, c in enumerate(row_g):
            if c.item in score_e:
                assert c.score == pytest.approx(score_e[c.item], abs=tol)
            else:
                assert c.score == pytest.approx(last, abs=tol)
            if c.item != row_e[k].item:
                assert c.score == pytest.approx(row_e[k].score, abs=tol)
        assert len({c.item for c in row_g}) == len(row_g)


DECODERS = {
    "shared": SharedPrefixDecoder,
    "shared, prefill in chunks of 2 by length": lambda *a: SharedPrefixDecoder(*a, chunk=2),
    "copy": CacheCopyDecoder,
}


@pytest.mark.parametrize("kind", ["qwen3", "llama", "qwen2"])
@pytest.mark.parametrize("decoder", list(DECODERS))
def test_decode_steps_equal_the_hf_forward_of_whole_sequences(models, kind, decoder):
    model, tokenizer, _ = models[kind]
    if decoder != "copy" and kind == "qwen2":
        pytest.skip("qwen2 takes the generic path")
    prompts = chat(tokenizer, TEXTS)
    ids, mask = encode_batch(tokenizer, prompts, "cpu")
    rows = [ids[p, mask[p].bool()].tolist() for p in range(len(prompts))]
    with torch.no_grad():
        dec = DECODERS[decoder](model, ids, mask)
        assert torch.allclose(dec.first_logits.float(), last_logits(model, rows), atol=1e-4)
        rng = np.random.default_rng(0)
        paths = [[[]] for _ in rows]  # per prompt, per beam: generated tokens
        for K in (3, 4, 2):
            parent = torch.tensor(rng.integers(0, len(paths[0]), size=(len(rows), K)))
            tokens = torch.tensor(rng.integers(0, len(tokenizer), size=(len(rows), K)))
            logits = dec.step(parent, tokens)
            paths = [[paths[p][parent[p, k]] + [int(tokens[p, k])] for k in range(K)] for p in range(len(rows))]
            expected = last_logits(model, [rows[p] + paths[p][k] for p in range(len(rows)) for k in range(K)])
            assert torch.allclose(logits.reshape(-1, logits.shape[-1]).float(), expected, atol=1e-4)


def test_auto_takes_the_shared_path_for_qwen3_and_llama_only(models):
    for kind, cls in (("qwen3", SharedPrefixDecoder), ("llama", SharedPrefixDecoder), ("qwen2", CacheCopyDecoder)):
        model, tokenizer, _ = models[kind]
        ids, mask = encode_batch(tokenizer, ["hi"], "cpu")
        assert type(make_decoder(model, ids, mask)) is cls
    with pytest.raises(ValueError, match="shared-prefix decoder supports"):
        make_decoder(models["qwen2"][0], ids, mask, decoder="shared")


@pytest.mark.parametrize("kind", ["qwen3", "llama", "qwen2"])
def test_same_rankings_as_generate_on_the_tiny_index(models, kind):
    """Variable-length index (a collision level on some items), prompts of different lengths."""
    model, tokenizer, trie = models[kind]
    prompts = chat(tokenizer, TEXTS)
    for beams in (1, 12) if kind == "qwen3" else (12,):
        hf = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=beams, engine="hf")
        ours = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=beams)
        assert_same_ranking(ours, hf)
        if kind == "qwen3":  # the generic path gives the same answer on an architecture both support
            assert_same_ranking(item_beam_search(model, tokenizer, trie, prompts, beams, decoder="copy"), hf)


def exhaustive_ranking(model, tokenizer, index: ItemIndex, prompt: str, eos: int):
    """Oracle: every item scored by a full forward pass; (item, score) best first. Items that
    share a whole index count once (the first, as the trie keeps it)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    items, seen = [], set()
    for item, toks in index.tokens.items():
        if tuple(toks) not in seen:
            seen.add(tuple(toks))
            items.append(item)
    answers = [tokenizer.convert_tokens_to_ids(index.tokens[i]) + [eos] for i in items]
    scores = sequence_logprobs(model, prompt_ids, answers)
    return sorted(zip(items, scores, strict=True), key=lambda x: -x[1])


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_with_beams_covering_the_catalogue_the_ranking_is_exhaustive_scoring(models, tiny_index, kind):
    model, tokenizer, trie = models[kind]
    eos = item_eos_token_id(model, tokenizer) if kind == "qwen3" else tokenizer.eos_token_id
    assert len({len(t) for t in tiny_index.tokens.values()}) == 2  # items of different lengths
    prompts = chat(tokenizer, TEXTS[:2])
    ranked = item_beam_search(model, tokenizer, trie, prompts, num_beams=len(tiny_index) + 5, eos_token_id=eos)
    for prompt, row in zip(prompts, ranked, strict=True):
        expected = exhaustive_ranking(model, tokenizer, tiny_index, prompt, eos)
        assert len(row) == len(expected) == trie.num_items  # every item once, no placeholders
        assert_same_ranking([row], [[type(row[0])(i, s) for i, s in expected]])


@pytest.fixture(scope="module")
def office(office_dir):
    """A sharpened random Qwen3 over Office's real index, its trie, and a variable-length
    variant of the index (the collision code dropped where it is 0, so an index can end at a
    node that also has children)."""
    from gream_verl.model.tiny import build_tiny_qwen3, train_tokenizer
    from gream_verl.model.vocab import extend_vocabulary

    index = load_index(office_dir / "Office.index.reference.json")
    variable = ItemIndex({i: t[:-1] if t[-1] == "<d_0>" else t for i, t in index.tokens.items()})
    tokenizer = train_tokenizer(vocab_size=400)
    model = build_tiny_qwen3(tokenizer, seed=1)
    extend_vocabulary(model, tokenizer, index.vocabulary(), seed=0)
    sharpen(model, seed=1)
    return model, tokenizer, index, variable


def office_prompts(office_dir, index, tokenizer, n: int, max_history: int):
    from gream_verl.data.dataset import load_dataset
    from gream_verl.data.split import leave_one_out
    from gream_verl.infer.common import chat_text, seqrec_messages

    dataset = load_dataset(office_dir)
    examples = leave_one_out(dataset.sequences, "test", max_history=max_history)[:n]
    return [chat_text(tokenizer, seqrec_messages(e, dataset, index)) for e in examples]


def test_same_rankings_as_generate_on_office_variable_length(office, office_dir):
    model, tokenizer, index, variable = office
    trie = build_trie(variable, tokenizer, model.config.vocab_size)
    assert trie.max_depth == 4 and len({len(t) for t in variable.tokens.values()}) == 2
    prompts = office_prompts(office_dir, index, tokenizer, 16, max_history=4)
    hf = constrained_beam_search(model, tokenizer, trie, prompts, num_beams=20, engine="hf")
    assert_same_ranking(constrained_beam_search(model, tokenizer, trie, prompts, num_beams=20), hf)


@pytest.mark.slow
def test_same_rankings_as_generate_on_office_for_200_users(office, office_dir):
    model, tokenizer, index, _ = office
    trie = build_trie(index, tokenizer, model.config.vocab_size)
    prompts = office_prompts(office_dir, index, tokenizer, 200, max_history=5)
    for start in range(0, 200, 100):
        batch = prompts[start : start + 100]
        hf = constrained_beam_search(model, tokenizer, trie, batch, num_beams=20, engine="hf")
        ours = constrained_beam_search(model, tokenizer, trie, batch, num_beams=20)
        assert_same_ranking(ours, hf)
        assert sum([c.item for c in a] == [c.item for c in b] for a, b in zip(ours, hf, strict=True)) >= 0.95 * len(hf)


# ------------------------------------------------------------------------------- sampling


def test_samples_are_valid_items_with_their_model_logprobs_and_reproducible(qwen3, tiny_index):
    model, tokenizer, trie = qwen3
    eos = item_eos_token_id(model, tokenizer)
    prompts = chat(tokenizer, TEXTS[:3])
    runs = [constrained_sample(model, tokenizer, trie, prompts, n=6, temperature=1.3, top_p=0.9, seed=s) for s in (7, 7, 8)]
    assert [[s.item for s in r] for r in runs[0]] == [[s.item for s in r] for r in runs[1]]
    assert [[s.item for s in r] for r in runs[0]] != [[s.item for s in r] for r in runs[2]]
    for prompt, row in zip(prompts, runs[0], strict=True):
        assert len(row) == 6
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for s in row:
            assert s.token_ids == tokenizer.convert_tokens_to_ids(tiny_index.tokens[s.item]) + [eos]
            assert s.logprob == pytest.approx(sequence_logprobs(model, prompt_ids, [s.token_ids])[0], abs=1e-4)
            assert s.logprob <= 0 and s.sampling_logprob <= 0


def masked_item_probabilities(model, tokenizer, index: ItemIndex, prompt: str, eos: int, temperature: float):
    """Oracle for sampling: each item's probability when every level samples from the
    softmax(logits / T) restricted to the tokens that continue some index (plus EOS where an
    index ends), computed from the index and full forward passes, no trie."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answers = {i: tokenizer.convert_tokens_to_ids(t) + [eos] for i, t in index.tokens.items()}
    allowed: dict[tuple, set] = {}
    for a in answers.values():
        for j in range(len(a)):
            allowed.setdefault(tuple(a[:j]), set()).add(a[j])
    logits = {prefix: last_logits(model, [prompt_ids + list(prefix)])[0] for prefix in allowed}
    probs = {}
    for item, a in answers.items():
        p = 1.0
        for j, tok in enumerate(a):
            toks = sorted(allowed[tuple(a[:j])])
            dist = (logits[tuple(a[:j])][toks] / temperature).softmax(-1)
            p *= dist[toks.index(tok)].item()
        probs[item] = p
    return probs


def test_sampling_follows_the_trie_masked_tempered_distribution(qwen3, tiny_lm):
    model, tokenizer = tiny_lm
    index = ItemIndex({"x": ["<a_1>", "<b_2>"], "y": ["<a_1>", "<b_3>"], "z": ["<a_1>"], "w": ["<a_2>", "<b_2>", "<c_0>"],
                       "v": ["<a_3>"]})  # fmt: skip
    trie = build_trie(index, tokenizer, model.config.vocab_size)
    eos = item_eos_token_id(model, tokenizer)
    prompt = chat(tokenizer, TEXTS[:1])[0]
    n = 4000
    (row,) = constrained_sample(model, tokenizer, trie, [prompt], n=n, temperature=0.5, seed=0)
    expected = masked_item_probabilities(model, tokenizer, index, prompt, eos, temperature=0.5)
    counts = {i: 0 for i in index.tokens}
    for s in row:
        counts[s.item] += 1
        assert s.sampling_logprob == pytest.approx(math.log(expected[s.item]), abs=1e-4)
    total_variation = 0.5 * sum(abs(counts[i] / n - expected[i]) for i in index.tokens)
    assert total_variation < 0.03, (counts, expected)


def test_tiny_top_p_and_zero_temperature_are_greedy(qwen3):
    model, tokenizer, trie = qwen3
    prompts = chat(tokenizer, TEXTS)
    greedy = constrained_sample(model, tokenizer, trie, prompts, n=2, temperature=0.0)
    nucleus = constrained_sample(model, tokenizer, trie, prompts, n=3, top_p=1e-6, seed=3)
    for g, s in zip(greedy, nucleus, strict=True):
        assert len({x.item for x in g + s}) == 1
        assert all(x.sampling_logprob == 0.0 for x in g + s)


# ------------------------------------------------------------------------------ bad input


def test_bad_input_is_a_clear_error_before_decoding(qwen3, tiny_index):
    model, tokenizer, trie = qwen3
    with pytest.raises(ValueError, match="user u7: the prompt is empty"):
        item_beam_search(model, tokenizer, trie, ["hi", ""], names=["u1", "u7"])
    long = "word " * (model.config.max_position_embeddings + 10)
    with pytest.raises(ValueError, match=r"user u1: prompt of \d+ tokens \+ 5 answer tokens exceeds .*4096"):
        item_beam_search(model, tokenizer, trie, [long], names=["u1"])
    with pytest.raises(ValueError, match="prompt 0: prompt of"):
        constrained_sample(model, tokenizer, trie, [long], n=2)
    with pytest.raises(ValueError, match=r"not in the tokenizer \(e\.g\. \['<z_9>'\]\)"):
        build_trie(ItemIndex({"q": ["<a_1>", "<z_9>"]}), tokenizer, model.config.vocab_size)
    top = int(trie.child_token.max())
    with pytest.raises(ValueError, match=f"index token id {top} is outside the model's {top} logits"):
        saved = model.config.vocab_size
        model.config.vocab_size = top
        try:
            item_beam_search(model, tokenizer, trie, ["hi"])
        finally:
            model.config.vocab_size = saved
    with pytest.raises(ValueError, match="engine must be one of auto | hf"):
        constrained_beam_search(model, tokenizer, trie, ["hi"], engine="vllm")
    with pytest.raises(ValueError, match="n must be >= 1"):
        constrained_sample(model, tokenizer, trie, ["hi"], n=0)
    assert item_beam_search(model, tokenizer, trie, []) == [] and constrained_sample(model, tokenizer, trie, [], 3) == []


def test_more_beams_than_items_returns_every_item_once(qwen3, tiny_lm):
    model, tokenizer = tiny_lm
    index = ItemIndex({"x": ["<a_1>", "<b_2>"], "y": ["<a_1>", "<b_3>"], "z": ["<a_1>"]})
    trie = build_trie(index, tokenizer, model.config.vocab_size)
    rows = item_beam_search(model, tokenizer, trie, chat(tokenizer, TEXTS[:2]), num_beams=50)
    assert [sorted(c.item for c in r) for r in rows] == [["x", "y", "z"]] * 2


def test_prompts_as_token_ids_equal_prompts_as_text(qwen3):
    model, tokenizer, trie = qwen3
    prompts = chat(tokenizer, TEXTS[:3])
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    a = constrained_sample(model, tokenizer, trie, prompts, n=4, seed=1)
    b = constrained_sample(model, tokenizer, trie, ids, n=4, seed=1)
    assert [[s.token_ids for s in r] for r in a] == [[s.token_ids for s in r] for r in b]
