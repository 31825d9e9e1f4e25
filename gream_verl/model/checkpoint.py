"""Saving and describing Hugging Face checkpoints without half-written folders."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def save_pretrained_atomic(model, tokenizer, out_dir: str | Path) -> Path:
    """``save_pretrained`` model and tokenizer into a sibling temp folder, then rename it onto
    ``out_dir`` (which must be absent or empty), so a crash never leaves a partial checkpoint."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not an empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def describe(model, tokenizer, out_dir: str | Path | None = None) -> dict:
    """The facts a user checks after building or extending a model."""
    emb = model.get_input_embeddings().weight
    return {
        "out": str(out_dir) if out_dir is not None else None,
        "tokenizer_size": len(tokenizer),
        "embedding_rows": int(emb.shape[0]),
        "hidden_size": int(emb.shape[1]),
        "tie_word_embeddings": bool(model.config.tie_word_embeddings),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
