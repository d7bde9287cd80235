"""Fine-tuning from weights (`objdet train --weights SRC`, `--backbone-weights`): the model to train, with a trunk
of frozen statistics at small batch, and the training recipe chosen by `bench/finetune.py` (BENCHMARKS.md,
"Fine-tuning")."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from objdet.errors import ConfigError

if TYPE_CHECKING:
    from objdet.detectors.base import Detector

# Per-process batches below this many images fine-tune with the trunk's statistics frozen. BatchNorm normalises
# with the statistics of the current batch; Wu & He (Group Normalization, 2018) show its error growing as the
# batch shrinks below 16 images and sharply at 2-4, and a detector's batch is a handful of large images. The
# pretrained statistics, gathered over far more images, are the better estimate: torchvision builds every trunk
# of detection or ImageNet weights with FrozenBatchNorm2d and detectron2 fine-tunes with "FrozenBN" the same way.
SMALL_BATCH = 16
TRUNK_STATS = ("auto", "frozen", "batch")  # auto: frozen when fine-tuning below SMALL_BATCH images per process

# The defaults of `objdet train --weights` (TrainConfig fields); flags given on the command line win.
RECIPE: dict[str, Any] = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.05, "warmup_iters": 50,
                          "schedule": "cosine", "clip_grad_norm": 10.0, "freeze": "backbone"}


def trunk_norm(current: str | None, stats: str, batch_size: int) -> str | None:
    """The trunk norm to fine-tune with: FrozenBN in place of BN when `stats` is "frozen", or "auto" and the
    batch is small (`SMALL_BATCH`); BN for "batch"; `current` otherwise (GroupNorm and trunks without the
    field, such as EfficientDet's timm trunk, are left as they are)."""
    if stats not in TRUNK_STATS:
        raise ConfigError(f"--trunk-stats must be one of {', '.join(TRUNK_STATS)}, not {stats!r}")
    if current not in ("BN", "FrozenBN"):
        return current
    if stats == "batch":
        return "BN"
    return "FrozenBN" if stats == "frozen" or batch_size < SMALL_BATCH else current


def build_for_training(arch: str | None, classes: Sequence[str], overrides: dict[str, Any], *, batch_size: int,
                       keypoint_names: Sequence[str] | None = None, weights: str | os.PathLike | None = None,
                       backbone_weights: str | None = None, trunk_stats: str = "auto") -> tuple[Detector, str | None]:
    """Zoo model `arch` (default: the one `weights` were made for) for a data set's `classes` (and keypoints)
    with config `overrides`, started from `weights` or `backbone_weights` when given; returns it and the summary
    of what was loaded. A `backbone_norm` in `overrides` wins over `trunk_stats`."""
    from objdet import zoo
    from objdet.weights.pretrained import build_pretrained, carried_fields
    from objdet.weights.sources import read_source
    from objdet.weights.transfer import TransferReport

    if weights is not None and backbone_weights is not None:
        raise ConfigError("--weights already holds the trunk: give --weights or --backbone-weights, not both")
    source = read_source(weights, arch) if weights is not None else None
    arch = arch or (source.zoo if source else None)
    if not arch:
        raise ConfigError("--model is required (the zoo name of the detector to train)")
    default = zoo.config(arch)
    fields = {**default.data_fields(len(classes), keypoint_names), **overrides}
    fields.pop("num_classes")
    if (source or backbone_weights) and hasattr(default, "backbone_norm") and "backbone_norm" not in fields:
        carried = carried_fields(source, arch) if source else {}
        current = carried.get("backbone_norm", default.backbone_norm)
        fields["backbone_norm"] = trunk_norm(current, trunk_stats, batch_size)
    if source is None:
        model = zoo.build(arch, classes=classes, backbone_weights=backbone_weights, **fields)
        return model, getattr(model, "weights_report", None)
    model = build_pretrained(arch, source, classes=classes, **fields)
    return model, str(model.weights_report.summary(source.origin) if isinstance(model.weights_report, TransferReport)
                      else model.weights_report)
