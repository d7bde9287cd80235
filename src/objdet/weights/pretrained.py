"""A zoo model built with weights from any source (`objdet.build(name, weights=SRC, classes=[...])`): the config
the weights imply, the class set the user asks for, and a transfer that keeps everything that fits."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Sequence

from objdet.weights.sources import Source, read_source
from objdet.weights.transfer import transfer

if TYPE_CHECKING:
    from objdet.detectors.base import Detector

log = logging.getLogger("objdet")

# how stored weights are to be read, whatever model takes them (torchvision's released v1 trunks run with eps 0)
_READING_FIELDS = frozenset({"frozen_bn_eps"})


def carried_fields(source: Source, name: str) -> dict[str, Any]:
    """The config fields of `source` that `name` takes: all of them for the zoo model the weights were made for;
    for another one (Faster R-CNN weights into a Mask R-CNN) only how to read the weights, since its own
    defaults say what it is."""
    from objdet import zoo

    known = set(zoo.config(name).__dataclass_fields__)
    return {k: v for k, v in source.fields.items() if k in known and (source.zoo == name or k in _READING_FIELDS)}


def build_pretrained(name: str | None, source: Source | str | os.PathLike, *, classes: Sequence[str] | None = None,
                     strict: bool = False, **overrides: Any) -> Detector:
    """Zoo model `name` (default: the one the weights were made for) with `source`'s weights.

    The class set is `classes` (names), else `num_classes` in `overrides`, else the source's. Every tensor whose
    shape fits is loaded; class-specific tensors of another class set start as the architecture initialises them,
    with the rows of classes whose name matches a source class copied; `strict` refuses any tensor missing on
    either side. `model.weights_report` says what happened.
    """
    from objdet import zoo

    if not isinstance(source, Source):
        source = read_source(source, name)
    name = name or source.zoo
    num_classes = len(classes) if classes is not None else overrides.pop("num_classes", source.num_classes)
    overrides.pop("num_classes", None)
    names = list(classes) if classes is not None else (source.class_names if num_classes == source.num_classes else None)
    fields = {**carried_fields(source, name), **overrides}
    model = zoo.build(name, classes=names, **fields) if names else zoo.build(name, num_classes=num_classes, **fields)
    report = transfer(model, source.renamed(model), source.origin, source.num_classes, source.class_names, strict)
    model.weights_report = report
    log.info(report.summary(source.origin))
    return model
