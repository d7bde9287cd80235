"""`objdet eval`: score COCO results against ground truth (pycocotools' numbers and printout), or run a
checkpoint over a data set and score it."""

from __future__ import annotations

import argparse
from typing import Any

from objdet.errors import ConfigError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score detections: COCO AP exactly as pycocotools, per-class table, plots",
                       description="Evaluate COCO results against COCO ground truth and print pycocotools' "
                                   "summary (same numbers, same format).")
    p.add_argument("--gt", metavar="GT.json", help="COCO ground truth")
    p.add_argument("--dt", metavar="DT.json", help="COCO results: a list of detections")
    p.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"], help="what to compare")
    p.add_argument("--per-class", action="store_true", help="also print AP per class and best-F1 score thresholds")
    p.add_argument("--plots", metavar="DIR", help="write PR curves and a confusion matrix (PNG) here")
    p.add_argument("--model", metavar="CKPT", help="instead of --gt/--dt: run this checkpoint over --data")
    p.add_argument("--data", metavar="SPEC", help="data set for --model (default split: val of shapes, test of voc)")
    p.add_argument("--save-dt", metavar="DT.json", help="with --model: also write its COCO results here")
    p.set_defaults(run=run)


def model_results(checkpoint_path: str, spec: str | None, save_dt: str | None) -> tuple[dict, list]:
    """`eval --model CKPT --data SPEC`: the data set's COCO ground truth and the model's results on it (the
    spec's held-out split when it names none)."""
    if not spec:
        raise ConfigError("eval --model needs --data SPEC")
    from objdet import zoo
    from objdet.data import open_dataset, parse_spec
    from objdet.data.coco import dataset_to_coco
    from objdet.data.spec import HELD_OUT_SPLIT
    from objdet.engine import inference
    from objdet.io import save_json

    from objdet.engine import distributed

    distributed.init_from_env()  # under torchrun each process predicts its shard; all get every record
    parsed = parse_spec(spec)
    dataset = open_dataset(spec, split=None if parsed.split else HELD_OUT_SPLIT.get(parsed.kind))
    records = inference.predict(zoo.load(checkpoint_path), dataset)
    if save_dt and distributed.is_main():
        save_json(records, save_dt)
    return dataset_to_coco(dataset), records


def run(args: argparse.Namespace) -> int:
    gt: Any
    dt: Any
    if args.model:
        gt, dt = model_results(args.model, args.data, args.save_dt)
        from objdet.engine import distributed

        if not distributed.is_main():  # the shards were gathered: rank 0 scores and prints once
            return 0
    elif args.gt and args.dt:
        gt, dt = args.gt, args.dt
    else:
        raise ConfigError("eval needs --gt GT.json and --dt DT.json, or --model CKPT and --data SPEC")
    from objdet.evaluation.coco import evaluate

    result = evaluate(gt, dt, args.iou_type)
    print("\n".join(result.summary_lines()))
    if args.per_class:
        from objdet.evaluation.plots import best_f1

        print()
        print(result.per_class_table())
        print()
        print("best F1 at IoU 0.50 (keep scores >= threshold):")
        for name, row in best_f1(result).items():
            print(f"  {name}: threshold {row['score']:.4f}  F1 {row['f1']:.3f}  "
                  f"precision {row['precision']:.3f}  recall {row['recall']:.3f}")
    if args.plots:
        from objdet.evaluation.plots import write_plots

        paths = write_plots(result, args.plots)
        print(f"wrote {len(paths)} plots to {args.plots}")
    return 0
