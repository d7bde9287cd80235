"""Inference on the path a user takes, against the peer with the same weights, side by side in one process:
`objdet.from_torchvision(arch, state_dict).eval()` (or `from_effdet`) then a call, against torchvision's
(effdet's) model called on the same image.

    .venv/bin/python bench/inference.py                       # all five pairs, 5 interleaved repeats
    .venv/bin/python bench/inference.py --only faster mask --repeats 7

Weights: the peer's random initialisation, made to behave like a trained detector so the work after the
trunk is realistic: the trunk's norm statistics are measured on the bench image (as BatchNorm would
learn them) and frozen, and the classifier's weights are scaled until a few dozen detections pass the
score threshold. The same state dict is then loaded into objdet. Each row also checks that both
libraries return the same detections (count, largest box and score difference).

The image is a real photo (/work/shared/data/raccoon/images/raccoon-88.jpg, 640x480), batch 1, min_size and
max_size set so it is not resized (EfficientDet: the image letterboxed to 512x512 by objdet, and the same
normalised 512x512 tensor given to effdet's DetBenchPredict). Times are medians of `--repeats` runs,
objdet (default path), objdet inside `fused.disabled()` (the plain eval path) and the peer interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.models import detection as tvd  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

import objdet  # noqa: E402
from objdet import fused  # noqa: E402
from objdet.data.image import read_image  # noqa: E402

IMAGE = Path("/work/shared/data/raccoon/images/raccoon-88.jpg")
ARCHS = {"faster": "fasterrcnn_resnet50_fpn", "mask": "maskrcnn_resnet50_fpn",
         "keypoint": "keypointrcnn_resnet50_fpn", "retinanet": "retinanet_resnet50_fpn"}
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, after one warm-up each, taking turns so load hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def measure_norms(trunk: torch.nn.Module, x: torch.Tensor) -> None:
    """BatchNorm statistics of `trunk` measured on `x` (a plain average), as training would set them."""
    norms = [m for m in trunk.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    trunk.train()
    trunk(x)
    trunk.eval()


def freeze(module: torch.nn.Module) -> None:
    """BatchNorm2d -> torchvision's FrozenBatchNorm2d with the same statistics (its pretrained trunks)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze(child)


def detections_match(ours: dict, peer: dict) -> str:
    """How far two detection sets are apart: counts, detections without a twin (same label, IoU > 0.99) on
    the other side, and the largest box and score difference between twins."""
    from torchvision.ops import box_iou

    n, m = len(ours["boxes"]), len(peer["boxes"])
    if n == 0 or m == 0:
        return f"{n} / {m} detections"
    iou = box_iou(ours["boxes"], peer["boxes"]) * (ours["labels"][:, None] == peer["labels"][None])
    best, twin = iou.max(1)
    matched = best > 0.99
    box = float((ours["boxes"][matched] - peer["boxes"][twin[matched]]).abs().max())
    score = float((ours["scores"][matched] - peer["scores"][twin[matched]]).abs().max())
    return (f"{n} / {m} detections, {n - int(matched.sum())} without a twin, max |box| diff {box:.1e}, "
            f"|score| {score:.1e}")


def torchvision_pair(kind: str, image: torch.Tensor, args: argparse.Namespace) -> dict:
    arch = ARCHS[kind]
    h, w = image.shape[-2:]
    size = dict(min_size=min(h, w), max_size=max(h, w))
    torch.manual_seed(0)
    extra = {"num_keypoints": 17} if kind == "keypoint" else {}
    peer = getattr(tvd, arch)(weights=None, weights_backbone=None, **size, **extra)
    measure_norms(peer.backbone.body, ((image - MEAN) / STD)[None])
    freeze(peer.backbone.body)
    with torch.no_grad():  # a classifier that scores a few dozen boxes above the threshold
        if kind == "retinanet":
            cls = peer.head.classification_head.cls_logits
            cls.bias.fill_(-2.0)
            cls.weight.mul_(args.class_scale)
        else:
            peer.roi_heads.box_predictor.cls_score.weight.mul_(args.class_scale)
    peer.eval()
    ours = objdet.from_torchvision(arch, peer.state_dict(), **size).eval()
    return run_pair(f"{arch} {h}x{w}", ours, lambda: peer([image]), lambda out: out[0], image, args)


def effdet_pair(image: torch.Tensor, args: argparse.Namespace) -> dict:
    from effdet import DetBenchPredict, create_model

    size = args.effdet_size
    square = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0].clamp(0, 1)
    x = ((square - MEAN) / STD)[None]
    torch.manual_seed(0)
    net = create_model("tf_efficientdet_d0", pretrained=False, pretrained_backbone=False, image_size=(size, size))
    measure_norms(net, x)
    with torch.no_grad():
        net.class_net.predict.conv_pw.bias.fill_(-2.0)
        net.class_net.predict.conv_pw.weight.mul_(args.class_scale)
    predict = DetBenchPredict(net).eval()
    ours = objdet.from_effdet("tf_efficientdet_d0", net.state_dict(), image_size=size).eval()

    def peer_dets(out: torch.Tensor) -> dict:
        keep = out[0, :, 4] > ours.config.score_thresh
        rows = out[0][keep]
        return {"boxes": rows[:, :4], "scores": rows[:, 4], "labels": rows[:, 5].long()}

    return run_pair(f"tf_efficientdet_d0 {size}x{size}", ours, lambda: predict(x), peer_dets, square, args)


def run_pair(name: str, ours: torch.nn.Module, peer: Callable[[], object], peer_dets: Callable[[object], dict],
             image: torch.Tensor, args: argparse.Namespace) -> dict:
    def plain() -> object:
        with fused.disabled():
            return ours([image])

    with torch.no_grad():
        reference = peer_dets(peer())
        check = (f"default vs peer: {detections_match(ours([image])[0], reference)}; "
                 f"plain vs peer: {detections_match(plain()[0], reference)}")
        t = interleaved({"objdet": lambda: ours([image]), "plain": plain, "peer": peer}, args.repeats)
    row = {"what": name, **t, "check": check}
    print(f"{name:40s} objdet {t['objdet']:.3f} s  (plain eval {t['plain']:.3f} s)  peer {t['peer']:.3f} s  "
          f"ratio {t['objdet'] / t['peer']:.2f} (plain {t['plain'] / t['peer']:.2f}) | {check}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[*ARCHS, "effdet"], help="these pairs only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--effdet-size", type=int, default=512)
    parser.add_argument("--class-scale", type=float, default=1.5, help="classifier weight scale (detection count)")
    parser.add_argument("--image", default=str(IMAGE), help="a photo (640x480 by default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = read_image(args.image)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats, "
          f"load average {load:.1f}", flush=True)
    for kind in args.only or [*ARCHS, "effdet"]:
        effdet_pair(image, args) if kind == "effdet" else torchvision_pair(kind, image, args)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
