"""Shared fixtures. The real data lives in ../shared/data (see its README)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

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
