"""Evaluation: COCO AP (bbox, segm, keypoints) equal to pycocotools', Pascal VOC AP, plots.

`coco.evaluate_coco` / `coco.evaluate` and `voc.evaluate_voc` are the entry points; `records` reads
the files, `overlap`, `pairs`, `greedy` and `accumulate` are the vectorised steps, `plots` draws PR
curves and confusion matrices.
"""
