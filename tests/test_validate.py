"""The shared record validator: compressed RLE checks in one batch, the same answer as one by one, every
string pycocotools writes accepted, corrupted ones refused by the reader and the evaluator alike."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from objdet.errors import AnnotationError, EvaluationError
from objdet.evaluation.coco import evaluate_coco
from objdet.validate import compressed_counts_bad, segmentation_problem


def _encoded(rng: np.random.Generator, n: int) -> tuple[list[str], list[int]]:
    texts, areas = [], []
    for _ in range(n):
        h, w = rng.integers(1, 60, 2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        texts.append(mask_utils.encode(np.asfortranarray(mask))["counts"].decode("ascii"))
        areas.append(int(h * w))
    return texts, areas


def test_every_string_pycocotools_writes_passes_in_one_batch():
    texts, areas = _encoded(np.random.default_rng(0), 500)
    assert not compressed_counts_bad(texts, areas).any()
    assert compressed_counts_bad(texts, [a + 1 for a in areas]).all()  # runs no longer add up


def test_batch_answers_as_one_by_one():
    rng = np.random.default_rng(1)
    texts, areas = _encoded(rng, 300)
    texts = [t[:-1] if i % 3 == 0 else t + "0" if i % 3 == 1 else t for i, t in enumerate(texts)]
    texts[5] = "~" + texts[5]
    batch = compressed_counts_bad(texts, areas)
    assert batch.tolist() == [bool(compressed_counts_bad([t], [a])[0]) for t, a in zip(texts, areas)]
    assert batch[5] and 0 < batch.sum() < len(texts)


def test_reader_and_evaluator_refuse_the_same_rle(tmp_path):
    rle = mask_utils.encode(np.asfortranarray(np.ones((10, 10), np.uint8)))
    broken = {"size": [10, 10], "counts": rle["counts"].decode("ascii")[:-1] + "1"}
    assert segmentation_problem(broken, 10, 10)
    assert segmentation_problem({"size": [10, 12], "counts": rle["counts"].decode("ascii")}, 10, 10)  # not the image's
    gt = {"images": [{"id": 1, "width": 10, "height": 10, "file_name": "a.png"}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
                           "iscrowd": 0, "segmentation": broken}]}
    with pytest.raises(EvaluationError, match="annotation 0: malformed 'segmentation'"):
        evaluate_coco(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}], "segm")
    import json

    from objdet.data.coco import CocoDataset
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(AnnotationError, match="RLE counts"):
        CocoDataset(tmp_path / "gt.json", tmp_path)
