"""The one validator of annotation records, shared by the data readers and the evaluators (torch-free).

It lives at the top of the package so that `objdet.evaluation` can use it without importing
`objdet.data`, whose package imports torch. Readers and evaluators apply the same rules, so a file one
accepts the other accepts too.

Box policy (every reader applies it, so a box means the same thing in COCO and VOC files):
* not four finite numbers, or negative width/height -> AnnotationError;
* no overlap with the image at all -> AnnotationError;
* partly outside the image -> clipped to it (a DataWarning if it sticks out by more than 1 px);
* zero width or height (after clipping) -> skipped with a DataWarning.

Polygon policy: every coordinate finite and within the image grown by its own size on each side
(x in [-W, 2W], y in [-H, 2H]); pycocotools' rasteriser hangs on NaN or astronomically far points.

RLE policy: 'size' is [height, width] (the image's, when known); the run lengths, given as a list or
as pycocotools' compressed string, are non-negative integers adding up to height x width. pycocotools'
IoU spins forever on runs that do not add up, and its decoder reads past malformed strings.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Hashable, Iterable, Sequence, TypeGuard

import numpy as np

from objdet.errors import AnnotationError, DataError

CLIP_TOLERANCE = 1.0  # pixels a box may stick out of the image before a warning is given
_CHARS_PER_BATCH = 1 << 20  # compressed RLE characters decoded at once


class DataWarning(UserWarning):
    """A record was repaired (clipped) or skipped; the message names the file and the record."""


def warn(message: str, path: object, record: object) -> None:
    """Issue a DataWarning worded like the objdet errors: `path: record R: message`."""
    warnings.warn(f"{path}: record {record}: {message}", DataWarning, stacklevel=3)


def is_finite_number(value: object) -> TypeGuard[int | float]:
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


def inside_root(root: str | os.PathLike, file_name: object, *, path: object, record: object) -> Path:
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


def compressed_counts_bad(texts: Sequence[str | bytes], areas: Sequence[int]) -> np.ndarray:
    """bool [S]: which compressed RLE strings are not pycocotools' encoding of runs adding up to their area.

    All strings are decoded at once (pycocotools' rleFrString: 5-bit groups, 0x20 = more, 0x10 = sign,
    runs from the fourth on stored as differences to the run two before): a character outside
    '0'..'o', a string ending inside a value, a value of more than 12 characters, a negative run or
    one beyond the area, or runs that do not add up to it.
    """
    texts, areas = list(texts), list(areas)
    bad, lo = np.zeros(len(texts), dtype=bool), 0
    while lo < len(texts):  # batches of about a million characters bound the memory
        hi, size = lo, 0
        while hi < len(texts) and (size < _CHARS_PER_BATCH or hi == lo):
            size += len(texts[hi])
            hi += 1
        bad[lo:hi] = _counts_bad(texts[lo:hi], areas[lo:hi])
        lo = hi
    return bad


def _counts_bad(texts: Sequence[str | bytes], areas: Sequence[int]) -> np.ndarray:
    """`compressed_counts_bad` for one batch."""
    raw = [t.encode("latin-1", "replace") if isinstance(t, str) else bytes(t) for t in texts]
    n_str = len(raw)
    lengths = np.array([len(r) for r in raw], dtype=np.int64)
    area = np.asarray(areas, dtype=np.int64)
    bad = np.zeros(n_str, dtype=bool)
    c = np.frombuffer(b"".join(raw), dtype=np.uint8).astype(np.int64) - 48
    if len(c) == 0:
        return area != 0
    owner = np.repeat(np.arange(n_str), lengths)  # the string of each character
    bad[owner[(c < 0) | (c > 63)]] = True
    ends = (c & 0x20) == 0
    last = np.cumsum(lengths)[lengths > 0] - 1
    bad[owner[last[~ends[last]]]] = True  # the string stops inside a value
    ends[last] = True  # so that no value runs on into the next string
    end_at = np.flatnonzero(ends)
    starts = np.r_[0, end_at[:-1] + 1]
    place = np.arange(len(c)) - np.repeat(starts, end_at - starts + 1)
    bad[owner[place > 11]] = True
    place = np.minimum(place, 11)
    values = np.add.reduceat((c & 0x1F) << (5 * place), starts)
    values -= np.where(c[end_at] & 0x10, 1 << (5 * (place[end_at] + 1)), 0)
    v_owner = owner[end_at]
    first = np.searchsorted(v_owner, np.arange(n_str))
    index = np.arange(len(values)) - first[v_owner]
    for chain in (index % 2 == 1, (index % 2 == 0) & (index >= 2)):  # x[m] += x[m - 2] for m > 2
        total = np.cumsum(np.where(chain, values, 0))
        before = np.where(first > 0, total[np.maximum(first - 1, 0)], 0)
        values = np.where(chain, total - before[v_owner], values)
    bad[v_owner[(values < 0) | (values > area[v_owner])]] = True
    sums = np.bincount(v_owner, weights=values, minlength=n_str)  # float64: exact below 2**53
    return bad | (sums != area)


def is_size(value: object) -> bool:
    """A whole, non-negative, finite JSON number (an image or mask height or width)."""
    return is_finite_number(value) and value >= 0 and float(value).is_integer()


def rle_problem(segm: dict, height: int | None, width: int | None, counts_checked: bool = False) -> str | None:
    """What is wrong with an RLE segmentation (compressed or not), or None; the size must equal the
    image's when it is known. `counts_checked`: a compressed string already passed `compressed_counts_bad`."""
    size = segm.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(is_size(v) for v in size)):
        return "an RLE needs 'size': [height, width]"
    if height is not None and width is not None and [int(size[0]), int(size[1])] != [int(height), int(width)]:
        return f"RLE size {size} is not the image's [{height}, {width}]"
    area = int(size[0]) * int(size[1])
    bad = f"RLE counts must be non-negative integers adding up to {area}"
    counts = segm.get("counts")
    if isinstance(counts, list):  # json integers may exceed int64: checked as Python ints
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= area for c in counts):
            return bad
        return None if sum(counts) == area else bad
    if not isinstance(counts, (str, bytes)):
        return "RLE counts must be a list of run lengths or a compressed string"
    if not counts_checked and compressed_counts_bad([counts], [area])[0]:
        return f"RLE counts are not a compressed string of runs adding up to {area}"
    return None


def segmentation_problem(segm: Any, height: int | None, width: int | None, counts_checked: bool = False) -> str | None:
    """What is wrong with a COCO segmentation (polygons, RLE, compressed RLE), or None if usable.

    Polygons need the image size (`height`, `width`); an RLE carries its own, checked against the
    image's when given.
    """
    if isinstance(segm, list):
        if height is None or width is None:
            return "its image has no 'height'/'width' to rasterise the polygon"
        return polygon_problem(segm, height, width)
    if isinstance(segm, dict):
        return rle_problem(segm, height, width, counts_checked)
    return "segmentation must be a polygon list or an RLE"
