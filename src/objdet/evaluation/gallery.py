"""Pictures of mistakes for the report: the worst false positives and the missed objects, drawn on their images.

Images come from a folder (the COCO `file_name` under it) or from a function of the image record; a
picture that cannot be read is skipped and counted, never fatal. Drawing is plain Pillow (no torch).
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
from PIL import Image, ImageDraw

from objdet.errors import ObjdetError
from objdet.evaluation.coco import CocoEvaluation
from objdet.evaluation.errors import MAIN_ERRORS, ErrorAnalysis
from objdet.validate import inside_root

ImageSource = Union[str, os.PathLike, Callable[[dict], "Image.Image | None"]]
THUMB = 320  # longest side of a gallery picture, pixels


@dataclass
class Tile:
    """One gallery picture (JPEG as a data URI) and its caption."""

    uri: str
    caption: str


class ImageReader:
    """Reads the image of a record from a folder or a function; remembers what it could not read."""

    def __init__(self, source: ImageSource, records: dict):
        self.source, self.records = source, records  # records: image id -> image record (id, file_name, ...)
        self.failed: list[str] = []

    def __call__(self, image_id: object) -> Image.Image | None:
        record = self.records.get(image_id, {"id": image_id})
        try:
            if callable(self.source):
                image = self.source(record)
            else:
                path = inside_root(self.source, record.get("file_name"), path="ground truth", record=f"image {image_id}")
                with Image.open(path) as opened:
                    image = opened.convert("RGB")
        except (OSError, ValueError, ObjdetError, Image.DecompressionBombError) as err:
            self.failed.append(f"image {image_id}: {err}")
            return None
        return image.convert("RGB") if image is not None else None


def _draw(image: Image.Image, boxes: list[tuple[list[float], str, str, int]]) -> str:
    """Boxes (xywh, colour, label, width) on a copy scaled to THUMB px; a JPEG data URI."""
    scale = min(1.0, THUMB / max(image.size))
    canvas = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale)))) if scale < 1 \
        else image.copy()
    draw = ImageDraw.Draw(canvas)
    for (x, y, w, h), colour, label, width in boxes:
        x0, y0, x1, y1 = x * scale, y * scale, (x + w) * scale, (y + h) * scale
        draw.rectangle([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)], outline=colour, width=width)
        if label:
            left, top, right, bottom = draw.textbbox((x0, y0), label)
            ty = y0 - (bottom - top) - 2 if y0 - (bottom - top) - 2 >= 0 else y0
            draw.rectangle([x0, ty, x0 + (right - left) + 4, ty + (bottom - top) + 2], fill=colour)
            draw.text((x0 + 2, ty), label, fill="white")
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _objects_of(ev: CocoEvaluation, img: int) -> list[tuple[list[float], str, str, int]]:
    rows = np.flatnonzero(ev.gt.img == img)
    return [(ev.gt.bbox[r].tolist(), "#2ca02c", "", 1) for r in rows]


def worst_false_positives(ev: CocoEvaluation, errors: ErrorAnalysis, read: ImageReader, count: int = 12) -> list[Tile]:
    """The highest-scored detections TIDE counts as errors, with the image's objects in green."""
    rows = np.flatnonzero((errors.outcome >= 0) & ~errors.ignored)
    rows = rows[np.argsort(-ev.dt.score[rows], kind="stable")]
    tiles = []
    for r in rows[: count * 2]:  # a few spare in case some images cannot be read
        image_id = ev.gt.img_ids[ev.dt.img[r]]
        image = read(image_id)
        if image is None:
            continue
        name, kind = ev.gt.cat_names[ev.dt.cat[r]], MAIN_ERRORS[errors.outcome[r]]
        label = f"{name} {ev.dt.score[r]:.2f} {kind}"
        boxes = _objects_of(ev, ev.dt.img[r]) + [(ev.dt.bbox[r].tolist(), "#d62728", label, 3)]
        tiles.append(Tile(_draw(image, boxes), f"image {image_id}: {label}"))
        if len(tiles) == count:
            break
    return tiles


def missed_objects(ev: CocoEvaluation, errors: ErrorAnalysis, read: ImageReader, count: int = 12) -> list[Tile]:
    """Objects no detection came near (TIDE's Miss), largest first, in orange."""
    rows = np.flatnonzero(errors.missed)
    rows = rows[np.argsort(-ev.gt.area[rows], kind="stable")]
    tiles = []
    for r in rows[: count * 2]:
        image_id = ev.gt.img_ids[ev.gt.img[r]]
        image = read(image_id)
        if image is None:
            continue
        label = f"{ev.gt.cat_names[ev.gt.cat[r]]} missed"
        tiles.append(Tile(_draw(image, [(ev.gt.bbox[r].tolist(), "#ff7f0e", label, 3)]), f"image {image_id}: {label}"))
        if len(tiles) == count:
            break
    return tiles


def dataset_images(dataset: Any) -> Callable[[dict], Image.Image]:
    """An image source for the report from an objdet data set (`image_info(i)`, `load(i)` giving a
    [3, H, W] image in 0..1): image record -> PIL image. Reads the tensor through numpy, so this module
    stays free of torch."""
    index = {dataset.image_info(i)["id"]: i for i in range(len(dataset))}

    def read(record: dict) -> Image.Image:
        pixels = np.asarray(dataset.load(index[record["id"]])[0], dtype=np.float32).transpose(1, 2, 0)
        return Image.fromarray((pixels.clip(0, 1) * 255).round().astype(np.uint8))

    return read
