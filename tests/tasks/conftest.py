"""Fixtures of the SFT-data tests (helpers live in sft_fixtures.py)."""

import pytest
from sft_fixtures import make_dataset, make_index


@pytest.fixture
def synthetic():
    dataset = make_dataset()
    return dataset, make_index(dataset)
