"""COCO evaluation against pycocotools as the oracle: stats, precision/recall arrays, bad input."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import objdet
from objdet.errors import EvaluationError
from objdet.evaluation.coco import evaluate, evaluate_coco

from evaluation.cocogen import H, W, polygon, random_case
from evaluation.pycoco import pycocotools_eval

def assert_same(gt: dict, dt: list, iou_type: str) -> None:
    ref = pycocotools_eval(gt, dt, iou_type)
    ours = evaluate(copy.deepcopy(gt), copy.deepcopy(dt), iou_type)
    np.testing.assert_allclose(list(ours.stats.values()), ref.stats, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.arrays.precision, ref.eval["precision"])
    np.testing.assert_array_equal(ours.arrays.recall, ref.eval["recall"])
    np.testing.assert_array_equal(ours.arrays.scores, ref.eval["scores"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_img=st.integers(1, 6), n_cat=st.integers(1, 4),
       crowd=st.sampled_from([0.0, 0.2, 0.5]), grid=st.booleans())
def test_bbox_matches_pycocotools(seed, n_img, n_cat, crowd, grid):
    gt, dt = random_case(seed, n_img, n_cat, crowd, grid)
    assert_same(gt, dt, "bbox")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n_img=st.integers(1, 4), n_cat=st.integers(1, 3),
       crowd=st.sampled_from([0.0, 0.3]), grid=st.booleans())
def test_segm_matches_pycocotools(seed, n_img, n_cat, crowd, grid):
    gt, dt = random_case(seed, n_img, n_cat, crowd, grid, kind="segm")
    assert_same(gt, dt, "segm")


def test_segm_of_box_results_rasterises_the_boxes():
    gt, dt = random_case(4, 4, 2, 0.2, True)
    for ann in gt["annotations"]:
        ann["segmentation"] = [polygon(ann["bbox"])]
    assert_same(gt, dt, "segm")  # results carry only boxes: loadRes turns them into box polygons


def keypoint_case(seed: int, n_img: int, with_bbox: bool) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 200, "height": 200} for i in range(n_img)]
    anns, dts = [], []
    for im in images:
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 100, 2)
            w, h = rng.uniform(10, 100, 2)
            kx, ky = rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)
            v = rng.choice([0, 1, 2], 17, p=[0.3, 0.2, 0.5]) * (rng.random() > 0.15)
            kpts = np.stack([kx * (v > 0), ky * (v > 0), v], axis=1).ravel().tolist()
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1, "bbox": [x, y, w, h],
                         "area": float(w * h * rng.choice([0.1, 0.5, 1.0])), "iscrowd": int(rng.random() < 0.1),
                         "keypoints": kpts, "num_keypoints": int((v > 0).sum())})
            for _ in range(rng.integers(0, 4)):
                dx, dy = rng.normal(0, rng.choice([1.0, 5.0, 20.0]), (2, 17))
                det = np.stack([kx + dx, ky + dy, np.ones(17)], axis=1).ravel().tolist()
                dts.append({"image_id": im["id"], "category_id": 1, "keypoints": det,
                            "score": float(rng.choice([0.2, 0.6])) if rng.random() < 0.4 else float(rng.random())})
                if with_bbox:
                    dts[-1]["bbox"] = [x, y, w, h]
    return {"images": images, "categories": [{"id": 1, "name": "person"}], "annotations": anns}, dts


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), n_img=st.integers(1, 5), with_bbox=st.booleans())
def test_keypoints_match_pycocotools(seed, n_img, with_bbox):
    gt, dt = keypoint_case(seed, n_img, with_bbox)
    assert_same(gt, dt, "keypoints")


@pytest.mark.parametrize("sigmas", [None, [0.1, 0.05, 0.2, 0.08]])
def test_keypoints_other_than_coco_persons(sigmas):
    gt, dt = keypoint_case(2, 5, False)
    keep = [0, 5, 6, 11]  # four keypoints per object instead of 17
    for rec in gt["annotations"] + dt:
        k = np.array(rec["keypoints"]).reshape(17, 3)[keep]
        rec["keypoints"] = k.ravel().tolist()
        if "num_keypoints" in rec:
            rec["num_keypoints"] = int((k[:, 2] > 0).sum())
    ref_sigmas = np.full(4, 0.25) if sigmas is None else np.array(sigmas)  # default: 1/K each
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _coco_pair(gt, dt)
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = ref_sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(list(evaluate_coco(gt, dt, "keypoints", kpt_sigmas=sigmas).values()), ev.stats,
                               rtol=0, atol=1e-12)


def test_keypoint_stats_are_named():
    gt, dt = keypoint_case(1, 4, False)
    assert list(evaluate_coco(gt, dt, "keypoints")) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


def test_keypoint_evaluation_of_ground_truth_loaded_for_boxes_is_refused():
    from objdet.evaluation.records import load_ground_truth

    gt, dt = keypoint_case(1, 4, False)
    with pytest.raises(EvaluationError, match="keypoint evaluation needs ground truth loaded for keypoints"):
        evaluate(load_ground_truth(gt, "bbox"), dt, "keypoints")
    assert evaluate(load_ground_truth(gt, "keypoints"), dt, "keypoints").stats == evaluate_coco(gt, dt, "keypoints")


def test_more_than_max_dets_per_image_and_score_ties():
    rng = np.random.default_rng(0)
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "annotations": []}
    dt = []
    for img in (1, 2):
        for _ in range(30):
            x, y, w, h = rng.integers(0, 50, 4).tolist()
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": img, "category_id": 1,
                                      "bbox": [x, y, w + 1, h + 1], "area": (w + 1) * (h + 1), "iscrowd": 0})
        for _ in range(260):  # beyond maxDets=100, with many equal scores
            x, y, w, h = rng.integers(0, 50, 4).tolist()
            dt.append({"image_id": img, "category_id": int(rng.integers(1, 3)), "bbox": [x, y, w + 1, h + 1],
                       "score": float(rng.integers(0, 4)) / 4})
    assert_same(gt, dt, "bbox")


def test_single_image_and_empty_images():
    gt, dt = random_case(7, 1, 1, 0.0, True)
    assert_same(gt, dt, "bbox")
    gt["images"] += [{"id": 100, "width": W, "height": H}, {"id": 101, "width": W, "height": H}]
    assert_same(gt, dt, "bbox")


def test_no_ground_truth_objects_leaves_everything_undefined():
    gt, dt = random_case(3, 3, 2, 0.0, False)
    gt["annotations"] = []
    assert_same(gt, dt, "bbox")
    assert set(evaluate_coco(gt, dt).values()) == {-1.0}


def test_empty_detection_list_scores_zero_where_there_is_ground_truth():
    gt, _ = random_case(3, 4, 3, 0.2, False)
    assert_same(gt, [], "bbox")
    stats = evaluate_coco(gt, [])
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_category_without_ground_truth_is_left_out_of_the_means():
    gt, dt = random_case(11, 4, 2, 0.0, True)
    gt["categories"].append({"id": 99, "name": "unused"})
    dt.append({"image_id": gt["images"][0]["id"], "category_id": 99, "bbox": [1, 1, 5, 5], "score": 0.99})
    assert_same(gt, dt, "bbox")
    assert evaluate(gt, dt).per_class()["unused"]["AP"] == -1.0


@pytest.mark.parametrize("seed", range(12))
def test_ground_truth_id_zero_reads_as_unmatched_like_pycocotools(seed):
    gt, dt = random_case(seed, 3, 1, 0.0, True)
    for ann in gt["annotations"]:
        ann["id"] -= 1  # ids 0..n-1: a match to id 0 is recorded as 0, i.e. none
    assert_same(gt, dt, "bbox")


def test_ignore_key_has_no_effect_as_in_pycocotools():
    gt, dt = random_case(15, 4, 2, 0.2, True)
    for i, ann in enumerate(gt["annotations"]):
        ann["ignore"] = i % 2  # pycocotools overwrites it with iscrowd
    assert_same(gt, dt, "bbox")


def test_string_image_ids():
    gt, dt = random_case(16, 5, 2, 0.1, False)
    for rec in gt["images"]:
        rec["id"] = f"img{rec['id']:03d}"
    for rec in gt["annotations"] + dt:
        rec["image_id"] = f"img{rec['image_id']:03d}"
    assert_same(gt, dt, "bbox")


def test_missing_area_is_the_box_area():
    gt, dt = random_case(17, 4, 2, 0.1, False)
    filled = copy.deepcopy(gt)
    for ann, full in zip(gt["annotations"], filled["annotations"]):
        del ann["area"]
        full["area"] = full["bbox"][2] * full["bbox"][3]
    assert evaluate_coco(gt, dt) == evaluate_coco(filled, dt)
    assert_same(filled, dt, "bbox")


def test_paths_and_loaded_json_agree(tmp_path):
    gt, dt = random_case(2, 4, 2, 0.1, False)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    assert objdet.evaluate_coco(str(tmp_path / "gt.json"), tmp_path / "dt.json") == evaluate_coco(gt, dt)


def test_summary_lines_are_pycocotools_format():
    gt, dt = random_case(9, 5, 3, 0.1, False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ev = COCOeval(*_coco_pair(gt, dt), "bbox")
        ev.evaluate()
        ev.accumulate()
        out.seek(0)
        out.truncate()
        ev.summarize()
    assert evaluate(gt, dt).summary_lines() == out.getvalue().splitlines()


def _coco_pair(gt: dict, dt: list) -> tuple[COCO, COCO]:
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    coco_gt.createIndex()
    return coco_gt, coco_gt.loadRes(copy.deepcopy(dt))


def test_per_class_ap_equals_pycocotools_restricted_to_that_class():
    gt, dt = random_case(21, 5, 3, 0.1, True)
    table = evaluate(gt, dt).per_class()
    for cat in gt["categories"]:
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(*_coco_pair(gt, dt), "bbox")
            ev.params.catIds = [cat["id"]]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert table[cat["name"]]["AP"] == pytest.approx(ev.stats[0], abs=1e-12)
        assert table[cat["name"]]["AP50"] == pytest.approx(ev.stats[1], abs=1e-12)


# ---------------------------------------------------------------- bad input

def _small() -> tuple[dict, list]:
    gt = {"images": [{"id": 1, "width": 10, "height": 10}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.8}]
    return gt, dt


@pytest.mark.parametrize("field, value, message", [
    ("image_id", 7, "image_id 7 is not in the ground-truth images"),
    ("category_id", 3, "category_id 3 is not in the ground-truth categories"),
    ("score", float("nan"), "'score' must be a finite number"),
    ("score", -0.5, "score -0.5 is negative"),
    ("score", "high", "'score' must be a finite number"),
    ("bbox", [0, 0, 5], "'bbox' must be a list of 4 finite numbers"),
    ("bbox", [0, 0, "5", None], "'bbox' must be a list of 4 finite numbers"),
    ("bbox", [0, 0, -5, 5], "negative width or height"),
])
def test_bad_detection_names_the_record(field, value, message):
    gt, dt = _small()
    dt[1][field] = value
    with pytest.raises(EvaluationError, match="detection 1") as err:
        evaluate_coco(gt, dt)
    assert message in str(err.value)


def test_missing_detection_field_names_the_record():
    gt, dt = _small()
    del dt[1]["score"]
    with pytest.raises(EvaluationError, match="record detection 1: missing 'score'"):
        evaluate_coco(gt, dt)


def test_bad_ground_truth_names_the_annotation():
    gt, dt = _small()
    gt["annotations"][0]["bbox"] = [1, 2]
    with pytest.raises(EvaluationError, match="annotation 0"):
        evaluate_coco(gt, dt)
    gt, dt = _small()
    gt["annotations"].append(dict(gt["annotations"][0]))
    with pytest.raises(EvaluationError, match="annotation id 1 is used twice"):
        evaluate_coco(gt, dt)


def test_unreadable_files_name_the_file(tmp_path):
    gt, dt = _small()
    missing = tmp_path / "nope.json"
    with pytest.raises(EvaluationError, match="nope.json"):
        evaluate_coco(missing, dt)
    broken = tmp_path / "dt.json"
    broken.write_text("[{")
    with pytest.raises(EvaluationError, match="dt.json: cannot read the detections file"):
        evaluate_coco(gt, broken)
    with pytest.raises(EvaluationError, match="must be an object"):
        evaluate_coco([], dt)
    with pytest.raises(EvaluationError, match="iou_type"):
        evaluate_coco(gt, dt, "boxes")


def test_malformed_masks_and_keypoints_name_the_record():
    gt, dt = random_case(18, 2, 1, 0.0, True, kind="segm")
    dt[0]["segmentation"] = {"size": [H, W], "counts": 123}
    with pytest.raises(EvaluationError, match="detection 0: malformed 'segmentation'"):
        evaluate_coco(gt, dt, "segm")
    gt, dt = keypoint_case(3, 3, False)
    dt[1]["keypoints"] = dt[1]["keypoints"][:-3]
    with pytest.raises(EvaluationError, match="detection 1: 'keypoints' must be a list of 51 finite numbers"):
        evaluate_coco(gt, dt, "keypoints")
