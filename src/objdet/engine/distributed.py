"""Multi-process training with DDP started by `torchrun`: process group, sharded batches, gathering.

With one process every helper here degrades to the plain single-process behaviour, so the trainer
has one code path. The batch order depends only on (seed, epoch), so a run resumes mid-epoch and
a run on N processes sees the same global batches as one process with N times the batch size.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
from typing import Any, Iterator

import torch
import torch.distributed as dist
# Imported before any process group exists on purpose: its functions take `group=group.WORLD` as a
# default argument, so importing it later (DDP does, through torch._dynamo) pins the group for good
# and `shutdown` could never join gloo's threads (issue #6).
import torch.distributed.nn.functional  # noqa: F401
from torch import nn
from torch.utils.data import Sampler


def init_from_env(device: str = "cpu") -> torch.device:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on CUDA).

    The launcher's job (the commands call it first): returns the device this process should use;
    without torchrun's variables nothing happens.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        atexit.register(_shutdown_at_exit)
    return local_device(device)


def local_device(device: str = "cpu") -> torch.device:
    """The device of this process: `device`, or under torchrun with CUDA the GPU of its local rank."""
    if device.startswith("cuda") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


def shutdown() -> None:
    """Destroy the process group, which joins gloo's worker threads while the interpreter is still alive.

    A gloo thread that drops the last reference to a finished collective frees tensors created in
    Python, which takes the GIL; once the interpreter is finalizing that kills the thread inside a C++
    destructor and aborts the process (SIGABRT, issue #6). Nothing may still hold the group (a DDP
    wrapper does: the trainer drops its own when `fit` ends), else destroying it joins nothing.
    """
    if dist.is_initialized():
        dist.destroy_process_group()


def _shutdown_at_exit() -> None:
    # An uncaught exception leaves at once: a collective still in flight with a peer could block the join.
    if getattr(sys, "last_value", None) is None:
        shutdown()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that logs and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap in DistributedDataParallel when several processes train, else return the model unchanged.

    Every zoo detector gives every trainable parameter a gradient on every step, empty images included
    (tests/engine/test_ddp_parameters.py), so DDP skips its search for unused parameters, an extra graph
    traversal per step; a model that leaves some unused sets `model.find_unused_parameters = True`.
    """
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=getattr(model, "find_unused_parameters", False))


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_gather(items: list[Any]) -> list[Any]:
    """Concatenate every process's list, in rank order (the list itself in a single process)."""
    if world_size() == 1:
        return items
    gathered: list[list[Any]] = [[] for _ in range(world_size())]
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of scalars over processes (for logging the global loss)."""
    if world_size() == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t)}


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of one process's shard of a (seed, epoch)-seeded permutation, starting at `start_step`.

    The permutation is padded by wrap-around to whole global batches; global batch s is positions
    [s*B*W, (s+1)*B*W) of it, and rank r takes every W-th of those, so the union over ranks equals
    the batch one process with batch size B*W would take.
    """

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                 start_step: int = 0, rank_: int | None = None, world: int | None = None):
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.seed, self.epoch, self.start_step = seed, epoch, start_step
        self.rank = rank() if rank_ is None else rank_
        self.world = world_size() if world is None else world

    def steps_per_epoch(self) -> int:
        """Global steps in one epoch (the last batch is filled by wrap-around)."""
        return math.ceil(self.size / (self.batch_size * self.world))

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch() - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        total = self.steps_per_epoch() * self.batch_size * self.world
        order = (order * math.ceil(total / max(1, self.size)))[:total]
        mine = order[self.rank::self.world]
        for step in range(self.start_step, self.steps_per_epoch()):
            yield mine[step * self.batch_size:(step + 1) * self.batch_size]
