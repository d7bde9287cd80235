"""An exponential moving average of a model's weights, the weights EfficientDet evaluates."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """Exponential moving average of a model's weights (EfficientDet evaluates the average).

    The decay ramps as min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the
    random initialisation; buffers (BatchNorm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0
        self._averaged = {name for name, p in self.module.named_parameters() if p.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = current[name].detach()
            if name in self._averaged:
                avg.mul_(d).add_(value, alpha=1 - d)
            else:
                avg.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, for the checkpoint."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict`."""
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
