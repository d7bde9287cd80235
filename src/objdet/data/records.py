"""The shared body of the folder-format readers (VOC, YOLO, LabelMe, CVAT): a list of image records.

A reader parses its files into records and hands them to `RecordDataset._finish`; the targets, image
records, COCO annotations and image reading are the same for every format, so nothing downstream knows
which one a data set came from.

Record: `{"file": Path of the image, "file_name": its name relative to the data set's image root, "width",
"height", "path": the annotation file, "id": the record's name in messages, "objects": [...]}`; object:
`{"box": xyxy pixels, "label": 1..K, "segmentation": COCO polygons in pixels or None, "keypoints": K x 3
list or None, "difficult": 0|1}`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from objdet.data.base import DetectionDataset, Target
from objdet.data.image import MAX_PIXELS, image_size, read_image
from objdet.data.masks import instance_masks, keypoint_array, polygon_area, polygons_box
from objdet.data.repair import FileFinder, Repairs, merge_class_names, note_merges
from objdet.data.validate import is_finite_number, polygon_problem
from objdet.errors import AnnotationError, DataError, ImageError


def positive_size(value: object) -> int | None:
    """A width or height read from an annotation: a positive integer, None when zero or missing (to be read
    from the image header); anything else (negative, fractional, not a number) is refused by the caller."""
    if value is None or value == "" or value == 0:
        return None
    if not isinstance(value, (str, int, float)):
        return -1
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return -1
    if number == 0:
        return None
    return int(number) if math.isfinite(number) and number == int(number) and number > 0 else -1


class RecordDataset(DetectionDataset):
    """A data set held as image records; subclasses parse their format in `__init__` and call `_finish`."""

    has_difficult = False  # VOC's flag, kept on targets and COCO annotations

    def __init__(self, source: object, transforms: Any = None, max_pixels: int = MAX_PIXELS, strict: bool = False,
                 on_error: str = "raise"):
        self.transforms, self.max_pixels = transforms, max_pixels
        self.repairs = Repairs(source, strict, on_error)
        self.finder = FileFinder()
        self.keypoint_names: list[str] = []
        self.has_masks = False

    # -- building records ------------------------------------------------------------------------
    def image_record(self, file: Path, file_name: str, width: object = None, height: object = None, *,
                     path: object, record: str, sized: bool = True) -> dict:
        """An image record whose file is found (other extension or case repaired) and whose zero or missing
        size is read from the image header (repaired; `sized=False`: the format holds no sizes, so reading
        them is no repair); a bad size or a size over `max_pixels` is refused."""
        file = self.finder.find(file, self.repairs, path=path, record=record)
        w, h = positive_size(width), positive_size(height)
        if w == -1 or h == -1:
            raise AnnotationError(f"image size {width!r} x {height!r} is not two positive integers", path=path,
                                  record=record)
        if w is None or h is None:
            w, h = image_size(file)
            if sized:
                self.repairs.note("size", f"image size {width!r} x {height!r} read from the image header: {w}x{h}",
                                  path=path, record=record)
        if w * h > self.max_pixels:
            raise AnnotationError(f"image size {w}x{h} is more than {self.max_pixels} pixels (decompression-bomb "
                                  "guard; raise max_pixels)", path=path, record=record)
        return {"file": file, "file_name": file_name, "width": w, "height": h, "path": path, "id": record,
                "objects": []}

    def add_object(self, rec: dict, name: Any, box: Sequence[float] | None, *, record: str,
                   polygons: list[list[float]] | None = None, keypoints: list | None = None,
                   difficult: int = 0) -> None:
        """Append one object to `rec` after the box policy (clip, drop); its box is the polygons' extent
        when none is given. `name` is a class name, mapped to a label by `_finish`."""
        path, w, h = rec["path"], rec["width"], rec["height"]
        if polygons is not None:
            problem = polygon_problem(polygons, h, w)
            if problem:
                raise AnnotationError(problem, path=path, record=record)
        if box is None:
            box = polygons_box(polygons) if polygons else None
            if box is None:
                raise AnnotationError("object has neither a box nor a polygon", path=path, record=record)
        clean = self.repairs.box(box, w, h, path=path, record=record)
        if clean is None:
            return
        if keypoints is not None and not all(is_finite_number(v) for kp in keypoints for v in kp):
            raise AnnotationError("keypoints must be finite numbers", path=path, record=record)
        rec["objects"].append({"box": clean, "name": name, "segmentation": polygons, "keypoints": keypoints,
                               "difficult": difficult, "record": record})

    def _finish(self, records: list[dict], classes: Sequence[str] | None, *, names_are_labels: bool = False,
                other_names: Sequence[str] = ()) -> None:
        """Map class names to labels 1..K (spellings merged, a class outside a given list refused), number the
        images, report the repairs. `other_names` are class names of files outside the split, which join the
        class list so that every split of a folder has the same one."""
        if names_are_labels:
            self.classes = list(classes or [])
        else:
            first: dict[str, tuple[object, object]] = {}
            for rec in records:
                for obj in rec["objects"]:
                    first.setdefault(obj["name"], (rec["path"], obj["record"]))
            found = [o["name"] for r in records for o in r["objects"]] + list(other_names)
            self.classes, mapping = merge_class_names(found, classes)
            note_merges(self.repairs, {s: n for s, n in mapping.items() if s in first}, first)
            label_of = {n: i + 1 for i, n in enumerate(self.classes)}
            for rec in records:
                kept = []
                for obj in rec["objects"]:
                    with self.repairs.guard():
                        if mapping[obj["name"]] not in label_of:
                            raise AnnotationError(f"class {obj['name']!r} is not in the class list {self.classes}",
                                                  path=rec["path"], record=obj["record"])
                        kept.append({**obj, "label": label_of[mapping[obj["name"]]]})
                rec["objects"] = kept
        self.categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.classes)]
        self.label_to_category_id = {i + 1: i + 1 for i in range(len(self.classes))}
        self.has_masks = self.has_masks or any(o["segmentation"] for r in records for o in r["objects"])
        self.records = records
        self.select(range(len(records)))
        self.repairs.report()

    def select(self, indices: Sequence[int]) -> None:
        """Keep only the images at `indices` (a seeded train/val split); image ids become 1..n again."""
        self.records = [self.records[i] for i in indices]
        for n, rec in enumerate(self.records):
            rec["image_id"] = n + 1

    # -- the data set interface ------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of object classes (labels run 1..num_classes)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def image_info(self, i: int) -> dict:
        """The image record: id (1-based position in the split), file_name, width, height."""
        r = self.records[i]
        return {"id": r["image_id"], "file_name": r["file_name"], "width": r["width"], "height": r["height"]}

    def image_file(self, i: int) -> Path:
        """Path of image i's file."""
        return self.records[i]["file"]

    def target(self, i: int) -> Target:
        """Target of image i without reading the image (boxes, labels, masks, keypoints, ...)."""
        rec = self.records[i]
        objects, h, w = rec["objects"], rec["height"], rec["width"]
        boxes = torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4)
        target: Target = {
            "boxes": boxes,
            "labels": torch.tensor([o["label"] for o in objects], dtype=torch.int64),
            "iscrowd": torch.zeros(len(objects), dtype=torch.int64),
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "image_id": rec["image_id"],
        }
        if self.has_difficult:
            target["difficult"] = torch.tensor([o["difficult"] for o in objects], dtype=torch.bool)
        if self.has_masks:
            masks = instance_masks([o["segmentation"] for o in objects], [o["box"] for o in objects], h, w)
            target["masks"] = torch.from_numpy(masks)
            target["area"] = torch.from_numpy(np.count_nonzero(masks.reshape(len(masks), h * w), axis=1)
                                              .astype(np.float32))
        if self.keypoint_names:
            kps = keypoint_array([o["keypoints"] for o in objects], len(self.keypoint_names))
            target["keypoints"] = torch.from_numpy(kps)
        return target

    def annotations(self, i: int) -> list[dict]:
        """Image i's objects as COCO annotations without ids (bbox xywh, polygons kept as polygons), the
        lossless form `data convert` writes."""
        out = []
        for o in self.records[i]["objects"]:
            x1, y1, x2, y2 = o["box"]
            ann: dict[str, Any] = {"category_id": self.label_to_category_id[o["label"]],
                                   "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
            ann["area"] = (x2 - x1) * (y2 - y1)
            if o["segmentation"]:
                ann["segmentation"] = o["segmentation"]
                ann["area"] = polygon_area(o["segmentation"], self.records[i]["height"], self.records[i]["width"])
            if o["keypoints"] is not None:
                ann["keypoints"] = [float(v) for kp in o["keypoints"] for v in kp]
                ann["num_keypoints"] = sum(1 for kp in o["keypoints"] if kp[2] > 0)
            if self.has_difficult:
                ann["difficult"] = o["difficult"]
            out.append(ann)
        return out

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        """Image i and its target, before transforms."""
        rec = self.records[i]
        image = read_image(rec["file"], self.max_pixels)
        if tuple(image.shape[1:]) != (rec["height"], rec["width"]):
            raise ImageError(f"image is {image.shape[2]}x{image.shape[1]} but {rec['path']} says "
                             f"{rec['width']}x{rec['height']}", path=rec["file"])
        return image, self.target(i)

    def to_coco(self) -> dict:
        """The data set as a COCO ground-truth dict (masks as RLE, `difficult` kept)."""
        from objdet.data.coco import dataset_to_coco

        return dataset_to_coco(self)


def require_folder(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a DataError naming it."""
    if not path.is_dir():
        raise DataError(f"{what} folder not found", path=path)
    return path
