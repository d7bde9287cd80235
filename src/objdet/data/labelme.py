"""LabelMe folders (`labelme:DIR`): one json file per image, searched recursively under DIR.

Each file names its image (`imagePath`, relative to the json file's folder; Windows back-slashes are
read as separators) and its size (`imageWidth`, `imageHeight`), and lists `shapes`: a `rectangle` (two
corner points, in any order) is a box; a `polygon` (three or more points) is a mask whose extent is the
box. Shapes with the same label and the same non-null `group_id` are one object (LabelMe's way to draw
an object in several parts). Other shape kinds (circle, line, linestrip, point, mask) are skipped and
counted. Class labels are the sorted class names found, 1-based. The image must lie inside DIR.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from objdet.data.base import Transform
from objdet.data.image import MAX_PIXELS
from objdet.data.records import RecordDataset, require_folder
from objdet.data.validate import inside_root
from objdet.errors import AnnotationError, DataError
from objdet.io import load_json


def _points(shape: dict, path: Path, record: str) -> list[tuple[float, float]]:
    points = shape.get("points")
    if isinstance(points, list):
        try:
            return [(float(x), float(y)) for x, y in points]
        except (TypeError, ValueError, OverflowError):
            pass
    raise AnnotationError(f"points {points!r} are not [x, y] pairs", path=path, record=record)


class LabelMeDataset(RecordDataset):
    """A folder of LabelMe json files: yields (image [3,H,W] in 0..1, target)."""

    def __init__(self, root: str | os.PathLike, transforms: Transform | None = None, classes: list[str] | None = None,
                 max_pixels: int = MAX_PIXELS, strict: bool = False, on_error: str = "raise"):
        self.root = require_folder(Path(root), "LabelMe")
        super().__init__(self.root, transforms, max_pixels, strict, on_error)
        files = sorted(self.root.rglob("*.json"))
        if not files:
            raise DataError("no LabelMe .json files in the folder", path=self.root)
        records = []
        for file in files:
            with self.repairs.guard():
                records.append(self._read(file))
        self._finish(records, classes)

    def _read(self, path: Path) -> dict:
        """The image record of one LabelMe file."""
        doc = load_json(path, "LabelMe annotation")
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
            raise DataError("not a LabelMe file: it needs a `shapes` list", path=path)
        record = path.relative_to(self.root).with_suffix("").as_posix()
        image_path = str(doc.get("imagePath") or f"{path.stem}.jpg").replace("\\", "/")
        name = os.path.normpath(os.path.join(path.parent.relative_to(self.root), image_path))
        file = inside_root(self.root, name, path=path, record=record)
        rec = self.image_record(file, "", doc.get("imageWidth"), doc.get("imageHeight"), path=path, record=record)
        rec["file_name"] = rec["file"].relative_to(self.root).as_posix()
        groups: dict[Any, dict] = {}
        for n, shape in enumerate(doc["shapes"]):
            where = f"{record} shape {n}"
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                raise AnnotationError("a shape needs a `label` string", path=path, record=where)
            kind = shape.get("shape_type") or "polygon"
            points = _points(shape, path, where)
            if kind not in ("rectangle", "polygon"):
                self.repairs.note("shape", f"{kind} shape skipped", path=path, record=where)
                continue
            key = (shape["label"], shape["group_id"]) if shape.get("group_id") is not None else n
            obj = groups.setdefault(key, {"label": shape["label"], "where": where, "polygons": [], "corners": []})
            if kind == "rectangle":
                if len(points) != 2:
                    raise AnnotationError(f"a rectangle needs 2 points, got {len(points)}", path=path, record=where)
                obj["corners"] += points
            elif len(points) < 3:
                self.repairs.note("empty", f"polygon of {len(points)} points dropped", path=path, record=where)
            else:
                obj["polygons"].append([v for point in points for v in point])
        for obj in groups.values():
            corners = obj["corners"] + [p for poly in obj["polygons"] for p in zip(poly[0::2], poly[1::2])]
            if not corners:
                continue
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            self.add_object(rec, obj["label"], (min(xs), min(ys), max(xs), max(ys)), record=obj["where"],
                            polygons=obj["polygons"] or None)
        return rec
