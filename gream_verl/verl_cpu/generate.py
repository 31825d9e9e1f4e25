"""Batched sampling with a Hugging Face causal LM: the maths behind the CPU rollout server.

Pure torch (no verl import). Every row of a batch carries its own sampling parameters, so requests
that arrive together at the rollout server are decoded in one batch whatever their settings.

Log-probs are those of the distribution verl's actor scores a response with:
``log_softmax(logits / temperature)`` before top-k / top-p filtering (plain ``log_softmax`` for
greedy rows), so ``rollout_log_probs`` and the actor's ``old_log_probs`` agree up to numerics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row; returns (token ids (B,), their log-probs (B,)).

    Rows with ``temperature == 0`` take the argmax. Log-probs come from the temperature-scaled,
    unfiltered distribution (see the module docstring).
    """
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    log_probs = torch.log_softmax(scaled, dim=-1)
    filtered = filter_logits(scaled, top_k, top_p)
    sampled = torch.multinomial(torch.softmax(filtered, dim=-1), 1, generator=generator).squeeze(-1)
    tokens = torch.where(greedy, logits.argmax(dim=-1), sampled)
    return tokens, log_probs.gather(-1, tokens[:, None]).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    params: Sequence[SamplingParams],
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    generator: torch.Generator | None = None,
) -> list[list[Generation]]:
    """Sample ``params[i].n`` continuations of each prompt, all rows decoded as one batch.

    Prompts are left-padded; decoding reuses the model's KV cache and stops when every row has
    produced an end token or its own ``max_tokens``. Returns, per prompt, its ``n`` generations.
    """
    if len(prompts) != len(params):
        raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("cannot generate from an empty prompt")
    rows = [(i, list(p), sp) for i, (p, sp) in enumerate(zip(prompts, params, strict=True)) for _ in range(sp.n)]
    device = next(model.parameters()).device
    width = max(len(p) for _, p, _ in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros_like(input_ids)
    for r, (_, p, _) in enumerate(rows):
        input_ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention_mask[r, width - len(p) :] = 1
    temperature = torch.tensor([sp.temperature for _, _, sp in rows], dtype=torch.float32, device=device)
    top_k = torch.tensor([sp.top_k for _, _, sp in rows], dtype=torch.long, device=device)
    top_p = torch.tensor([sp.top_p for _, _, sp in rows], dtype=torch.float32, device=device)
    max_tokens = torch.tensor([sp.max_tokens for _, _, sp in rows], dtype=torch.long, device=device)
    eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long, device=device)

    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    step_input, past = input_ids, None
    tokens, log_probs = [], []
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    stopped_by_eos = torch.zeros_like(finished)
    lengths = torch.zeros(len(rows), dtype=torch.long, device=device)
    for _ in range(int(max_tokens.max())):
        out = model(
            input_ids=step_input,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past,
            use_cache=True,
        )
        past = out.past_key_values
        token, log_prob = sample_next(out.logits[:, -1, :], temperature, top_k, top_p, generator)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        tokens.append(token)
        log_probs.append(log_prob)
        lengths += (~finished).long()
        hit_eos = ~finished & torch.isin(token, eos)
        stopped_by_eos |= hit_eos
        finished |= hit_eos | (lengths >= max_tokens)
        if bool(finished.all()):
            break
        step_input = token[:, None]
        attention_mask = torch.cat([attention_mask, torch.ones_like(step_input)], dim=-1)
        position_ids = position_ids[:, -1:] + 1

    token_matrix = torch.stack(tokens, dim=1).tolist()
    log_prob_matrix = torch.stack(log_probs, dim=1).tolist()
    results: list[list[Generation]] = [[] for _ in prompts]
    for r, (i, _, _) in enumerate(rows):
        n = int(lengths[r])
        results[i].append(
            Generation(
                token_ids=token_matrix[r][:n],
                log_probs=log_prob_matrix[r][:n],
                finish_reason="stop" if bool(stopped_by_eos[r]) else "length",
            )
        )
    return results
