"""Trie-constrained beam search: every returned candidate is a distinct, valid item.

:class:`TrieLogitsProcessor` is a Hugging Face ``LogitsProcessor``. In transformers' beam
search it receives log-probabilities (``log_softmax`` is applied before the processors), so
masking to ``-inf`` keeps beam scores exact sequence log-probabilities of the allowed paths.
Each call recovers every beam's trie node from its generated suffix (beams are reordered
between steps) with one vectorised lookup per generated position, then keeps only the
children of that node, plus the end-of-sequence token where an index is complete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from gream_verl.index.trie import DEAD, IndexTrie
from gream_verl.infer.engine import Candidate, item_beam_search, item_eos_token_id

__all__ = ["Candidate", "TrieLogitsProcessor", "constrained_beam_search", "item_eos_token_id"]

# Finished hypotheses scored below this are HF's placeholders or copies of the initial
# duplicate beams (scored -1e9 by transformers), not real beam-search results.
_PLACEHOLDER_SCORE = -1.0e8

ENGINES = ("auto", "hf")  # our item decoder | transformers generate() + TrieLogitsProcessor


class TrieLogitsProcessor(LogitsProcessor):
    """Allow only continuations of a valid item index after ``prompt_length`` tokens.

    A path that left the trie (only possible for beams that already score ``-inf``) and a
    complete index both allow ``eos_token_id`` only (a complete index may also have children
    where indices differ in length).
    """

    def __init__(self, trie: IndexTrie, prompt_length: int, eos_token_id: int):
        self.trie = trie
        self.prompt_length = int(prompt_length)
        self.eos_token_id = int(eos_token_id)

    def allowed(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded allowed token ids per row and whether EOS is allowed per row."""
        node = self.trie.walk(input_ids[:, self.prompt_length :])
        tokens, valid = self.trie.children(node)
        if tokens.shape[1]:
            first = tokens[:, :1]
            fill = torch.where(valid[:, :1], first, torch.full_like(first, self.eos_token_id))
            tokens = torch.where(valid, tokens, fill)  # padding repeats an allowed id: same value
        eos_ok = self.trie.is_terminal(node) | (node == DEAD) | (~valid).all(dim=1)
        return tokens, eos_ok

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        tokens, eos_ok = self.allowed(input_ids)
        out = torch.full_like(scores, -math.inf)
        if tokens.shape[1]:
            out.scatter_(1, tokens, scores.gather(1, tokens))
        eos_col = scores[:, self.eos_token_id]
        out[:, self.eos_token_id] = torch.where(eos_ok, eos_col, out[:, self.eos_token_id])
        return out


def make_prefix_allowed_tokens_fn(trie: IndexTrie, prompt_length: int, eos_token_id: int):
    """The per-beam Python callback approach (``prefix_allowed_tokens_fn``), kept as the
    reference the vectorised processor is tested and benchmarked against. Slow by design."""
    children: dict[int, list[int]] = {}
    start = trie.child_start.tolist()
    tokens = trie.child_token.tolist()
    nodes = trie.child_node.tolist()
    terminal = (trie.node_item >= 0).tolist()
    edge = {}
    for parent in range(trie.num_nodes):
        for e in range(start[parent], start[parent + 1]):
            edge[(parent, tokens[e])] = nodes[e]
        children[parent] = tokens[start[parent] : start[parent + 1]] + ([eos_token_id] if terminal[parent] else [])

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        node = 0
        for tok in input_ids[prompt_length:].tolist():
            node = edge.get((node, tok), DEAD)
            if node == DEAD:
                return [eos_token_id]
        return children[node] or [eos_token_id]

    return allowed


def encode_prompts(tokenizer, prompts: Sequence[str], device=None) -> dict[str, torch.Tensor]:
    """Left-padded batch (generation appends on the right, so prompts must end aligned)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return {k: v.to(device) if device is not None else v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def decode_candidates(
    trie: IndexTrie, generated: torch.Tensor, scores: torch.Tensor, per_prompt: int, end_ids: Sequence[int]
) -> list[list[Candidate]]:
    """Items of generated suffixes (``(prompts * per_prompt, new_tokens)``), best first,
    dropping paths that are not a complete index, placeholders and duplicates."""
    gen = generated.clone()
    for t in end_ids:
        gen[gen == t] = -1
    node = torch.zeros(gen.shape[0], dtype=torch.long, device=gen.device)
    for j in range(gen.shape[1]):
        col = gen[:, j]
        node = torch.where(col >= 0, trie.step(node, col), node)
    items = trie.item_at(node)
    score_list = scores.tolist()
    out: list[list[Candidate]] = []
    for p in range(len(items) // per_prompt):
        seen: set[str] = set()
        row: list[Candidate] = []
        for k in range(p * per_prompt, (p + 1) * per_prompt):
            item, score = items[k], score_list[k]
            if item is None or item in seen or not score > _PLACEHOLDER_SCORE:
                continue
            seen.add(item)
            row.append(Candidate(item, float(score)))
        row.sort(key=lambda c: -c.score)
        out.append(row)
    return out


@torch.no_grad()
def constrained_beam_search(
    model,
    tokenizer,
    trie: IndexTrie,
    prompts: Sequence[str],
    num_beams: int = 20,
    eos_token_id: int | None = None,
    use_callback: bool = False,
    engine: str = "auto",
    names: Sequence[str] | None = None,
) -> list[list[Candidate]]:
    """Top-``num_beams`` items for each prompt (already chat-formatted text), best first.

    ``engine="auto"`` runs :mod:`gream_verl.infer.engine` (one prefill per prompt, beams that
    share it; same rankings); ``engine="hf"`` (or ``use_callback``) runs ``generate()`` with the
    trie processor below, kept for comparison. ``names`` label prompts in error messages.

    ``generate()`` path: deterministic: ``do_sample=False`` overrides sampling defaults from a checkpoint's
    ``generation_config.json``; ``length_penalty=0`` ranks by the plain sum of log-probs.
    ``use_callback`` swaps in the slow per-beam ``prefix_allowed_tokens_fn`` (for comparison).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {' | '.join(ENGINES)}, got {engine!r}")
    if engine == "auto" and not use_callback:

        return item_beam_search(model, tokenizer, trie, prompts, num_beams, eos_token_id, names=names)
    if not prompts:
        return []
    num_beams = max(1, min(int(num_beams), trie.num_items))
    eos = item_eos_token_id(model, tokenizer) if eos_token_id is None else int(eos_token_id)
    device = next(model.parameters()).device
    enc = encode_prompts(tokenizer, prompts, device)
    prompt_length = enc["input_ids"].shape[1]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    kwargs = {}
    if use_callback:
        kwargs["prefix_allowed_tokens_fn"] = make_prefix_allowed_tokens_fn(trie, prompt_length, eos)
    else:
        kwargs["logits_processor"] = [TrieLogitsProcessor(trie.to(device), prompt_length, eos)]
    out = model.generate(
        **enc,
        do_sample=False,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        max_new_tokens=trie.max_depth + 1,
        length_penalty=0.0,
        early_stopping=False,
        eos_token_id=eos,
        pad_token_id=pad,
        temperature=None,
        top_p=None,
        top_k=None,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=num_beams == 1,
        **kwargs,
    )
    generated = out.sequences[:, prompt_length:].cpu()
    scores = getattr(out, "sequences_scores", None)
    if scores is None:  # num_beams == 1 is greedy search: sum the chosen tokens' log-probs,
        # normalised over the full vocabulary (raw logits, not the trie-masked scores)
        steps = torch.stack(out.logits, dim=1).float().log_softmax(dim=-1).cpu()
        chosen = steps.gather(2, generated[:, : steps.shape[1], None]).squeeze(2)
        keep = torch.ones_like(chosen, dtype=torch.bool)
        ended = torch.cumsum((generated[:, : steps.shape[1]] == eos).long(), dim=1)
        keep &= (ended - (generated[:, : steps.shape[1]] == eos).long()) == 0  # up to and incl. first EOS
        scores = torch.where(keep & torch.isfinite(chosen), chosen, torch.zeros_like(chosen)).sum(dim=1)
    return decode_candidates(trie, generated, scores.cpu(), num_beams, {eos, pad})
