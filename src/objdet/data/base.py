"""The base of every data set: `load(i)` gives sample i as read, `__getitem__` applies the transforms."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

Target = dict[str, Any]  # tensors by name (boxes, labels, masks, keypoints, ...) and `image_id`, an int
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class DetectionDataset(torch.utils.data.Dataset):
    """Subclasses implement `load(i) -> (image [3, H, W] in 0..1, target)` and set `self.transforms`."""

    transforms: Optional[Transform] = None

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def select(self, indices: Sequence[int]) -> None:
        """Keep only the images at `indices` (a seeded train/val split; readers of files implement it)."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load(i)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
