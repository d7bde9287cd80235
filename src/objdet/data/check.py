"""`objdet data check`: what a data set holds and what is wrong with it, before a day of training finds out.

`check_dataset` reads every record and every image file once: images and objects per class, empty
images, box sizes (COCO's small < 32^2 <= medium < 96^2 <= large, by box area in image pixels), aspect
ratios, images with the same bytes, and every record the reader repaired or refused (an unreadable or
missing image, a size that differs from its record, a bad annotation). `anchor_coverage` measures, per
class, the share of boxes whose best anchor IoU, as the model's matcher sees it, is below its
foreground threshold.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from objdet.boxes import box_iou
from objdet.errors import ObjdetError

SMALL, LARGE = 32**2, 96**2  # COCO's area bands


@dataclass
class CheckReport:
    """What `check_dataset` found; `errors` non-empty means the data set is broken."""

    source: str
    images: int = 0
    classes: list[str] = field(default_factory=list)
    objects: Counter = field(default_factory=Counter)       # class name -> count
    empty_images: int = 0
    bands: Counter = field(default_factory=Counter)         # small / medium / large
    sides: list[float] = field(default_factory=list)        # sqrt(box area) per box, image pixels
    aspects: list[float] = field(default_factory=list)      # width / height per box
    centres: list[tuple[float, float]] = field(default_factory=list)  # box centre / image size
    duplicates: list[list[str]] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    coverage: dict[str, Any] | None = None

    def lines(self) -> list[str]:
        """The report as text lines, the order a reader looks for them."""
        out = [f"{self.source}: {self.images} images, {sum(self.objects.values())} objects in "
               f"{len(self.classes)} classes, {self.empty_images} images without objects"]
        width = max((len(c) for c in self.classes), default=5)
        out += [f"  {name:<{width}}  {self.objects[name]:>7} objects" for name in self.classes]
        total = max(1, sum(self.bands.values()))
        out.append("box sizes (COCO bands, box area): " + ", ".join(
            f"{band} {self.bands[band]} ({100 * self.bands[band] / total:.0f}%)" for band in ("small", "medium", "large")))
        if self.sides:
            out.append(f"box side sqrt(w*h): min {min(self.sides):.1f}, median {_median(self.sides):.1f}, "
                       f"max {max(self.sides):.1f} px; aspect w/h: median {_median(self.aspects):.2f}, "
                       f"5%..95% {_quantile(self.aspects, 0.05):.2f}..{_quantile(self.aspects, 0.95):.2f}")
        for group in self.duplicates:
            out.append(f"duplicate images (same bytes): {', '.join(group)}")
        if self.coverage:
            out += coverage_lines(self.coverage)
        out += [f"repaired: {r}" for r in self.repairs]
        out += [f"error: {e}" for e in self.errors]
        out.append(f"{len(self.repairs)} records repaired, {len(self.errors)} errors")
        return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _median(values: Sequence[float]) -> float:
    return _quantile(values, 0.5)


def check_dataset(dataset: Any, source: str, progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Read every record and image of `dataset` (opened with on_error="skip") and report on it."""
    report = CheckReport(source, len(dataset), [c["name"] for c in dataset.categories])
    name_of = {label: c["name"] for label, c in zip(range(1, len(dataset.categories) + 1), dataset.categories)}
    repairs = getattr(dataset, "repairs", None)
    if repairs is not None:
        report.repairs = [str(n) for n in repairs.notes]
        report.errors = [str(e) for e in repairs.refused]
    by_hash: dict[str, list[str]] = defaultdict(list)
    for i in range(len(dataset)):
        info, target = dataset.image_info(i), dataset.target(i)
        boxes = target["boxes"]
        report.empty_images += len(boxes) == 0
        report.objects.update(name_of[int(label)] for label in target["labels"])
        for x1, y1, x2, y2 in boxes.tolist():
            area = (x2 - x1) * (y2 - y1)
            report.bands["small" if area < SMALL else "medium" if area < LARGE else "large"] += 1
            report.sides.append(math.sqrt(area))
            report.aspects.append((x2 - x1) / (y2 - y1))
            report.centres.append(((x1 + x2) / 2 / info["width"], (y1 + y2) / 2 / info["height"]))
        if hasattr(dataset, "image_file"):
            try:
                file = dataset.image_file(i)
                by_hash[hashlib.sha1(file.read_bytes()).hexdigest()].append(info["file_name"])
                dataset.load(i)
            except (ObjdetError, OSError) as err:
                report.errors.append(str(err) if isinstance(err, ObjdetError) else f"{err.filename}: {err.strerror}")
        if progress is not None:
            progress(i + 1, len(dataset))
    report.duplicates = [names for names in by_hash.values() if len(names) > 1]
    return report


def best_anchor_ious(dataset: Any, generator: Any, strides: Sequence[int], input_size: Callable,
                     indices: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each box's highest IoU with any anchor, in the network input's pixels, and its label.

    `input_size(h, w) -> ((h', w'), (H, W))` is the model transform's resized and padded size; anchors are
    laid on feature maps of ceil(H / stride) x ceil(W / stride), as the trunk makes them.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one box against one image's anchors: a second thread only waits (15x slower
    try:                      # on this project's busy 2-core machine)
        return _best_anchor_ious(dataset, generator, strides, input_size, indices)
    finally:
        torch.set_num_threads(threads)


def _best_anchor_ious(dataset: Any, generator: Any, strides: Sequence[int], input_size: Callable,
                      indices: Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    ious, labels = [], []
    for i in range(len(dataset)) if indices is None else indices:
        info, target = dataset.image_info(i), dataset.target(i)
        if len(target["boxes"]) == 0:
            continue
        (h, w), padded = input_size(info["height"], info["width"])
        if padded not in cache:
            shapes = [(math.ceil(padded[0] / s), math.ceil(padded[1] / s)) for s in strides]
            anchors = generator(padded, shapes)
            cache[padded] = anchors, (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
        scale = torch.tensor([w / info["width"], h / info["height"]] * 2)
        ious.append(torch.stack([_best_iou(box, *cache[padded]) for box in target["boxes"] * scale]))
        labels.append(target["labels"])
    if not ious:
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(ious), torch.cat(labels)


def _best_iou(box: torch.Tensor, anchors: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
    """The highest IoU of `box` with any anchor. An anchor whose area is not within 4x of the box's has IoU
    below 1/4 with it, so those are scored only when no other anchor reaches 1/4 (exact, and 5-10x fewer
    IoUs on a feature pyramid, where each level has one anchor area or a few)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    near = (areas >= area / 4) & (areas <= area * 4)
    best = box_iou(box[None], anchors[near]).max() if near.any() else torch.tensor(0.0)
    return best if best >= 0.25 else box_iou(box[None], anchors).max()


def anchor_coverage(ious: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], threshold: float) -> dict:
    """Per class and overall: boxes, and the share whose best anchor IoU is below `threshold`."""
    below = ious < threshold
    per_class = {}
    for k, name in enumerate(classes):
        mine = labels == k + 1
        if mine.any():
            per_class[name] = {"boxes": int(mine.sum()), "uncovered": float(below[mine].float().mean()),
                               "median_iou": float(ious[mine].median())}
    return {"threshold": threshold, "boxes": len(ious), "uncovered": float(below.float().mean()) if len(ious) else 0.0,
            "per_class": per_class}


def _plain(value: Any) -> str:
    """A config value as `--set` takes it (a tuple without spaces, a float rounded)."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_plain(v) for v in value) + ")"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def coverage_lines(coverage: dict) -> list[str]:
    """The anchor-coverage part of the report."""
    out = [f"anchor coverage ({coverage.get('model', 'model')}, foreground IoU >= {coverage['threshold']}): "
           f"{100 * coverage['uncovered']:.1f}% of {coverage['boxes']} boxes have no anchor reaching it"]
    for name, row in coverage["per_class"].items():
        out.append(f"  {name}: {100 * row['uncovered']:.1f}% of {row['boxes']} below, median best IoU "
                   f"{row['median_iou']:.2f}")
    if coverage.get("suggestion"):
        suggestion = coverage["suggestion"]
        sets = " ".join(f"--set {k}={_plain(v)}" for k, v in suggestion["fields"].items())
        out.append(f"suggested anchors ({suggestion['factor']:.2f}x): {sets} leaves {100 * suggestion['uncovered']:.1f}% "
                   f"below on {suggestion['images']} images")
    return out
