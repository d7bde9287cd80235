"""Ultralytics YOLO data sets (`yolo:DATA.yaml[:split]`): images/ and labels/ text files, names in the yaml.

The yaml gives `path` (the data set root; relative to the yaml's folder, which is also the default), a
`train` / `val` / `test` entry per split (a folder of images, a .txt list of image paths, or a list of
either; relative to the root, and Roboflow's `../train/images` is found as `train/images` under the root
as Ultralytics finds it), `names` (a list, or a dict from class id to name) and, for pose data,
`kpt_shape: [K, 2|3]` (optional `kpt_names`). An image's labels are the file with its path's last
`images` folder replaced by `labels` and its extension by `.txt` (beside the image when the path has no
`images` folder); no label file means no objects.

One object per line, coordinates normalised to the image's width and height: `class cx cy w h` (a box),
`class x1 y1 x2 y2 ...` (a segment polygon: a mask, its extent the box), or with `kpt_shape`
`class cx cy w h px py [v] ...` (keypoints; without a visibility column, a point at (0, 0) is unlabelled
and any other visible). Image sizes come from the image headers. Labels are the class ids + 1, in the
order of the yaml's names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from objdet.data.base import Transform
from objdet.data.image import MAX_PIXELS
from objdet.data.records import RecordDataset
from objdet.data.repair import IMAGE_EXTENSIONS
from objdet.errors import AnnotationError, DataError

SPLITS = ("train", "val", "test")


def read_yaml(path: Path) -> dict:
    """The data set's yaml as a dict; an unreadable or malformed file is a DataError naming it."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"cannot read the data yaml: {err.strerror or err}", path=path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"malformed yaml: {err}", path=path) from None
    if not isinstance(doc, dict):
        raise DataError("the data yaml must be a mapping with `names` and split entries", path=path)
    return doc


def class_names(doc: dict, path: Path) -> list[str]:
    """`names` as a list indexed by class id (a dict's ids must be 0..K-1)."""
    names = doc.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DataError(f"names ids must be 0..{len(names) - 1}, got {sorted(names)}", path=path)
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError("the data yaml needs `names`: a list of class names or a dict id -> name", path=path)
    if "nc" in doc and doc["nc"] != len(names):
        raise DataError(f"nc is {doc['nc']} but names has {len(names)} entries", path=path)
    return [str(n) for n in names]


def label_file(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, the extension `.txt`."""
    head, sep, tail = f"{os.sep}{image}".rpartition(f"{os.sep}images{os.sep}")
    text = f"{head}{os.sep}labels{os.sep}{tail}" if sep else f"{os.sep}{image}"
    return Path(os.path.splitext(text)[0][1:] + ".txt")


def _split_images(entry: Any, root: Path, yaml_path: Path) -> list[Path]:
    """Image files of one split entry: folders (searched recursively), .txt lists, or a list of them."""
    files: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        place = Path(str(item))
        place = place if place.is_absolute() else root / place
        if not place.exists() and str(item).startswith("../"):  # Roboflow's exports
            place = root / str(item)[3:]
        if place.is_dir():
            files += sorted((p for p in place.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS), key=str)
        elif place.is_file():
            lines = [ln.strip() for ln in place.read_text(encoding="utf-8").splitlines() if ln.strip()]
            files += [Path(ln) if Path(ln).is_absolute() else place.parent / ln for ln in lines]
        else:
            raise DataError(f"split entry {item!r} is neither a folder nor an image list (looked for {place})",
                            path=yaml_path)
    return files


class YOLODataset(RecordDataset):
    """An Ultralytics data set split: yields (image [3,H,W] in 0..1, target)."""

    def __init__(self, data_yaml: str | os.PathLike, split: str | None = "train", transforms: Transform | None = None,
                 max_pixels: int = MAX_PIXELS, strict: bool = False, on_error: str = "raise"):
        self.yaml = Path(data_yaml)
        super().__init__(self.yaml, transforms, max_pixels, strict, on_error)
        doc = read_yaml(self.yaml)
        self.root = Path(str(doc.get("path") or "."))
        self.root = self.root if self.root.is_absolute() else self.yaml.parent / self.root
        self.split = split or "train"
        splits = [k for k in SPLITS if doc.get(k)]
        if self.split not in splits:
            raise DataError(f"unknown split {self.split!r}; the yaml names {splits or 'none'}", path=self.yaml)
        names = class_names(doc, self.yaml)
        shape = doc.get("kpt_shape")
        if shape is not None and not (isinstance(shape, list) and len(shape) == 2 and shape[0] > 0
                                      and shape[1] in (2, 3)):
            raise DataError(f"kpt_shape must be [K, 2] or [K, 3], got {shape!r}", path=self.yaml)
        self.kpt_shape = tuple(shape) if shape else None
        if self.kpt_shape:
            given = doc.get("kpt_names")
            given = next(iter(given.values()), None) if isinstance(given, dict) else given
            self.keypoint_names = [str(n) for n in given] if isinstance(given, list) and \
                len(given) == self.kpt_shape[0] else [f"kp{i}" for i in range(self.kpt_shape[0])]
        records = []
        for image in _split_images(doc[self.split], self.root, self.yaml):
            with self.repairs.guard():
                records.append(self._read(image, len(names)))
        self._finish(records, names, names_are_labels=True)

    def _read(self, image: Path, num_classes: int) -> dict:
        """The image record of one image and its label file."""
        labels = label_file(image)
        try:
            name = image.relative_to(self.root).as_posix()
        except ValueError:
            name = image.name
        rec = self.image_record(image, name, path=labels, record=name, sized=False)
        if not labels.is_file():
            return rec
        try:
            lines = labels.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read the label file: {err}", path=labels) from None
        w, h = rec["width"], rec["height"]
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            where = f"line {n + 1}"
            try:
                cls_value, *values = (float(v) for v in line.split())
            except ValueError:
                raise AnnotationError(f"{line.strip()!r} is not numbers", path=labels, record=where) from None
            cls = int(cls_value)
            if cls != cls_value or not 0 <= cls < num_classes:
                raise AnnotationError(f"class id {cls_value:g} is not one of the {num_classes} names of {self.yaml}",
                                      path=labels, record=where)
            scaled = [v * (w if k % 2 == 0 else h) for k, v in enumerate(values)]
            keypoints = None
            if self.kpt_shape:
                k, d = self.kpt_shape
                if len(values) != 4 + k * d:
                    raise AnnotationError(f"a pose line needs 1 + 4 + {k}x{d} values, got {len(values) + 1}",
                                          path=labels, record=where)
                keypoints = [_keypoint(values[4 + j * d: 4 + (j + 1) * d], w, h) for j in range(k)]
            elif len(values) > 4 and len(values) % 2 == 0:
                self.add_object(rec, cls + 1, None, record=where, polygons=[scaled])
                continue
            elif len(values) != 4:
                raise AnnotationError(f"a line needs 5 values (a box) or 7 or more (a polygon), got {len(values) + 1}",
                                      path=labels, record=where)
            cx, cy, bw, bh = scaled[:4]
            self.add_object(rec, cls + 1, (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), record=where,
                            keypoints=keypoints)
        for obj in rec["objects"]:
            obj["label"] = obj["name"]
        return rec


def _keypoint(values: list[float], width: int, height: int) -> list[float]:
    """One normalised (x, y[, v]) point as pixels and COCO visibility (0 unlabelled, 1 hidden, 2 visible)."""
    x, y = values[0] * width, values[1] * height
    v = values[2] if len(values) == 3 else (0.0 if values[0] == values[1] == 0 else 2.0)
    return [x, y, v] if v > 0 else [0.0, 0.0, 0.0]
