"""Model cost as the EfficientDet tables report it: parameters and multiply-adds of one inference pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from objdet import fused


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or frozen) of `model`."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, *inputs: Any) -> int:
    """Multiply-adds of one eval-mode call `model(*inputs)`: convolutions and matrix products, as the
    EfficientDet paper counts its "FLOPs" (torch's FlopCounterMode reports 2 operations per multiply-add)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, fused.disabled():  # FlopCounterMode counts aten convolutions, not oneDNN's fused calls
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
