"""The runs behind `objdet demo`'s recipe: train on `shapes` and score the held-out split every epoch.

One run per call; model fields go in --over as JSON on top of the demo's own overrides, e.g.

    OMP_NUM_THREADS=1 python bench/demo_recipe.py --epochs 3 --train 2304 --amp --lr 5e-4 \\
        --over '{"anchor_sizes": [8, 16, 32, 64, 128], "backbone_norm": "BN"}' --out runs/recipe/e10

The per-epoch bbox AP lines are printed and kept in OUT/log.jsonl (rows of kind "val").
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from objdet.demo import model_fields
from objdet.data.augment import HorizontalFlip
from objdet.data.shapes import ShapesDataset
from objdet.engine.trainer import TrainConfig, Trainer, seed_everything
from objdet.zoo import build


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="faster_rcnn_r18_fpn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train", type=int, default=2304, help="generated training images")
    p.add_argument("--val", type=int, default=64, help="held-out images scored after each --eval-every epochs")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--bs", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--over", default="{}", help="JSON of model config fields")
    p.add_argument("--out", default="runs/recipe/run")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    flip = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names)
    train = ShapesDataset("train", length=a.train, image_size=a.size, seed=0, transforms=flip)
    val = ShapesDataset("val", length=a.val, image_size=a.size, seed=0)
    over = {**model_fields(a.model, train, a.size), **json.loads(a.over)}
    seed_everything(0)
    model = build(a.model, **over)
    config = TrainConfig(epochs=a.epochs, batch_size=a.bs, optimizer="adamw", lr=a.lr, weight_decay=a.wd,
                         warmup_iters=a.warmup, schedule="cosine", clip_grad_norm=10.0, amp=a.amp,
                         eval_every=a.eval_every, seed=0, out=a.out, progress=False)
    seed_everything(0)  # the training stream starts from the seed too, as the recorded runs did
    start = time.time()
    Trainer(model, train, val, config).fit()
    print(f"trained and scored in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
