"""`objdet report`: the self-contained HTML report of one result file, or the comparison of two."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML page explaining an evaluation",
                       description="Score COCO results and write an HTML page that opens offline: the COCO "
                                   "table, a sortable per-class table, PR curves, the confusion matrix, TIDE's "
                                   "error breakdown, calibration, galleries of mistakes; with two --dt files, "
                                   "the bootstrap comparison.")
    p.add_argument("--gt", metavar="GT.json", required=True, help="COCO ground truth")
    p.add_argument("--dt", metavar="DT.json", action="append", required=True,
                   help="COCO results; give it twice to compare two models (B - A)")
    p.add_argument("--out", metavar="OUT.html", required=True, help="where to write the page")
    p.add_argument("--images", metavar="DIR", help="image folder of --gt (its file_names), for the galleries")
    p.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"], help="what to compare")
    p.add_argument("--boot", type=int, default=1000, metavar="N", help="bootstrap draws of a comparison (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the comparison's bootstrap (0)")
    p.add_argument("--title", default="objdet evaluation report", help="the page's title")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.errors import ConfigError
    from objdet.evaluation.report import write_report

    if len(args.dt) > 2:
        raise ConfigError(f"report compares at most two --dt files, got {len(args.dt)}")
    path = write_report(args.gt, args.dt, args.out, images=args.images, iou_type=args.iou_type, n_boot=args.boot,
                        seed=args.seed, title=args.title)
    print(f"wrote the report to {path}")
    return 0
