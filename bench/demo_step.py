"""Median training-step time of `objdet demo`'s model (Faster R-CNN R18-FPN, 128 px, batch 4, bfloat16
autocast, AdamW), without the trainer: compares code versions side by side on the same machine.

    python bench/demo_step.py --steps 60
    git worktree add /tmp/old REV && PYTHONPATH=/tmp/old/src python bench/demo_step.py --steps 60
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import objdet
from objdet.cli import _data_overrides, _demo_overrides
from objdet.data.shapes import ShapesDataset
from objdet.engine.trainer import seed_everything
from objdet.zoo import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "faster_rcnn_r18_fpn"
    train = ShapesDataset("train", length=64, image_size=128, seed=0)
    seed_everything(0)
    model = build(name, **_data_overrides(name, train), **_demo_overrides(name, 128)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    items = [train[i] for i in range(len(train))]
    times = []
    for step in range(args.steps):
        batch = items[(4 * step) % len(items):][:4]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = sum(model([b[0] for b in batch], [b[1] for b in batch]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    print(f"{objdet.__file__}: median step {statistics.median(times[5:]):.4f} s over {args.steps - 5} steps")


if __name__ == "__main__":
    main()
