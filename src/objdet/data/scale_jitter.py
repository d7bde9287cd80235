"""Scale jitter on a fixed canvas: resize by a random factor, then crop or pad back to the input's size.

Detectors resize every image to their own input size, so a plain random resize would be undone; keeping
the canvas and scaling its content changes the size of the objects the network sees (multi-scale
training). A factor range of (0.8, 1.25) is the "standard scale jitter" and (0.1, 2.0) the "large-scale
jitter" of Ghiasi et al., Simple Copy-Paste (2021). A transforms v2 transform: it moves images,
BoundingBoxes, Masks and KeyPoints alike and draws from torch's global generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class ScaleJitterCrop(v2.Transform):
    """Resize by s ~ U(scale_range), then take the input-sized window at a uniform random offset: a crop
    when s > 1, zero padding around the scaled image when s < 1."""

    def __init__(self, scale_range: tuple[float, float]):
        super().__init__()
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.scale_range = tuple(scale_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        r = torch.rand(3).tolist()
        scale = low + (high - low) * r[0]
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        # the window's top-left corner in the scaled image: negative values pad on that side
        top = round(min(0, size[0] - height) + abs(size[0] - height) * r[1])
        left = round(min(0, size[1] - width) + abs(size[1] - width) * r[2])
        return {"size": size, "top": top, "left": left, "height": height, "width": width}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        scaled = self._call_kernel(F.resize, inpt, params["size"], antialias=True)
        return self._call_kernel(F.crop, scaled, params["top"], params["left"], params["height"], params["width"])
