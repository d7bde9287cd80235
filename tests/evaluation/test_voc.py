"""VOC AP against a plain, loop-based transcription of the devkit's voc_eval / voc_ap, and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import objdet
from objdet.errors import EvaluationError
from objdet.evaluation.voc import average_precision, evaluate_voc


def devkit_ap(rec: list[float], prec: list[float], use_07: bool) -> float:
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ps = [p for r, p in zip(rec, prec) if r >= t]
            ap += (max(ps) if ps else 0.0) / 11.0
        return ap
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def devkit_eval(gt: dict, dt: list, cat_id: int, thresh: float, use_07: bool, plus_one: bool) -> float | None:
    """voc_eval for one class, one detection at a time."""
    one = 1.0 if plus_one else 0.0
    objects = {}
    npos = 0
    for a in gt["annotations"]:
        if a["category_id"] != cat_id:
            continue
        x, y, w, h = a["bbox"]
        objects.setdefault(a["image_id"], []).append([[x, y, x + w, y + h], a.get("difficult", 0), False])
        npos += not a.get("difficult", 0)
    dets = [d for d in dt if d["category_id"] == cat_id]
    order = sorted(range(len(dets)), key=lambda i: -dets[i]["score"])  # stable: ties in file order
    tp, fp = [], []
    for i in order:
        d = dets[i]
        x, y, w, h = d["bbox"]
        bb = [x, y, x + w, y + h]
        ovmax, jmax = -math.inf, -1
        for j, (g, _, _) in enumerate(objects.get(d["image_id"], [])):
            iw = max(min(bb[2], g[2]) - max(bb[0], g[0]) + one, 0.0)
            ih = max(min(bb[3], g[3]) - max(bb[1], g[1]) + one, 0.0)
            inter = iw * ih
            uni = (bb[2] - bb[0] + one) * (bb[3] - bb[1] + one) + (g[2] - g[0] + one) * (g[3] - g[1] + one) - inter
            ov = inter / uni
            if ov > ovmax:
                ovmax, jmax = ov, j
        t = f = 0
        if ovmax > thresh:
            obj = objects[d["image_id"]][jmax]
            if not obj[1]:
                if not obj[2]:
                    t, obj[2] = 1, True
                else:
                    f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    if npos == 0:
        return None
    tp_c, fp_c = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    rec = tp_c / npos
    prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
    return devkit_ap(rec.tolist(), prec.tolist(), use_07)


def voc_case(seed: int, n_img: int, n_cat: int) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 50, "height": 50} for i in range(n_img)]
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(n_cat)]
    anns, dts = [], []
    for im in images:
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(0, 30, 2).tolist()
            w, h = rng.integers(1, 20, 2).tolist()
            cat = int(rng.integers(1, n_cat + 1))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "difficult": int(rng.random() < 0.2)})
            for _ in range(rng.integers(0, 4)):
                d = rng.integers(-2, 3, 4).tolist()
                dts.append({"image_id": im["id"], "category_id": cat if rng.random() < 0.8 else int(rng.integers(1, n_cat + 1)),
                            "bbox": [x + d[0], y + d[1], max(w + d[2], 1), max(h + d[3], 1)],
                            "score": float(rng.choice([0.2, 0.5, 0.8])) if rng.random() < 0.4 else float(rng.random())})
    return {"images": images, "categories": cats, "annotations": anns}, dts


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n_img=st.integers(1, 6), n_cat=st.integers(1, 3),
       thresh=st.sampled_from([0.3, 0.5, 0.7]), use_07=st.booleans(), plus_one=st.booleans())
def test_matches_devkit(seed, n_img, n_cat, thresh, use_07, plus_one):
    gt, dt = voc_case(seed, n_img, n_cat)
    out = evaluate_voc(gt, dt, iou=thresh, method="11point" if use_07 else "all", plus_one=plus_one)
    expected = []
    for cat in gt["categories"]:
        ref = devkit_eval(gt, dt, cat["id"], thresh, use_07, plus_one)
        got = out["per_class"][cat["name"]]
        if ref is None:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(ref, abs=1e-12)
            expected.append(ref)
    if expected:
        assert out["mAP"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
    else:
        assert math.isnan(out["mAP"])


def test_closed_form_tp_fp_tp():
    # two objects; detections in score order: hit, miss, hit -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(rec, prec, "11point") == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert average_precision(rec, prec, "all") == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},  # duplicate: false positive
          {"image_id": 1, "category_id": 1, "bbox": [21, 20, 10, 10], "score": 0.7}]
    out = objdet.evaluate_voc(gt, dt, method="all")
    assert out["per_class"]["cat"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_difficult_objects_are_neither_hits_nor_misses():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "difficult": 1},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10]}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10], "score": 0.5}]
    assert evaluate_voc(gt, dt, method="all")["mAP"] == 1.0


def test_threshold_is_strict_and_plus_one_changes_the_overlap():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.9}]  # IoU exactly 0.5
    assert evaluate_voc(gt, dt, iou=0.5, method="all")["mAP"] == 0.0
    assert evaluate_voc(gt, dt, iou=0.49, method="all")["mAP"] == 1.0
    # inclusive pixels: (11 * 6) / (11 * 11) = 6/11 > 0.5
    assert evaluate_voc(gt, dt, iou=0.5, method="all", plus_one=True)["mAP"] == 1.0


def test_bad_method_and_bad_detection():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": []}
    with pytest.raises(EvaluationError, match="method"):
        evaluate_voc(gt, [], method="12point")
    with pytest.raises(EvaluationError, match="detection 0"):
        evaluate_voc(gt, [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
