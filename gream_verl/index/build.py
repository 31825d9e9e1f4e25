"""Dataset -> item index: embed item text, RQ-KMeans codes, then make every index unique.

With ``collaborative.enabled`` the text embeddings get co-purchase vectors from the training
interactions appended before RQ-KMeans (``gream_verl.index.collab``; not in the paper).

Collision level (one extra level, letter after the last RQ level):

* ``collision.mode: all`` (default, LC-Rec style): when any two items share their RQ codes,
  *every* item gets the extra level, so all indices have the same length; items without a
  collision get code 0 there, a colliding group of ``m`` items gets ``0..m-1`` in item order.
  Uniform length keeps constrained decoding simple (every item is a leaf at the same depth).
* ``collision.mode: colliding``: only items in a colliding group get the extra level
  (``0..m-1``); no item's index is a prefix of another's, since a colliding group shares its
  prefix with no other item.
* No collision at all: no extra level.

A group larger than ``codebook_size`` is an error (it would need more collision codes than a
level has): add a level or enlarge the codebook.

Settings that can be checked from the config and the item count alone (a codebook larger than the
item count, no levels, an unknown collision mode) are checked before any embedding work starts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gream_verl.data.dataset import RecDataset
from gream_verl.index.tokens import ItemIndex, codes_to_tokens

log = logging.getLogger(__name__)

COLLISION_MODES = ("all", "colliding")


def collision_stats(codes: np.ndarray) -> dict:
    """How often rows of ``codes`` repeat: ``collision_rate`` is the fraction of items that share
    their code with another item; ``collisions`` counts items whose code an earlier item already
    has (``ItemIndex.num_collisions``); ``max_group`` is the largest group sharing one code."""
    codes = np.asarray(codes)
    n = codes.shape[0]
    if n == 0:
        return {"collision_rate": 0.0, "collisions": 0, "max_group": 0}
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    return {
        "collision_rate": float((counts[inverse] > 1).mean()),
        "collisions": int(n - counts.size),
        "max_group": int(counts.max()),
    }


def index_collision_stats(index: ItemIndex) -> dict:
    """:func:`collision_stats` for an existing index (e.g. the reference one)."""
    keys = np.array(["".join(t) for t in index.tokens.values()], dtype=object)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return {
        "collision_rate": float((counts[inverse] > 1).mean()) if keys.size else 0.0,
        "collisions": index.num_collisions,
        "max_group": int(counts.max()) if keys.size else 0,
    }


def resolve_collisions(codes: np.ndarray, codebook_size: int, mode: str = "all") -> list[list[int]]:
    """Per item, its codes plus (where ``mode`` says) one collision code making every row unique.

    Within a colliding group the collision codes are ``0..m-1`` in row order (deterministic).
    """
    if mode not in COLLISION_MODES:
        raise ValueError(f"unknown collision mode {mode!r}; choose one of {COLLISION_MODES}")
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [items, levels], got shape {list(codes.shape)}")
    n = codes.shape[0]
    if n == 0:
        return []
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if counts.max() == 1:
        return codes.tolist()
    if counts.max() > codebook_size:
        raise ValueError(
            f"{int(counts.max())} items share one code, more than codebook_size {codebook_size} collision "
            "codes; add a level, enlarge the codebook, or check for duplicate item texts"
        )
    order = np.argsort(inverse, kind="stable")  # groups contiguous, item order kept inside a group
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[inverse[order]]
    rows = codes.tolist()
    colliding = counts[inverse] > 1
    for i in range(n):
        if mode == "all" or colliding[i]:
            rows[i].append(int(rank[i]))
    return rows


def check_sizes(cfg: DictConfig, num_items: int, source: str = "dataset") -> None:
    """Fail fast: the ``index`` config's RQ-KMeans sizes and collision mode against ``num_items``,
    before anything is embedded (``fit_rq_kmeans`` would raise the same, minutes later)."""
    levels, codebook_size = int(cfg.rqkmeans.levels), int(cfg.rqkmeans.codebook_size)
    if levels < 1:
        raise ValueError(f"rqkmeans.levels must be >= 1, got {levels}")
    if codebook_size < 1:
        raise ValueError(f"rqkmeans.codebook_size must be >= 1, got {codebook_size}")
    if codebook_size > num_items:
        raise ValueError(
            f"rqkmeans.codebook_size {codebook_size} is larger than the number of items {num_items} of {source}; "
            f"use rqkmeans.codebook_size <= {num_items}"
        )
    mode = str(cfg.collision.mode)
    if mode not in COLLISION_MODES:
        raise ValueError(f"unknown collision.mode {mode!r}; choose one of {COLLISION_MODES}")


def _fields_for(dataset: RecDataset, item: str, fields: tuple[str, ...], use_enriched: bool) -> tuple[str, ...]:
    if use_enriched and dataset.items.get(item, {}).get("enriched"):
        return tuple("enriched" if f == "description" else f for f in fields)
    return fields


def item_texts(dataset: RecDataset, fields: list[str] | tuple[str, ...], use_enriched: bool = True) -> list[str]:
    """Text per item in ``dataset.item_ids`` order. With ``use_enriched``, an item's ``enriched``
    text (``gream data enrich``) stands in for its description where present. An item with none
    of ``fields`` falls back to its title or id (logged), so it still gets an embedding of its
    own; no text at all is an error."""
    fields = tuple(fields)
    texts = [dataset.item_text(item, _fields_for(dataset, item, fields, use_enriched)) for item in dataset.item_ids]
    missing = [i for i, t in enumerate(texts) if not t]
    if len(missing) == len(texts):
        raise ValueError(
            f"dataset {dataset.name!r} ({dataset.source}) has no item text in fields {list(fields)}; "
            "an index from text needs an .item.json (or pass precomputed embeddings with embedding.path)"
        )
    if missing:
        log.warning("%d of %d items have no text in %s; using their title or id", len(missing), len(texts), list(fields))
        for i in missing:
            texts[i] = f"Title: {dataset.title(dataset.item_ids[i])}"
    return texts


def embedding_fields(cfg: DictConfig) -> list[str]:
    """``embedding.fields`` as a list; ``fields=title`` or ``fields=title,description`` work too."""
    fields = cfg.embedding.fields
    if isinstance(fields, str):
        fields = [f for f in fields.replace("+", ",").split(",") if f.strip()]
    fields = [str(f).strip() for f in fields]
    if not fields:
        raise ValueError("embedding.fields is empty; e.g. embedding.fields=[title,description]")
    return fields


def embedding_cache_path(cfg: DictConfig, dataset: RecDataset, out_dir: Path | None) -> Path | None:
    """``<cache_dir>/<dataset>.<model>.<fields>.emb.npy`` (cache_dir defaults to the output folder)."""
    emb = cfg.embedding
    if not emb.get("cache", True):
        return None
    folder = Path(emb.cache_dir) if emb.get("cache_dir") else out_dir
    if folder is None:
        return None
    model = Path(str(emb.model_path)).name if emb.get("model_path") else "all-MiniLM-L6-v2"
    fields = "+".join(embedding_fields(cfg))
    return folder / f"{dataset.name}.{model}.{fields}.{emb.pooling}.emb.npy"


def item_embeddings(dataset: RecDataset, cfg: DictConfig, out_dir: Path | None = None) -> tuple[np.ndarray, dict]:
    """Embeddings ``[items, dim]`` in ``dataset.item_ids`` order and a report of where they came from."""
    from gream_verl.index.embed import cached_embeddings, load_embeddings

    emb = cfg.embedding
    started = time.perf_counter()
    if emb.get("path"):
        vectors = load_embeddings(emb.path, len(dataset.item_ids))
        info = {"embedding_source": f"precomputed {emb.path}", "embedding_cached": False}
    else:
        cache = embedding_cache_path(cfg, dataset, out_dir)
        fields = embedding_fields(cfg)
        vectors, reused = cached_embeddings(
            item_texts(dataset, fields, bool(emb.get("use_enriched", True))), cache,
            model_path=emb.get("model_path"), fields=fields,
            batch_size=int(emb.batch_size), max_length=int(emb.max_length), device=str(emb.device),
            pooling=str(emb.pooling),
        )
        info = {"embedding_source": f"model, cache {cache}" if cache else "model", "embedding_cached": reused}
    if emb.get("normalize"):  # after the cache, so one cached file serves both settings
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    info.update(embed_seconds=round(time.perf_counter() - started, 3), embedding_dim=int(vectors.shape[1]))
    return vectors, info


def add_collaborative(text_vectors: np.ndarray, dataset: RecDataset, cfg: DictConfig) -> tuple[np.ndarray, dict]:
    """Text embeddings with collaborative vectors from the training interactions appended."""
    from gream_verl.data.split import train_items
    from gream_verl.index.collab import collaborative_embeddings, fuse

    vectors, report = collaborative_embeddings(
        train_items(dataset.sequences), dataset.item_ids,
        dim=int(cfg.dim), window=int(cfg.window), seed=int(cfg.seed),
    )  # fmt: skip
    report["weight"] = float(cfg.weight)
    return fuse(text_vectors, vectors, float(cfg.weight)), report


def build_index(dataset: RecDataset, cfg: DictConfig, out_dir: Path | None = None) -> tuple[ItemIndex, dict]:
    """The unique item index of ``dataset`` and a report (sizes, collision rates, timings).

    ``cfg`` is the ``index`` config (see ``gream_verl/configs/index.yaml``); ``out_dir`` is where
    the embedding cache goes unless ``embedding.cache_dir`` says otherwise.
    """
    from gream_verl.index.rqkmeans import fit_rq_kmeans

    started = time.perf_counter()
    items = dataset.item_ids
    if not items:
        raise ValueError(f"dataset {dataset.name!r} ({dataset.source}) has no items")
    check_sizes(cfg, len(items), f"dataset {dataset.name!r} ({dataset.source})")
    vectors, emb_info = item_embeddings(dataset, cfg, out_dir)
    collab = cfg.get("collaborative")
    if collab is not None and collab.get("enabled"):
        vectors, emb_info["collaborative"] = add_collaborative(vectors, dataset, collab)
        emb_info["embedding_dim"] = int(vectors.shape[1])  # what RQ-KMeans clusters: text + collaborative
    rq = cfg.rqkmeans
    rq_started = time.perf_counter()
    result = fit_rq_kmeans(
        vectors, levels=int(rq.levels), codebook_size=int(rq.codebook_size), balanced=bool(rq.balanced),
        iters=int(rq.iters), seed=int(rq.seed), init=str(rq.init), tol=float(rq.tol),
        chunk_size=int(rq.chunk_size), max_points_per_centroid=rq.get("max_points_per_centroid"),
        device=str(rq.get("device", "cpu")),
    )
    rq_seconds = time.perf_counter() - rq_started
    before = collision_stats(result.codes)
    rows = resolve_collisions(result.codes, int(rq.codebook_size), str(cfg.collision.mode))
    index = ItemIndex({item: codes_to_tokens(row) for item, row in zip(items, rows, strict=True)})
    index.require_unique(f"index of {dataset.name}")
    report = {
        "dataset": dataset.name,
        "items": len(items),
        "levels": index.num_levels,
        "rq_levels": int(rq.levels),
        "codebook_size": int(rq.codebook_size),
        "balanced": bool(rq.balanced),
        "fields": embedding_fields(cfg),
        "collision_rate_before": before["collision_rate"],
        "collisions_before": before["collisions"],
        "max_collision_group": before["max_group"],
        "collisions_after": index.num_collisions,
        "collision_level_added": index.num_levels > int(rq.levels),
        "codes_used_per_level": [int(np.unique(result.codes[:, level]).size) for level in range(int(rq.levels))],
        "input_mse": round(result.input_mse, 6),
        "residual_mse_per_level": [round(v, 6) for v in result.residual_mse],
        "iterations_per_level": result.iterations,
        **emb_info,
        "rqkmeans_seconds": round(rq_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return index, report
