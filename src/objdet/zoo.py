"""The model zoo: named configurations and `build(name, **overrides)`.

Each entry maps a name to a builder function taking keyword overrides (num_classes, ...).
Builders live beside the detectors they build; this file only names them.
"""

from __future__ import annotations

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
