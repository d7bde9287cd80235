"""Data sets (COCO json, Pascal VOC and LabelImg folders, YOLO, LabelMe, CVAT, the built-in `shapes`) and
`open_dataset(spec)`, the one entry point.

A spec names a data set (`objdet.data.spec` parses it): `coco:ANNOTATIONS.json:IMAGE_DIR`,
`voc:ROOT[:split]`, `yolo:DATA.yaml[:split]`, `labelme:DIR`, `cvat:ANNOTATIONS.xml:IMAGE_DIR` or
`shapes[:split]`. Every reader gives the same targets, `image_info(i)`, `categories` and
`label_to_category_id`, so nothing downstream knows the format.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from objdet.data.base import DetectionDataset
from objdet.data.spec import DataSpec, held_out_spec, parse_spec, pick_split, seeded_split
from objdet.errors import ConfigError

__all__ = ["open_dataset", "held_out_spec", "parse_spec"]


def _construct(cls: Callable[..., DetectionDataset], spec: str, *args: Any, **options: Any) -> DetectionDataset:
    """Build the data set, turning an unknown option into a ConfigError instead of a TypeError."""
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as err:
        raise ConfigError(f"data spec {spec!r}: {err}") from err
    return cls(*args, **options)


def _reader(parsed: DataSpec, split: str | None) -> tuple[Callable[..., DetectionDataset], tuple]:
    """The reader class of a spec's kind and its positional arguments."""
    if parsed.kind == "shapes":
        from objdet.data.shapes import ShapesDataset

        return ShapesDataset, (split or "train",)
    if parsed.kind == "voc":
        from objdet.data.voc import VOCDataset

        return VOCDataset, (parsed.paths[0], split)
    if parsed.kind == "yolo":
        from objdet.data.yolo import YOLODataset

        return YOLODataset, (parsed.paths[0], split or "train")
    if parsed.kind == "labelme":
        from objdet.data.labelme import LabelMeDataset

        return LabelMeDataset, parsed.paths
    if parsed.kind == "cvat":
        from objdet.data.cvat import CVATDataset

        return CVATDataset, parsed.paths
    from objdet.data.coco import CocoDataset

    return CocoDataset, parsed.paths


def _pool(parsed: DataSpec) -> str | None:
    """The split a seeded train/val split is carved from: the data set's train split where it has split
    lists, else all of it."""
    if parsed.kind == "yolo":
        return "train"
    if parsed.kind == "voc":
        from pathlib import Path

        from objdet.data.voc import split_lists

        return "train" if split_lists(Path(parsed.paths[0])) else None
    if parsed.kind == "shapes":
        raise ConfigError("the shapes data set has its own val split; val_split does not apply")
    return None


def open_dataset(spec: str, split: str | None = None, *, strict: bool = False, val_split: float | None = None,
                 seed: int = 0, **options: Any) -> DetectionDataset:
    """Open the data set a spec names; `options` go to its constructor (transforms, classes, length, ...).

    `strict=True` turns every repair of a wart (see `objdet.data.repair`) into an AnnotationError.
    `val_split=F` with split `train` or `val` makes a seeded split (`seed`) of the train split, or of the
    whole data set where it has no split lists: `val` is a fraction F of its images, `train` the rest.
    """
    parsed = parse_spec(spec)
    chosen = pick_split(parsed, split, spec)
    part = None
    if val_split is not None and chosen in ("train", "val"):
        seeded_split(2, val_split)  # refuses a fraction outside (0, 1) before anything is read
        part, chosen = chosen, _pool(parsed)
    if parsed.kind != "shapes":
        options["strict"] = strict
    cls, args = _reader(parsed, chosen)
    dataset = _construct(cls, spec, *args, **options)
    if part is not None and val_split is not None:
        dataset.select(seeded_split(len(dataset), val_split, seed)[part])
    return dataset
