"""Sizes that stay graph values in an export: while tracing (ONNX, TorchScript), an image's or feature map's size
is a 0-dim tensor computed from the input, so arithmetic on it is recorded and the exported graph takes any
image size; in eager mode the same code sees Python ints. `int()` or `math.*` on such a size would freeze the
traced value into the graph, which is what these helpers avoid."""

from __future__ import annotations

import torch
from torch import Tensor


def size_value(value: int | Tensor) -> int | Tensor:
    """A size as a Python int, or, while tracing, as the graph value it is."""
    return value if torch.jit.is_tracing() and isinstance(value, Tensor) else int(value)


def image_size(image: Tensor) -> tuple[int | Tensor, int | Tensor]:
    """``(height, width)`` of a ``[..., H, W]`` tensor (graph values while tracing)."""
    return size_value(image.shape[-2]), size_value(image.shape[-1])


def as_float32(value: int | float | Tensor, device: torch.device | None = None) -> Tensor:
    """A 0-dim float32 tensor of a size: a constant for a Python number, the graph value converted while tracing."""
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=torch.float32)
    return torch.tensor(value, dtype=torch.float32, device=device)
