"""Data sets (COCO json, Pascal VOC folders, the built-in `shapes`) and `open_dataset(spec)`.

A spec names a data set (`objdet.data.spec` parses it): `coco:ANNOTATIONS.json:IMAGE_DIR`,
`voc:ROOT[:split]` or `shapes[:split]`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch.utils.data import Dataset

from objdet.data.spec import held_out_spec, parse_spec, pick_split
from objdet.errors import ConfigError

__all__ = ["open_dataset", "held_out_spec", "parse_spec"]


def _construct(cls: Callable[..., Dataset], spec: str, *args: Any, **options: Any) -> Dataset:
    """Build the data set, turning an unknown option into a ConfigError instead of a TypeError."""
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as err:
        raise ConfigError(f"data spec {spec!r}: {err}") from err
    return cls(*args, **options)


def open_dataset(spec: str, split: str | None = None, **options: Any) -> Dataset:
    """Open the data set a spec names; `options` go to its constructor (transforms, length, ...)."""
    parsed = parse_spec(spec)
    if parsed.kind == "shapes":
        from objdet.data.shapes import ShapesDataset

        return _construct(ShapesDataset, spec, pick_split(parsed, split, spec) or "train", **options)
    if parsed.kind == "voc":
        from objdet.data.voc import VOCDataset

        return _construct(VOCDataset, spec, parsed.paths[0], pick_split(parsed, split, spec), **options)
    from objdet.data.coco import CocoDataset

    return _construct(CocoDataset, spec, *parsed.paths, **options)
