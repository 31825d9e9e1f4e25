"""Batched sampling with a Hugging Face causal LM: the maths behind the CPU rollout server.

Torch and transformers' cache classes (no verl import). Every row of a batch carries its own sampling parameters, so requests
that arrive together at the rollout server are decoded in one batch whatever their settings.

**Answer formats.** A row is decoded in one of three formats (:class:`AnswerFormat`):

* ``free``: plain sampling until an end token or ``max_tokens``;
* ``direct``: the response is one valid item index, then the end token. Each step allows only
  the children of the row's node in the index trie (:mod:`gream_verl.index.trie`), plus the end
  token where an index is complete;
* ``reason``: free text until the model writes ``<answer>`` (its token ids, as the tokenizer
  encodes the string), then a trie-constrained index, then ``</answer>`` and the end token
  (forced). Free text that reaches ``max_tokens - (index depth + tail)`` tokens without
  ``<answer>`` stops there (``"length"``): a truncated chain gets no forced answer, so the reward
  sees the format failure and RL learns to finish its reasoning.

Constrained steps sample from the *masked* distribution (temperature, top-k and top-p apply among
the allowed tokens; forced tokens have one allowed token).

**Log-probs** are those of the distribution verl's actor scores a response with:
``log_softmax(logits / temperature)`` over the whole vocabulary, before masking and filtering
(plain ``log_softmax`` for greedy rows), so ``rollout_log_probs`` and the actor's
``old_log_probs`` agree up to numerics even for constrained tokens.

**Speed.** Rows that share a prompt (verl sends ``rollout.n`` copies of each) are prefilled once
and their KV cache is copied to every row; prompts are prefilled in length-sorted chunks; the
KV cache is preallocated and written in place (``torch.cat`` of a growing cache costs more than
the model on CPU); finished rows are dropped from the batch as decoding goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

FORMATS = ("free", "direct", "reason")
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
PREFILL_CHUNK = 16  # unique prompts per prefill forward (length-sorted, so little padding)
COMPACT_BELOW = 0.75  # drop finished rows from the batch when fewer than this share are live

_FREE, _INDEX, _TAIL = 0, 1, 2


@dataclass(frozen=True)
class SamplingParams:
    """One request's sampling settings (vLLM names). ``temperature == 0`` means greedy;
    ``top_k <= 0`` and ``top_p >= 1`` switch those filters off."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    n: int = 1

    def __post_init__(self):
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass
class Generation:
    """One sampled continuation: response token ids, their log-probs and why it stopped
    (``"stop"``: an end token was produced and is included; ``"length"``: max_tokens reached)."""

    token_ids: list[int]
    log_probs: list[float]
    finish_reason: str


@dataclass(frozen=True)
class AnswerFormat:
    """What every row must write (see the module docstring).

    ``trie``: the index trie (``direct`` / ``reason``); ``open_ids``: token ids that end the
    free text (``reason``: ``<answer>``); ``tail_ids``: tokens forced after a complete index
    (``direct``: the end token; ``reason``: ``</answer>`` then the end token).
    """

    mode: str = "free"
    trie: object | None = None  # gream_verl.index.trie.IndexTrie
    open_ids: tuple[int, ...] = ()
    tail_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.mode not in FORMATS:
            raise ValueError(f"answer format must be one of {FORMATS}, got {self.mode!r}")
        if self.mode != "free" and (self.trie is None or not self.tail_ids):
            raise ValueError(f"answer format {self.mode!r} needs the index trie and the tail token ids")
        if self.mode == "reason" and not self.open_ids:
            raise ValueError("answer format 'reason' needs the token ids of <answer>")

    @property
    def reserve(self) -> int:
        """Tokens an answer needs after the free text: the deepest index plus the tail."""
        return 0 if self.mode == "free" else int(self.trie.max_depth) + len(self.tail_ids)


FREE = AnswerFormat()


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) the tokens outside each row's top-k and nucleus (top-p) set.

    ``logits``: (B, V), already temperature-scaled; ``top_k``: (B,) int, ``<= 0`` = off;
    ``top_p``: (B,) float, ``>= 1`` = off. The most likely token always survives.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    ranks = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    drop = (top_k[:, None] > 0) & (ranks >= top_k[:, None])
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop |= mass_before >= top_p[:, None]
    drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def sample_next(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    generator: torch.Generator | None = None,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row; returns (token ids (B,), their log-probs (B,)).

    ``allowed``: optional (B, V) bool mask; each row samples among its allowed tokens (at least
    one per row). Rows with ``temperature == 0`` take the (allowed) argmax. Log-probs come from
    the temperature-scaled, unmasked, unfiltered distribution (see the module docstring).
    """
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    log_probs = torch.log_softmax(scaled, dim=-1)
    masked = scaled if allowed is None else scaled.masked_fill(~allowed, float("-inf"))
    filtered = filter_logits(masked, top_k, top_p)
    sampled = torch.multinomial(torch.softmax(filtered, dim=-1), 1, generator=generator).squeeze(-1)
    tokens = torch.where(greedy, masked.argmax(dim=-1), sampled)
    return tokens, log_probs.gather(-1, tokens[:, None]).squeeze(-1)


DECODE_ATTENTION = "gream_cpu_decode"


def decode_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs) -> tuple[torch.Tensor, None]:
    """Attention for one new token per row, without copying the KV cache.

    ``query``: (B, Hq, 1, D); ``key`` / ``value``: (B, Hkv, L, D), possibly strided views of the
    preallocated cache; ``attention_mask``: (B, 1, 1, L) bool (True = attend) or None. Grouped
    heads are handled by viewing the query as (B, Hkv, Hq / Hkv, D), where transformers' SDPA
    path would copy the cache ``Hq / Hkv`` times (``repeat_kv``) every step. Prefill (more than one
    query token) goes to SDPA. Returns (B, 1, Hq, D) like every transformers attention function.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    rows, heads, _, dim = query.shape
    groups = key.shape[1]
    q = query.reshape(rows, groups, heads // groups, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)) * (dim**-0.5 if scaling is None else scaling)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask.reshape(rows, 1, 1, -1), float("-inf"))
        else:
            scores = scores + attention_mask.reshape(rows, 1, 1, -1)
    out = torch.matmul(torch.softmax(scores.float(), dim=-1).to(value.dtype), value)
    return out.reshape(rows, 1, heads, dim), None


def use_decode_attention(model) -> None:
    """Switch ``model`` to :func:`decode_attention` (registered with transformers, masks as SDPA's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(DECODE_ATTENTION, decode_attention)
    AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)
    model.set_attn_implementation(DECODE_ATTENTION)


class _InPlaceLayer(DynamicLayer):
    """One layer's KV cache in a preallocated ``(rows, heads, capacity, head_dim)`` buffer;
    ``update`` writes new states in place and returns views of the used part."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, used: int):
        super().__init__()
        self._k, self._v, self._used = keys, values, used
        self.is_initialized = True
        self.dtype, self.device = keys.dtype, keys.device
        self._views()

    def _views(self):
        self.keys = self._k[:, :, : self._used]
        self.values = self._v[:, :, : self._used]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self._used + key_states.shape[-2]
        if end > self._k.shape[2]:
            raise RuntimeError(f"KV cache capacity {self._k.shape[2]} exceeded ({end} positions)")
        self._k[:, :, self._used : end] = key_states
        self._v[:, :, self._used : end] = value_states
        self._used = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._used

    def select_rows(self, rows: torch.Tensor) -> None:
        self._k, self._v = self._k[rows], self._v[rows]
        self._views()


def _in_place_cache(layers: list[_InPlaceLayer]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = layers
    return cache


def _prefill(model, prompts: list[list[int]], pad_token_id: int, device) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor, int]:
    """Run every unique prompt once, in length-sorted chunks. Returns per layer the left-padded
    (U, heads, W, head_dim) keys and values (W = longest prompt), and the last logits (U, V)."""
    width = max(len(p) for p in prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    last_logits = None
    for start in range(0, len(order), PREFILL_CHUNK):
        chunk = order[start : start + PREFILL_CHUNK]
        w = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), w), pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(chunk):
            ids[r, w - len(prompts[i]) :] = torch.tensor(prompts[i], dtype=torch.long)
            mask[r, w - len(prompts[i]) :] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True)
        rows = torch.tensor(chunk, device=device)
        if last_logits is None:
            last_logits = out.logits.new_empty((len(prompts), out.logits.shape[-1]), dtype=torch.float32)
        last_logits[rows] = out.logits[:, -1, :].float()
        for layer_idx, layer in enumerate(out.past_key_values.layers):
            k, v = layer.keys, layer.values
            if len(layers) <= layer_idx:
                shape = (len(prompts), k.shape[1], width, k.shape[3])
                layers.append((k.new_zeros(shape), v.new_zeros((*shape[:3], v.shape[3]))))
            layers[layer_idx][0][rows, :, width - w :] = k
            layers[layer_idx][1][rows, :, width - w :] = v
    return layers, last_logits, width


def _constraint_mask(fmt: AnswerFormat, phase: torch.Tensor, node: torch.Tensor, tail_pos: torch.Tensor,
                     vocab: int) -> torch.Tensor | None:
    """(R, V) allowed tokens: all for free rows, trie children (+ the tail's first token where an
    index is complete) for index rows, the next forced tail token for tail rows."""
    constrained = phase != _FREE
    if not bool(constrained.any()):
        return None
    allowed = torch.ones((phase.shape[0], vocab + 1), dtype=torch.bool, device=phase.device)
    index_rows = torch.nonzero(phase == _INDEX).squeeze(-1)
    tail_rows = torch.nonzero(phase == _TAIL).squeeze(-1)
    allowed[constrained] = False
    if index_rows.numel():
        sub = node[index_rows]
        tokens, valid = fmt.trie.children(sub)
        if tokens.shape[1]:
            tokens = torch.where(valid, tokens, torch.full_like(tokens, vocab))  # vocab = a scratch column
            allowed[index_rows[:, None], tokens] = True
        done = fmt.trie.is_terminal(sub)
        allowed[index_rows[done], fmt.tail_ids[0]] = True
    if tail_rows.numel():
        tail = torch.tensor(fmt.tail_ids, dtype=torch.long, device=phase.device)
        allowed[tail_rows, tail[tail_pos[tail_rows]]] = True
    return allowed[:, :vocab]


def _advance(fmt: AnswerFormat, token: torch.Tensor, sel: torch.Tensor, step: int, tokens: torch.Tensor,
             phase: torch.Tensor, node: torch.Tensor, tail_pos: torch.Tensor, stopped: torch.Tensor,
             eos: torch.Tensor, free_limit: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Move rows ``sel`` (which just sampled ``token``) through free -> index -> tail; updates the
    state tensors in place and returns which of them are done."""
    p = phase[sel]
    done = torch.zeros_like(token, dtype=torch.bool)
    # free text: an end token stops the row; in reason mode <answer> opens the index
    free = p == _FREE
    hit_eos = free & torch.isin(token, eos)
    done |= hit_eos
    if fmt.mode == "reason":
        width = len(fmt.open_ids)
        if step + 1 >= width:
            opener = torch.tensor(fmt.open_ids, dtype=torch.long, device=token.device)
            opened = free & ~hit_eos & (tokens[sel, step + 1 - width : step + 1] == opener).all(dim=-1)
        else:
            opened = torch.zeros_like(done)
        phase[sel[opened]] = _INDEX
        done |= free & ~opened & ~hit_eos & (length[sel] >= free_limit[sel])
    if fmt.mode != "free":
        # index: the tail's first token after a complete index, else one step down the trie
        index = p == _INDEX
        closing = index & (token == fmt.tail_ids[0])
        down = index & ~closing
        node[sel[down]] = fmt.trie.step(node[sel[down]], token[down])
        phase[sel[closing]] = _TAIL
        # tail: forced tokens, then done
        tail = p == _TAIL
        tail_pos[sel[closing]] = 1
        tail_pos[sel[tail]] += 1
        finished = (closing | tail) & (tail_pos[sel] >= len(fmt.tail_ids))
        done |= finished
        stopped[sel[finished]] = True
    stopped[sel[hit_eos]] = True
    return done


@torch.no_grad()
def decode(
    model,
    prompts: Sequence[Sequence[int]],
    params: Sequence[SamplingParams],
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    generator: torch.Generator | None = None,
    answer: AnswerFormat = FREE,
) -> list[Generation]:
    """One generation per row (``prompts[i]`` with ``params[i]``; ``n`` is ignored here), all
    rows decoded as one batch in the ``answer`` format. Rows with identical prompts share their
    prefill. Returns the generations in row order."""
    if len(prompts) != len(params):
        raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("cannot generate from an empty prompt")
    device = next(model.parameters()).device
    rows = len(prompts)
    unique: dict[tuple[int, ...], int] = {}
    row_prompt = torch.tensor([unique.setdefault(tuple(int(t) for t in p), len(unique)) for p in prompts], device=device)
    unique_prompts = [list(p) for p in unique]
    prompt_len = torch.tensor([len(p) for p in unique_prompts], device=device)[row_prompt]

    max_tokens = torch.tensor([sp.max_tokens for sp in params], dtype=torch.long, device=device)
    temperature = torch.tensor([sp.temperature for sp in params], dtype=torch.float32, device=device)
    top_k = torch.tensor([sp.top_k for sp in params], dtype=torch.long, device=device)
    top_p = torch.tensor([sp.top_p for sp in params], dtype=torch.float32, device=device)
    eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long, device=device)
    free_limit = max_tokens - answer.reserve if answer.mode == "reason" else max_tokens
    steps = int(max_tokens.max())

    kv, first_logits, width = _prefill(model, unique_prompts, pad_token_id, device)
    layers = []
    for k, v in kv:
        buf_k = k.new_zeros((rows, k.shape[1], width + steps, k.shape[3]))
        buf_v = v.new_zeros((rows, v.shape[1], width + steps, v.shape[3]))
        buf_k[:, :, :width] = k[row_prompt]
        buf_v[:, :, :width] = v[row_prompt]
        layers.append(_InPlaceLayer(buf_k, buf_v, width))
    del kv
    cache = _in_place_cache(layers)
    attention = torch.zeros((rows, width + steps), dtype=torch.long, device=device)
    attention[:, :width] = (torch.arange(width, device=device)[None, :] >= (width - prompt_len)[:, None]).long()

    # per-row decoding state (indexed by original row; `live` maps batch positions to rows)
    tokens = torch.full((rows, steps), pad_token_id, dtype=torch.long, device=device)
    log_probs = torch.zeros((rows, steps), dtype=torch.float32, device=device)
    length = torch.zeros(rows, dtype=torch.long, device=device)
    stopped = torch.zeros(rows, dtype=torch.bool, device=device)
    phase = torch.full((rows,), _INDEX if answer.mode == "direct" else _FREE, dtype=torch.long, device=device)
    node = torch.zeros(rows, dtype=torch.long, device=device)
    tail_pos = torch.zeros(rows, dtype=torch.long, device=device)
    running = torch.ones(rows, dtype=torch.bool, device=device)
    live = torch.arange(rows, device=device)  # batch position -> row (finished rows are dropped now and then)
    logits = first_logits[row_prompt]
    vocab = logits.shape[-1]

    for step in range(steps):
        active = running[live]
        sel = live[active]
        allowed = _constraint_mask(answer, phase[sel], node[sel], tail_pos[sel], vocab)
        token, log_prob = sample_next(logits[active], temperature[sel], top_k[sel], top_p[sel], generator, allowed)
        tokens[sel, step] = token
        log_probs[sel, step] = log_prob
        length[sel] += 1
        done = _advance(answer, token, sel, step, tokens, phase, node, tail_pos, stopped, eos, free_limit, length)
        done |= length[sel] >= max_tokens[sel]
        running[sel[done]] = False
        if not bool(running.any()):
            break
        feed = torch.full((live.shape[0],), pad_token_id, dtype=torch.long, device=device)
        feed[active] = token
        attention[live, width + step] = 1
        if float(running[live].float().mean()) < COMPACT_BELOW:
            keep = torch.nonzero(running[live]).squeeze(-1)
            for layer in layers:
                layer.select_rows(keep)
            live, feed = live[keep], feed[keep]
        out = model(input_ids=feed[:, None], attention_mask=attention[live, : width + step + 1],
                    position_ids=(prompt_len[live] + step)[:, None], past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1, :]

    token_lists = tokens.tolist()
    log_prob_lists = log_probs.tolist()
    return [
        Generation(
            token_ids=token_lists[r][: int(length[r])],
            log_probs=log_prob_lists[r][: int(length[r])],
            finish_reason="stop" if bool(stopped[r]) else "length",
        )
        for r in range(rows)
    ]


def generate(
    model,
    prompts: Sequence[Sequence[int]],
    params: Sequence[SamplingParams],
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    generator: torch.Generator | None = None,
    answer: AnswerFormat = FREE,
) -> list[list[Generation]]:
    """Sample ``params[i].n`` continuations of each prompt, all rows decoded as one batch
    (:func:`decode`). Returns, per prompt, its ``n`` generations."""
    if len(prompts) != len(params):
        raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
    owners = [i for i, sp in enumerate(params) for _ in range(sp.n)]
    flat = decode(model, [prompts[i] for i in owners], [params[i] for i in owners], eos_token_ids, pad_token_id,
                  generator, answer)
    out: list[list[Generation]] = [[] for _ in prompts]
    for i, g in zip(owners, flat, strict=True):
        out[i].append(g)
    return out


SampleBatch = Callable[[list[list[int]], list[SamplingParams]], list[Generation]]
"""The rollout server's sampling interface: one call per batch of requests, one row per request
(``prompts[i]`` token ids with ``params[i]``, ``n == 1``), one :class:`Generation` per row, in row
order, each with the response token ids, one log-prob per token and ``finish_reason``."""


def answer_format(mode: str, tokenizer, index_path: str | None, vocab_size: int, end_token_id: int) -> AnswerFormat:
    """The :class:`AnswerFormat` of ``mode`` for this tokenizer: the trie of the index at
    ``index_path`` in the tokenizer's ids, ``<answer>`` / ``</answer>`` token ids, and
    ``end_token_id`` (the chat turn's end, e.g. Qwen3's ``<|im_end|>``) as the last tail token."""
    if mode not in FORMATS:
        raise ValueError(f"hf rollout answer must be one of {FORMATS}, got {mode!r}")
    if mode == "free":
        return FREE
    if not index_path:
        raise ValueError(f"hf rollout answer={mode} needs the item index: set engine_kwargs.hf.index=<X.index.json>")
    from gream_verl.index.tokens import load_index
    from gream_verl.index.trie import build_trie

    trie = build_trie(load_index(index_path), tokenizer, vocab_size)
    if mode == "direct":
        return AnswerFormat("direct", trie, tail_ids=(int(end_token_id),))
    open_ids = tuple(tokenizer(ANSWER_OPEN, add_special_tokens=False).input_ids)
    close_ids = tuple(tokenizer(ANSWER_CLOSE, add_special_tokens=False).input_ids)
    if not open_ids or not close_ids:
        raise ValueError(f"the tokenizer cannot encode {ANSWER_OPEN!r} / {ANSWER_CLOSE!r}")
    return AnswerFormat("reason", trie, open_ids=open_ids, tail_ids=(*close_ids, int(end_token_id)))


def build_sampler(model, tokenizer, answer: AnswerFormat, eos_token_ids: Sequence[int], pad_token_id: int,
                  seed: int) -> SampleBatch:
    """The default :data:`SampleBatch`: :func:`decode` with this model, format and a seeded
    generator. A replacement (``engine_kwargs.hf.sampler=module:function``) takes the same
    arguments and returns a function with the same contract."""
    generator = torch.Generator().manual_seed(int(seed))
    use_decode_attention(model)

    def sample(prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        return decode(model, prompts, params, eos_token_ids, pad_token_id, generator, answer)

    return sample
