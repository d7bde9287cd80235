"""The seed's ablation tables stated as data: for each study a zoo model, the settings its runs share, the
rows (each a config override plus the seed's published numbers) and the row the seed recommends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from objdet.errors import ConfigError

MASK = ("segm/AP", "segm/AP50", "segm/AP75")
BOX = ("bbox/AP", "bbox/AP50", "bbox/AP75")


@dataclass(frozen=True)
class Variant:
    """One row of a table: the config fields it changes and the seed's numbers for it (None: no seed row)."""

    name: str
    overrides: dict[str, Any]
    seed: dict[str, float] | None = None


@dataclass(frozen=True)
class Study:
    """A seed ablation table: runs of `model` with `base` overrides, one per variant, scored on `metrics`
    (the first is the one the direction check compares); `reference` names the seed's chosen design."""

    name: str
    title: str
    source: str
    model: str
    base: dict[str, Any]
    variants: tuple[Variant, ...]
    reference: str
    metrics: tuple[str, ...]
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields this study sets (e.g. a small batch)
    cost: bool = False  # add parameter and multiply-add columns (EfficientDet tables)
    note: str = ""

    def variant(self, name: str) -> Variant:
        """The row called `name`."""
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"study {self.name!r} has no row {name!r}; rows: {[v.name for v in self.variants]}")

    def config(self, variant: Variant) -> dict[str, Any]:
        """The model config overrides of one run: the shared base, then the row's own fields."""
        return {**self.base, **variant.overrides}


def _row(values: tuple[float, ...], keys: tuple[str, ...]) -> dict[str, float]:
    return dict(zip(keys, values))


# CPU-sized shared settings for training from random weights (the recipe of `objdet demo`): 128 px inputs,
# BatchNorm trunks with every layer trainable, anchors scaled to the image (8..128 px; 16..256 px at P3..P7 for
# the dense detectors), a 64-channel FPN, fewer proposals and RoIs than torchvision's.
MASK_RCNN_BASE: dict[str, Any] = dict(
    min_size=128, max_size=128, backbone_norm="BN", trainable_layers=5, fpn_channels=64,
    anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms_top_n=(300, 150), rpn_post_nms_top_n=(150, 100),
    box_batch_size=64, detections_per_img=50,
)
RETINANET_BASE: dict[str, Any] = dict(min_size=128, max_size=128, backbone_norm="BN", trainable_layers=5,
                                      head_norm="GN", fpn_channels=64, anchor_scale=2.0, detections_per_img=100)
EFFDET_BASE: dict[str, Any] = dict(image_size=128, anchor_scale=2.0, detections_per_img=100)
# bfloat16 autocast makes the R-CNN steps 1.5x faster on a CPU with AVX-512 BF16 (the dense detectors gain
# nothing, and stay in float32, where a run is bit-reproducible).
BF16 = {"amp": True}

_MASK_RCNN = "Mask R-CNN"
_RETINA = "Focal Loss for Dense Object Detection"

STUDIES: dict[str, Study] = {s.name: s for s in (
    Study(
        "roi", "RoI layers", f"{_MASK_RCNN}, Table 2c (mask AP, ResNet-50-C4); box AP of RoIPool/RoIAlign from 2d (C5)",
        "mask_rcnn_r18_fpn", MASK_RCNN_BASE,
        (
            Variant("RoIPool (max)", {"roi_pooler": "pool"}, {**_row((26.9, 48.8, 26.4), MASK), "bbox/AP": 28.2}),
            Variant("RoIWarp (max)", {"roi_pooler": "warp"}, _row((27.2, 49.2, 27.1), MASK)),
            Variant("RoIWarp (avg)", {"roi_pooler": "warp_avg"}, _row((27.1, 48.9, 27.1), MASK)),
            Variant("RoIAlign (max)", {"roi_pooler": "align_max"}, _row((30.2, 51.0, 31.8), MASK)),
            Variant("RoIAlign (avg)", {"roi_pooler": "align"}, {**_row((30.3, 51.2, 31.5), MASK), "bbox/AP": 34.0}),
        ),
        "RoIAlign (avg)", MASK + BOX, train=BF16,
    ),
    Study(
        "mask-loss", "Masks: multinomial vs independent", f"{_MASK_RCNN}, Table 2b (ResNet-50-C4)",
        "mask_rcnn_r18_fpn", MASK_RCNN_BASE,
        (
            Variant("softmax", {"mask_softmax": True}, _row((24.8, 44.1, 25.1), MASK)),
            Variant("sigmoid", {"mask_softmax": False}, _row((30.3, 51.2, 31.5), MASK)),
        ),
        "sigmoid", MASK + BOX, train=BF16,
    ),
    Study(
        "mask-head", "Mask branch: MLP vs FCN", f"{_MASK_RCNN}, Table 2e (ResNet-50-FPN)",
        "mask_rcnn_r18_fpn", MASK_RCNN_BASE,
        (
            Variant("MLP (fc 1024, 1024, K x 28^2)", {"mask_head": "mlp"}, _row((31.5, 53.7, 32.8), MASK)),
            Variant("FCN (4 conv, deconv)", {"mask_head": "fcn"}, _row((33.6, 55.2, 35.3), MASK)),
        ),
        "FCN (4 conv, deconv)", MASK + BOX, train=BF16, cost=True,
    ),
    Study(
        "features", "Backbone features: C4 vs FPN", f"{_MASK_RCNN}, Table 2a (ResNet-50)",
        "mask_rcnn_r18_fpn", MASK_RCNN_BASE,
        (
            Variant("ResNet-18-C4", {"fpn": False, "box_resolution": 14}, _row((30.3, 51.2, 31.5), MASK)),
            Variant("ResNet-18-FPN", {"fpn": True, "box_resolution": 7}, _row((33.6, 55.2, 35.3), MASK)),
        ),
        "ResNet-18-FPN", MASK + BOX, train=BF16, cost=True,
        note="the C4 rows use res5 as the RoI head on 14x14 RoIAlign features (the seed's C4 design)",
    ),
    Study(
        "loss", "Loss: cross-entropy vs focal loss", f"{_RETINA}, Tables 1a (CE, gamma = 0) and 1b (FL)",
        "retinanet_r18_fpn", RETINANET_BASE,
        (
            Variant("CE alpha=.25", {"gamma": 0.0, "alpha": 0.25}, _row((10.8, 16.0, 11.7), BOX)),
            Variant("CE alpha=.50", {"gamma": 0.0, "alpha": 0.5}, _row((30.2, 46.7, 32.8), BOX)),
            Variant("CE alpha=.75", {"gamma": 0.0, "alpha": 0.75}, _row((31.1, 49.4, 33.0), BOX)),
            Variant("FL gamma=0.5 alpha=.50", {"gamma": 0.5, "alpha": 0.5}, _row((32.9, 51.7, 35.2), BOX)),
            Variant("FL gamma=1 alpha=.25", {"gamma": 1.0, "alpha": 0.25}, _row((33.7, 52.0, 36.2), BOX)),
            Variant("FL gamma=2 alpha=.25", {"gamma": 2.0, "alpha": 0.25}, _row((34.0, 52.5, 36.5), BOX)),
            Variant("FL gamma=5 alpha=.25", {"gamma": 5.0, "alpha": 0.25}, _row((32.2, 49.6, 34.8), BOX)),
        ),
        "FL gamma=2 alpha=.25", BOX,
    ),
    Study(
        "anchors", "Anchors: scales x aspect ratios", f"{_RETINA}, Table 1c",
        "retinanet_r18_fpn", RETINANET_BASE,
        tuple(
            Variant(f"{sc} scale{'s' if sc > 1 else ''}, {len(ar)} ratio{'s' if len(ar) > 1 else ''}",
                    {"scales_per_octave": sc, "aspect_ratios": ar}, _row(seed, BOX))
            for sc, ar, seed in (
                (1, (1.0,), (30.3, 49.0, 31.8)), (2, (1.0,), (31.9, 50.0, 34.0)), (3, (1.0,), (31.8, 49.4, 33.7)),
                (1, (0.5, 1.0, 2.0), (32.4, 52.3, 33.9)), (2, (0.5, 1.0, 2.0), (34.2, 53.1, 36.5)),
                (3, (0.5, 1.0, 2.0), (34.0, 52.5, 36.5)),
            )
        ),
        "3 scales, 3 ratios", BOX,
    ),
    Study(
        "norm", "Normalisation at small batch: BN vs FrozenBN vs GN",
        "Group Normalization, Table 4 (Mask R-CNN R-50-C4)",
        "mask_rcnn_r18_fpn", MASK_RCNN_BASE,
        (
            Variant("BN (2 images/batch)", {"backbone_norm": "BN"}),
            Variant("BN* (frozen)", {"backbone_norm": "FrozenBN"}, {**_row((37.7, 57.9, 40.9), BOX),
                                                                   **_row((32.8, 54.3, 34.7), MASK)}),
            Variant("GN", {"backbone_norm": "GN"}, {**_row((38.8, 59.2, 42.2), BOX), **_row((33.6, 55.9, 35.4), MASK)}),
        ),
        "GN", BOX + MASK, train={**BF16, "batch_size": 2},
        note="trained from random weights, so frozen BN is the identity (the seed freezes ImageNet statistics)",
    ),
    Study(
        "bifpn", "BiFPN: cross-scale connections and fusion",
        "EfficientDet, Table 5 (EfficientDet-D0 trunk and width here)",
        "efficientdet_d0", EFFDET_BASE,
        (
            Variant("Repeated top-down FPN", {"graph": "fpn", "fusion": "sum"}, {"bbox/AP": 42.29}),
            Variant("Repeated FPN+PANet", {"graph": "panet", "fusion": "sum"}, {"bbox/AP": 44.08}),
            Variant("BiFPN (w/o weighted: sum)", {"graph": "bifpn", "fusion": "sum"}, {"bbox/AP": 43.94}),
            Variant("BiFPN (softmax fusion)", {"graph": "bifpn", "fusion": "softmax"}),
            Variant("BiFPN (fast normalised fusion)", {"graph": "bifpn", "fusion": "fast"}, {"bbox/AP": 44.39}),
        ),
        "BiFPN (fast normalised fusion)", BOX, cost=True,
        note="the seed's parameter / FLOP ratios (vs repeated FPN): PANet 1.0x / 1.0x, BiFPN 0.88x / 0.67-0.68x",
    ),
)}


def get_study(name: str) -> Study:
    """The study called `name` (a ConfigError listing the known ones otherwise)."""
    if name not in STUDIES:
        raise ConfigError(f"unknown ablation study {name!r}; known: {', '.join(STUDIES)}")
    return STUDIES[name]
