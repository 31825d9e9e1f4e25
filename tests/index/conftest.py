"""Fixtures shared by the index tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """These problems are tiny; a thread pool only adds overhead on the shared CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
