"""`objdet eval`: score COCO results against ground truth (pycocotools' numbers and printout), explain the
errors, compare two result files, or run a checkpoint over a data set and score it.

`--gt/--dt` evaluation imports no torch (only `--model` does).
"""

from __future__ import annotations

import argparse
from typing import Any

from objdet.cli.data import SPEC_HELP
from objdet.errors import ConfigError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score detections: COCO AP exactly as pycocotools, error breakdown, comparison",
                       description="Evaluate COCO results against COCO ground truth and print pycocotools' "
                                   "summary (same numbers, same format). With two --dt files, compare them.")
    p.add_argument("--gt", metavar="GT.json", help="COCO ground truth")
    p.add_argument("--dt", metavar="DT.json", action="append",
                   help="COCO results: a list of detections; give it twice to compare two models (B - A)")
    p.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"], help="what to compare")
    p.add_argument("--per-class", action="store_true", help="also print AP per class and best-F1 score thresholds")
    p.add_argument("--errors", action="store_true",
                   help="also print TIDE's error breakdown (dAP of Cls, Loc, Both, Dupe, Bkg, Miss, FalsePos, FalseNeg)")
    p.add_argument("--calibration", action="store_true", help="also print the expected calibration error and "
                                                              "the reliability table (IoU 0.5)")
    p.add_argument("--plots", metavar="DIR", help="write PR curves, a confusion matrix and a reliability diagram here")
    p.add_argument("--report", metavar="OUT.html", help="write the self-contained HTML report here")
    p.add_argument("--images", metavar="DIR", help="image folder of --gt, for the report's galleries")
    p.add_argument("--boot", type=int, default=1000, metavar="N", help="bootstrap draws of a comparison (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the comparison's bootstrap and of --val-split (0)")
    p.add_argument("--model", metavar="CKPT", help="instead of --gt/--dt: run this checkpoint (or zoo model with "
                                                   "--weights) over --data")
    p.add_argument("--weights", metavar="SRC", help="weights of the zoo model --model names: torchvision:WEIGHTS, "
                                                    "effdet:NAME or a state-dict file; alone, any checkpoint or "
                                                    "state-dict file. Classes are matched to --data's by name")
    p.add_argument("--data", metavar="SPEC", help=f"{SPEC_HELP} for --model (default split: val of shapes and yolo, "
                                                  "test of voc)")
    p.add_argument("--val-split", type=float, metavar="FRACTION", help="score the held-out part of --data that "
                                                                        "train --val-split FRACTION --seed S held out")
    p.add_argument("--strict", action="store_true", help="refuse --data at the first wart instead of repairing it")
    p.add_argument("--save-dt", metavar="DT.json", help="with --model: also write its COCO results here")
    p.set_defaults(run=run)


def model_results(args: argparse.Namespace) -> tuple[dict, list, Any]:
    """`eval --model CKPT --data SPEC`: the data set's COCO ground truth, the model's results on it (the
    spec's held-out split when it names none, the held-out part with --val-split) and the data set."""
    if not args.data:
        raise ConfigError("eval --model needs --data SPEC")
    from objdet.data import open_dataset, parse_spec
    from objdet.data.coco import dataset_to_coco
    from objdet.data.spec import HELD_OUT_SPLIT
    from objdet.engine import distributed, inference
    from objdet.engine.predict import load_model, torch_model
    from objdet.io import save_json

    distributed.init_from_env()  # under torchrun each process predicts its shard; all get every record
    parsed = parse_spec(args.data)
    if args.val_split is not None and parsed.split:
        raise ConfigError(f"--val-split scores the held-out part of the data set: give {args.data!r} without "
                          f"its split {parsed.split!r}")
    split = "val" if args.val_split is not None else None if parsed.split else HELD_OUT_SPLIT.get(parsed.kind)
    dataset = open_dataset(args.data, split=split, strict=args.strict, val_split=args.val_split, seed=args.seed)
    model = torch_model(load_model(args.model, weights=args.weights))
    records = inference.predict(model, dataset, label_to_category_id=inference.category_map(model, dataset))
    if args.save_dt and distributed.is_main():
        save_json(records, args.save_dt)
    return dataset_to_coco(dataset), records, dataset


def _print_errors(result: Any) -> None:
    from objdet.evaluation.errors import ERROR_KEYS, MAIN_ERRORS, analyse_errors

    errors = analyse_errors(result.gt, result.dt, result.params.iou_type)
    print(f"\nTIDE error breakdown (dAP, IoU 0.5; TIDE's AP {errors.ap:.3f}):")
    print("  " + "  ".join(f"{k:>8}" for k in ERROR_KEYS))
    print("  " + "  ".join(f"{errors.errors[k]:8.4f}" for k in ERROR_KEYS))
    width = max([8] + [len(n) for n in errors.per_class])
    print(f"\n{'class':<{width}}  {'AP@.5':>6}  " + "  ".join(f"{k:>7}" for k in MAIN_ERRORS))
    for name, row in errors.per_class.items():
        print(f"{name:<{width}}  {row['AP']:6.3f}  " + "  ".join(f"{row[k]:+7.4f}" for k in MAIN_ERRORS))


def _print_calibration(result: Any) -> None:
    from objdet.evaluation.calibration import calibration

    cal = calibration(result)
    print(f"\nexpected calibration error (IoU 0.5): {cal.ece:.4f}")
    print("  score bin      detections  mean score  fraction correct")
    for lo, hi, n, conf, prec in zip(cal.bin_edges[:-1], cal.bin_edges[1:], cal.count, cal.confidence, cal.precision):
        if n:
            print(f"  [{lo:.1f}, {hi:.1f}{']' if hi == 1 else ')'}  {n:>10}  {conf:10.3f}  {prec:16.3f}")


def run(args: argparse.Namespace) -> int:
    gt: Any
    dts: list[Any]
    images: Any = args.images
    if args.model or args.weights:
        gt, records, dataset = model_results(args)
        from objdet.engine import distributed

        if not distributed.is_main():  # the shards were gathered: rank 0 scores and prints once
            return 0
        dts = [records]
        if args.report and images is None:
            from objdet.evaluation.gallery import dataset_images

            images = dataset_images(dataset)
    elif args.gt and args.dt:
        gt, dts = args.gt, args.dt
    else:
        raise ConfigError("eval needs --gt GT.json and --dt DT.json, or --model CKPT and --data SPEC")
    if len(dts) > 2:
        raise ConfigError(f"eval compares at most two --dt files, got {len(dts)}")
    from objdet.evaluation.coco import evaluate
    from objdet.evaluation.records import load_ground_truth

    truth = load_ground_truth(gt, args.iou_type)
    results = [evaluate(truth, dt, args.iou_type) for dt in dts]
    for i, result in enumerate(results):
        if len(results) == 2:
            print(f"{'AB'[i]}: {dts[i]}")
        print("\n".join(result.summary_lines()))
        if args.per_class:
            from objdet.evaluation.calibration import best_f1

            print()
            print(result.per_class_table())
            print()
            print("best F1 at IoU 0.50 (keep scores >= threshold):")
            for name, row in best_f1(result).items():
                print(f"  {name}: threshold {row['score']:.4f}  F1 {row['f1']:.3f}  "
                      f"precision {row['precision']:.3f}  recall {row['recall']:.3f}")
        if args.errors:
            _print_errors(result)
        if args.calibration:
            _print_calibration(result)
        if args.plots:
            from pathlib import Path

            from objdet.evaluation.plots import write_plots

            folder = Path(args.plots) / "AB"[i] if len(results) == 2 else args.plots
            paths = write_plots(result, folder)
            print(f"wrote {len(paths)} plots to {folder}")
        if len(results) == 2:
            print()
    if len(results) == 2:
        from objdet.evaluation.compare import compare_evaluations

        names = (str(dts[0]), str(dts[1]))
        print("\n".join(compare_evaluations(*results, names, n_boot=args.boot, seed=args.seed).lines()))
    if args.report:
        from objdet.evaluation.report import write_report

        path = write_report(gt, dts, args.report, images=images, iou_type=args.iou_type, n_boot=args.boot,
                            seed=args.seed)
        print(f"wrote the report to {path}")
    return 0
