"""COCO ground truth and detection results as flat numpy arrays, read with pycocotools' rules.

Reading follows `COCO.createIndex`, `COCO.loadRes` and `COCOeval._prepare`: detection ids are 1..N in
file order, a detection's area comes from its box (w*h), its mask, or its keypoints' extent, whichever
branch the first record selects, and a ground-truth object is ignored when it is a crowd (or, for
keypoints, has no labelled keypoint). The `ignore` key of an annotation is overwritten by pycocotools
and therefore has no effect here either. Input pycocotools would choke on raises `EvaluationError`,
except a ground truth without 'area', which gets its mask's (segm) or box's area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from objdet.validate import compressed_counts_bad, is_size, segmentation_problem
from objdet.errors import EvaluationError
from objdet.io import load_json

IOU_TYPES = ("bbox", "segm", "keypoints")

# Per-keypoint standard deviations of the 17 COCO person keypoints (the COCO keypoint task definition).
COCO_KEYPOINT_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0


@dataclass
class GroundTruth:
    """Ground-truth objects of a COCO file, one row per annotation in file order."""

    path: str | None
    img_ids: list  # sorted unique image ids; `img` below indexes this list
    img_order: np.ndarray  # int64 [I]: each image's position in the file's 'images' list (first occurrence)
    cat_ids: list  # sorted unique category ids; `cat` below indexes this list
    cat_names: list[str]
    img: np.ndarray  # int64 [N]
    cat: np.ndarray  # int64 [N]
    id_nonzero: np.ndarray  # bool [N]: pycocotools records a match to a gt by its id, so id 0 reads as none
    bbox: np.ndarray  # float64 [N, 4] xywh
    area: np.ndarray  # float64 [N]
    crowd: np.ndarray  # bool [N]
    ignore: np.ndarray  # bool [N]
    difficult: np.ndarray  # bool [N], VOC's flag (the COCO evaluation does not use it)
    segm: list | None  # compressed RLEs (segm only)
    keypoints: np.ndarray | None  # float64 [N, 3K] (keypoints only)
    sizes: list  # (height, width) or None per image, filled for segm only


@dataclass
class Detections:
    """Detection results, one row per result in file order (pycocotools ids are row + 1)."""

    path: str | None
    img: np.ndarray  # int64 [N]
    cat: np.ndarray  # int64 [N]
    score: np.ndarray  # float64 [N]
    bbox: np.ndarray  # float64 [N, 4] xywh
    area: np.ndarray  # float64 [N]
    segm: list | None
    keypoints: np.ndarray | None


def read_json(source: Any, what: str) -> tuple[Any, str | None]:
    """Return (loaded json, path or None) for a path or an already loaded object."""
    if not isinstance(source, (str, Path)):
        return source, None
    return load_json(source, what, EvaluationError), str(source)


def _column(records: Sequence, key: str, path: str | None, label: str) -> list:
    """`[r[key] for r in records]`, or an error naming the first record without `key`."""
    try:
        return [r[key] for r in records]
    except (KeyError, TypeError):
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise EvaluationError(f"expected an object, got {type(r).__name__}", path=path, record=f"{label} {i}") from None
            if key not in r:
                raise EvaluationError(f"missing '{key}'", path=path, record=f"{label} {i}") from None
        raise


def _numbers(values: list, width: int | None, path: str | None, label: str, key: str) -> np.ndarray:
    """Finite float64 array of shape [N] (width None) or [N, width], or an error naming the bad record."""
    bad = 0  # the first offending record, found below
    arr: np.ndarray | None
    try:
        arr = np.array(values, dtype=np.float64)
        shape_ok = arr.ndim == 1 if width is None else (arr.ndim == 2 and arr.shape[1] == width)
        if not shape_ok and len(values) > 0:
            arr = None
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is not None:
        finite = np.isfinite(arr) if arr.ndim == 1 else np.isfinite(arr).all(axis=1)
        if finite.all():
            return arr.reshape((len(values),) if width is None else (len(values), width))
        bad = int(np.argmin(finite))
    else:
        for i, v in enumerate(values):
            try:
                one = np.array(v, dtype=np.float64)
            except (ValueError, TypeError, OverflowError):
                bad = i
                break
            if one.shape != (() if width is None else (width,)) or not np.isfinite(one).all():
                bad = i
                break
    want = "a finite number" if width is None else f"a list of {width} finite numbers"
    raise EvaluationError(f"'{key}' must be {want}, got {values[bad]!r}", path=path, record=f"{label} {bad}")


def _check_box_sizes(bbox: np.ndarray, path: str | None, label: str) -> None:
    bad = np.flatnonzero((bbox[:, 2] < 0) | (bbox[:, 3] < 0))
    if bad.size:
        i = int(bad[0])
        raise EvaluationError(f"bbox {bbox[i].tolist()} has a negative width or height", path=path, record=f"{label} {i}")


def _index(values: list, lookup: dict, path: str | None, label: str, key: str, owner: str) -> np.ndarray:
    try:
        return np.array([lookup[v] for v in values], dtype=np.int64)
    except (KeyError, TypeError):
        for i, v in enumerate(values):
            try:
                lookup[v]
            except (KeyError, TypeError):
                raise EvaluationError(f"{key} {v!r} is not in the {owner}", path=path, record=f"{label} {i}") from None
        raise


def _to_rle(segm: Any, hw: tuple[int, int] | None, counts_checked: bool = False) -> dict:
    """A polygon list, uncompressed RLE or compressed RLE as one compressed RLE (pycocotools' annToRLE),
    after the shared validator's checks (pycocotools hangs on far polygons and RLEs that do not add up)."""
    h, w = hw if hw is not None else (None, None)
    problem = segmentation_problem(segm, h, w, counts_checked)
    if problem:
        raise ValueError(problem)
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, *segm["size"])
    return segm


def _compressed_ok(segms: list) -> np.ndarray:
    """bool per record: a compressed RLE whose runs the validator checked in one batch (others: False)."""
    rows, texts, areas = [], [], []
    for i, segm in enumerate(segms):
        if isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
            size = segm.get("size")
            if isinstance(size, list) and len(size) == 2 and all(is_size(v) for v in size):
                rows.append(i)
                texts.append(segm["counts"])
                areas.append(int(size[0]) * int(size[1]))
    ok = np.zeros(len(segms), dtype=bool)
    if rows:
        ok[rows] = ~compressed_counts_bad(texts, areas)
    return ok


def _rles(segms: list, img: np.ndarray, sizes: list, path: str | None, label: str) -> list:
    out = []
    checked = _compressed_ok(segms)
    for i, (segm, im) in enumerate(zip(segms, img)):
        try:
            out.append(_to_rle(segm, sizes[im], bool(checked[i])))
        except (ValueError, TypeError, IndexError, OverflowError) as err:
            raise EvaluationError(f"malformed 'segmentation': {err}", path=path, record=f"{label} {i}") from None
    return out


def _mask_areas(rles: list) -> np.ndarray:
    """Pixel areas of compressed RLEs (pycocotools' `area` overflows on lists over 255 under numpy 2)."""
    return np.array([a for i in range(0, len(rles), 255) for a in mask_utils.area(rles[i:i + 255])], dtype=np.float64)


def _keypoint_array(values: list, path: str | None, label: str) -> np.ndarray:
    if not values:
        return np.zeros((0, 0))
    width = len(values[0]) if isinstance(values[0], list) else 0
    if width == 0 or width % 3:
        raise EvaluationError("'keypoints' must be a list of x, y, v triples", path=path, record=f"{label} 0")
    return _numbers(values, width, path, label, "keypoints")


def _image_sizes(images: list, img_ids: list) -> list:
    sizes: dict = {}
    for im in images:
        h, w = im.get("height"), im.get("width")
        sizes[im["id"]] = (int(h), int(w)) if is_size(h) and is_size(w) else None
    return [sizes[i] for i in img_ids]


def load_ground_truth(source: Any, iou_type: str, path: str | None = None) -> GroundTruth:
    """Read a COCO ground-truth dict or file into arrays (pycocotools' `_prepare` for `iou_type`); `path`
    names an already loaded dict's file in messages."""
    if iou_type not in IOU_TYPES:
        raise EvaluationError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    data, read_from = read_json(source, "ground truth")
    path = read_from or path
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise EvaluationError("ground truth must be an object with 'images', 'annotations' and 'categories' lists", path=path)
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    try:
        img_ids = sorted(set(_column(images, "id", path, "image")))
        cat_ids = sorted(set(_column(cats, "id", path, "category")))
    except TypeError:
        raise EvaluationError("image and category ids must be all numbers or all strings", path=path) from None
    names = {c["id"]: str(c.get("name", c["id"])) for c in cats}
    sizes = _image_sizes(images, img_ids)  # also for bbox: results given as masks are rasterised

    label = "annotation"
    ids = _column(anns, "id", path, label)
    try:
        unique = len(set(ids)) == len(ids)
    except TypeError:
        raise EvaluationError("annotation ids must be numbers or strings", path=path) from None
    if not unique:
        seen: dict = {}  # id -> its first row
        dup = next(i for i, v in enumerate(ids) if seen.setdefault(v, i) != i)
        raise EvaluationError(f"annotation id {ids[dup]!r} is used twice", path=path, record=f"{label} {dup}")
    img = _index(_column(anns, "image_id", path, label), {v: i for i, v in enumerate(img_ids)}, path, label, "image_id", "ground-truth images")
    cat = _index(_column(anns, "category_id", path, label), {v: i for i, v in enumerate(cat_ids)}, path, label, "category_id", "ground-truth categories")
    bbox = _numbers(_column(anns, "bbox", path, label), 4, path, label, "bbox")
    _check_box_sizes(bbox, path, label)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    difficult = np.array([bool(a.get("difficult", 0)) for a in anns], dtype=bool)
    ignore = crowd.copy()
    segm = keypoints = None
    if iou_type == "segm":
        segm = _rles(_column(anns, "segmentation", path, label), img, sizes, path, label)
    elif iou_type == "keypoints":
        keypoints = _keypoint_array(_column(anns, "keypoints", path, label), path, label)
        labelled = _numbers([a.get("num_keypoints", -1) for a in anns], None, path, label, "num_keypoints")
        counted = np.count_nonzero(keypoints[:, 2::3] > 0, axis=1)
        ignore |= np.where(labelled >= 0, labelled, counted) == 0
    # pycocotools needs 'area'; without it, take the mask's area (segm) or the box's
    if all("area" in a for a in anns):
        area = _numbers(_column(anns, "area", path, label), None, path, label, "area")
    else:
        fallback = _mask_areas(segm) if segm is not None else bbox[:, 2] * bbox[:, 3]
        area = _numbers([a["area"] if "area" in a else f for a, f in zip(anns, fallback.tolist())], None, path, label,
                        "area")
    first: dict = {}
    for pos, im in enumerate(images):
        first.setdefault(im["id"], pos)
    img_order = np.array([first[i] for i in img_ids], dtype=np.int64)
    return GroundTruth(
        path, img_ids, img_order, cat_ids, [names[c] for c in cat_ids], img, cat,
        np.array([v != 0 for v in ids], dtype=bool), bbox, area, crowd, ignore, difficult, segm, keypoints, sizes,
    )


def load_detections(source: Any, gt: GroundTruth, iou_type: str) -> Detections:
    """Read detection results (list of dicts or file) with pycocotools' `loadRes` rules."""
    data, path = read_json(source, "detections")
    if not isinstance(data, list):
        raise EvaluationError("detections must be a list of result objects", path=path)
    label = "detection"
    img = _index(_column(data, "image_id", path, label), {v: i for i, v in enumerate(gt.img_ids)}, path, label,
                 "image_id", "ground-truth images")
    cat = _index(_column(data, "category_id", path, label), {v: i for i, v in enumerate(gt.cat_ids)}, path, label,
                 "category_id", "ground-truth categories")
    score = _numbers(_column(data, "score", path, label), None, path, label, "score")
    neg = np.flatnonzero(score < 0)
    if neg.size:
        raise EvaluationError(f"score {score[neg[0]]} is negative", path=path, record=f"{label} {int(neg[0])}")
    n = len(data)
    first = data[0] if data else {}
    segm = keypoints = None
    if "bbox" in first and first["bbox"] != []:  # loadRes' box branch: area from the box
        bbox = _numbers(_column(data, "bbox", path, label), 4, path, label, "bbox")
        _check_box_sizes(bbox, path, label)
        area = bbox[:, 2] * bbox[:, 3]
        if iou_type == "segm":
            x1, y1, x2, y2 = bbox[:, 0], bbox[:, 1], bbox[:, 0] + bbox[:, 2], bbox[:, 1] + bbox[:, 3]
            boxes = [[[a, b, a, d, c, d, c, b]] for a, b, c, d in zip(x1.tolist(), y1.tolist(), x2.tolist(), y2.tolist())]
            raw = [d["segmentation"] if "segmentation" in d else box for d, box in zip(data, boxes)]
            segm = _rles(raw, img, gt.sizes, path, label)
    elif "segmentation" in first:  # mask branch: area and box from the mask
        segm = _rles(_column(data, "segmentation", path, label), img, gt.sizes, path, label)
        area = _mask_areas(segm)
        bbox = mask_utils.toBbox(segm).reshape(n, 4).astype(np.float64) if n else np.zeros((0, 4))
    elif "keypoints" in first:  # keypoint branch: area and box from the keypoints' extent
        keypoints = _keypoint_array(_column(data, "keypoints", path, label), path, label)
        x, y = keypoints[:, 0::3], keypoints[:, 1::3]
        x0, x1, y0, y1 = x.min(axis=1), x.max(axis=1), y.min(axis=1), y.max(axis=1)
        area = (x1 - x0) * (y1 - y0)
        bbox = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    elif n:
        raise EvaluationError("a result needs 'bbox', 'segmentation' or 'keypoints'", path=path, record=f"{label} 0")
    else:
        bbox, area = np.zeros((0, 4)), np.zeros(0)
    if iou_type == "segm" and segm is None:
        if n:
            raise EvaluationError("segm evaluation needs 'segmentation' or 'bbox' in every result", path=path, record=f"{label} 0")
        segm = []
    if iou_type == "keypoints" and keypoints is None:
        keypoints = _keypoint_array(_column(data, "keypoints", path, label), path, label)
    return Detections(path, img, cat, score, bbox, area, segm, keypoints)


def check_keypoint_count(gt: GroundTruth, dt: Detections, sigmas: np.ndarray) -> None:
    """Every keypoint vector must hold one (x, y, v) triple per sigma."""
    for rows, who, label in ((gt.keypoints, gt.path, "annotation"), (dt.keypoints, dt.path, "detection")):
        if rows is not None and len(rows) and rows.shape[1] != 3 * len(sigmas):
            raise EvaluationError(
                f"{rows.shape[1] // 3} keypoints per object but {len(sigmas)} sigmas", path=who, record=f"{label} 0"
            )

