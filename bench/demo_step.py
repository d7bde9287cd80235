"""Median training-step time of `objdet demo` (Faster R-CNN R18-FPN, 128 px, batch 4, bfloat16 autocast,
the demo's Trainer recipe): the time between two steps of `Trainer.fit`, data, optimiser and logging
included. Compares code versions side by side on the same machine:

    python bench/demo_step.py --steps 60
    git worktree add /tmp/old REV && PYTHONPATH=/tmp/old/src python bench/demo_step.py --steps 60

(an old REV without `objdet.demo` needs a copy of this script calling what that REV had: before
2026-12-02, `objdet.cli._data_overrides`, `_demo_overrides` and `demo_train_config`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import objdet
from objdet.demo import model_fields, train_config
from objdet.data.augment import HorizontalFlip
from objdet.data.shapes import ShapesDataset
from objdet.engine.trainer import Trainer, seed_everything
from objdet.zoo import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "faster_rcnn_r18_fpn"
    flip = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names)
    train = ShapesDataset("train", length=4 * args.steps, image_size=128, seed=0, transforms=flip)
    seed_everything(0)
    overrides = model_fields(name, train, 128)
    model = build(name, **overrides)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        config = train_config(1, 4, 5e-4, True, 0, Path(out), progress=False)
        trainer = Trainer(model, train, None, config,
                          step_hook=lambda step, values: stamps.append(time.perf_counter()))
        trainer.fit()
    steps = [b - a for a, b in zip(stamps, stamps[1:])][5:]
    print(f"{objdet.__file__}: median step {statistics.median(steps):.4f} s over {len(steps)} steps "
          f"({args.threads} threads)")


if __name__ == "__main__":
    main()
