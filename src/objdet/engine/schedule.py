"""The learning-rate schedule: linear warm-up, then step or cosine decay, one factor per optimiser step."""

from __future__ import annotations

import math
from typing import Any

import torch

from objdet.engine.config import TrainConfig


class WarmupSchedule:
    """Learning-rate factor per step: linear warm-up from `warmup_factor`, then step or cosine decay."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
        self.optimizer, self.config, self.total_steps = optimizer, config, max(1, total_steps)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rate at global step `step`."""
        c = self.config
        warm = 1.0
        if step < c.warmup_iters:
            alpha = step / c.warmup_iters
            warm = c.warmup_factor * (1 - alpha) + alpha
        if c.schedule == "cosine":
            decay = 0.5 * (1 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        else:
            decay = c.gamma ** sum(step >= round(m * self.total_steps) for m in c.milestones)
        return warm * decay

    def step(self) -> None:
        """Advance one optimiser step."""
        self.last_step += 1
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * f

    def state_dict(self) -> dict[str, Any]:
        """Position and base rates, for the checkpoint."""
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict`'s position."""
        self.last_step, self.base_lrs = int(state["last_step"]), list(state["base_lrs"])
        self._apply()
