"""Fixtures shared across test folders."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: small tensors gain nothing from two, and on a busy
    machine two OpenMP threads spend most of their time waiting on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
