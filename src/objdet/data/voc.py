"""Pascal VOC folders: xml annotations, `difficult` flags, splits, and conversion to COCO form.

Layouts read: the VOC devkit one (`Annotations/`, `JPEGImages/`, `ImageSets/Main/<split>.txt`)
and the raccoon one (`annotations/`, `images/`, split in `data/<split>_labels.csv`, whose unique
`filename` column lists the split's images). Without a split, every xml file is used.

Coordinates: VOC stores 1-based inclusive pixel indices, so pixel columns xmin..xmax are covered;
in 0-based continuous xyxy that is (xmin - 1, ymin - 1, xmax, ymax), which keeps the devkit's
width xmax - xmin + 1 (detectron2 makes the same choice). Class labels are the sorted class names
found in all xml files of the folder (the 20 VOC classes come out in their usual order), 1-based.

Safety: xml is parsed by expat with DOCTYPE and entity declarations refused (no entity expansion
attacks) -> DataError. Malformed xml, a missing <size> or <bndbox>, unknown split, duplicated ids
in a split file or a file name escaping the image folder -> DataError / AnnotationError naming the
file and record; boxes follow `objdet.validate`'s policy.
"""

from __future__ import annotations

import csv
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

import torch

from objdet.data.base import DetectionDataset, Target, Transform
from objdet.data.coco import dataset_to_coco
from objdet.data.image import MAX_PIXELS, read_image
from objdet.validate import check_box, check_unique, inside_root
from objdet.errors import AnnotationError, DataError, ImageError



def parse_xml(path: str | os.PathLike) -> ET.Element:
    """Parse an xml file into an ElementTree element, refusing DTDs and entity declarations."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise DataError("xml with a DOCTYPE or entity declaration is refused", path=path)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
        return builder.close()
    except OSError as err:
        raise DataError(f"cannot read xml file: {err.strerror or err}", path=path) from err
    except (expat.ExpatError, AssertionError) as err:
        raise DataError(f"malformed xml: {err}", path=path) from err


def _text(node: ET.Element, tag: str, path: Path, record: str) -> str:
    found = node.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise AnnotationError(f"missing <{tag}>", path=path, record=record)
    return found.text.strip()


def _number(node: ET.Element, tag: str, path: Path, record: str) -> float:
    text = _text(node, tag, path, record)
    try:
        return float(text)
    except ValueError as err:
        raise AnnotationError(f"<{tag}> {text!r} is not a number", path=path,
                              record=record) from err


def _size(node: ET.Element, tag: str, path: Path, record: str) -> int:
    value = _number(node, tag, path, record)
    if not (math.isfinite(value) and value == int(value) and value > 0):
        raise AnnotationError(f"<{tag}> {value!r} is not a positive integer", path=path, record=record)
    return int(value)


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"no {' or '.join(names)} folder in the VOC root", path=root)


class VOCDataset(DetectionDataset):
    """A Pascal VOC folder: yields (image [3,H,W] in 0..1, target) with a `difficult` flag."""

    def __init__(self, root: str | os.PathLike, split: str | None = None,
                 transforms: Transform
                 | None = None, classes: list[str] | None = None, keep_difficult: bool = True,
                 max_pixels: int = MAX_PIXELS):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("VOC root folder not found", path=self.root)
        self.ann_dir = _first_dir(self.root, ("Annotations", "annotations"))
        self.image_dir = _first_dir(self.root, ("JPEGImages", "images"))
        self.split, self.transforms, self.max_pixels = split, transforms, max_pixels
        self.keep_difficult = keep_difficult
        ids = self._split_ids(split)
        parsed = {i: self._read(i) for i in ids}
        if classes is None:
            everything = [self._read(p.stem) for p in sorted(self.ann_dir.glob("*.xml"))
                          if p.stem not in parsed]
            names = {o["name"] for r in list(parsed.values()) + everything for o in r["objects"]}
            classes = sorted(names)
        self.classes = list(classes)
        self.categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.classes)]
        self.label_to_category_id = {i + 1: i + 1 for i in range(len(self.classes))}
        self.records = [self._clean(parsed[i], n) for n, i in enumerate(ids)]

    @property
    def num_classes(self) -> int:
        """Number of object classes (labels run 1..num_classes)."""
        return len(self.classes)

    def _split_ids(self, split: str | None) -> list[str]:
        """Image ids of a split, from ImageSets/Main/<split>.txt or data/<split>_labels.csv."""
        if split is None:
            return sorted(p.stem for p in self.ann_dir.glob("*.xml"))
        txt = self.root / "ImageSets" / "Main" / f"{split}.txt"
        csv_file = self.root / "data" / f"{split}_labels.csv"
        if txt.is_file():
            ids = [line.split()[0] for line in txt.read_text().splitlines() if line.strip()]
            check_unique(ids, "image", path=txt)
            return ids
        if csv_file.is_file():
            with open(csv_file, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows and "filename" not in rows[0]:
                raise DataError("split csv needs a 'filename' column", path=csv_file)
            return list(dict.fromkeys(Path(r["filename"]).stem for r in rows))
        available = sorted(p.stem for p in (self.root / "ImageSets" / "Main").glob("*.txt")) + \
            sorted(p.name[: -len("_labels.csv")] for p in (self.root / "data").glob("*_labels.csv"))
        raise DataError(f"unknown split {split!r}; available: {available or 'none'}",
                        path=self.root)

    def _read(self, image_id: str) -> dict:
        """Raw record of one xml file: file name, size and objects (name, box, difficult)."""
        path = inside_root(self.ann_dir, f"{image_id}.xml", path=self.root, record=image_id)
        if not path.is_file():
            raise DataError("annotation file not found", path=path, record=image_id)
        tree = parse_xml(path)
        size = tree.find("size")
        if size is None:
            raise AnnotationError("missing <size>", path=path, record=image_id)
        record = {
            "path": path,
            "id": image_id,
            "file_name": (tree.findtext("filename") or f"{image_id}.jpg").strip(),
            "width": _size(size, "width", path, image_id),
            "height": _size(size, "height", path, image_id),
            "objects": [],
        }
        if record["width"] * record["height"] > self.max_pixels:
            raise AnnotationError(f"image size {record['width']}x{record['height']} is more than "
                                  f"{self.max_pixels} pixels (decompression-bomb guard; raise "
                                  "max_pixels)", path=path, record=image_id)
        for n, obj in enumerate(tree.findall("object")):
            where = f"{image_id} object {n}"
            box = obj.find("bndbox")
            if box is None:
                raise AnnotationError("missing <bndbox>", path=path, record=where)
            record["objects"].append({
                "name": _text(obj, "name", path, where),
                "box": [_number(box, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax")],
                "difficult": int(_number(obj, "difficult", path, where) != 0)
                if obj.find("difficult") is not None else 0,
                "where": where,
            })
        return record

    def _clean(self, raw: dict, index: int) -> dict:
        """Validate a raw record: labels from class names, 0-based boxes, image path inside root."""
        path = raw["path"]
        if raw["width"] <= 0 or raw["height"] <= 0:
            raise AnnotationError("image size must be positive", path=path, record=raw["id"])
        inside_root(self.image_dir, raw["file_name"], path=path, record=raw["id"])
        label_of = {n: i + 1 for i, n in enumerate(self.classes)}
        objects = []
        for obj in raw["objects"]:
            if obj["name"] not in label_of:
                raise AnnotationError(f"class {obj['name']!r} is not in the class list",
                                      path=path, record=obj["where"])
            if obj["difficult"] and not self.keep_difficult:
                continue
            x1, y1, x2, y2 = obj["box"]
            box = check_box((x1 - 1, y1 - 1, x2, y2), raw["width"], raw["height"], path=path,
                            record=obj["where"])
            if box is not None:
                objects.append({"box": box, "label": label_of[obj["name"]],
                                "difficult": obj["difficult"]})
        return {**raw, "image_id": index + 1, "objects": objects}

    def __len__(self) -> int:
        return len(self.records)

    def image_info(self, i: int) -> dict:
        """The image record: id (1-based position in the split), file_name, width, height."""
        r = self.records[i]
        return {"id": r["image_id"], "file_name": r["file_name"], "width": r["width"],
                "height": r["height"]}

    def target(self, i: int) -> Target:
        """Target of image i without reading the image (boxes, labels, difficult, ...)."""
        objects = self.records[i]["objects"]
        boxes = torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4)
        return {
            "boxes": boxes,
            "labels": torch.tensor([o["label"] for o in objects], dtype=torch.int64),
            "difficult": torch.tensor([o["difficult"] for o in objects], dtype=torch.bool),
            "iscrowd": torch.zeros(len(objects), dtype=torch.int64),
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "image_id": self.records[i]["image_id"],
        }

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        """Image i and its target, before transforms."""
        r = self.records[i]
        file = inside_root(self.image_dir, r["file_name"], path=r["path"], record=r["id"])
        image = read_image(file, self.max_pixels)
        if tuple(image.shape[1:]) != (r["height"], r["width"]):
            raise ImageError(f"image is {image.shape[2]}x{image.shape[1]} but {r['path']} says "
                             f"{r['width']}x{r['height']}", path=file)
        return image, self.target(i)

    def to_coco(self) -> dict:
        """The split as a COCO ground-truth dict (with `difficult` on each annotation)."""
        return dataset_to_coco(self)


def voc_to_coco(root: str | os.PathLike, split: str | None = None) -> dict:
    """Convert a VOC folder (one split) to a COCO-format ground-truth dict, for evaluation."""
    return VOCDataset(root, split).to_coco()
