"""One training step, shared by the Trainer and the ablation runner's timing: forward under autocast,
the summed loss checked finite, backward (scaled on CUDA), optional gradient clipping, optimiser step."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from objdet.engine import distributed
from objdet.errors import TrainingError


class NonFiniteLoss(TrainingError):
    """A step's loss was NaN or infinite; raised before the backward pass, so the weights are untouched."""

    def __init__(self, values: dict[str, float]):
        self.values = values
        super().__init__(", ".join(f"{k}={v}" for k, v in values.items()))


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision as the trainer uses it: bfloat16 on CPU, float16 on CUDA; nothing when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def train_step(model: nn.Module, images: list[torch.Tensor], targets: list[dict], optimizer: torch.optim.Optimizer,
               amp: bool = False, scaler: torch.amp.GradScaler | None = None,
               clip_grad_norm: float | None = None) -> dict[str, float]:
    """One optimiser step of `model` (a detector in train mode, or its DDP wrapper) on a batch.

    Returns every loss term and their sum `loss` as floats; raises `NonFiniteLoss` before any gradient is
    applied. `scaler` (float16 on CUDA) scales the loss; clipping bounds the norm of all gradients.
    """
    with autocast(images[0].device, amp):
        losses = model(images, targets)
    loss = sum(losses.values())
    values = {k: float(v.detach()) for k, v in losses.items()}
    values["loss"] = float(loss.detach())
    if not math.isfinite(values["loss"]):
        raise NonFiniteLoss(values)
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(distributed.unwrap(model).parameters(), clip_grad_norm, foreach=True)
    scaler.step(optimizer)
    scaler.update()
    return values
