"""`objdet data convert`: write any data set objdet reads as COCO, YOLO or Pascal VOC, one image at a time.

Lossless where the target format can hold it: image files are copied byte for byte (a generated image is
written as PNG), boxes keep their float coordinates (VOC's 1-based corners: xmin = x1 + 1, xmax = x2; YOLO
with eight significant digits of the normalised value), polygons stay polygons (YOLO joins an object's parts into one
segment through zero-width bridges), keypoints are kept by COCO and YOLO (pose). What a format cannot hold
is counted and said at the end: masks in VOC (and RLE masks, or masks beside keypoints, in YOLO), keypoints
in VOC, crowd regions in YOLO and VOC. Nothing but the COCO annotation list (no pixels) is held in memory.

Layouts written, each readable again with the spec `convert` prints:
* coco: `OUT/<split>.json` and `OUT/images/<file_name>`;
* yolo: `OUT/data.yaml`, `OUT/images/<split>/`, `OUT/labels/<split>/` (other splits already in OUT stay);
* voc:  `OUT/Annotations/`, `OUT/JPEGImages/`, `OUT/ImageSets/Main/<split>.txt`.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable
from xml.sax.saxutils import escape

from objdet.data.coco import annotation_records
from objdet.data.image import to_pil
from objdet.errors import ConfigError
from objdet.io import save_json

FORMATS = ("coco", "yolo", "voc")


def image_annotations(dataset: Any, i: int) -> list[dict]:
    """Image i's objects as COCO annotations: the reader's own (polygons as polygons) where it has them,
    else built from the target (masks as RLE)."""
    if hasattr(dataset, "annotations"):
        return dataset.annotations(i)
    info = dataset.image_info(i)
    return annotation_records(dataset.target(i), info["id"], dataset.label_to_category_id, 1)


def _copy_image(dataset: Any, i: int, dest: Path) -> None:
    """Image i's file copied byte for byte, or (a generated data set) written as PNG."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(dataset, "image_file"):
        shutil.copyfile(dataset.image_file(i), dest)
    else:
        to_pil(dataset.load(i)[0]).save(dest.with_suffix(".png"), format="PNG")


def _flat_names(dataset: Any) -> list[str]:
    """A distinct plain file name per image (folders of a file_name joined by `_` where names collide)."""
    names = [dataset.image_info(i)["file_name"] for i in range(len(dataset))]
    if not hasattr(dataset, "image_file"):
        names = [str(Path(n).with_suffix(".png")) for n in names]
    counts = Counter(Path(n).name for n in names)
    return [Path(n).name if counts[Path(n).name] == 1 else n.replace("/", "_") for n in names]


def _number(value: float) -> str:
    """A coordinate as short text that reads back to the same value to 1e-6."""
    return f"{round(value, 6):.6f}".rstrip("0").rstrip(".")


def _joined_polygon(polygons: list[list[float]]) -> list[float]:
    """One polygon through every part: each part closed, then a bridge to the next, and back to the start."""
    out: list[float] = []
    for poly in polygons:
        out += poly + poly[:2]
    return out + polygons[0][:2] if len(polygons) > 1 else polygons[0]


class Writer:
    """Base of the three writers: `add(i, image_name, annotations)` per image, then `close()`."""

    holds: tuple[str, ...] = ()  # what the format keeps: "masks", "keypoints", "crowd"

    def __init__(self, dataset: Any, out: Path, split: str):
        self.dataset, self.out, self.split = dataset, out, split
        self.dropped: Counter = Counter()
        self.names = {c["id"]: c["name"] for c in dataset.categories}
        self.index = {c["id"]: k for k, c in enumerate(dataset.categories)}

    def keep(self, ann: dict) -> bool:
        """Whether to write `ann`, counting what of it the format drops."""
        if ann.get("iscrowd") and "crowd" not in self.holds:
            self.dropped["crowd regions"] += 1
            return False
        if ann.get("segmentation") and "masks" not in self.holds:
            self.dropped["masks"] += 1
        if ann.get("keypoints") and "keypoints" not in self.holds:
            self.dropped["keypoint sets"] += 1
        return True

    def add(self, i: int, name: str, anns: list[dict]) -> None:
        """Write image `i` (named `name` in the flat name list) and its annotations."""
        raise NotImplementedError

    def close(self) -> str:
        """Finish the files; return the spec that reads the written data set back."""
        raise NotImplementedError


class CocoWriter(Writer):
    holds = ("masks", "keypoints", "crowd")

    def __init__(self, dataset: Any, out: Path, split: str):
        super().__init__(dataset, out, split)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, i: int, name: str, anns: list[dict]) -> None:
        info = self.dataset.image_info(i)
        file_name = info["file_name"] if hasattr(self.dataset, "image_file") else str(Path(info["file_name"])
                                                                                        .with_suffix(".png"))
        _copy_image(self.dataset, i, self.out / "images" / file_name)
        self.images.append({"id": info["id"], "file_name": file_name, "width": info["width"],
                            "height": info["height"]})
        for ann in anns:
            self.annotations.append({**ann, "id": len(self.annotations) + 1, "image_id": info["id"]})

    def close(self) -> str:
        categories = [dict(c) for c in self.dataset.categories]
        names = getattr(self.dataset, "keypoint_names", None)
        if names:
            for c in categories:
                c["keypoints"] = list(names)
        path = save_json({"images": self.images, "annotations": self.annotations, "categories": categories},
                         self.out / f"{self.split}.json")
        return f"coco:{path}:{self.out / 'images'}"


class YoloWriter(Writer):
    holds = ("masks", "keypoints")

    def __init__(self, dataset: Any, out: Path, split: str):
        super().__init__(dataset, out, split)
        self.kpt_names = list(getattr(dataset, "keypoint_names", None) or [])

    def keep(self, ann: dict) -> bool:
        segm = ann.get("segmentation")
        if segm and (not isinstance(segm, list) or self.kpt_names):
            self.dropped["masks (YOLO holds polygons, and no masks beside keypoints)"] += 1
            ann = {k: v for k, v in ann.items() if k != "segmentation"}
        return super().keep(ann)

    def add(self, i: int, name: str, anns: list[dict]) -> None:
        info = self.dataset.image_info(i)
        w, h = info["width"], info["height"]
        _copy_image(self.dataset, i, self.out / "images" / self.split / name)
        lines = []
        for ann in anns:
            if not self.keep(ann):
                continue
            x, y, bw, bh = ann["bbox"]
            values = [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h]
            segm = ann.get("segmentation")
            if self.kpt_names:
                kps = ann.get("keypoints") or [0.0] * (3 * len(self.kpt_names))
                for k in range(0, len(kps), 3):
                    values += [kps[k] / w, kps[k + 1] / h] if kps[k + 2] > 0 else [0.0, 0.0]
                    values.append(kps[k + 2])
            elif isinstance(segm, list) and segm:
                poly = _joined_polygon(segm)
                values = [v / (w if k % 2 == 0 else h) for k, v in enumerate(poly)]
            lines.append(" ".join([str(self.index[ann["category_id"]])] + [f"{v:.8g}" for v in values]))
        label = (self.out / "labels" / self.split / name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines))

    def close(self) -> str:
        import yaml

        path = self.out / "data.yaml"
        doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
        doc = doc if isinstance(doc, dict) else {}
        doc.update({"path": ".", self.split: f"images/{self.split}",
                    "names": {k: c["name"] for k, c in enumerate(self.dataset.categories)}})
        if self.kpt_names:
            doc.update(kpt_shape=[len(self.kpt_names), 3], kpt_names={0: self.kpt_names})
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return f"yolo:{path}:{self.split}"


class VocWriter(Writer):
    holds = ()

    def __init__(self, dataset: Any, out: Path, split: str):
        super().__init__(dataset, out, split)
        self.ids: list[str] = []

    def add(self, i: int, name: str, anns: list[dict]) -> None:
        info = self.dataset.image_info(i)
        _copy_image(self.dataset, i, self.out / "JPEGImages" / name)
        objects = []
        for ann in anns:
            if not self.keep(ann):
                continue
            x, y, bw, bh = ann["bbox"]
            corners = zip(("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + bw, y + bh))
            box = "".join(f"<{k}>{_number(v)}</{k}>" for k, v in corners)
            objects.append(f"  <object><name>{escape(self.names[ann['category_id']])}</name><pose>Unspecified</pose>"
                           f"<truncated>0</truncated><difficult>{int(ann.get('difficult', 0))}</difficult>"
                           f"<bndbox>{box}</bndbox></object>\n")
        stem = Path(name).stem
        xml = (f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{escape(name)}</filename>\n"
               f"  <size><width>{info['width']}</width><height>{info['height']}</height><depth>3</depth></size>\n"
               f"  <segmented>0</segmented>\n{''.join(objects)}</annotation>\n")
        (self.out / "Annotations").mkdir(parents=True, exist_ok=True)
        (self.out / "Annotations" / f"{stem}.xml").write_text(xml, encoding="utf-8")
        self.ids.append(stem)

    def close(self) -> str:
        lists = self.out / "ImageSets" / "Main"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{self.split}.txt").write_text("".join(f"{i}\n" for i in self.ids))
        return f"voc:{self.out}:{self.split}"


WRITERS: dict[str, Callable[[Any, Path, str], Writer]] = {"coco": CocoWriter, "yolo": YoloWriter, "voc": VocWriter}


def convert(dataset: Any, to: str, out: str | Path, split: str = "train",
            progress: Callable[[int, int], None] | None = None) -> tuple[str, Counter]:
    """Write `dataset` as format `to` under `out`, named split `split`; returns the spec that reads it back and
    the counts of what the format could not hold."""
    if to not in WRITERS:
        raise ConfigError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    writer = WRITERS[to](dataset, Path(out), split)
    names = _flat_names(dataset)
    for i in range(len(dataset)):
        writer.add(i, names[i], image_annotations(dataset, i))
        if progress is not None:
            progress(i + 1, len(dataset))
    return writer.close(), writer.dropped
