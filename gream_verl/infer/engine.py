"""A decoder built for item indices: one prefill per prompt, trie-masked beams that share it.

Why not ``generate()``
----------------------
A direct-mode answer is a handful of tokens (an item index of 3-5 levels, then EOS) decoded
with a wide beam (20) over a closed catalogue. ``generate(num_beams=B)`` copies every prompt
``B`` times *before* the prefill (so it prefills each prompt ``B`` times) and then, at every
step, reads and reorders ``B`` copies of each prompt's KV cache, although the beams of a prompt
share all of it. Here the beams of a prompt attend to **one** copy of the prompt's cache plus
their own few generated tokens:

1. **Prefill** the left-padded batch once with the Hugging Face model (attention mask, and
   position ids ``cumsum(mask) - 1`` as ``generate()`` builds them). Its cache holds each
   layer's prompt keys/values ``(P, kv_heads, L, head_dim)``; pads are masked out later.
2. **Step** (``SharedPrefixDecoder``, Qwen3 / Llama): embed the ``(P, K)`` chosen tokens, run
   each layer's own norms, projections, Qwen3's q/k RMSNorm, RoPE at position
   ``prompt_length + t`` and MLP (the HF modules themselves, so the weights and their maths
   are the model's), and only the attention core is ours: each query scores the shared prompt
   keys ``(P, kv_heads, L)`` (grouped-query heads share a kv head) and its own beam's ``t + 1``
   generated keys, one softmax over both. Beam reordering moves only the generated keys
   ``(P, K, t, kv_heads, head_dim)``. Other architectures use ``CacheCopyDecoder``: the same
   single prefill, then the HF forward with the cache copied to ``K`` rows per prompt.
3. **Search** (``beam_search``): scores are log-probabilities normalised over the *full*
   vocabulary (``logit - logsumexp(logits)``), then masked to the trie: every beam's children
   plus EOS where an index is complete. One top-k over ``(beam x allowed)`` per prompt.

Same rankings as ``generate()``
-------------------------------
``beam_search`` follows transformers' beam search (``do_sample=False``, ``length_penalty=0``,
``early_stopping=False``, ``max_new_tokens = max_depth + 1``) step for step: the running beams
are the best ``B`` non-EOS continuations; an EOS continuation (a complete index) joins the
finished set only if it ranks among the best ``B`` of *all* continuations of that step (HF's
``top_num_beam_mask``); the answer is the best ``B`` finished sequences. HF additionally keeps
placeholder beams scored -1e9 and stops early once no running beam can beat the worst finished
one; neither changes the real results (log-probabilities only decrease). What differs is float
rounding in the attention (our softmax vs SDPA, ~1e-6), so items with near-equal scores may
swap places; ``tests/infer/test_engine.py`` checks items and scores against ``generate()``.
With ``B >= number of items`` nothing is ever pruned, so the result is the exact top-k of
exhaustive scoring.

Sampling (item answers)
-----------------------
``constrained_sample(model, tokenizer, trie, prompts, n, temperature=1.0, top_p=1.0,
seed=None, eos_token_id=None)`` draws ``n`` answers per prompt (with replacement, independent
rows sharing the prompt's prefill). At each level the model's logits are restricted to the
trie's allowed tokens (children, plus EOS at a complete index), divided by ``temperature``,
renormalised over the allowed tokens, cut to the top-``p`` nucleus and sampled
(``temperature <= 0``: greedy). It returns, per prompt, ``n`` :class:`Sample` s: ``item``,
``token_ids`` (the index tokens then EOS, as a rollout appends them to the prompt), ``logprob``
(the model's full-vocabulary log-probability of those tokens at temperature 1, the quantity a
policy gradient uses) and ``sampling_logprob`` (log-probability under the masked, tempered,
nucleus distribution actually sampled from). ``prompts`` may be chat-formatted strings or
lists of token ids (a rollout's prompt ids); ``seed`` makes the draws reproducible. verl's CPU
rollout does not call it: ``gream_verl/verl_cpu/generate.py`` decodes whole responses (free
reasoning text, then a constrained answer) and returns the per-token log-probabilities verl's
actor compares against, where this returns one per sample.

Shapes: ``P`` prompts, ``L`` padded prompt length, ``K`` beams (or samples) per prompt, ``V``
logits width, ``W`` widest trie fan-out among the current beams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gream_verl.index.trie import DEAD, IndexTrie

SHARED_PREFIX_TYPES = ("qwen3", "llama")  # model_type values our decode step is written and tested for
PREFILL_CHUNK = 16  # prompts per prefill forward, grouped by length


@dataclass
class Candidate:
    item: str
    score: float  # sequence log-probability of the item's index (and EOS)


def item_eos_token_id(model, tokenizer) -> int:
    """The token that ends an answer: the first of the model's generation EOS ids (Qwen3:
    ``<|im_end|>``), else the tokenizer's EOS."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("neither the model's generation_config nor the tokenizer defines an EOS token")
    return int(eos)


@dataclass
class Sample:
    item: str
    token_ids: list[int]  # index tokens, then EOS
    logprob: float  # model log-probability of token_ids (full vocabulary, temperature 1)
    sampling_logprob: float  # log-probability under the masked, tempered, top-p distribution sampled from


# --------------------------------------------------------------------------- inputs


def encode_batch(tokenizer, prompts: Sequence, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(input_ids, attention_mask)``, both ``(P, L)``, from strings (tokenized
    without special tokens: they are chat-formatted already) or lists of token ids."""
    if all(isinstance(p, str) for p in prompts):
        rows = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    else:
        rows = [list(map(int, p)) for p in prompts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def check_inputs(model, trie: IndexTrie, attention_mask: torch.Tensor, names: Sequence[str] | None = None) -> None:
    """Clear errors before any decoding: empty prompts, prompts that leave no room for an
    answer in the model's context, index tokens outside the model's logits."""
    lengths = attention_mask.sum(dim=1).tolist()
    label = (lambda i: f"user {names[i]}") if names is not None else (lambda i: f"prompt {i}")
    for i, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"{label(i)}: the prompt is empty (0 tokens)")
    config = model.config.get_text_config()
    limit = getattr(config, "max_position_embeddings", None)
    answer = trie.max_depth + 1
    if limit is not None:
        for i, n in enumerate(lengths):
            if n + answer > limit:
                raise ValueError(
                    f"{label(i)}: prompt of {n} tokens + {answer} answer tokens exceeds the model's context "
                    f"(max_position_embeddings={limit}); shorten the history (max_history)"
                )
    width = int(config.vocab_size)
    top = int(trie.child_token.max()) if trie.child_token.numel() else -1
    if top >= width:
        raise ValueError(f"index token id {top} is outside the model's {width} logits; extend the model's vocabulary")


# --------------------------------------------------------------------------- decoders


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """One forward over the prompts: (cache, last-position logits ``(P, V)``)."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                logits_to_keep=1)  # fmt: skip
    return out.past_key_values, out.logits[:, -1]


def _prefill_by_length(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int):
    """The prefill in chunks of ``chunk`` prompts of similar length, each padded only to its own
    longest prompt (a batch of mixed lengths otherwise spends much of its prefill on padding),
    reassembled left-aligned: per layer keys and values ``(P, kv_heads, L, head_dim)`` and the
    last-position logits ``(P, V)``. Padding slots hold zeros and are masked by the caller."""
    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    P, L = input_ids.shape
    keys: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    logits = None
    for start in range(0, P, chunk):
        rows = order[start : start + chunk]
        width = int(lengths[rows].max())
        cache, last = _prefill(model, input_ids[rows, L - width :], attention_mask[rows, L - width :])
        if logits is None:
            logits = last.new_empty((P, last.shape[-1]))
            for layer in cache.layers:
                shape = (P, layer.keys.shape[1], L, layer.keys.shape[3])
                keys.append(layer.keys.new_zeros(shape))
                values.append(layer.values.new_zeros(shape))
        logits[rows] = last
        for i, layer in enumerate(cache.layers):
            keys[i][rows, :, L - width :] = layer.keys
            values[i][rows, :, L - width :] = layer.values
    return keys, values, logits


def supports_shared_prefix(model) -> bool:
    config = model.config
    full = all(t == "full_attention" for t in (getattr(config, "layer_types", None) or ["full_attention"]))
    return config.model_type in SHARED_PREFIX_TYPES and full and hasattr(model, "model") and hasattr(model, "lm_head")


class SharedPrefixDecoder:
    """Qwen3 / Llama decode steps where ``K`` beams per prompt read one shared prompt cache.

    prompt_keys/values  per layer ``(P, kv_heads, L, head_dim)`` (RoPE applied, as HF caches them)
    pad_bias            ``(P, 1, 1, L)``: 0 on prompt tokens, -inf on left padding
    own_keys/values     ``(layers, P, K, t, kv_heads, head_dim)``: the beams' generated tokens
    """

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int = PREFILL_CHUNK):
        self.model = model
        self.prompt_keys, self.prompt_values, self.first_logits = _prefill_by_length(
            model, input_ids, attention_mask, chunk
        )
        dtype = self.prompt_keys[0].dtype
        zero = torch.zeros((), dtype=dtype, device=input_ids.device)
        self.pad_bias = torch.where(attention_mask.bool(), zero, float("-inf"))[:, None, None, :]
        self.next_position = attention_mask.sum(dim=1)  # (P,) position of the first generated token
        attn = model.model.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.kv_heads = self.prompt_keys[0].shape[1]
        self.groups = attn.num_key_value_groups
        self.scaling = attn.scaling
        P = input_ids.shape[0]
        n_layers = len(self.prompt_keys)
        empty = (n_layers, P, 1, 0, self.kv_heads, self.head_dim)
        self.own_keys = torch.zeros(empty, dtype=dtype, device=input_ids.device)
        self.own_values = torch.zeros(empty, dtype=dtype, device=input_ids.device)

    def _attend(self, q, layer: int, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """q ``(P, K, heads, d)``; keys/values ``(P, K, t, kv_heads, d)`` -> ``(P, K, heads * d)``."""
        P, K = q.shape[:2]
        G, H, d = self.groups, self.kv_heads, self.head_dim
        qg = q.view(P, K, H, G, d)
        q_shared = qg.permute(0, 2, 1, 3, 4).reshape(P, H, K * G, d)
        s_prompt = torch.matmul(q_shared, self.prompt_keys[layer].transpose(-1, -2)) * self.scaling
        s_prompt = s_prompt + self.pad_bias  # (P, H, K*G, L)
        s_own = torch.einsum("pbhgd,pbthd->phbgt", qg, keys).reshape(P, H, K * G, -1) * self.scaling
        weights = torch.cat((s_prompt, s_own), dim=-1).softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        L = s_prompt.shape[-1]
        out = torch.matmul(weights[..., :L], self.prompt_values[layer])  # (P, H, K*G, d)
        w_own = weights[..., L:].reshape(P, H, K, G, -1)
        out = out + torch.einsum("phbgt,pbthd->phbgd", w_own, values).reshape(P, H, K * G, d)
        return out.view(P, H, K, G, d).permute(0, 2, 1, 3, 4).reshape(P, K, H * G * d)

    def step(self, parent: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Beam ``k`` of prompt ``p`` continues beam ``parent[p, k]`` with ``tokens[p, k]``
        (both ``(P, K)``); returns the next logits ``(P, K, V)``."""
        inner = self.model.model
        P, K = tokens.shape
        rows = torch.arange(P, device=tokens.device)[:, None]
        own_k = self.own_keys[:, rows, parent]  # (layers, P, K, t, H, d)
        own_v = self.own_values[:, rows, parent]
        t = own_k.shape[3]
        x = inner.embed_tokens(tokens)
        position = (self.next_position + t)[:, None]  # (P, 1)
        cos, sin = inner.rotary_emb(x, position)  # (P, 1, d)
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # broadcast over (K, heads)
        new_k, new_v = [], []
        for i, layer in enumerate(inner.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(P, K, -1, self.head_dim)
            k = attn.k_proj(h).view(P, K, -1, self.head_dim)
            v = attn.v_proj(h).view(P, K, -1, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head before RoPE
                q, k = attn.q_norm(q), attn.k_norm(k)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            keys = torch.cat((own_k[i], k[:, :, None]), dim=2)
            values = torch.cat((own_v[i], v[:, :, None]), dim=2)
            new_k.append(keys)
            new_v.append(values)
            x = x + attn.o_proj(self._attend(q, i, keys, values))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.own_keys, self.own_values = torch.stack(new_k), torch.stack(new_v)
        return self.model.lm_head(inner.norm(x))


class CacheCopyDecoder:
    """Any causal LM: the same single prefill, then HF forwards with the prompt cache copied
    to ``K`` rows per prompt (``Cache.reorder_cache``). Slower, but needs nothing of the model
    beyond a cache that supports beam reordering."""

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self.model = model
        self.cache, self.first_logits = _prefill(model, input_ids, attention_mask)
        self.prompt_mask = attention_mask
        self.next_position = attention_mask.sum(dim=1)
        self.beams = 1
        self.t = 0

    def step(self, parent: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        P, K = tokens.shape
        rows = torch.arange(P, device=tokens.device)[:, None]
        self.cache.reorder_cache((rows * self.beams + parent).reshape(-1))
        self.beams = K
        self.t += 1
        mask = torch.cat((self.prompt_mask.repeat_interleave(K, dim=0),
                          torch.ones((P * K, self.t), dtype=self.prompt_mask.dtype, device=tokens.device)), dim=1)  # fmt: skip
        position = (self.next_position + self.t - 1).repeat_interleave(K)[:, None]
        out = self.model(input_ids=tokens.reshape(P * K, 1), attention_mask=mask, position_ids=position,
                         past_key_values=self.cache, use_cache=True)  # fmt: skip
        self.cache = out.past_key_values
        return out.logits[:, -1].view(P, K, -1)


def make_decoder(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder: str = "auto"):
    """``auto``: the shared-prefix decoder where the architecture allows it, else cache copies."""
    if decoder not in ("auto", "shared", "copy"):
        raise ValueError(f"decoder must be auto | shared | copy, got {decoder!r}")
    shared = decoder == "shared" or (decoder == "auto" and supports_shared_prefix(model))
    if decoder == "shared" and not supports_shared_prefix(model):
        raise ValueError(f"the shared-prefix decoder supports {SHARED_PREFIX_TYPES}, not {model.config.model_type!r}")
    return (SharedPrefixDecoder if shared else CacheCopyDecoder)(model, input_ids, attention_mask)


# --------------------------------------------------------------------------- search


def allowed_continuations(trie: IndexTrie, node: torch.Tensor, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(..., W + 1)`` each trie ``node`` (any shape) may continue with (children,
    then EOS in the last column) and whether each is allowed. DEAD nodes allow nothing."""
    shape = node.shape
    children, valid = trie.children(node.reshape(-1))
    eos_col = torch.full((children.shape[0], 1), eos, dtype=torch.long, device=node.device)
    tokens = torch.cat((children.to(node.device), eos_col), dim=1)
    ok = torch.cat((valid.to(node.device), trie.is_terminal(node.reshape(-1))[:, None]), dim=1)
    return tokens.view(*shape, -1), ok.view(*shape, -1)


def _full_vocab_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)`` at ``tokens`` only: ``(P, K, V)``, ``(P, K, C)`` -> ``(P, K, C)``."""
    return logits.float().log_softmax(dim=-1).gather(-1, tokens)  # on CPU faster than logsumexp


@torch.no_grad()
def beam_search(decoder, trie: IndexTrie, num_beams: int, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``num_beams`` finished items per prompt: trie nodes ``(P, B)`` (DEAD where fewer
    items were found) and sequence log-probabilities ``(P, B)`` (``-inf`` there), best first."""
    logits = decoder.first_logits[:, None]  # (P, 1, V)
    P = logits.shape[0]
    device = logits.device
    B = int(num_beams)
    node = torch.zeros((P, 1), dtype=torch.long, device=device)
    score = torch.zeros((P, 1), device=device)
    fin_nodes, fin_scores = [], []
    for level in range(trie.max_depth + 1):
        tokens, ok = allowed_continuations(trie, node, eos)  # (P, K, C)
        K, C = tokens.shape[1], tokens.shape[2]
        cand = torch.where(ok, score[..., None] + _full_vocab_logprobs(logits, tokens), float("-inf"))
        is_eos = torch.zeros((K, C), dtype=torch.bool, device=device)
        is_eos[:, -1] = True
        flat = cand.reshape(P, K * C)
        # finished: EOS continuations among the best B of all continuations (HF's rule)
        top_val, top_idx = flat.topk(min(B, K * C), dim=1)
        fin = is_eos.reshape(-1)[top_idx] & torch.isfinite(top_val)
        fin_nodes.append(torch.where(fin, node.gather(1, top_idx // C), DEAD))
        fin_scores.append(torch.where(fin, top_val, float("-inf")))
        # running: the best B non-EOS continuations
        running = flat.masked_fill(is_eos.reshape(-1), float("-inf"))
        run_val, run_idx = running.topk(min(B, K * C), dim=1)
        alive = torch.isfinite(run_val)
        if level == trie.max_depth or not bool(alive.any()):
            break
        parent = run_idx // C
        token = tokens.reshape(P, K * C).gather(1, run_idx)
        node = torch.where(alive, trie.step(node.gather(1, parent), token), DEAD)
        score = run_val
        logits = decoder.step(parent, token)
    nodes, scores = torch.cat(fin_nodes, dim=1), torch.cat(fin_scores, dim=1)
    best, order = scores.topk(min(B, scores.shape[1]), dim=1)
    return nodes.gather(1, order).masked_fill(~torch.isfinite(best), DEAD), best


def _setup(model, tokenizer, trie, prompts, eos_token_id, names):
    eos = item_eos_token_id(model, tokenizer) if eos_token_id is None else int(eos_token_id)
    device = next(model.parameters()).device
    input_ids, attention_mask = encode_batch(tokenizer, prompts, device)
    check_inputs(model, trie, attention_mask, names)
    return eos, input_ids, attention_mask, trie.to(device)


@torch.no_grad()
def item_beam_search(
    model,
    tokenizer,
    trie: IndexTrie,
    prompts: Sequence,
    num_beams: int = 20,
    eos_token_id: int | None = None,
    decoder: str = "auto",
    names: Sequence[str] | None = None,
) -> list:
    """Top-``num_beams`` items per prompt as ``Candidate(item, score)``, best first: valid,
    distinct, ``score`` the sequence log-probability of the index tokens and EOS. More beams
    than items returns every item once. ``names`` label prompts in error messages."""
    if int(num_beams) < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if not prompts:
        return []
    eos, input_ids, attention_mask, trie = _setup(model, tokenizer, trie, prompts, eos_token_id, names)
    dec = make_decoder(model, input_ids, attention_mask, decoder)
    nodes, scores = beam_search(dec, trie, min(int(num_beams), trie.num_items), eos)
    items = trie.item_at(nodes.reshape(-1).cpu())
    scores = scores.reshape(-1).tolist()
    width = nodes.shape[1]
    return [
        [Candidate(items[k], scores[k]) for k in range(p * width, (p + 1) * width) if items[k] is not None]
        for p in range(nodes.shape[0])
    ]


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Log-probabilities ``(rows, C)`` of the top-``p`` nucleus of ``softmax(logits)``
    (renormalised; the most likely token is always kept; -inf elsewhere)."""
    logp = logits.log_softmax(dim=-1)
    if top_p >= 1.0:
        return logp
    sorted_logp, order = logp.sort(dim=-1, descending=True)
    mass_before = sorted_logp.exp().cumsum(dim=-1) - sorted_logp.exp()
    drop_sorted = mass_before >= top_p
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf")).log_softmax(dim=-1)


@torch.no_grad()
def constrained_sample(
    model,
    tokenizer,
    trie: IndexTrie,
    prompts: Sequence,
    n: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    eos_token_id: int | None = None,
    decoder: str = "auto",
    names: Sequence[str] | None = None,
) -> list[list[Sample]]:
    """``n`` sampled valid items per prompt (see the module docstring for the distribution)."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not prompts:
        return []
    eos, input_ids, attention_mask, trie = _setup(model, tokenizer, trie, prompts, eos_token_id, names)
    dec = make_decoder(model, input_ids, attention_mask, decoder)
    device = input_ids.device
    generator = torch.Generator(device=device).manual_seed(int(seed)) if seed is not None else None
    P, n = input_ids.shape[0], int(n)
    logits = dec.first_logits[:, None].expand(P, n, -1)
    node = torch.zeros((P, n), dtype=torch.long, device=device)
    done = torch.zeros((P, n), dtype=torch.bool, device=device)
    logprob = torch.zeros((P, n), device=device)
    sampling_logprob = torch.zeros((P, n), device=device)
    chosen: list[torch.Tensor] = []
    for level in range(trie.max_depth + 1):
        tokens, ok = allowed_continuations(trie, node, eos)  # (P, n, C)
        full = _full_vocab_logprobs(logits, tokens)
        masked = torch.where(ok, logits.float().gather(-1, tokens), float("-inf")).reshape(P * n, -1)
        finished = done.reshape(-1)
        masked[finished] = float("-inf")
        masked[finished, -1] = 0.0  # finished rows make a dummy choice that is not recorded
        if float(temperature) <= 0:
            pick = masked.argmax(dim=-1, keepdim=True)
            pick_logp = torch.zeros_like(pick, dtype=torch.float)
        else:
            dist = _nucleus(masked / float(temperature), float(top_p))
            pick = torch.multinomial(dist.exp(), 1, generator=generator)
            pick_logp = dist.gather(1, pick)
        pick = pick.view(P, n)
        token = tokens.gather(2, pick[..., None]).squeeze(2)
        live = ~done
        logprob += torch.where(live, full.gather(2, pick[..., None]).squeeze(2), 0.0)
        sampling_logprob += torch.where(live, pick_logp.view(P, n), 0.0)
        chosen.append(torch.where(live, token, -1))
        ended = live & (token == eos)
        node = torch.where(live & ~ended, trie.step(node, token), node)
        done = done | ended
        if bool(done.all()) or level == trie.max_depth:
            break
        logits = dec.step(torch.arange(n, device=device).expand(P, n) if level else torch.zeros_like(node), token)
    seqs = torch.stack(chosen, dim=2).reshape(P * n, -1).tolist()
    items = trie.item_at(node.reshape(-1).cpu())
    lp, slp = logprob.reshape(-1).tolist(), sampling_logprob.reshape(-1).tolist()
    out = []
    for p in range(P):
        row = []
        for k in range(p * n, (p + 1) * n):
            row.append(Sample(items[k], [t for t in seqs[k] if t >= 0], lp[k], slp[k]))
        out.append(row)
    return out
