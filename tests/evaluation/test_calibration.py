"""Calibration against a closed form, and the caller's inputs left as they were by every evaluator."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from objdet.evaluation.calibration import calibration
from objdet.evaluation.coco import CocoParams, evaluate
from objdet.evaluation.compare import compare
from objdet.evaluation.errors import analyse_errors

from evaluation.cocogen import random_case


def test_ece_closed_form():
    """20 objects, one per image. 10 detections at 0.95 of which 8 hit; 10 at 0.25 of which 5 hit.
    ECE = (10 |0.8 - 0.95| + 10 |0.5 - 0.25|) / 20 = 0.2."""
    images = [{"id": i + 1, "width": 100, "height": 100} for i in range(20)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}
            for i in range(20)]
    dets = []
    for i in range(20):
        score = 0.95 if i < 10 else 0.25
        hit = i < 8 or 10 <= i < 15
        dets.append({"image_id": i + 1, "category_id": 1, "score": score,
                     "bbox": [10, 10, 30, 30] if hit else [60, 60, 20, 20]})
    cal = calibration(evaluate({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]},
                               dets))
    assert cal.ece == pytest.approx(0.2, abs=1e-12)
    assert cal.count.tolist() == [0, 0, 10, 0, 0, 0, 0, 0, 0, 10]
    assert cal.precision[2] == pytest.approx(0.5) and cal.precision[9] == pytest.approx(0.8)
    assert cal.confidence[9] == pytest.approx(0.95) and np.isnan(cal.confidence[0])


def test_perfectly_calibrated_scores_have_zero_ece():
    """Scores 1.0 on hits and 0.0 on misses: each bin's precision equals its confidence."""
    gt, dt = random_case(4, 6, 2, 0.0, True)
    ev = evaluate(gt, dt)
    t = 0
    tp = np.zeros(len(dt), bool)
    tp[ev.kept] = ev.tp[0, t]
    exact = [dict(d, score=1.0 if hit else 0.0) for d, hit in zip(dt, tp)]
    assert calibration(evaluate(gt, exact)).ece == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_evaluators_leave_their_inputs_alone(iou_type):
    gt, dt = random_case(5, 5, 2, 0.3, False, kind=iou_type)
    params = CocoParams.for_type(iou_type)
    params.max_dets = [100, 1, 10]  # evaluate sorts its own copy
    before = copy.deepcopy((gt, dt, params))
    evaluate(gt, dt, iou_type, params)
    analyse_errors(gt, dt, iou_type)
    compare(gt, [dt, dt], iou_type, n_boot=5)
    assert gt == before[0] and dt == before[1]
    assert params.max_dets == [100, 1, 10] and params.kpt_sigmas is None


def test_keypoint_params_are_not_filled_in_place():
    from evaluation.test_coco import keypoint_case
    gt, dt = keypoint_case(1, 3, False)
    params = CocoParams.for_type("keypoints")
    evaluate(gt, dt, "keypoints", params)
    assert params.kpt_sigmas is None
