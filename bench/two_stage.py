"""Two-stage detectors against torchvision, same weights, same input, one process, 2 threads:
inference time, training step time and peak memory of Faster R-CNN and Mask R-CNN (R50-FPN).

    .venv/bin/python bench/two_stage.py                          # both models, 512x512 and 800x1066
    .venv/bin/python bench/two_stage.py --only faster --sizes 512x512 --repeats 3

The torchvision models get FrozenBatchNorm2d trunks, as its pretrained checkpoints have; objdet loads
the same state dict with `from_torchvision` and, for inference, folds the frozen norms into the convs
and runs channels-last (`TwoStageDetector.fuse_for_inference`). min_size/max_size are set so that
the images are not resized. Times are medians over `--repeats` runs, objdet and torchvision
interleaved; peak memory is the resident memory one call adds at its high-water mark (sampled).
"""

from __future__ import annotations

import argparse
import os
import sys

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # the same memory accounting as bench/one_stage.py
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from one_stage import _sgd_step, compare  # noqa: E402
from torchvision.models import detection as tvd  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

import objdet  # noqa: E402

ARCHS = {"faster": "fasterrcnn_resnet50_fpn", "mask": "maskrcnn_resnet50_fpn"}


def _freeze_bn(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features))
        else:
            _freeze_bn(child)


def _targets(h: int, w: int, batch: int, masks: bool) -> list[dict]:
    out = []
    for _ in range(batch):
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.8 * h]])
        t = {"boxes": boxes, "labels": torch.tensor([3, 17])}
        if masks:
            m = torch.zeros(2, h, w, dtype=torch.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
                m[i, y0:y1, x0:x1] = 1
            t["masks"] = m
        out.append(t)
    return out


def pair(kind: str, h: int, w: int, args: argparse.Namespace) -> list[dict]:
    arch = ARCHS[kind]
    size = dict(min_size=min(h, w), max_size=max(h, w))
    torch.manual_seed(0)
    peer = getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=91, **size)
    _freeze_bn(peer.backbone.body)
    ours = objdet.from_torchvision(arch, peer.state_dict(), **size)
    images = [torch.rand(3, h, w) for _ in range(args.batch)]
    targets = _targets(h, w, args.batch, kind == "mask")
    name = f"{arch} {h}x{w}"
    rows = []
    peer.train(), ours.train()
    step_ours = _sgd_step(lambda: sum(ours(images, targets).values()), torch.optim.SGD(ours.parameters(), lr=1e-5))
    step_peer = _sgd_step(lambda: sum(peer(images, targets).values()), torch.optim.SGD(peer.parameters(), lr=1e-5))
    rows.append(compare(f"{name} train step (x{args.batch})", step_ours, step_peer, args.repeats))
    peer.eval(), ours.eval()
    ours.fuse_for_inference()
    with torch.no_grad():
        rows.append(compare(f"{name} inference (x{args.batch})", lambda: ours(images), lambda: peer(images),
                            args.repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(ARCHS), help="one model only")
    parser.add_argument("--sizes", nargs="+", default=["512x512", "800x1066"], help="HxW input sizes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.repeats} repeats", flush=True)
    for kind in [args.only] if args.only else sorted(ARCHS):
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            pair(kind, h, w, args)


if __name__ == "__main__":
    main()
