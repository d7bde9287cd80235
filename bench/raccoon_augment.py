"""What `objdet train --aug` buys on raccoon: the same model, recipe and seed under each augmentation preset.

Faster R-CNN with a BatchNorm ResNet-18 trunk from scratch (bench/raccoon.py's model and recipe: AdamW 1e-3,
cosine, bfloat16 autocast, 256 px images) trained on voc:RACCOON:train (160 images) with the training set's
transforms set to `objdet.data.augment.presets(PRESET)`, the only difference between runs of one seed; bbox
AP and AP50 on voc:RACCOON:test (40 images). One run per call; each appends a json line to --results, and
--summary prints the table of BENCHMARKS.md from that file.

    OMP_NUM_THREADS=1 .venv/bin/python bench/raccoon_augment.py --aug standard --seed 0
    .venv/bin/python bench/raccoon_augment.py --summary
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from raccoon import objdet_model, recipe

from objdet.data import open_dataset
from objdet.data.augment import PRESETS, presets
from objdet.engine import inference
from objdet.engine.trainer import Trainer, seed_everything


def summary(results: Path) -> None:
    """Mean AP and AP50 per preset over the seeds in `results`, as a markdown table."""
    runs = defaultdict(list)
    for line in results.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        runs[row["aug"]].append(row)
    print("| --aug | seeds | AP per seed | mean AP | mean AP50 | train s per run |")
    print("|---|---|---|---|---|---|")
    for name in PRESETS:
        rows = sorted(runs.get(name, []), key=lambda r: r["seed"])
        if rows:
            seeds = ", ".join(str(r["seed"]) for r in rows)
            aps = ", ".join(f"{r['AP']:.3f}" for r in rows)
            ap, ap50 = statistics.mean(r["AP"] for r in rows), statistics.mean(r["AP50"] for r in rows)
            seconds = statistics.mean(r["train_seconds"] for r in rows)
            print(f"| {name} | {seeds} | {aps} | {ap:.3f} | {ap50:.3f} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aug", choices=list(PRESETS), help="the augmentation preset of this run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, batch order and augmentation")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/raccoon"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=256, help="image side after resizing (min = max size)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/bench-raccoon-augment")
    parser.add_argument("--results", default="runs/bench-raccoon-augment/results.jsonl")
    parser.add_argument("--summary", action="store_true", help="print the table of --results and stop")
    args = parser.parse_args()
    if args.summary:
        summary(Path(args.results))
        return
    if args.aug is None:
        parser.error("--aug is required (or --summary)")

    train = open_dataset(f"voc:{args.root}:train")
    train.transforms = presets(args.aug)
    test = open_dataset(f"voc:{args.root}:test")
    seed_everything(args.seed)
    model = objdet_model("faster_rcnn", args.size)
    config = recipe(args.epochs, args.batch_size, args.lr, True, args.seed, f"{args.out}/{args.aug}-{args.seed}")
    seed_everything(args.seed)  # the training stream starts from the seed too, as the recorded runs did
    start = time.time()
    Trainer(model, train, None, config).fit()
    seconds = time.time() - start
    stats = inference.evaluate(model, test, args.batch_size)["bbox"]
    row = {"aug": args.aug, "seed": args.seed, "epochs": args.epochs, "size": args.size,
           "train_seconds": round(seconds), "AP": round(stats["AP"], 4), "AP50": round(stats["AP50"], 4),
           "torch_threads": torch.get_num_threads()}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
