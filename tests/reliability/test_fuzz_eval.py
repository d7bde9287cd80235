"""Fuzzing evaluation inputs: corrupted ground truth or detections give an EvaluationError (or, through
`objdet eval`, exit status 2 with a message), never another exception; accepted input gives stats in
[0, 1] (or -1 where pycocotools reports "no ground truth")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from objdet.cli import main
from objdet.evaluation.coco import evaluate_coco
from objdet.evaluation.voc import evaluate_voc
from objdet.errors import EvaluationError

from evaluation.pycoco import pycocotools_eval

from .conftest import valid_coco
from .corrupt import CORRUPTIONS, TRUNCATION, corrupt, json_text

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SIGMAS = [0.5, 0.5]  # the two keypoints of `valid_coco`'s person


def valid_results() -> list[dict]:
    """Results of every kind for `valid_coco`: boxes, polygon and RLE masks, keypoints."""
    return [
        {"image_id": 1, "category_id": 3, "bbox": [2.5, 3.0, 9.0, 12.0], "score": 0.9,
         "segmentation": [[2, 3, 11, 3, 11, 15, 2, 15]], "keypoints": [5, 5, 1, 6, 13, 1]},
        {"image_id": 1, "category_id": 7, "bbox": [19.0, 5.0, 9.0, 6.0], "score": 0.4,
         "segmentation": [[19, 5, 28, 5, 28, 11, 19, 11]], "keypoints": [20, 6, 1, 25, 9, 1]},
        {"image_id": 2, "category_id": 7, "bbox": [3.0, 2.0, 5.0, 4.0], "score": 0.7,
         "segmentation": [[3, 2, 8, 2, 8, 6, 3, 6]], "keypoints": [4, 3, 1, 7, 5, 1]},
    ]


def assert_stats(stats: dict) -> None:
    for name, value in stats.items():
        assert value == -1 or 0 <= value <= 1 + 1e-12, (name, value)


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_uncorrupted_inputs_evaluate(iou_type):
    assert_stats(evaluate_coco(valid_coco(), valid_results(), iou_type, kpt_sigmas=SIGMAS))


@pytest.mark.parametrize("where", ["image", "rle"])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_an_integer_too_large_for_a_float_as_a_size_is_no_bare_overflow(where, iou_type):
    """JSON ints beyond float range as an image's height or an RLE's size made math.isfinite raise OverflowError."""
    gt, dt = valid_coco(), valid_results()
    if where == "image":
        gt["images"][0]["height"] = 10**400
    else:
        dt[0]["segmentation"] = {"size": [10**400, 40], "counts": "PP0"}
    try:
        assert_stats(evaluate_coco(gt, dt, iou_type, kpt_sigmas=SIGMAS))
    except EvaluationError:
        pass


@FUZZ
@given(gt_cuts=st.one_of(st.just([]), CORRUPTIONS), dt_cuts=st.one_of(st.just([]), CORRUPTIONS),
       iou_type=st.sampled_from(["bbox", "segm", "keypoints"]))
def test_corrupted_evaluation_input_gives_evaluation_error(gt_cuts, dt_cuts, iou_type):
    gt, dt = corrupt(valid_coco(), gt_cuts), corrupt(valid_results(), dt_cuts)
    try:
        assert_stats(evaluate_coco(gt, dt, iou_type, kpt_sigmas=SIGMAS))
    except EvaluationError:
        pass
    try:
        voc = evaluate_voc(gt, dt)
        assert math.isnan(voc["mAP"]) or 0 <= voc["mAP"] <= 1 + 1e-12  # 11 x 1/11 rounds up
    except EvaluationError:
        pass


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gt_cuts=st.one_of(st.just([]), CORRUPTIONS), dt_cuts=st.one_of(st.just([]), CORRUPTIONS),
       truncate=TRUNCATION, which=st.sampled_from(["gt", "dt"]))
def test_objdet_eval_exits_with_a_message_on_corrupted_files(tmp_path, capsys, gt_cuts, dt_cuts, truncate, which):
    gt_file, dt_file = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_file.write_text(json_text(corrupt(valid_coco(), gt_cuts), truncate if which == "gt" else None))
    dt_file.write_text(json_text(corrupt(valid_results(), dt_cuts), truncate if which == "dt" else None))
    status = main(["eval", "--gt", str(gt_file), "--dt", str(dt_file)])
    err = capsys.readouterr().err
    assert status in (0, 2)
    if status == 2:
        assert err.startswith("objdet eval: error:") and len(err.splitlines()) == 1, err


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_rle_pycocotools_writes_passes_the_run_length_check(seed):
    """The guard against RLEs that hang pycocotools must not refuse a valid one (empty, full, ragged)."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    density = rng.choice([0.0, 1.0, rng.random()])

    def rle() -> dict:
        mask = (rng.random((h, w)) < density).astype(np.uint8)
        encoded = mask_utils.encode(np.asfortranarray(mask))
        return {"counts": encoded["counts"].decode("ascii"), "size": [h, w]}

    gt = {"images": [{"id": 1, "width": w, "height": h}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, w, h], "area": float(h * w),
                           "iscrowd": 0, "segmentation": rle()} for k in range(2)]}
    dt = [{"image_id": 1, "category_id": 1, "score": float(rng.random()), "segmentation": rle()} for _ in range(3)]
    np.testing.assert_allclose(list(evaluate_coco(gt, dt, "segm").values()), pycocotools_eval(gt, dt, "segm").stats,
                               atol=1e-12)
