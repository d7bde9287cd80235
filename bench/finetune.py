"""What starting from weights buys: a detector objdet pretrains on a large `shapes` split with some classes,
fine-tuned on a small target whose classes are partly new, against the same detector from scratch, at equal
steps over several seeds; and name-matched transfer (the rows of a class the source knew are copied) against
fresh heads.

    python bench/finetune.py pretrain                      # the source: 3 classes, the demo's recipe
    python bench/finetune.py pretrain --source-steps 672    # ... stopped after its first epoch (BENCHMARKS.md)
    python bench/finetune.py finetune --init scratch --seed 0
    python bench/finetune.py finetune --init matched --seed 0
    python bench/finetune.py finetune --init fresh --seed 0
    python bench/finetune.py finetune --init matched --lr 1e-4 --freeze backbone --seed 0

Source classes: rectangle, ellipse, triangle (2688 images of 128 px, 3 epochs, as `objdet demo`). Target:
triangle, star, cross, 128 training images; scored on 64 held-out target images (bbox AP, and AP of the
known class "triangle" and the new ones). Each fine-tune run appends a json line to --results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import objdet
from objdet.data.augment import HorizontalFlip
from objdet.data.coco import dataset_to_coco
from objdet.data.shapes import ShapesDataset
from objdet.demo import model_fields, train_config
from objdet.engine import inference
from objdet.engine.trainer import Trainer, seed_everything
from objdet.evaluation.coco import evaluate
from objdet.weights.transfer import freeze

MODEL, SIZE = "faster_rcnn_r18_fpn", 128
SOURCE_CLASSES = ["rectangle", "ellipse", "triangle"]
TARGET_CLASSES = ["triangle", "star", "cross"]


def _data(classes, split, length, seed=0, flip=False):
    transforms = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names) if flip else None
    return ShapesDataset(split, length=length, image_size=SIZE, seed=seed, classes=classes, transforms=transforms)


def pretrain(args) -> None:
    train = _data(SOURCE_CLASSES, "train", 2688, flip=True)
    seed_everything(0)
    model = objdet.build(MODEL, classes=SOURCE_CLASSES, **model_fields(MODEL, train, SIZE))
    seed_everything(0)
    trainer = Trainer(model, train, None, train_config(3, 4, 5e-4, True, 0, args.out / "source", progress=False))
    if args.source_steps:  # the schedule of 3 epochs, stopped early (last.pt then holds that step's weights)
        trainer.step_hook = lambda step, _: trainer.request_stop() if step >= args.source_steps else None
    trainer.fit()
    print(f"source written to {args.out / 'source' / 'last.pt'}")


def finetune(args) -> None:
    train = _data(TARGET_CLASSES, "train", args.images, seed=1, flip=True)
    val = _data(TARGET_CLASSES, "val", 64, seed=1)
    source = args.out / "source" / "last.pt"
    seed_everything(args.seed)
    if args.init == "scratch":
        model = objdet.build(MODEL, classes=TARGET_CLASSES, **model_fields(MODEL, train, SIZE))
    else:
        # "fresh": the same weights, but class names the source does not know, so no class row is copied
        names = TARGET_CLASSES if args.init == "matched" else [f"new {c}" for c in TARGET_CLASSES]
        model = objdet.build(MODEL, weights=source, classes=names,
                             **({"backbone_norm": "FrozenBN"} if args.frozen_bn else {}))
        model.class_names = list(TARGET_CLASSES)
        print(model.weights_report.summary(str(source)))
    frozen = freeze(model, args.freeze)
    epochs = max(1, round(args.steps * args.batch_size / len(train)))
    config = train_config(epochs, args.batch_size, args.lr, True, args.seed, args.out / "runs" / args.tag(), False)
    seed_everything(args.seed)
    start = time.time()
    Trainer(model, train, None, config).fit()
    seconds = time.time() - start
    gt = dataset_to_coco(val)
    result = evaluate(gt, inference.predict(model, val, 4), "bbox")
    per_class = {name: row["AP"] for name, row in result.per_class().items()}
    row = {"init": args.init, "seed": args.seed, "lr": args.lr, "freeze": args.freeze, "frozen_bn": args.frozen_bn,
           "images": len(train), "steps": epochs * len(train) // args.batch_size, "seconds": round(seconds),
           "frozen_params": len(frozen), "AP": result.stats["AP"], "AP50": result.stats["AP50"],
           "AP_per_class": per_class}
    print(json.dumps(row))
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["pretrain", "finetune"])
    p.add_argument("--out", type=Path, default=Path("runs/finetune"))
    p.add_argument("--init", choices=["scratch", "matched", "fresh"], default="matched")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=128, help="target training images")
    p.add_argument("--steps", type=int, default=320, help="optimiser steps (rounded to whole epochs)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--freeze", default="none", choices=["none", "backbone", "backbone+neck"])
    p.add_argument("--frozen-bn", action="store_true", help="the source's BatchNorm trunk as FrozenBN")
    p.add_argument("--source-steps", type=int, help="pretrain: stop after this many steps of the 3-epoch schedule "
                                                     "(672 = the end of its first epoch)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default="runs/finetune/results.jsonl")
    args = p.parse_args()
    args.tag = lambda: f"{args.init}-s{args.seed}-lr{args.lr}-{args.freeze.replace('+', '_')}" + ("-fbn" if args.frozen_bn else "")
    torch.set_num_threads(args.threads)
    pretrain(args) if args.stage == "pretrain" else finetune(args)


if __name__ == "__main__":
    main()
