"""Batches for detectors: lists of images and targets (images differ in size), and make_loader."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def collate(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Turn [(image, target), ...] into ([images], [targets]) without stacking."""
    return [image for image, _ in batch], [target for _, target in batch]


def make_loader(
    dataset: Dataset,
    batch_size: int = 2,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    **options: Any,
) -> DataLoader:
    """A DataLoader yielding (list[images], list[targets]); `seed` fixes the shuffling order."""
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        **options,
    )
