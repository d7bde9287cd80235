"""Data sets (COCO json, Pascal VOC folders, the built-in `shapes`) and `open_dataset(spec)`.

A spec names a data set: `coco:ANNOTATIONS.json:IMAGE_DIR`, `voc:ROOT[:split]` or
`shapes[:split]`. A split written in the spec wins over the `split` argument, which is the default
when the spec has none; giving two different splits is a ConfigError. A COCO file is one split,
so the `split` argument does not apply to it and is ignored.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable

from torch.utils.data import Dataset

from objdet.errors import ConfigError

_COCO = re.compile(r"^coco:(?P<ann>.+?\.json):(?P<images>.+)$")


def _pick_split(in_spec: str | None, argument: str | None, spec: str) -> str | None:
    if in_spec and argument and in_spec != argument:
        raise ConfigError(f"data spec {spec!r} names split {in_spec!r} but split={argument!r} "
                          "was also given")
    return in_spec or argument


def _construct(cls: Callable[..., Dataset], spec: str, *args: Any, **options: Any) -> Dataset:
    """Build the data set, turning an unknown option into a ConfigError instead of a TypeError."""
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as err:
        raise ConfigError(f"data spec {spec!r}: {err}") from err
    return cls(*args, **options)


def open_dataset(spec: str, split: str | None = None, **options: Any) -> Dataset:
    """Open the data set a spec names; `options` go to its constructor (transforms, length, ...)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"data spec must be a non-empty string, got {spec!r}")
    kind, _, rest = spec.partition(":")
    if kind == "shapes":
        from objdet.data.shapes import ShapesDataset

        if ":" in rest:
            raise ConfigError(f"bad data spec {spec!r}: expected shapes[:split]")
        return _construct(ShapesDataset, spec, _pick_split(rest or None, split, spec) or "train",
                          **options)
    if kind == "voc":
        from objdet.data.voc import VOCDataset

        if not rest:
            raise ConfigError(f"bad data spec {spec!r}: expected voc:ROOT[:split]")
        root, _, in_spec = rest.rpartition(":") if ":" in rest else (rest, "", "")
        return _construct(VOCDataset, spec, root, _pick_split(in_spec or None, split, spec),
                          **options)
    if kind == "coco":
        from objdet.data.coco import CocoDataset

        match = _COCO.match(spec)
        if match is None:
            raise ConfigError(f"bad data spec {spec!r}: expected coco:ANNOTATIONS.json:IMAGE_DIR")
        return _construct(CocoDataset, spec, match["ann"], match["images"], **options)
    raise ConfigError(f"unknown data spec {spec!r}: use coco:ANN.json:IMG_DIR, voc:ROOT[:split] "
                      "or shapes[:split]")
