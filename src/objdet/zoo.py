"""The model zoo: named configurations and `build(name, **overrides)`.

Each entry maps a name to a builder function taking keyword overrides (num_classes, ...).
Builders live beside the detectors they build; this file only names them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from torch import nn

from objdet.errors import ConfigError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def _register(name: str, builder: Callable[..., nn.Module]) -> None:
    _BUILDERS[name] = builder


def list_models() -> list[str]:
    """Names accepted by `build`, sorted."""
    _load_entries()
    return sorted(_BUILDERS)


def build(name: str, **overrides: Any) -> nn.Module:
    """Build the zoo model `name`; keyword overrides replace fields of its config (e.g. num_classes)."""
    _load_entries()
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name](**overrides)


def _load_entries() -> None:
    """Fill the table on first use (keeps `import objdet` light)."""
    if _BUILDERS:
        return
    # --- two-stage entries (filled by the two-stage detectors) ---
    from objdet.detectors import fast_rcnn, faster_rcnn, keypoint_rcnn, mask_rcnn

    for module, names in (
        (fast_rcnn, ("fast_rcnn_r50_fpn", "fast_rcnn_r18_fpn")),
        (faster_rcnn, ("faster_rcnn_r50_fpn", "faster_rcnn_r50_fpn_v2", "faster_rcnn_r50_c4", "faster_rcnn_r18_fpn")),
        (mask_rcnn, ("mask_rcnn_r50_fpn", "mask_rcnn_r50_fpn_v2", "mask_rcnn_r18_fpn")),
        (keypoint_rcnn, ("keypoint_rcnn_r50_fpn", "keypoint_rcnn_r18_fpn")),
    ):
        for name in names:
            _register(name, getattr(module, name))
    # --- one-stage entries (filled by the one-stage detectors) ---
    from objdet.detectors import efficientdet as _effdet, retinanet as _retina

    _register("retinanet_r50_fpn", _retina.retinanet_r50_fpn)
    _register("retinanet_r18_fpn", _retina.retinanet_r18_fpn)
    for phi in range(8):
        _register(f"efficientdet_d{phi}", functools.partial(_effdet.efficientdet, **efficientdet_scaling(phi)))


# EfficientDet's compound scaling: the seed's formulas, then the rounding the paper published in its
# Table 1 where it departs from "nearest multiple of 8": widths 112 (D2) and 224 (D4), BiFPN depth
# held at 7 for D5 and 8 beyond, R = 1280 for D5 and 1536 for D7, D7 reusing D6's trunk and width.
_PUBLISHED_ROUNDING: dict[int, dict[str, int]] = {
    2: {"fpn_channels": 112},
    4: {"fpn_channels": 224},
    5: {"fpn_layers": 7, "image_size": 1280},
    6: {"fpn_layers": 8},
    7: {"fpn_channels": 384, "fpn_layers": 8, "image_size": 1536, "trunk": 6},
}


def efficientdet_scaling(phi: int) -> dict[str, Any]:
    """EfficientDet-D{phi} config fields from one coefficient: W = 64*1.35^phi, D = 3+phi, D_class = 3+phi//3,
    R = 512+128*phi, rounded as the paper's table (channels to a multiple of 8 unless it published another)."""
    if not 0 <= phi <= 7:
        raise ConfigError(f"EfficientDet compound coefficient must be 0..7, got {phi}")
    fields = {
        "fpn_channels": 8 * round(64 * 1.35**phi / 8),
        "fpn_layers": 3 + phi,
        "head_depth": 3 + phi // 3,
        "image_size": 512 + 128 * phi,
        "trunk": phi,
    }
    fields.update(_PUBLISHED_ROUNDING.get(phi, {}))
    trunk = fields.pop("trunk")
    fields["backbone"] = f"tf_efficientnet_b{trunk}"
    if phi >= 6:
        fields["fusion"] = "sum"  # D6/D7 fuse by plain sums (the released checkpoints, for training stability)
    if phi == 7:
        fields["anchor_scale"] = 5.0
    return fields
