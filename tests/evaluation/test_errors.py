"""TIDE's error breakdown against tidecv, the paper's own package: the same eight dAPs on the same inputs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from objdet.errors import EvaluationError
from objdet.evaluation import error_breakdown
from objdet.evaluation.errors import ERROR_KEYS, analyse_errors

from evaluation.cocogen import random_case
from evaluation.realdata import RACCOON, detections_for, raccoon_coco
from evaluation.tide import tidecv, tidecv_errors


def dense_case(seed: int, n_img: int = 5, n_cat: int = 3, per_img: int = 60) -> tuple[dict, list]:
    """Crowded images: twin objects (equal IoUs), near and wrong-class boxes, score ties, over 100 detections
    per image, images listed in an order other than their ids."""
    rng = np.random.default_rng(seed)
    images = [{"id": 10 - i, "width": 64, "height": 48} for i in range(n_img)]
    cats = [{"id": c + 1, "name": f"k{c}"} for c in range(n_cat)]
    anns, dts = [], []

    def rand_box() -> list[float]:
        x, y = rng.integers(0, 40, 2)
        w, h = rng.integers(2, 24, 2)
        return [float(x), float(y), float(w), float(h)]

    for im in images:
        objs = []
        for _ in range(rng.integers(0, 8)):
            b, c = rand_box(), int(rng.integers(1, n_cat + 1))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": int(rng.random() < 0.1)})
            objs.append((b, c))
            if rng.random() < 0.3:
                anns.append(dict(anns[-1], id=len(anns) + 1))
        for _ in range(rng.integers(0, per_img)):
            if objs and rng.random() < 0.7:
                b, c = objs[rng.integers(len(objs))]
                d = rng.integers(-6, 7, 4)
                b = [b[0] + d[0], b[1] + d[1], max(b[2] + d[2], 1.0), max(b[3] + d[3], 1.0)]
                c = c if rng.random() < 0.7 else int(rng.integers(1, n_cat + 1))
            else:
                b, c = rand_box(), int(rng.integers(1, n_cat + 1))
            score = float(rng.choice([0.2, 0.5, 0.9])) if rng.random() < 0.5 else float(rng.random())
            dts.append({"image_id": im["id"], "category_id": c, "bbox": [float(v) for v in b], "score": score})
    return {"images": images, "categories": cats, "annotations": anns}, dts


def assert_tidecv(gt: dict, dt: list, iou_type: str = "bbox") -> dict:
    ap, ref = tidecv_errors(gt, dt, iou_type)
    ours = analyse_errors(copy.deepcopy(gt), copy.deepcopy(dt), iou_type)
    assert list(ours.errors) == list(ERROR_KEYS) and set(ref) == set(ERROR_KEYS)
    assert ours.ap == pytest.approx(ap, abs=1e-12)
    for key in ERROR_KEYS:
        assert ours.errors[key] == pytest.approx(ref[key], abs=1e-12), key
    return ref


@pytest.mark.parametrize("seed", range(24))
def test_dense_boxes_match_tidecv(seed):
    gt, dt = dense_case(seed, per_img=150 if seed % 4 == 0 else 40)
    assert_tidecv(gt, dt)


@pytest.mark.parametrize("seed", range(12))
def test_sparse_boxes_and_crowds_match_tidecv(seed):
    gt, dt = random_case(seed, 6, 3, 0.3, seed % 2 == 0)
    assert_tidecv(gt, dt)


@pytest.mark.parametrize("seed", range(8))
def test_masks_match_tidecv(seed):
    gt, dt = random_case(seed, 5, 2, 0.3, seed % 2 == 0, kind="segm")
    assert_tidecv(gt, dt, "segm")


def test_cases_exercise_every_error_type():
    """The oracle cases above are worth something only if each error type costs AP somewhere in them."""
    seen = {key: 0.0 for key in ERROR_KEYS}
    for seed in range(24):
        errors = error_breakdown(*dense_case(seed, per_img=150 if seed % 4 == 0 else 40))
        seen = {k: max(seen[k], errors[k]) for k in ERROR_KEYS}
    assert all(v > 0 for v in seen.values()), seen


@pytest.mark.skipif(not RACCOON.is_dir(), reason="raccoon data set not present")
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_real_format_files_read_by_tidecv_itself(tmp_path, iou_type):
    """The raccoon xml read by hand into a COCO file (with a second class for Cls errors), loaded by
    tidecv's own COCO readers from disk."""
    gt = raccoon_coco(60)
    gt["categories"].append({"id": 2, "name": "dog", "supercategory": "animal"})
    gt["annotations"][3]["iscrowd"] = 1
    dt = detections_for(gt, seed=3, extra_classes=(2,))
    if iou_type == "segm":
        from pycocotools import mask as mask_utils
        sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
        for d in dt:
            x, y, w, h = d["bbox"]
            rle = mask_utils.merge(mask_utils.frPyObjects([[x, y, x + w, y, x + w / 2, y + h]], *sizes[d["image_id"]]))
            d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    from tidecv import datasets
    import contextlib
    import io
    tide = tidecv.TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        tide.evaluate(datasets.COCO(str(tmp_path / "gt.json")), datasets.COCOResult(str(tmp_path / "dt.json")),
                      mode="bbox" if iou_type == "bbox" else "mask", name="dt")
        ref = {**tide.get_main_errors()["dt"], **tide.get_special_errors()["dt"]}
    ours = error_breakdown(str(tmp_path / "gt.json"), str(tmp_path / "dt.json"), iou_type)
    for key in ERROR_KEYS:
        assert ours[key] == pytest.approx(ref[key] / 100, abs=1e-12), key
    assert ours["Cls"] > 0 and ours["Loc"] > 0


def test_per_class_changes_average_to_the_overall_ones():
    """Without score ties the rebuilt lists rank as the original, so the class means are the overall dAPs."""
    gt, dt = dense_case(5, per_img=60)
    dt = [dict(d, score=(i + 1) / (len(dt) + 1)) for i, d in enumerate(dt)]
    result = analyse_errors(gt, dt)
    rows = result.per_class.values()
    assert np.mean([r["AP"] for r in rows]) == pytest.approx(result.ap, abs=1e-12)
    for key in ERROR_KEYS:
        mean = np.mean([r[key] for r in rows])
        expected = max(mean, 0.0) if key not in ("FalsePos", "FalseNeg") else mean
        assert result.errors[key] == pytest.approx(expected, abs=1e-12), key


def test_a_class_without_errors_of_a_kind_shows_zero_for_it():
    gt, dt = dense_case(5, per_img=60)  # many score ties
    result = analyse_errors(gt, dt)
    for k, name in enumerate(result.per_class):
        cat = [c["name"] for c in gt["categories"]].index(name)
        for e, key in enumerate(("Cls", "Loc", "Both", "Dupe", "Bkg")):
            rows = np.flatnonzero(result.outcome == e)
            if not np.isin(rows, [i for i, d in enumerate(dt) if d["category_id"] == cat + 1]).any() and key != "Cls":
                assert result.per_class[name][key] == 0.0, (name, key)


def test_no_objects_or_no_detections():
    """Where tidecv divides by zero (a fix leaves no class to average), the fix counts 0."""
    gt, dt = dense_case(3)
    nothing_found = analyse_errors(gt, [])
    assert nothing_found.ap == 0.0 and set(nothing_found.errors.values()) == {0.0}
    assert nothing_found.missed.sum() == sum(not a["iscrowd"] for a in gt["annotations"])
    nothing_there = analyse_errors(dict(gt, annotations=[]), dt)
    assert nothing_there.counts["Bkg"] == len(dt) - np.count_nonzero(nothing_there.outcome == -2)
    assert set(nothing_there.errors.values()) == {0.0}


def test_counts_and_outcomes_agree():
    gt, dt = dense_case(8, per_img=150)
    result = analyse_errors(gt, dt)
    for e, key in enumerate(("Cls", "Loc", "Both", "Dupe", "Bkg")):
        assert result.counts[key] == np.count_nonzero(result.outcome == e)
    assert result.counts["Miss"] == result.missed.sum()
    assert (result.missed <= result.unmatched).all()
    assert np.count_nonzero(result.outcome == -2) > 0  # more than 100 detections in some image


def test_perfect_detections_have_no_errors():
    gt, _ = dense_case(2)
    dt = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5}
          for a in gt["annotations"] if not a["iscrowd"]]
    result = analyse_errors(gt, dt)
    assert result.ap == 1.0 and set(result.errors.values()) == {0.0}


def test_keypoints_are_refused():
    gt, dt = random_case(1, 2, 1, 0.0, True)
    with pytest.raises(EvaluationError, match="bbox' or 'segm'"):
        error_breakdown(gt, dt, "keypoints")
