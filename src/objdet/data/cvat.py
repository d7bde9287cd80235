"""CVAT for images 1.1 (`cvat:ANNOTATIONS.xml:IMAGE_DIR`): one xml file for a task or project export.

Read: `<image name width height>` elements (name relative to IMAGE_DIR) with their `<box xtl ytl xbr ybr>`
(a rotated box becomes its axis-aligned extent), `<polygon points="x,y;x,y;...">` (a mask, its extent the
box) and `<skeleton>` (keypoints, named by the skeleton's sub-labels in the meta section; `outside="1"` is
unlabelled, `occluded="1"` labelled but hidden; the box is the labelled points' extent). A `<points>`
element whose label is a skeleton's gives that skeleton's points in order. Other kinds (polyline, mask,
ellipse, cuboid, points without a skeleton) are skipped and counted. Classes are the meta section's
labels in their order (sub-labels of a skeleton excluded), or the sorted names found when it has none.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from objdet.data.base import Transform
from objdet.data.image import MAX_PIXELS
from objdet.data.records import RecordDataset
from objdet.data.validate import inside_root
from objdet.data.voc import parse_xml
from objdet.errors import AnnotationError, DataError

SKIPPED = ("polyline", "mask", "ellipse", "cuboid", "points")


def _points(text: str | None, path: Path, record: str) -> list[tuple[float, float]]:
    """CVAT's "x1,y1;x2,y2;..." as pairs."""
    try:
        return [(float(x), float(y)) for x, y in (p.split(",") for p in (text or "").split(";") if p.strip())]
    except ValueError:
        raise AnnotationError(f"points {text!r} are not 'x,y;x,y;...'", path=path, record=record) from None


def _float(node: ET.Element, key: str, path: Path, record: str) -> float:
    try:
        return float(node.get(key, ""))
    except ValueError:
        raise AnnotationError(f"{key}={node.get(key)!r} is not a number", path=path, record=record) from None


def meta_labels(tree: ET.Element) -> tuple[list[str] | None, dict[str, list[str]]]:
    """The class names of the meta section (None without one) and each skeleton's point names."""
    lists = [labels for labels in tree.iter("labels")]
    if not lists:
        return None, {}
    classes: list[str] = []
    skeletons: dict[str, list[str]] = {}
    for label in lists[0].findall("label"):
        name = (label.findtext("name") or "").strip()
        parent = (label.findtext("parent") or "").strip()
        if parent:
            skeletons.setdefault(parent, []).append(name)
        elif name:
            classes.append(name)
    return classes, skeletons


class CVATDataset(RecordDataset):
    """A CVAT for images 1.1 export: yields (image [3,H,W] in 0..1, target)."""

    def __init__(self, ann_file: str | os.PathLike, image_dir: str | os.PathLike, transforms: Transform | None = None,
                 classes: list[str] | None = None, max_pixels: int = MAX_PIXELS, strict: bool = False,
                 on_error: str = "raise"):
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        super().__init__(self.ann_file, transforms, max_pixels, strict, on_error)
        tree = parse_xml(self.ann_file)
        if tree.tag != "annotations":
            raise DataError(f"not a CVAT for images file: the root element is <{tree.tag}>", path=self.ann_file)
        meta, self.skeletons = meta_labels(tree)
        self.keypoint_names = next(iter(self.skeletons.values()), [])
        records = []
        for n, image in enumerate(tree.iter("image")):
            with self.repairs.guard():
                records.append(self._read(image, n))
        self._finish(records, classes if classes is not None else meta)

    def _read(self, node: ET.Element, n: int) -> dict:
        """The image record of one <image> element."""
        path, record = self.ann_file, f"image {node.get('id', n)}"
        file = inside_root(self.image_dir, node.get("name"), path=path, record=record)
        rec = self.image_record(file, "", node.get("width"), node.get("height"), path=path, record=record)
        rec["file_name"] = rec["file"].relative_to(self.image_dir).as_posix()
        for k, shape in enumerate(node):
            where, label = f"{record} {shape.tag} {k}", shape.get("label")
            if shape.tag == "tag":
                continue
            if not label:
                raise AnnotationError(f"<{shape.tag}> has no label", path=path, record=where)
            if shape.tag == "box":
                self.add_object(rec, label, self._box(shape, where), record=where)
            elif shape.tag == "polygon":
                points = _points(shape.get("points"), path, where)
                if len(points) < 3:
                    self.repairs.note("empty", f"polygon of {len(points)} points dropped", path=path, record=where)
                    continue
                self.add_object(rec, label, None, record=where, polygons=[[v for p in points for v in p]])
            elif shape.tag == "skeleton" or (shape.tag == "points" and label in self.skeletons):
                self._keypoint_object(rec, shape, label, where)
            elif shape.tag in SKIPPED:
                self.repairs.note("shape", f"<{shape.tag}> skipped", path=path, record=where)
        return rec

    def _box(self, shape: ET.Element, where: str) -> tuple[float, float, float, float]:
        """xtl, ytl, xbr, ybr; with `rotation` (degrees, clockwise about the centre) the rotated box's extent."""
        x1, y1, x2, y2 = (_float(shape, key, self.ann_file, where) for key in ("xtl", "ytl", "xbr", "ybr"))
        angle = math.radians(float(shape.get("rotation", 0) or 0))
        if not angle:
            return x1, y1, x2, y2
        cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        dx = abs(half_w * math.cos(angle)) + abs(half_h * math.sin(angle))
        dy = abs(half_w * math.sin(angle)) + abs(half_h * math.cos(angle))
        return cx - dx, cy - dy, cx + dx, cy + dy

    def _keypoint_object(self, rec: dict, shape: ET.Element, label: str, where: str) -> None:
        """An object whose keypoints are a skeleton's points (by name) or a <points> element's (in order)."""
        names, path = self.skeletons.get(label, []), self.ann_file
        if names != self.keypoint_names:
            raise AnnotationError(f"skeleton {label!r} has points {names}, but the data set's keypoints are "
                                  f"{self.keypoint_names}", path=path, record=where)
        keypoints = [[0.0, 0.0, 0.0] for _ in names]
        if shape.tag == "points":
            points = _points(shape.get("points"), path, where)
            if len(points) != len(names):
                raise AnnotationError(f"{len(points)} points for the {len(names)} of skeleton {label!r}", path=path,
                                      record=where)
            keypoints = [[x, y, 2.0] for x, y in points]
        for point in shape.findall("points") if shape.tag == "skeleton" else []:
            point_label = point.get("label")
            if point_label is None or point_label not in names:
                raise AnnotationError(f"point {point_label!r} is not in skeleton {label!r}", path=path,
                                      record=where)
            (x, y), *_ = _points(point.get("points"), path, where) or [(0.0, 0.0)]
            if point.get("outside", "0") != "1":
                keypoints[names.index(point_label)] = [x, y, 1.0 if point.get("occluded") == "1" else 2.0]
        labelled = [(x, y) for x, y, v in keypoints if v > 0]
        if not labelled:
            self.repairs.note("empty", "skeleton without labelled points dropped", path=path, record=where)
            return
        xs, ys = [p[0] for p in labelled], [p[1] for p in labelled]
        self.add_object(rec, label, (min(xs), min(ys), max(xs), max(ys)), record=where, keypoints=keypoints)
