"""Fixtures shared across test folders."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test on one intra-op thread: `make test` runs two pytest workers on two cores, and
    small tensors gain nothing from a second thread that only contends with the other worker."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
