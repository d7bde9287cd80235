"""Pascal VOC folders: xml annotations, `difficult` flags, splits, and conversion to COCO form.

Layouts read: the VOC devkit one (`Annotations/`, `JPEGImages/`, `ImageSets/Main/<split>.txt`), the
raccoon one (`annotations/`, `images/`, split in `data/<split>_labels.csv`, whose unique `filename`
column lists the split's images), and LabelImg's flat folder (each image's xml beside it). Without a
split, every xml file is used; a folder without split lists reads every file for `train` too, and
`open_dataset(..., val_split=F)` makes a seeded train/val split of it.

Coordinates: VOC stores 1-based inclusive pixel indices, so pixel columns xmin..xmax are covered;
in 0-based continuous xyxy that is (xmin - 1, ymin - 1, xmax, ymax), which keeps the devkit's
width xmax - xmin + 1 (detectron2 makes the same choice). Class labels are the sorted class names
found in all xml files of the folder (the 20 VOC classes come out in their usual order), 1-based.

Repairs (counted in one warning, refused under `strict`, see `objdet.data.repair`): a zero or missing
<size> is read from the image header (LabelImg writes 0 when it could not read the image), an image
named with another extension or letter case is found, class names differing in case or spaces merge.

Safety: xml is parsed by expat with DOCTYPE and entity declarations refused (no entity expansion
attacks) -> DataError. Malformed xml, a missing <bndbox>, unknown split, duplicated ids in a split
file or a file name escaping the image folder -> DataError / AnnotationError naming the file and
record; boxes follow `objdet.validate`'s policy.
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NoReturn
from xml.parsers import expat

from objdet.data.base import Transform
from objdet.data.image import MAX_PIXELS
from objdet.data.records import RecordDataset
from objdet.validate import check_unique, inside_root
from objdet.errors import AnnotationError, DataError


def parse_xml(path: str | os.PathLike) -> ET.Element:
    """Parse an xml file into an ElementTree element, refusing DTDs and entity declarations."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_: object) -> NoReturn:
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


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def split_lists(root: Path) -> dict[str, Path]:
    """The split lists of a VOC folder: name -> ImageSets/Main/<name>.txt or data/<name>_labels.csv."""
    lists = {p.stem: p for p in sorted((root / "ImageSets" / "Main").glob("*.txt"))}
    lists.update({p.name[: -len("_labels.csv")]: p for p in sorted((root / "data").glob("*_labels.csv"))})
    return lists


class VOCDataset(RecordDataset):
    """A Pascal VOC folder: yields (image [3,H,W] in 0..1, target) with a `difficult` flag."""

    has_difficult = True

    def __init__(self, root: str | os.PathLike, split: str | None = None, transforms: Transform | None = None,
                 classes: list[str] | None = None, keep_difficult: bool = True, max_pixels: int = MAX_PIXELS,
                 strict: bool = False, on_error: str = "raise"):
        self.root = Path(root)
        super().__init__(self.root, transforms, max_pixels, strict, on_error)
        if not self.root.is_dir():
            raise DataError("VOC root folder not found", path=self.root)
        ann_dir = _first_dir(self.root, ("Annotations", "annotations"))
        image_dir = _first_dir(self.root, ("JPEGImages", "images"))
        if ann_dir is None and any(self.root.glob("*.xml")):  # LabelImg: images and xml side by side
            ann_dir = image_dir = self.root
        if ann_dir is None or image_dir is None:
            missing = "Annotations or annotations" if ann_dir is None else "JPEGImages or images"
            raise DataError(f"no {missing} folder in the VOC root, and no .xml files beside the images",
                            path=self.root)
        self.ann_dir, self.image_dir = ann_dir, image_dir
        self.split, self.keep_difficult = split, keep_difficult
        ids = self._split_ids(split)
        records = []
        for image_id in ids:
            with self.repairs.guard():
                records.append(self._read(image_id))
        others = []
        if classes is None and split is not None:
            listed = set(ids)
            for p in sorted(self.ann_dir.glob("*.xml")):
                if p.stem not in listed:
                    with self.repairs.guard():
                        others += [_text(o, "name", p, p.stem) for o in parse_xml(p).findall("object")]
        self._finish(records, classes, other_names=others)

    def _split_ids(self, split: str | None) -> list[str]:
        """Image ids of a split, from ImageSets/Main/<split>.txt or data/<split>_labels.csv; every xml file
        when no split is named (or `train` is named in a folder without split lists)."""
        lists = split_lists(self.root)
        if split is None or (split == "train" and not lists):
            return sorted(p.stem for p in self.ann_dir.glob("*.xml"))
        if split not in lists:
            hint = "" if lists else " (a folder without split lists: give a val_split fraction (--val-split) " \
                                    "for a seeded train/val split, or no split)"
            raise DataError(f"unknown split {split!r}; available: {sorted(lists) or 'none'}{hint}", path=self.root)
        file = lists[split]
        if file.suffix == ".txt":
            ids = [line.split()[0] for line in file.read_text().splitlines() if line.strip()]
            check_unique(ids, "image", path=file)
            return ids
        with open(file, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "filename" not in rows[0]:
            raise DataError("split csv needs a 'filename' column", path=file)
        return list(dict.fromkeys(Path(r["filename"]).stem for r in rows))

    def _read(self, image_id: str) -> dict:
        """The image record of one xml file: file, size (zero or missing: from the image header), objects."""
        path = inside_root(self.ann_dir, f"{image_id}.xml", path=self.root, record=image_id)
        if not path.is_file():
            raise DataError("annotation file not found", path=path, record=image_id)
        tree = parse_xml(path)
        file_name = (tree.findtext("filename") or f"{image_id}.jpg").strip()
        size = tree.find("size")
        width, height = (None, None) if size is None else (size.findtext("width"), size.findtext("height"))
        file = inside_root(self.image_dir, file_name, path=path, record=image_id)
        rec = self.image_record(file, file_name, width and width.strip(), height and height.strip(), path=path,
                                record=image_id)
        rec["file_name"] = rec["file"].relative_to(self.image_dir).as_posix()
        for n, obj in enumerate(tree.findall("object")):
            where = f"{image_id} object {n}"
            box = obj.find("bndbox")
            if box is None:
                raise AnnotationError("missing <bndbox>", path=path, record=where)
            difficult = int(_number(obj, "difficult", path, where) != 0) if obj.find("difficult") is not None else 0
            name = _text(obj, "name", path, where)
            if difficult and not self.keep_difficult:
                continue
            x1, y1, x2, y2 = (_number(box, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax"))
            self.add_object(rec, name, (x1 - 1, y1 - 1, x2, y2), record=where, difficult=difficult)
        return rec


def voc_to_coco(root: str | os.PathLike, split: str | None = None) -> dict:
    """Convert a VOC folder (one split) to a COCO-format ground-truth dict, for evaluation."""
    return VOCDataset(root, split).to_coco()
