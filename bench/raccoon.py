"""Accuracy from scratch on raccoon: objdet's CPU-sized detectors against torchvision's, same recipe.

Both sides are trained by objdet's Trainer (same seed, batch order, flips, optimiser, schedule) on
voc:RACCOON:train (160 images) and scored with COCO AP on voc:RACCOON:test (40 images); only the
model differs. torchvision's models are assembled to the objdet configs: ResNet-18 trunk with
BatchNorm (from scratch), 128-channel FPN, the same anchors, RoI sampling and image size. bfloat16
autocast is on for both (the `objdet demo` recipe); --no-amp trains in float32.

`--init torchvision` (objdet only) starts objdet from the very weights torchvision's run with the
same seed starts from (converted by objdet.weights.torchvision), so a pair of runs differs only in
the implementation; RetinaNet then also takes torchvision's head layout and L1 box loss.
`--channels-last` (torchvision only) trains torchvision's model in the memory layout objdet's
RetinaNet trains in, so that a pair rounds alike (objdet's Faster R-CNN trains contiguous).

    python bench/raccoon.py --arch faster_rcnn --impl objdet --epochs 12
    python bench/raccoon.py --arch retinanet --impl torchvision --epochs 12 --seed 1
    python bench/raccoon.py --arch retinanet --impl objdet --init torchvision --seed 1
    python bench/raccoon.py --arch retinanet --impl torchvision --channels-last --seed 1

Each run appends one json line (arch, impl, init, channels_last: whether --channels-last was given,
seed, epochs, seconds, AP, AP50) to --results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from objdet.data import open_dataset
from objdet.data.augment import HorizontalFlip
from objdet.engine import inference
from objdet.engine.trainer import TrainConfig, Trainer, seed_everything
from objdet.weights.torchvision import load_into, rcnn_state_dict, retinanet_state_dict
from objdet.zoo import build


def torchvision_model(arch: str, size: int) -> nn.Module:
    """torchvision's Faster R-CNN / RetinaNet built to match objdet's r18 configs (1 class + background)."""
    from torchvision.models import resnet18
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    trunk = resnet18(weights=None)
    if arch == "faster_rcnn":
        layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
        backbone = BackboneWithFPN(trunk, layers, [64, 128, 256, 512], 128, extra_blocks=LastLevelMaxPool())
        anchors = AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5)
        return FasterRCNN(backbone, num_classes=2, min_size=size, max_size=size, rpn_anchor_generator=anchors,
                          rpn_pre_nms_top_n_train=600, rpn_pre_nms_top_n_test=300,
                          rpn_post_nms_top_n_train=300, rpn_post_nms_top_n_test=300, box_batch_size_per_image=128)
    layers = {"layer2": "0", "layer3": "1", "layer4": "2"}
    backbone = BackboneWithFPN(trunk, layers, [128, 256, 512], 128, extra_blocks=LastLevelP6P7(512, 128))
    return RetinaNet(backbone, num_classes=2, min_size=size, max_size=size)


def objdet_model(arch: str, size: int, init: str = "own") -> nn.Module:
    """objdet's CPU-sized zoo entry with a BatchNorm trunk trained from scratch: its own initial weights, or
    (init="torchvision") those `torchvision_model` draws from the same random state."""
    name = {"faster_rcnn": "faster_rcnn_r18_fpn", "retinanet": "retinanet_r18_fpn"}[arch]
    config = dict(num_classes=1, backbone_norm="BN", trainable_layers=5, min_size=size, max_size=size)
    if init == "own":
        return build(name, **config)
    reference = torchvision_model(arch, size).state_dict()
    if arch == "faster_rcnn":
        return load_into(build(name, **config), rcnn_state_dict(reference), name)
    # torchvision's RetinaNet keeps a (never used) background channel and trains boxes with L1
    model = build(name, **config, background_channel=True, box_loss="l1")
    return load_into(model, retinanet_state_dict(reference), name)


def recipe(epochs: int, batch_size: int, lr: float, amp: bool, seed: int, out: str) -> TrainConfig:
    """The training settings of every raccoon run: AdamW, 50 warm-up steps, cosine decay, no evaluation."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adamw", lr=lr, weight_decay=0.05,
                       warmup_iters=50, schedule="cosine", clip_grad_norm=10.0, eval_every=0, amp=amp, seed=seed,
                       out=out, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["faster_rcnn", "retinanet"], required=True)
    parser.add_argument("--impl", choices=["objdet", "torchvision"], required=True)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/raccoon"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=256, help="image side after resizing (min = max size)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW, warm-up then cosine")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, batch order and flips")
    parser.add_argument("--init", choices=["own", "torchvision"], default="own",
                        help="objdet's initial weights: its own, or torchvision's for the same seed")
    parser.add_argument("--channels-last", action="store_true",
                        help="train torchvision's model in channels-last memory format")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bfloat16 autocast")
    parser.add_argument("--out", default="runs/bench-raccoon")
    parser.add_argument("--results", default="runs/bench-raccoon/results.jsonl")
    args = parser.parse_args()

    train = open_dataset(f"voc:{args.root}:train")
    train.transforms = HorizontalFlip()
    test = open_dataset(f"voc:{args.root}:test")
    seed_everything(args.seed)
    if args.init == "torchvision" and args.impl != "objdet":
        parser.error("--init torchvision applies to --impl objdet")
    if args.channels_last and args.impl != "torchvision":
        parser.error("--channels-last applies to --impl torchvision (objdet picks its own layout)")
    model = (objdet_model(args.arch, args.size, args.init) if args.impl == "objdet"
             else torchvision_model(args.arch, args.size))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    variant = "-tvinit" if args.init == "torchvision" else "-cl" if args.channels_last else ""
    run = f"{args.arch}-{args.impl}{variant}-{args.seed}"
    config = recipe(args.epochs, args.batch_size, args.lr, args.amp, args.seed, f"{args.out}/{run}")
    seed_everything(args.seed)  # the training stream starts from the seed too, as the recorded runs did
    start = time.time()
    Trainer(model, train, None, config).fit()
    seconds = time.time() - start
    stats = inference.evaluate(model, test, args.batch_size)["bbox"]
    row = {"arch": args.arch, "impl": args.impl, "init": args.init, "channels_last": args.channels_last,
           "seed": args.seed, "amp": args.amp, "epochs": args.epochs, "size": args.size,
           "train_seconds": round(seconds), "AP": round(stats["AP"], 4), "AP50": round(stats["AP50"], 4),
           "torch_threads": torch.get_num_threads()}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
