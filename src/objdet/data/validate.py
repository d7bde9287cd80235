"""Checks shared by the data set readers: box sanity, image paths inside their root, unique ids.

Box policy (every reader applies it, so a box means the same thing in COCO and VOC files):
* not four finite numbers, or negative width/height -> AnnotationError;
* no overlap with the image at all -> AnnotationError;
* partly outside the image -> clipped to it (a DataWarning if it sticks out by more than 1 px);
* zero width or height (after clipping) -> skipped with a DataWarning.

Polygon policy: every coordinate finite and within the image grown by its own size on each side
(x in [-W, 2W], y in [-H, 2H]); pycocotools' rasteriser hangs on NaN or astronomically far points.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Hashable, Iterable

from objdet.errors import AnnotationError, DataError

CLIP_TOLERANCE = 1.0  # pixels a box may stick out of the image before a warning is given


class DataWarning(UserWarning):
    """A record was repaired (clipped) or skipped; the message names the file and the record."""


def warn(message: str, path: object, record: object) -> None:
    """Issue a DataWarning worded like the objdet errors: `path: record R: message`."""
    warnings.warn(f"{path}: record {record}: {message}", DataWarning, stacklevel=3)


def is_finite_number(value: object) -> bool:
    """A JSON number (not a bool) that is a finite float; an int too large for a float is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_box(
    box: Iterable[float], width: int, height: int, *, path: object, record: object
) -> tuple[float, float, float, float] | None:
    """Validate an xyxy box against a width x height image; return it clipped, or None to skip it."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError, OverflowError) as err:
        raise AnnotationError(f"box {box!r} is not four numbers", path=path, record=record) from err
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise AnnotationError(f"box {box!r} has non-finite values", path=path, record=record)
    if x2 < x1 or y2 < y1:
        raise AnnotationError(
            f"box {box!r} has negative width or height", path=path, record=record
        )
    if x2 == x1 or y2 == y1:  # degenerate wherever it is (COCO has [0, 0, 0, 0] boxes): not fatal
        warn(f"box {box!r} has zero width or height; skipped", path, record)
        return None
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        raise AnnotationError(
            f"box {box!r} lies outside the {width}x{height} image", path=path, record=record
        )
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if max(abs(a - b) for a, b in zip(clipped, (x1, y1, x2, y2))) > CLIP_TOLERANCE:
        warn(f"box {box!r} clipped to the {width}x{height} image", path, record)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        warn(f"box {box!r} has zero width or height; skipped", path, record)
        return None
    return clipped


def inside_root(root: str | os.PathLike, file_name: str, *, path: object, record: object) -> Path:
    """Join an image file name to its root, refusing names that escape it (absolute, `..`)."""
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"image file name {file_name!r} is not a string", path=path, record=record)
    normal = os.path.normpath(file_name)
    if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
        raise DataError(
            f"image file name {file_name!r} escapes the image folder {root}",
            path=path,
            record=record,
        )
    return Path(root) / normal


def check_unique(ids: Iterable[Hashable], what: str, *, path: object) -> None:
    """Raise AnnotationError naming the first id that appears twice."""
    seen: set[Hashable] = set()
    for i in ids:
        if not isinstance(i, Hashable):
            raise AnnotationError(f"{what} id {i!r} is not an integer or a string", path=path, record=i)
        if i in seen:
            raise AnnotationError(f"duplicated {what} id {i!r}", path=path, record=i)
        seen.add(i)


def polygon_problem(polygons: object, height: int, width: int) -> str | None:
    """What is wrong with a COCO polygon list for a height x width image, or None if it is usable."""
    if not isinstance(polygons, list) or not polygons:
        return "polygon segmentation must be a non-empty list of polygons"
    for poly in polygons:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            return "a polygon must be a list of >= 3 (x, y) number pairs"
        for k, v in enumerate(poly):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return f"polygon coordinate {v!r} is not a number"
            size = width if k % 2 == 0 else height
            if not (is_finite_number(v) and -size <= v <= 2 * size):
                return f"polygon coordinate {v!r} is not finite or lies far outside the {width}x{height} image"
    return None
