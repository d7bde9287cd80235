"""bfloat16 inference with the same weights: what reduced-precision box arithmetic costs in AP.

Takes the torchvision models that `bench/raccoon.py --impl torchvision` trained, loads each into
torchvision and (converted) into objdet, and scores both on voc:RACCOON:test in float32 and under CPU
bfloat16 autocast. In float32 the two libraries give the same AP (same function, same weights);
under autocast torchvision decodes anchors and boxes in bfloat16 while objdet keeps them in float32.

    python bench/autocast_inference.py --arch faster_rcnn --seeds 0 1 2 3 4 --sizes 256 512
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch
from raccoon import objdet_model, torchvision_model

from objdet.data import open_dataset
from objdet.engine import inference
from objdet.weights.torchvision import load_into, rcnn_state_dict, retinanet_state_dict


def scores(model: torch.nn.Module, dataset, amp: bool) -> tuple[float, float]:
    """COCO (AP, AP50) of `model` on `dataset`, in float32 or under bfloat16 autocast."""
    context = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with context:
        stats = inference.evaluate(model.eval(), dataset, batch_size=4)["bbox"]
    return stats["AP"], stats["AP50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["faster_rcnn", "retinanet"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256], help="test image sides (min = max size)")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/raccoon"))
    parser.add_argument("--runs", default="runs/bench-raccoon", help="where bench/raccoon.py left its runs")
    parser.add_argument("--results", default="runs/bench-autocast/results.jsonl")
    args = parser.parse_args()

    test = open_dataset(f"voc:{args.root}:test")
    convert = rcnn_state_dict if args.arch == "faster_rcnn" else retinanet_state_dict
    name = {"faster_rcnn": "faster_rcnn_r18_fpn", "retinanet": "retinanet_r18_fpn"}[args.arch]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        checkpoint = Path(args.runs) / f"{args.arch}-torchvision-{seed}" / "last.pt"
        weights = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
        for size in args.sizes:
            tv = torchvision_model(args.arch, size)
            tv.load_state_dict(weights)
            ours = load_into(objdet_model(args.arch, size, init="torchvision"), convert(weights), name)
            row = {"arch": args.arch, "seed": seed, "size": size}
            for impl, model in (("torchvision", tv), ("objdet", ours)):
                for amp in (False, True):
                    ap, ap50 = scores(model, test, amp)
                    row[f"{impl}_{'bf16' if amp else 'fp32'}"] = [round(ap, 4), round(ap50, 4)]
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
