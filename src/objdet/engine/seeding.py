"""Seeding: the global generators for a repeatable model initialisation, and per-sample seeds for data.

Callers seed explicitly (`seed_everything` before building the model); nothing in the engine re-seeds
the global generators behind their back.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy generators (call before building the model for repeatable init)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


class SeededDataset(Dataset):
    """Wraps a data set so sample i of epoch e sees the same random augmentation every time.

    The global generators are saved and restored around each read, so loading data does not
    disturb the random stream the model itself uses (RPN sampling, dropout).
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample_seed = (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**31)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
