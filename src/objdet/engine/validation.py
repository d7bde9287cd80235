"""The mean loss of a detector on a validation set, without changing the model or the training's random stream.

Detectors compute their losses only in train mode (as torchvision's do), so the model is put in train mode,
under `no_grad`, with every batch norm that tracks statistics and every dropout switched back to eval mode:
batch norms then normalise with their running statistics and do not update them, so the validation loss is
measured on the function that inference runs, and a validation pass leaves the weights and buffers exactly as
it found them. The detector's own sampling (RPN and RoI fg/bg samples) draws from a generator seeded with
`seed` inside a forked random state, so the training stream is untouched and each evaluation samples the same
way: losses of two epochs differ only because the weights do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from objdet.data.loader import collate
from objdet.engine import distributed
from objdet.engine.step import autocast

_FROZEN_IN_VALIDATION = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@contextlib.contextmanager
def loss_mode(model: nn.Module) -> Iterator[None]:
    """Train mode for the loss path, with batch norms and dropouts in eval mode; every module's mode restored."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, _FROZEN_IN_VALIDATION):
            m.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.train(mode)


@torch.no_grad()
def validation_loss(model: nn.Module, dataset: Dataset, batch_size: int = 2, device: str | torch.device = "cpu",
                    seed: int = 0, amp: bool = False) -> dict[str, float]:
    """Each loss term and their sum `loss`, averaged over the images of `dataset` (batches weighted by size).

    Under torchrun each process takes whole batches (batch b on rank b % world) and the sums are gathered.
    """
    device = torch.device(device)
    batches = [list(range(s, min(s + batch_size, len(dataset)))) for s in range(0, len(dataset), batch_size)]
    mine = [i for b in range(distributed.rank(), len(batches), distributed.world_size()) for i in batches[b]]
    loader = DataLoader(Subset(dataset, mine), batch_size=batch_size, collate_fn=collate)
    sums: dict[str, float] = {}
    count = 0
    with loss_mode(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for images, targets in loader:
            images = [im.to(device) for im in images]
            targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with autocast(device, amp):
                losses = model(images, targets)
            losses["loss"] = sum(losses.values())
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(images)
            count += len(images)
    parts = distributed.all_gather([(count, sums)])
    total = sum(n for n, _ in parts)
    keys = sorted({k for _, s in parts for k in s})
    return {k: sum(s.get(k, 0.0) for _, s in parts) / max(1, total) for k in keys}
