"""COCO AP on `shapes` of the CPU-friendly one-stage detectors trained from scratch with one budget:
objdet's retinanet_r18_fpn and efficientdet_d0, beside torchvision's RetinaNet with the same trunk,
FPN width, GroupNorm heads, data, optimiser and schedule.

    .venv/bin/python bench/one_stage_shapes.py                       # all three, defaults below
    .venv/bin/python bench/one_stage_shapes.py --only torchvision --epochs 2

The budget is the same number of images, epochs, batch size and image size for each model; the
wall time of each run is printed beside its AP (one thread each, on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from objdet.data.augment import HorizontalFlip  # noqa: E402
from objdet.data.coco import dataset_to_coco  # noqa: E402
from objdet.data.shapes import ShapesDataset  # noqa: E402
from objdet.engine import inference  # noqa: E402
from objdet.engine.trainer import TrainConfig, Trainer, seed_everything  # noqa: E402
from objdet.evaluation.coco import evaluate  # noqa: E402
from objdet.zoo import build  # noqa: E402


def torchvision_retinanet_r18(num_classes: int, size: int) -> nn.Module:
    """torchvision's RetinaNet with objdet's retinanet_r18_fpn layout: GN ResNet-18, 128-wide FPN, GN heads."""
    from torchvision.models import resnet18
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    trunk = resnet18(weights=None, norm_layer=partial(nn.GroupNorm, 32))
    backbone = BackboneWithFPN(trunk, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512], 128,
                               extra_blocks=LastLevelP6P7(512, 128))
    head = RetinaNetHead(128, 9, num_classes + 1, norm_layer=partial(nn.GroupNorm, 32))
    return RetinaNet(backbone, num_classes + 1, min_size=size, max_size=size, head=head)


def objdet_model(name: str, num_classes: int, size: int) -> nn.Module:
    if name == "efficientdet_d0":
        return build(name, num_classes=num_classes, image_size=size)
    return build(name, num_classes=num_classes, min_size=size, max_size=size, backbone_norm="GN",
                 trainable_layers=5, head_norm="GN")


def run(which: str, args: argparse.Namespace) -> None:
    flip = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names)
    train = ShapesDataset("train", length=args.train_images, image_size=args.size, transforms=flip)
    val = ShapesDataset("val", length=args.val_images, image_size=args.size)
    seed_everything(0)
    if which == "torchvision":
        model = torchvision_retinanet_r18(train.num_classes, args.size)
    else:
        model = objdet_model(which, train.num_classes, args.size)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="adamw", lr=args.lr,
                             weight_decay=0.05, warmup_iters=50, schedule="cosine", clip_grad_norm=10.0,
                             eval_every=0, out=out, progress=False)
        seed_everything(0)  # the training stream starts from the seed too, as the recorded runs did
        start = time.time()
        trainer = Trainer(model, train, None, config)
        trainer.fit()
        seconds = time.time() - start
        records = inference.predict(trainer.model, val, args.batch_size)
    stats = evaluate(dataset_to_coco(val), records, "bbox").stats
    print(f"{which:22s} AP {stats['AP']:.3f}  AP50 {stats['AP50']:.3f}  AP75 {stats['AP75']:.3f}  "
          f"train {seconds:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["retinanet_r18_fpn", "efficientdet_d0", "torchvision"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=384)
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"shapes: {args.train_images} train / {args.val_images} val images of {args.size} px, "
          f"{args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr}, {args.threads} thread(s)", flush=True)
    for which in [args.only] if args.only else ["retinanet_r18_fpn", "efficientdet_d0", "torchvision"]:
        run(which, args)


if __name__ == "__main__":
    main()
