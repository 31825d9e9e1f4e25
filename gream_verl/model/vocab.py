"""Vocabulary extension: every index token (``<a_12>``, ``<b_200>``, ...) becomes one new token.

Tokens are added as *ordinary* tokens (``special_tokens=False``): verl decodes responses with
``skip_special_tokens=True``, which would silently delete special ones from the generated text.

Rows for the new tokens, in order of token id ``len(tokenizer)``, ``len(tokenizer) + 1``, ...:

* Qwen3 checkpoints carry more embedding rows than the tokenizer has tokens (Qwen3-4B: 151,669
  tokens, 151,936 rows). When those spare *padding rows* have room, the new tokens take them, and
  each taken row is **re-initialised** (it held untrained values). Padding rows that no new token
  takes are left as they were.
* Otherwise the matrix is resized to the next multiple of ``pad_to_multiple_of`` at or above the
  new tokenizer size; rows beyond the new tokens are set to the mean (they are never produced
  by the tokenizer, but must not hold garbage).
* A new token's row is the mean of the *real* old rows (ids ``< old tokenizer size``, padding
  excluded) plus Gaussian noise of ``noise_scale`` times their standard deviation, seeded, so
  that new tokens start near "an average word" yet are distinguishable from each other.
* Tied embeddings share one matrix with ``lm_head``; untied ``lm_head`` gets the same treatment
  from its own real rows. Rows of the old vocabulary stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _init_rows(weight, old_size: int, start: int, stop: int, generator, noise_scale: float) -> None:
    """Set ``weight[start:stop]`` to mean(real rows) + noise (in float32, then cast)."""
    import torch

    real = weight[:old_size].detach().float()
    mean, std = real.mean(dim=0), real.std()
    noise = torch.randn((stop - start, weight.shape[1]), generator=generator) * (noise_scale * std)
    with torch.no_grad():
        weight[start:stop] = (mean + noise).to(weight.dtype)


def _fill_mean(weight, old_size: int, start: int) -> None:
    """Rows from ``start`` on (padding only) get the plain mean of the real rows."""
    import torch

    if start < weight.shape[0]:
        with torch.no_grad():
            weight[start:] = weight[:old_size].detach().float().mean(dim=0).to(weight.dtype)


def extend_vocabulary(
    model,
    tokenizer,
    tokens: Sequence[str],
    seed: int = 0,
    noise_scale: float = 0.1,
    pad_to_multiple_of: int = 64,
) -> dict:
    """Add ``tokens`` (those not yet in the vocabulary) to ``tokenizer`` and give each a new
    embedding row (and ``lm_head`` row) in ``model``, in place. Returns what was done."""
    import torch

    if not tokens:
        raise ValueError("no tokens to add")
    bad = [t for t in tokens if not isinstance(t, str) or not t or t != t.strip()]
    if bad:
        raise ValueError(f"tokens must be non-empty strings without surrounding spaces, got {bad[:5]!r}")
    old_size = len(tokenizer)
    old_rows = int(model.get_input_embeddings().weight.shape[0])
    if old_rows < old_size:
        raise ValueError(f"model has {old_rows} embedding rows but the tokenizer has {old_size} tokens")
    vocab = tokenizer.get_vocab()
    new_tokens = list(dict.fromkeys(t for t in tokens if t not in vocab))
    input_emb, output_emb = model.get_input_embeddings(), model.get_output_embeddings()
    tied = output_emb is None or output_emb.weight.data_ptr() == input_emb.weight.data_ptr()
    result = {
        "tokens_requested": len(tokens),
        "tokens_added": len(new_tokens),
        "tokens_already_present": len(tokens) - len(new_tokens),
        "old_vocab": old_size,
        "old_embedding_rows": old_rows,
        "tie_word_embeddings": tied,
    }
    if new_tokens:
        added = tokenizer.add_tokens(new_tokens, special_tokens=False)
        new_size = len(tokenizer)
        ids = tokenizer.convert_tokens_to_ids(new_tokens)
        if added != len(new_tokens) or ids != list(range(old_size, new_size)):
            raise RuntimeError(
                f"tokenizer gave the new tokens ids {ids[:3]}...; expected {old_size}..{new_size - 1}"
            )
        reused = max(0, min(new_size, old_rows) - old_size)
        if new_size > old_rows:
            rows = -(-new_size // pad_to_multiple_of) * pad_to_multiple_of
            model.resize_token_embeddings(rows, mean_resizing=False)
            input_emb, output_emb = model.get_input_embeddings(), model.get_output_embeddings()
        generator = torch.Generator().manual_seed(seed)
        weights = [input_emb.weight] if tied else [input_emb.weight, output_emb.weight]
        for weight in weights:
            _init_rows(weight, old_size, old_size, new_size, generator, noise_scale)
            if new_size > old_rows:
                _fill_mean(weight, old_size, new_size)
        result["padding_rows_reused"] = reused
    else:
        result["padding_rows_reused"] = 0
    result["new_vocab"] = len(tokenizer)
    result["embedding_rows"] = int(model.get_input_embeddings().weight.shape[0])
    return result


def extend_checkpoint(
    model_path: str | Path,
    index_path: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    noise_scale: float = 0.1,
    pad_to_multiple_of: int = 64,
) -> dict:
    """Load a checkpoint, add every token of the item index, save to ``out_dir`` atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gream_verl.index.tokens import load_index
    from gream_verl.model.checkpoint import save_pretrained_atomic

    model_path, out_dir = Path(model_path), Path(out_dir)
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"{model_path}: not a model folder (no config.json)")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    tokens = load_index(index_path).vocabulary()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype="auto")
    result = extend_vocabulary(model, tokenizer, tokens, seed, noise_scale, pad_to_multiple_of)
    save_pretrained_atomic(model, tokenizer, out_dir)
    return {"model": str(model_path), "index": str(index_path), "out": str(out_dir), **result}
