"""Shared fixtures. The real data lives in ../shared/data (see its README). The tiny Qwen3 with
an extended vocabulary and a small synthetic item index serve the inference and serving tests
(random weights: rankings are arbitrary but deterministic)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from gream_verl.index.tokens import ItemIndex, codes_to_tokens

# Timing is not what these properties test: a loaded 2-core machine must not turn a slow example
# into a failure (hypothesis' default deadline is 200 ms per example).
settings.register_profile("gream", deadline=None)
settings.load_profile("gream")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GREAM_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "Office").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set GREAM_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def office_dir(shared_data) -> Path:
    return shared_data / "Office"


@pytest.fixture
def openai_server():
    """Start fake OpenAI-compatible servers (``tests/fake_openai.py``): ``openai_server(**kw)``
    returns a running :class:`FakeOpenAIServer`; all are stopped after the test."""
    from fake_openai import FakeOpenAIServer

    started = []

    def start(**kwargs) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**kwargs).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)

def synthetic_index(num_items: int = 60, codebook: int = 6, seed: int = 0) -> ItemIndex:
    """Three levels plus a collision level for items whose first three codes repeat."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, codebook, size=(num_items, 3))
    tokens, seen = {}, {}
    for i, c in enumerate(codes):
        key = tuple(c.tolist())
        dup = seen.get(key, 0)
        seen[key] = dup + 1
        tokens[str(i)] = codes_to_tokens([*key, dup]) if dup else codes_to_tokens(key)
    return ItemIndex(tokens)


@pytest.fixture(scope="session")
def tiny_index() -> ItemIndex:
    return synthetic_index()


@pytest.fixture(scope="session")
def tiny_lm(tiny_index):
    """(model, tokenizer) with the index tokens added."""
    from gream_verl.model.tiny import build_tiny_qwen3, train_tokenizer
    from gream_verl.model.vocab import extend_vocabulary

    tokenizer = train_tokenizer(vocab_size=400)
    model = build_tiny_qwen3(tokenizer, seed=0)
    extend_vocabulary(model, tokenizer, tiny_index.vocabulary(), seed=0)
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, tiny_index):
    """An LC-Rec folder (Tiny.inter.json, Tiny.item.json, Tiny.index.json) over the synthetic index."""
    from gream_verl.index.tokens import save_index
    from gream_verl.io import write_json

    folder = tmp_path_factory.mktemp("tiny_data")
    rng = np.random.default_rng(1)
    items = list(tiny_index.tokens)
    inter = {str(u): [items[k] for k in rng.choice(len(items), size=int(rng.integers(4, 9)), replace=False)]
             for u in range(24)}  # fmt: skip
    write_json(folder / "Tiny.inter.json", inter)
    write_json(folder / "Tiny.item.json", {i: {"title": f"product number {i}"} for i in items})
    save_index(tiny_index, folder / "Tiny.index.json")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_lm):
    model, tokenizer = tiny_lm
    folder = tmp_path_factory.mktemp("tiny_model") / "model"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
