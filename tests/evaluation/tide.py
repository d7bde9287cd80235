"""The error-breakdown oracle: tidecv 1.0.1 (the TIDE paper's package) run through its public API."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest

tidecv = pytest.importorskip("tidecv")
from tidecv import functions as tide_functions  # noqa: E402


def tidecv_errors(gt: dict, dt: list, iou_type: str = "bbox") -> tuple[float, dict[str, float]]:
    """(AP, {error: dAP}) from tidecv, as fractions; the ground truth is added as tidecv's COCO reader adds
    it (crowds as same-class ignore regions), without needing a segmentation for box evaluation."""
    gt, dt = copy.deepcopy(gt), copy.deepcopy(dt)
    mode = "bbox" if iou_type == "bbox" else "mask"
    truth, preds = tidecv.Data("gt"), tidecv.Data("dt")
    sizes = {}
    for im in gt["images"]:
        truth.add_image(im["id"], im.get("file_name", str(im["id"])))
        sizes[im["id"]] = (im.get("width"), im.get("height"))
    for cat in gt["categories"]:
        truth.add_class(cat["id"], cat["name"])
    for ann in gt["annotations"]:
        mask = None
        if mode == "mask":
            mask = tide_functions.toRLE(ann["segmentation"], *sizes[ann["image_id"]])
        add = truth.add_ignore_region if ann.get("iscrowd") else truth.add_ground_truth
        add(ann["image_id"], ann["category_id"], ann["bbox"], mask)
    for det in dt:
        preds.add_detection(det["image_id"], det["category_id"], det["score"], det.get("bbox"), det.get("segmentation"))
    tide = tidecv.TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        run = tide.evaluate(truth, preds, mode=mode)
        errors = {**tide.get_main_errors()["dt"], **tide.get_special_errors()["dt"]}
    return run.ap / 100, {name: value / 100 for name, value in errors.items()}
