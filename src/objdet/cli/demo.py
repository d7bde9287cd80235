"""`objdet demo`: train, evaluate and draw on the built-in data set (the pipeline is `objdet.demo`)."""

from __future__ import annotations

import argparse

from objdet.demo import DEFAULT_MODEL


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the built-in `shapes` data set (no download)",
                       description="Train a small detector from scratch on generated shapes (CPU, minutes), "
                                   "evaluate it on a held-out split, print the COCO table and write "
                                   "pictures of its predictions and PR curves to a run folder.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model to train (default {DEFAULT_MODEL})")
    p.add_argument("--out", help="run folder (default runs/demo-<model>-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data set and of training")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--train-images", type=int, default=2688, help="generated training images")
    p.add_argument("--val-images", type=int, default=64, help="held-out images (the `val` split) to score")
    p.add_argument("--image-size", type=int, default=128, help="side of the generated square images")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (cosine decay)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bfloat16 autocast (default on: about 1.5x faster on CPUs with AVX-512 BF16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.demo import run_demo

    return run_demo(args.model, args.out, args.seed, args.epochs, args.train_images, args.val_images,
                    args.image_size, args.batch_size, args.lr, args.amp, not args.no_progress)
