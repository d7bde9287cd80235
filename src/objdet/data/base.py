"""The base of every data set: `load(i)` gives sample i as read, `__getitem__` applies the transforms."""

from __future__ import annotations

from typing import Callable, Optional

import torch

Target = dict[str, torch.Tensor]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class DetectionDataset(torch.utils.data.Dataset):
    """Subclasses implement `load(i) -> (image [3, H, W] in 0..1, target)` and set `self.transforms`."""

    transforms: Optional[Transform] = None

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load(i)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
