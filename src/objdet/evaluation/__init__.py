"""Evaluation, without torch: COCO AP equal to pycocotools', Pascal VOC AP, TIDE's error breakdown,
calibration, bootstrap comparison of two result files, plots and a self-contained HTML report.

`coco.evaluate_coco` / `coco.evaluate`, `voc.evaluate_voc` and `errors.error_breakdown` are the entry
points; `records` reads the files, `overlap`, `pairs`, `greedy` and `accumulate` are the vectorised steps.
"""

from __future__ import annotations

from objdet.evaluation.coco import evaluate, evaluate_coco
from objdet.evaluation.errors import error_breakdown
from objdet.evaluation.voc import evaluate_voc

__all__ = ["error_breakdown", "evaluate", "evaluate_coco", "evaluate_voc"]
