"""A tiny tokenizer shared by the model tests (training it takes about a second)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from gream_verl.model.tiny import train_tokenizer

    return train_tokenizer(["a small corpus about pens, paper and staplers"], vocab_size=512)
