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


def _torchvision_small(kind: str, num_classes: int, ours_cfg) -> torch.nn.Module:
    """torchvision's Faster/Mask R-CNN with the architecture of objdet's small variant (ResNet-18 with
    GroupNorm, `fpn_channels` FPN, the same anchors, proposal counts and RoI batch)."""
    from torchvision.models import resnet18
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    trunk = resnet18(weights=None, norm_layer=lambda c: torch.nn.GroupNorm(32, c))
    layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    backbone = BackboneWithFPN(trunk, layers, [64, 128, 256, 512], ours_cfg.fpn_channels, LastLevelMaxPool())
    c = ours_cfg
    anchors = AnchorGenerator(tuple((s,) for s in c.anchor_sizes), (tuple(c.aspect_ratios),) * len(c.anchor_sizes))
    cls = tvd.MaskRCNN if kind == "mask" else tvd.FasterRCNN
    return cls(backbone, num_classes=num_classes + 1, min_size=c.min_size, max_size=c.max_size,
               rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=c.rpn_pre_nms_top_n[0],
               rpn_pre_nms_top_n_test=c.rpn_pre_nms_top_n[1], rpn_post_nms_top_n_train=c.rpn_post_nms_top_n[0],
               rpn_post_nms_top_n_test=c.rpn_post_nms_top_n[1], box_batch_size_per_image=c.box_batch_size)


def accuracy(kind: str, library: str, args: argparse.Namespace) -> None:
    """Train the small variant (objdet's, or torchvision's same architecture from the same initial
    weights) on `shapes` for a budget of CPU seconds, then print its COCO AP on the validation split."""
    import time

    from objdet.data.loader import make_loader
    from objdet.data.shapes import ShapesDataset
    from objdet.engine.inference import evaluate
    from objdet.weights.torchvision import rcnn_state_dict

    torch.manual_seed(0)
    train, val = ShapesDataset("train"), ShapesDataset("val", length=args.val_images)
    size = train.image_size
    ours = objdet.build(f"{kind}_rcnn_r18_fpn", num_classes=train.num_classes, backbone_norm="GN",
                        min_size=size, max_size=size)
    peer = _torchvision_small(kind, train.num_classes, ours.config)
    ours.load_state_dict(rcnn_state_dict(peer.state_dict()))  # the same initial weights
    model = ours if library == "objdet" else peer
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    steps, start = 0, time.process_time()
    model.train()
    while time.process_time() - start < args.budget:
        for images, targets in make_loader(train, batch_size=args.batch, shuffle=True, seed=steps):
            for group in opt.param_groups:  # linear warm-up over the first 100 steps
                group["lr"] = args.lr * min(1.0, (steps + 1) / 100)
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            steps += 1
            if time.process_time() - start >= args.budget:
                break
    stats = evaluate(model, val)
    line = " ".join(f"{k} AP {v['AP']:.3f} AP50 {v['AP50']:.3f}" for k, v in stats.items())
    print(f"{kind}_rcnn_r18_fpn {library}: {steps} steps of {args.batch} images in {args.budget:.0f} CPU-s | {line}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", nargs=2, metavar=("faster|mask", "objdet|torchvision"),
                        help="instead of timing: train a small variant on shapes for --budget CPU seconds")
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds of training (--accuracy)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--only", choices=sorted(ARCHS), help="one model only")
    parser.add_argument("--sizes", nargs="+", default=["512x512", "800x1066"], help="HxW input sizes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.accuracy:
        accuracy(*args.accuracy, args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.repeats} repeats", flush=True)
    for kind in [args.only] if args.only else sorted(ARCHS):
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            pair(kind, h, w, args)


if __name__ == "__main__":
    main()
