"""Sequential reasoning recommendation: sample chains of thought, then answer with an item.

Two stages per sample:

1. Sample the reasoning up to ``<answer>`` (temperature 0.7, top-p 0.9 by default), either
   in-process with Hugging Face ``generate`` or from an OpenAI-compatible server (vLLM,
   SGLang: ``/chat/completions`` or ``/completions`` with ``n`` samples and ``stop``).
   A chain that ends without ``<answer>`` gets it appended (counted as ``forced_answers``).
2. ``answer: constrained`` (default): a trie-constrained beam over the index tokens after
   ``prompt + reasoning + <answer>`` (needs the model locally), so every answer is a valid
   item. ``answer: parse``: read ``<answer>...</answer>`` from the full completion; an answer
   that is not an item counts as a miss (``None``).

Pass@k = the target is among the first k *distinct* answers of a user's n samples, in
sampling order (see :mod:`gream_verl.metrics`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig

from gream_verl.data.dataset import RecDataset
from gream_verl.data.split import Example
from gream_verl.index.tokens import ItemIndex
from gream_verl.infer import common
from gream_verl.infer.constrained import constrained_beam_search, encode_prompts
from gream_verl.metrics import dedupe, pass_at_k, pass_at_k_unbiased

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
_ANSWER_RE = re.compile(re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE), re.S)


@dataclass
class Sample:
    reasoning: str  # the text up to and including <answer>
    item: str | None  # the answered item (None: unparseable in parse mode)
    forced: bool = False  # <answer> had to be appended


def reasoning_prefix(text: str) -> tuple[str, bool]:
    """Text up to and including the first ``<answer>``; appended when absent (forced)."""
    pos = text.find(ANSWER_OPEN)
    if pos >= 0:
        return text[: pos + len(ANSWER_OPEN)], False
    return text.rstrip() + "\n" + ANSWER_OPEN, True


def parse_answer(text: str, index: ItemIndex) -> str | None:
    """Item named by the last ``<answer>...</answer>`` of ``text``, else None."""
    found = _ANSWER_RE.findall(text or "")
    return index.item_of(found[-1]) if found else None


def sample_hf(model, tokenizer, prompts: Sequence[str], n: int, temperature: float, top_p: float,
              max_new_tokens: int, stop: bool, seed: int) -> list[list[str]]:
    """``n`` sampled continuations per prompt (stopping at ``<answer>`` when ``stop``)."""
    import torch

    device = next(model.parameters()).device
    enc = encode_prompts(tokenizer, prompts, device)
    torch.manual_seed(seed)
    extra = {"stop_strings": [ANSWER_OPEN], "tokenizer": tokenizer} if stop else {}
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0,
            num_return_sequences=int(n), max_new_tokens=int(max_new_tokens),
            pad_token_id=tokenizer.pad_token_id, **extra,
        )  # fmt: skip
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def server_settings(reason: DictConfig) -> dict:
    """Concurrency, retries and timeout of ``reason.server`` requests (keys absent from the
    config take the defaults of :data:`SERVER_DEFAULTS`)."""
    return {key: type(default)(reason.get(key, default)) for key, default in SERVER_DEFAULTS.items()}


SERVER_DEFAULTS = {"max_concurrency": 16, "max_retries": 3, "timeout": 600.0}


def _choice_texts(url: str, response: dict, api: str) -> list[str]:
    """The texts of a response's choices in ``index`` order; a chat reasoning parser's
    ``reasoning_content`` (vLLM/SGLang) is put back as a ``<think>`` block."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise RuntimeError(f"{url}: response has no choices")
    texts = []
    for c in sorted(choices, key=lambda c: c.get("index", 0)):
        if api == "chat":
            msg = c.get("message") or {}
            think = msg.get("reasoning_content")
            text = (f"<think>\n{think}\n</think>\n" if think else "") + (msg.get("content") or "")
        else:
            text = c.get("text") or ""
        texts.append(text)
    return texts


def sample_server(base_url: str, model_name: str, requests: Sequence, n: int, temperature: float, top_p: float,
                  max_tokens: int, stop: bool, api: str = "chat", timeout: float = 600, max_concurrency: int = 16,
                  max_retries: int = 3, progress: bool = False) -> list[list[str]]:  # fmt: skip
    """``n`` completions per request from an OpenAI-compatible server, up to ``max_concurrency``
    requests in flight. ``requests`` are message lists (``api="chat"``) or prompt strings
    (``api="completions"``)."""
    from gream_verl.openai_client import OpenAIClient

    if api not in ("chat", "completions"):
        raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
    client = OpenAIClient(base_url, timeout=timeout, max_retries=max_retries, max_concurrency=max_concurrency)
    route = "chat/completions" if api == "chat" else "completions"
    payloads = {}
    for k, req in enumerate(requests):
        payload = {"model": model_name, "n": int(n), "temperature": float(temperature), "top_p": float(top_p),
                   "max_tokens": int(max_tokens), ("messages" if api == "chat" else "prompt"): req}  # fmt: skip
        if stop:
            payload["stop"] = [ANSWER_OPEN]
        payloads[k] = payload
    url = client.url(route)
    texts = client.post_many(route, payloads, lambda k, response: _choice_texts(url, response, api),
                             desc="reason server", progress=progress)  # fmt: skip
    return [texts[k] for k in range(len(payloads))]


def answer_constrained(model, tokenizer, trie, prompts: Sequence[str], reasonings: Sequence[str],
                       beams: int = 1) -> list[list[str]]:
    """Stage 2: the best ``beams`` items after ``prompt + reasoning`` (ending in ``<answer>``);
    the index ends where the model would write ``</answer>``."""
    close = tokenizer(ANSWER_CLOSE, add_special_tokens=False).input_ids
    if not close:
        raise ValueError(f"the tokenizer cannot encode {ANSWER_CLOSE!r}")
    texts = [p + r for p, r in zip(prompts, reasonings, strict=True)]
    ranked = constrained_beam_search(model, tokenizer, trie, texts, num_beams=beams, eos_token_id=close[0])
    return [[c.item for c in row] for row in ranked]


def _check_reason_config(cfg: DictConfig, model, tokenizer) -> None:
    r = cfg.reason
    if int(r.num_samples) < 1:
        raise ValueError(f"reason.num_samples must be >= 1, got {r.num_samples}")
    if r.answer not in ("constrained", "parse"):
        raise ValueError(f"reason.answer must be 'constrained' or 'parse', got {r.answer!r}")
    if r.answer == "constrained" and model is None:
        raise ValueError("reason.answer=constrained needs the model locally (--model); use reason.answer=parse")
    if r.server:
        if not r.server_model:
            raise ValueError("reason.server needs reason.server_model (the model name on the server)")
        if r.api == "completions" and tokenizer is None:
            raise ValueError("reason.api=completions needs the tokenizer (--model) to apply the chat template")
    elif model is None:
        raise ValueError("reasoning evaluation needs --model or reason.server")


def sample_reasoning(cfg: DictConfig, model, tokenizer, messages: Sequence[list[dict]], seed: int,
                     progress: bool = False) -> list[list[str]]:  # fmt: skip
    """Stage 1: ``cfg.reason.num_samples`` raw completions per prompt, from ``reason.server``
    (all prompts at once, ``reason.max_concurrency`` requests in flight) or the local model.
    With constrained answers they stop at ``<answer>``."""
    _check_reason_config(cfg, model, tokenizer)
    r = cfg.reason
    stop = r.answer == "constrained"
    kwargs = dict(cfg.chat_template_kwargs or {})
    texts = [common.chat_text(tokenizer, m, kwargs) for m in messages] if tokenizer is not None else None
    if r.server:
        requests = list(messages) if r.api == "chat" else texts
        return sample_server(r.server, r.server_model, requests, int(r.num_samples), r.temperature, r.top_p,
                             r.max_new_tokens, stop, r.api, progress=progress, **server_settings(r))  # fmt: skip
    return sample_hf(model, tokenizer, texts, int(r.num_samples), r.temperature, r.top_p, r.max_new_tokens, stop, seed)


def answer_samples(cfg: DictConfig, model, tokenizer, trie, index: ItemIndex, messages: Sequence[list[dict]],
                   raw: Sequence[Sequence[str]]) -> list[list[Sample]]:  # fmt: skip
    """Stage 2: the item of each raw completion (parsed, or a constrained beam after its reasoning)."""
    if cfg.reason.answer != "constrained":
        return [[Sample(text, parse_answer(text, index)) for text in row] for row in raw]
    kwargs = dict(cfg.chat_template_kwargs or {})
    texts = [common.chat_text(tokenizer, m, kwargs) for m in messages]
    prefixes = [[reasoning_prefix(t) for t in row] for row in raw]
    flat_prompts = [texts[i] for i, row in enumerate(prefixes) for _ in row]
    flat_reason = [p for row in prefixes for p, _ in row]
    answers = answer_constrained(model, tokenizer, trie, flat_prompts, flat_reason, int(cfg.reason.answer_beams))
    out, k = [], 0
    for row in prefixes:
        samples = []
        for reasoning, forced in row:
            items = answers[k]
            samples.append(Sample(reasoning, items[0] if items else None, forced))
            k += 1
        out.append(samples)
    return out


def evaluate_reason(cfg: DictConfig, model=None, tokenizer=None) -> dict:
    """Pass@k of the reasoning mode on one leave-one-out split (rank 0 writes files)."""
    from tqdm import tqdm

    from gream_verl.index.trie import build_trie

    for key in ("data", "index"):
        if cfg.get(key) is None:
            raise ValueError(f"eval reason needs --{key}")
    timer = common.Timer()
    with common.Shards() as shards:
        dataset, index, examples = common.load_eval_inputs(cfg)
        trie = None
        if model is None and cfg.model:
            model, tokenizer = common.load_model(cfg.model, cfg.device, cfg.dtype)
        if model is not None:
            trie = build_trie(index, tokenizer, model.config.get_text_config().vocab_size)
        local = shards.take(examples)
        batch = max(1, int(cfg.batch_size))
        progress = bool(cfg.progress and shards.is_main)
        messages = [common.reason_messages(e, dataset, index) for e in local]
        # a server gets every user's request at once (bounded in flight), so it is never idle
        # between batches; the local model samples batch by batch
        served = sample_reasoning(cfg, model, tokenizer, messages, 0, progress) if cfg.reason.server else None
        samples_local: list[list[Sample]] = []
        bar = tqdm(total=len(local), desc="reason eval", unit="user", disable=not progress)
        for start in range(0, len(local), batch):
            chunk = messages[start : start + batch]
            if served is not None:
                raw = served[start : start + batch]
            else:
                seed = int(cfg.reason.seed) + start * shards.world + shards.rank
                raw = sample_reasoning(cfg, model, tokenizer, chunk, seed)
            samples_local.extend(answer_samples(cfg, model, tokenizer, trie, index, chunk, raw))
            bar.update(len(chunk))
        bar.close()
        samples = shards.gather([[(s.reasoning, s.item, s.forced) for s in row] for row in samples_local])
        answers = [[item for _, item, _ in row] for row in samples]
        targets = [e.target for e in examples]
        n_total = sum(len(row) for row in samples)
        result = {
            "mode": "reason",
            "dataset": dataset.name,
            "num_users": len(examples),
            "metrics": pass_at_k(answers, targets, list(cfg.pass_ks)),
            "pass_at_k_definition": "target among the first k distinct answers of n samples, in sampling order",
            "metrics_unbiased": unbiased_pass_at_k(answers, targets, list(cfg.pass_ks)),
            "valid_answer_rate": sum(a is not None for row in answers for a in row) / max(n_total, 1),
            "forced_answers": sum(f for row in samples for _, _, f in row),
            "mean_distinct_answers": sum(len(dedupe(row)) for row in answers) / len(answers),
            "settings": {
                "model": None if cfg.model is None else str(cfg.model), "data": str(cfg.data),
                "index": str(cfg.index), "split": cfg.split, "limit": cfg.limit,
                "max_history": int(cfg.max_history), "batch_size": batch, "world_size": shards.world,
                **{k: v for k, v in dict(cfg.reason).items()},
                **(server_settings(cfg.reason) if cfg.reason.server else {}),
            },  # fmt: skip
            "seconds": timer.seconds(),
        }
        if shards.is_main:
            predictions = None
            if cfg.save_predictions:
                predictions = [
                    {"user": e.user, "target": e.target, "answers": [s[1] for s in row],
                     "reasoning": [s[0] for s in row], "forced": [s[2] for s in row]}
                    for e, row in zip(examples, samples, strict=True)
                ]  # fmt: skip
            out = cfg.out or common.default_out(dataset, "reason", cfg.split)
            common.write_results(result, out, predictions, cfg.save_predictions)
        return result


def unbiased_pass_at_k(answers: list[list[str | None]], targets: list[str], ks: list[int]) -> dict[str, float]:
    """The n-sample unbiased estimator (Chen et al., 2021) for every k <= n (samples, not
    distinct answers: repeated correct answers count as correct samples)."""
    import numpy as np

    n = np.array([len(row) for row in answers])
    c = np.array([sum(a == t for a in row) for row, t in zip(answers, targets, strict=True)])
    return {f"pass@{k}": pass_at_k_unbiased(n, c, k) for k in ks if n.size and k <= n.min()}


def reason_for_history(model, tokenizer, trie, dataset: RecDataset, index: ItemIndex, history: Sequence[str],
                       k: int, cfg: DictConfig) -> tuple[str, list[str]]:
    """One sampled chain of thought for ``history`` and the top-``k`` items after it."""
    example = Example(user="", history=tuple(history), target="")
    text = common.chat_text(tokenizer, common.reason_messages(example, dataset, index), dict(cfg.chat_template_kwargs or {}))
    (raw,) = sample_hf(model, tokenizer, [text], 1, cfg.reason.temperature, cfg.reason.top_p,
                       cfg.reason.max_new_tokens, True, int(cfg.reason.seed))  # fmt: skip
    reasoning, _ = reasoning_prefix(raw[0])
    (items,) = answer_constrained(model, tokenizer, trie, [text], [reasoning], beams=k)
    return reasoning, items


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun -m gream_verl.infer.reason`` (same flags as ``gream eval
    reason``; users are sharded by rank, rank 0 prints and writes). Sampling seeds depend on
    the rank, so samples differ from a single-process run with the same seed."""
    import argparse

    from gream_verl.infer.cli_args import add_reason_arguments, reason_config_from_args

    parser = argparse.ArgumentParser(prog="gream_verl.infer.reason", description=__doc__.split("\n\n")[0])
    add_reason_arguments(parser)
    args = parser.parse_args(argv)
    return common.run_entry_point("eval reason", lambda: evaluate_reason(reason_config_from_args(args)), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
