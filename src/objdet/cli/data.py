"""`objdet data check|convert`: look at a data set before training on it, and write it in another format."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

SPEC_HELP = "data set: coco:ANN.json:IMG_DIR | voc:ROOT[:split] | yolo:DATA.yaml[:split] | labelme:DIR | " \
            "cvat:ANN.xml:IMG_DIR | shapes[:split]"
SEARCH_IMAGES = 100  # images the anchor-size search scores each candidate on


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a data set (classes, sizes, warts, anchor coverage) or convert it",
                       description="Check a data set or convert it to COCO, YOLO or Pascal VOC.")
    group = p.add_subparsers(dest="action", metavar="ACTION")
    group.required = True
    check = group.add_parser("check", help="report on a data set; exit status 1 when it has errors",
                             description="Images, objects per class, empty images, box sizes and aspect ratios, "
                                         "duplicate images, every repaired or refused record; with --model, the "
                                         "share of boxes no anchor covers. Exit status 1 on errors.")
    check.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    check.add_argument("--split", help="split to check when SPEC names none (default: train where there are splits)")
    check.add_argument("--model", metavar="NAME", help="zoo model whose anchors to measure the boxes against")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="model config override for --model, e.g. --set min_size=512 (repeatable)")
    check.add_argument("--plots", metavar="DIR", help="write PNG plots here")
    check.add_argument("--json", metavar="FILE", help="also write the report as json")
    check.add_argument("--strict", action="store_true", help="count every repair of a wart as an error")
    check.set_defaults(run=run_check)
    conv = group.add_parser("convert", help="write a data set as COCO, YOLO or VOC (images copied, not re-encoded)",
                            description="Convert a data set, one image at a time, losing only what the target "
                                        "format cannot hold (said at the end).")
    conv.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    conv.add_argument("--to", required=True, choices=["coco", "yolo", "voc"], help="target format")
    conv.add_argument("out", metavar="OUT", help="output folder")
    conv.add_argument("--split", help="split to read when SPEC names none, and the name written (default: train)")
    conv.add_argument("--val-split", type=float, metavar="FRACTION",
                      help="write a seeded train/val split: this fraction of the images as val, the rest as train")
    conv.add_argument("--seed", type=int, default=0, help="seed of --val-split")
    conv.add_argument("--strict", action="store_true", help="refuse the data set at the first wart")
    conv.set_defaults(run=run_convert)


def _progress(what: str) -> Any:
    def show(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            print(f"\r{what}: {done}/{total} images", end="\n" if done == total else "", file=sys.stderr, flush=True)
    return show


def _coverage(dataset: Any, name: str, overrides: dict) -> dict:
    """Anchor coverage of `dataset` under zoo model `name`, and the anchor scale that covers it best."""
    import numpy as np

    from objdet import zoo
    from objdet.data.check import anchor_coverage, best_anchor_ious
    from objdet.errors import ConfigError

    cfg = zoo.config(name, **overrides)
    plan = cfg.anchor_plan()
    if plan is None:
        raise ConfigError(f"{name} lays no anchors (its proposals come with the images)")
    classes = [c["name"] for c in dataset.categories]
    ious, labels = best_anchor_ious(dataset, plan.generator, plan.strides, plan.transform.input_size)
    coverage = {**anchor_coverage(ious, labels, classes, plan.fg_iou), "model": name}
    sample = sorted(np.random.default_rng(0).permutation(len(dataset))[:SEARCH_IMAGES].tolist())
    best = None
    for k in sorted(range(-8, 9, 2), key=abs):  # anchors 1/4x .. 4x in half octaves, nearest to 1x first
        fields = cfg.scaled_anchors(2 ** (k / 4))
        scaled = zoo.config(name, **{**overrides, **fields}).anchor_plan()
        ious, labels = best_anchor_ious(dataset, scaled.generator, scaled.strides, scaled.transform.input_size,
                                        sample)
        share = anchor_coverage(ious, labels, classes, scaled.fg_iou)["uncovered"]
        if best is None or share < best["uncovered"] - 1e-9:
            best = {"fields": fields, "uncovered": share, "factor": 2 ** (k / 4), "images": len(sample)}
    if best is not None and best["factor"] != 1:
        coverage["suggestion"] = best
    return coverage


def run_check(args: argparse.Namespace) -> int:
    from objdet.cli.train import parse_overrides
    from objdet.data import open_dataset, parse_spec
    from objdet.data.check import check_dataset
    from objdet.data.validate import DataWarning
    from objdet.errors import ConfigError, ObjdetError
    from objdet.io import save_json

    parsed = parse_spec(args.spec)
    options: dict[str, Any] = {} if parsed.kind == "shapes" else {"on_error": "skip"}
    try:
        with warnings.catch_warnings():  # the report lists every repair
            warnings.simplefilter("ignore", DataWarning)
            dataset = open_dataset(args.spec, split=None if parsed.split else args.split, strict=args.strict,
                                   **options)
    except ConfigError:
        raise
    except ObjdetError as err:  # the data set cannot be opened at all
        print(f"error: {err}\nobjdet data check: {args.spec} cannot be read", file=sys.stderr)
        return 1
    report = check_dataset(dataset, args.spec, progress=_progress("checked"))
    if args.model:
        report.coverage = _coverage(dataset, args.model, parse_overrides(args.set))
    print("\n".join(report.lines()))
    if args.plots:
        from objdet.data.check_plots import write_plots

        print(f"plots: {', '.join(str(p) for p in write_plots(report, args.plots))}")
    if args.json:
        save_json({k: v for k, v in vars(report).items() if k not in ("sides", "aspects", "centres")}, args.json)
    return 1 if report.errors else 0


def run_convert(args: argparse.Namespace) -> int:
    from objdet.data import open_dataset, parse_spec
    from objdet.data.convert import convert

    parsed = parse_spec(args.spec)
    split = parsed.split or args.split or "train"
    parts = ("train", "val") if args.val_split is not None else (split,)
    for part in parts:
        if args.val_split is not None:  # both parts come from the same pool, whatever split the spec names
            dataset = open_dataset(parsed.with_split(None), split=part, strict=args.strict, val_split=args.val_split,
                                   seed=args.seed)
        else:
            dataset = open_dataset(args.spec, split=None if parsed.split else split, strict=args.strict)
        spec, dropped = convert(dataset, args.to, args.out, split=part, progress=_progress(f"wrote {part}"))
        lost = "; not held by the format: " + ", ".join(f"{n} {what}" for what, n in dropped.items()) if dropped else ""
        print(f"wrote {len(dataset)} images of {args.spec} as {args.to}{lost}; read it back with {spec}")
    return 0
