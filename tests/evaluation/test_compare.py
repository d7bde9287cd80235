"""Bootstrap comparison: resampled stats against pycocotools on the resampled set written out, the
seed's reproducibility, and what the intervals say about equal and clearly different models."""

from __future__ import annotations

import numpy as np
import pytest

from objdet.evaluation.coco import evaluate
from objdet.evaluation.compare import compare
from objdet.evaluation.resample import draw_weights, resampled_stats

from evaluation.cocogen import H, W, random_case
from evaluation.pycoco import pycocotools_eval


def distinct_scores(dt: list, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [dict(d, score=float(s)) for d, s in zip(dt, rng.permutation(len(dt)) / max(len(dt), 1) + 0.001)]


@pytest.mark.parametrize("seed", range(6))
def test_all_ones_weights_give_the_evaluation_itself(seed):
    gt, dt = random_case(seed, 8, 3, 0.2, seed % 2 == 0)
    ev = evaluate(gt, dt)
    stats, per_class = resampled_stats(ev, np.ones((2, len(ev.gt.img_ids)), np.int32))
    for name, value in ev.stats.items():
        assert stats[name] == pytest.approx([value, value], abs=1e-12), name
    for k, row in enumerate(ev.per_class().values()):
        if row["AP"] >= 0:
            assert per_class[0, k] == pytest.approx(row["AP"], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_a_draw_scores_as_pycocotools_on_that_image_set(seed):
    """Image i drawn w_i times = the set with w_i renamed copies of image i, scored by pycocotools."""
    gt, dt = random_case(seed, 8, 3, 0.2, seed % 2 == 0)
    dt = distinct_scores(dt, seed)  # equal scores across copies are ordered by image id in pycocotools
    ev = evaluate(gt, dt)
    weights = draw_weights(len(ev.gt.img_ids), 3, seed)
    stats, _ = resampled_stats(ev, weights)
    for b in range(3):
        images, anns, dets = [], [], []
        for i, img_id in enumerate(ev.gt.img_ids):
            for copy in range(weights[b, i]):
                name = f"{img_id}-{copy}"
                images.append({"id": name, "width": W, "height": H})
                own = [a for a in gt["annotations"] if a["image_id"] == img_id]
                anns += [dict(a, id=len(anns) + j + 1, image_id=name) for j, a in enumerate(own)]
                dets += [dict(d, image_id=name) for d in dt if d["image_id"] == img_id]
        ref = pycocotools_eval({"images": images, "annotations": anns, "categories": gt["categories"]}, dets)
        np.testing.assert_allclose([stats[k][b] for k in ev.stats], ref.stats, rtol=0, atol=1e-12)


def _pair(seed: int = 3) -> tuple[dict, list, list]:
    gt, dt = random_case(seed, 40, 3, 0.0, False)
    rng = np.random.default_rng(seed)
    good = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": float(rng.uniform(0.5, 1))} for a in gt["annotations"]]
    return gt, dt, good + [dict(d, score=d["score"] * 0.4) for d in dt]


def test_the_seed_fixes_the_intervals():
    gt, dt, better = _pair()
    first = compare(gt, [dt, better], n_boot=60, seed=7)
    again = compare(gt, [dt, better], n_boot=60, seed=7)
    other = compare(gt, [dt, better], n_boot=60, seed=8)
    assert first.stats == again.stats and first.per_class == again.per_class
    assert first.stats["AP"].low != other.stats["AP"].low
    assert first.stats["AP"].delta == other.stats["AP"].delta  # the point estimate is no sample


def test_a_clearly_better_model_stands_clear_and_a_copy_does_not():
    gt, dt, better = _pair()
    result = compare(gt, [dt, better], n_boot=100)
    assert result.stats["AP"].delta > 0 and result.stats["AP"].clear
    assert result.stats["AP"].low <= result.stats["AP"].delta <= result.stats["AP"].high
    same = compare(gt, [dt, list(dt)], n_boot=50)
    assert all(d.delta == 0 and d.low == 0 and d.high == 0 and not d.clear for d in same.stats.values())
    text = "\n".join(result.lines())
    assert "AP per class" in text and "*" in text and all(c["name"] in text for c in gt["categories"])
