"""`objdet demo`: the main job on the built-in data set, and its recipe (which the benchmarks import).

A small detector is trained from random weights on generated `shapes` on the CPU, scored on a held-out
split with the COCO table, and its predictions, PR curves and training samples are drawn to a run folder.
The recipe was found by the runs BENCHMARKS.md records ("objdet demo").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "faster_rcnn_r18_fpn"


def model_fields(name: str, dataset: Any, image_size: int) -> dict[str, Any]:
    """Config fields of zoo model `name` for training from scratch on `dataset` at `image_size` pixels:
    the data set's classes (and keypoints), then the detector's own from-scratch recipe."""
    from objdet import zoo

    cfg = zoo.config(name)
    return {**cfg.data_fields(dataset.num_classes, getattr(dataset, "keypoint_names", None)),
            **cfg.scratch_fields(image_size)}


def train_config(epochs: int, batch_size: int, lr: float, amp: bool, seed: int, out: str | Path,
                 progress: bool) -> Any:
    """The demo's training recipe: AdamW with 50 warm-up steps, cosine decay, weight decay 0.05, clipping at 10."""
    from objdet.engine.trainer import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adamw", lr=lr, weight_decay=0.05,
                       warmup_iters=50, schedule="cosine", clip_grad_norm=10.0, amp=amp, eval_every=0, seed=seed,
                       out=str(out), progress=progress)


def run_demo(model: str = DEFAULT_MODEL, out: str | Path | None = None, seed: int = 0, epochs: int = 3,
             train_images: int = 2688, val_images: int = 64, image_size: int = 128, batch_size: int = 4,
             lr: float = 5e-4, amp: bool = True, progress: bool = True) -> int:
    """Train, evaluate and draw; returns the exit status (130 when interrupted)."""
    import torch

    from objdet import zoo
    from objdet.data.augment import HorizontalFlip
    from objdet.data.coco import dataset_to_coco
    from objdet.data.shapes import ShapesDataset
    from objdet.engine import inference
    from objdet.engine.trainer import Trainer, seed_everything
    from objdet.evaluation.coco import evaluate
    from objdet.evaluation.plots import write_plots
    from objdet.io import save_json
    from objdet.visualize import draw_samples, save_detections

    out = Path(out or f"runs/demo-{model}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"run folder: {out}")
    draw_samples(ShapesDataset("train", length=8, seed=seed), out / "samples", count=8, prefix="shapes")
    flip = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names)
    train = ShapesDataset("train", length=train_images, image_size=image_size, seed=seed, transforms=flip)
    val = ShapesDataset("val", length=val_images, image_size=image_size, seed=seed)
    seed_everything(seed)
    net = zoo.build(model, classes=[c["name"] for c in train.categories], **model_fields(model, train, image_size))
    config = train_config(epochs, batch_size, lr, amp, seed, out, progress)
    print(f"training {model} from scratch on {len(train)} shapes images ({image_size} px), {epochs} epochs")
    start = time.time()
    seed_everything(seed)  # the training stream (RPN and RoI sampling) starts from the seed too, as BENCHMARKS measured
    trainer = Trainer(net, train, None, config,
                      extra={"categories": list(train.categories),
                             "label_to_category_id": dict(train.label_to_category_id)})
    if trainer.fit()["status"] == "interrupted":
        return 130
    print(f"trained in {time.time() - start:.0f} s; evaluating on {len(val)} held-out images")

    records = inference.predict(trainer.model, val, batch_size)
    gt = dataset_to_coco(val)
    save_json(records, out / "detections.json")
    summary = {}
    for kind in inference.iou_types(records, gt):
        result = evaluate(gt, records, kind)
        print(f"\n{kind}:\n" + "\n".join(result.summary_lines()))
        write_plots(result, out / "plots" / kind)
        summary[kind] = dict(result.stats)
    save_json(summary, out / "metrics.json")
    names = {c["id"]: c["name"] for c in val.categories}
    skeleton = val.categories[0]["skeleton"]
    trainer.model.eval()
    for i in range(min(8, len(val))):
        image, _ = val[i]
        with torch.no_grad():
            det = trainer.model([image])[0]
        save_detections(image, det, out / "predictions" / f"val_{i:03d}.png", label_names=names,
                        score_threshold=0.5, skeleton=skeleton)
    print(f"\nbbox AP {summary['bbox']['AP']:.3f}; pictures, PR curves and checkpoints in {out}")
    return 0
