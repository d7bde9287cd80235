"""PR curves, best-F1 thresholds and the confusion matrix, against pycocotools and plain loops."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from objdet.evaluation.coco import evaluate
from objdet.evaluation.calibration import best_f1
from objdet.evaluation.plots import confusion_matrix, pr_curve, write_plots
from evaluation.cocogen import random_case
from evaluation.pycoco import pycocotools_eval


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pr_curve_is_pycocotools_precision(seed):
    gt, dt = random_case(seed, 5, 3, 0.1, True)
    ref = pycocotools_eval(gt, dt)
    ev = evaluate(gt, dt)
    for t, iou in ((0, 0.5), (5, 0.75)):
        for k in range(3):
            recall, precision = pr_curve(ev, iou, k)
            np.testing.assert_array_equal(precision, ref.eval["precision"][t, :, k, 0, 2])
            np.testing.assert_array_equal(recall, ref.params.recThrs)
        table = ref.eval["precision"][t, :, :, 0, 2]
        mean = [np.mean(row[row > -1]) if (row > -1).any() else -1 for row in table]
        np.testing.assert_allclose(pr_curve(ev, iou)[1], mean, atol=1e-12)


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_best_f1_is_the_best_threshold_by_brute_force(seed):
    gt, dt = random_case(seed, 6, 2, 0.2, False)
    ref = pycocotools_eval(gt, dt)
    got = best_f1(evaluate(gt, dt), 0.5)
    for k, cat in enumerate(gt["categories"]):
        # pycocotools' per-image results at IoU .5, area "all": matches, ignore flags and scores
        imgs = [e for e in ref.evalImgs if e is not None and e["category_id"] == cat["id"] and e["aRng"] == [0, 1e10]]
        scores = np.concatenate([np.array(e["dtScores"], dtype=float) for e in imgs]) if imgs else np.zeros(0)
        matched = np.concatenate([e["dtMatches"][0] > 0 for e in imgs]) if imgs else np.zeros(0, bool)
        ignored = np.concatenate([e["dtIgnore"][0].astype(bool) for e in imgs]) if imgs else np.zeros(0, bool)
        n_gt = sum(int((e["gtIgnore"] == 0).sum()) for e in imgs)
        if n_gt == 0 or scores.size == 0:
            assert cat["name"] not in got
            continue
        best = max(
            (2 * np.sum(matched & ~ignored & (scores >= s)) / (np.sum(~ignored & (scores >= s)) + n_gt), s)
            for s in np.unique(scores)
        )
        assert got[cat["name"]]["f1"] == pytest.approx(best[0], abs=1e-12)
        assert got[cat["name"]]["score"] == best[1]  # the highest threshold reaching the best F1


def reference_confusion(gt: dict, dt: list, iou: float, score: float) -> np.ndarray:
    """Plain loops: per image, pairs by IoU (then detection score) descending, one to one."""
    cats = sorted(c["id"] for c in gt["categories"])
    k = len(cats)
    m = np.zeros((k + 1, k + 1), dtype=np.int64)
    for im in gt["images"]:
        gts = [a for a in gt["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"]]
        dts = sorted((d for d in dt if d["image_id"] == im["id"] and d["score"] >= score), key=lambda d: -d["score"])
        pairs = []
        for i, d in enumerate(dts):
            for j, g in enumerate(gts):
                (ax, ay, aw, ah), (bx, by, bw, bh) = d["bbox"], g["bbox"]
                iw = max(min(ax + aw, bx + bw) - max(ax, bx), 0.0)
                ih = max(min(ay + ah, by + bh) - max(ay, by), 0.0)
                ov = iw * ih / (aw * ah + bw * bh - iw * ih)
                if ov >= iou:
                    pairs.append((-ov, i, j))
        used_d, used_g = set(), set()
        for _, i, j in sorted(pairs):
            if i not in used_d and j not in used_g:
                used_d.add(i)
                used_g.add(j)
                m[cats.index(gts[j]["category_id"]), cats.index(dts[i]["category_id"])] += 1
        for j, g in enumerate(gts):
            if j not in used_g:
                m[cats.index(g["category_id"]), k] += 1
        for i, d in enumerate(dts):
            if i not in used_d:
                m[k, cats.index(d["category_id"])] += 1
    return m


@pytest.mark.parametrize("seed, iou, score", [(7, 0.5, 0.25), (8, 0.3, 0.0), (9, 0.7, 0.5)])
def test_confusion_matrix_matches_plain_loops(seed, iou, score):
    gt, dt = random_case(seed, 5, 3, 0.1, False)
    m = confusion_matrix(evaluate(gt, dt), iou, score)
    np.testing.assert_array_equal(m, reference_confusion(gt, dt, iou, score))
    # every non-crowd object lands in its row once, every kept detection in its column once
    n_obj = [sum(1 for a in gt["annotations"] if a["category_id"] == c["id"] and not a["iscrowd"]) for c in gt["categories"]]
    np.testing.assert_array_equal(m[:-1].sum(axis=1), n_obj)
    n_det = [sum(1 for d in dt if d["category_id"] == c["id"] and d["score"] >= score) for c in gt["categories"]]
    np.testing.assert_array_equal(m[:, :-1].sum(axis=0), n_det)


def test_write_plots_makes_readable_pngs(tmp_path):
    gt, dt = random_case(10, 4, 2, 0.0, False)
    paths = write_plots(evaluate(gt, dt), tmp_path)
    assert {p.name for p in paths} == {"pr_all.png", "pr_001_c0.png", "pr_002_c1.png", "confusion_matrix.png",
                                       "reliability.png"}
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100


def test_unknown_iou_threshold_is_refused():
    gt, dt = random_case(10, 2, 1, 0.0, False)
    with pytest.raises(ValueError, match="0.33"):
        pr_curve(evaluate(gt, dt), 0.33)
