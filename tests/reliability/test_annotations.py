"""Awkward annotations: degenerate and outside boxes, empty and all-crowd images, duplicated ids,
unknown categories. Each is repaired with a DataWarning, refused with an error naming the file and
the record, or scored exactly as pycocotools scores it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchvision.ops import clip_boxes_to_image

from objdet.data.coco import CocoDataset
from objdet.data.validate import DataWarning
from objdet.evaluation.coco import evaluate_coco
from objdet.errors import AnnotationError, EvaluationError

from evaluation.pycoco import pycocotools_eval

from .conftest import valid_coco, write_json


def one_box(bbox, **extra) -> dict:
    doc = valid_coco()
    doc["annotations"] = [{"id": 9, "image_id": 1, "category_id": 7, "bbox": bbox, "area": 1.0, "iscrowd": 0,
                           **extra}]
    return doc


def open_coco(tmp_path, doc, images, **options) -> CocoDataset:
    return CocoDataset(write_json(tmp_path / "ann.json", doc), images, **options)


@pytest.mark.parametrize("bbox", [[5, 5, 0, 4], [5, 5, 4, 0], [0, 0, 0, 0], [40, 30, 0, 0], [500, 500, 0, 0]])
def test_zero_size_boxes_are_skipped_with_a_warning_naming_the_record(tmp_path, coco_images, bbox):
    with pytest.warns(DataWarning, match=r"ann\.json: record annotation 9: .*(zero width or height|clipped)"):
        ds = open_coco(tmp_path, one_box(bbox), coco_images)
    assert ds.target(0)["boxes"].shape == (0, 4)


@pytest.mark.parametrize("bbox, message", [
    ([5, 5, -2, 4], "negative width or height"),
    ([5, float("nan"), 2, 4], "non-finite"),
    ([5, 5, float("inf"), 4], "non-finite"),
    ([100, 5, 3, 3], "lies outside the 40x30 image"),
    ([40, 5, 3, 3], "lies outside the 40x30 image"),
    ([-20, -20, 5, 5], "lies outside the 40x30 image"),
    ([5, 5, 2], r"is not \[x, y, w, h\]"),
    (["5", 5, 2, 2], None),
])
def test_impossible_boxes_are_refused_naming_file_and_record(tmp_path, coco_images, bbox, message):
    if message is None:  # a numeric string is read as its number, as Python's float() does
        assert open_coco(tmp_path, one_box(bbox), coco_images).target(0)["boxes"].tolist() == [[5, 5, 7, 7]]
        return
    with pytest.raises(AnnotationError, match=rf"ann\.json: record annotation 9: .*{message}"):
        open_coco(tmp_path, one_box(bbox), coco_images)


@pytest.mark.parametrize("bbox", [[-3, -2, 10, 10], [35, 25, 10, 10], [-5, 10, 60, 4], [0.2, 0.5, 39.9, 29.6]])
def test_boxes_sticking_out_are_clipped_like_torchvision(tmp_path, coco_images, bbox):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_coco(tmp_path, one_box(bbox), coco_images)
    x, y, w, h = bbox
    oracle = clip_boxes_to_image(torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32), (30, 40))
    torch.testing.assert_close(ds.target(0)["boxes"], oracle)
    sticks_out = max(-x, -y, x + w - 40, y + h - 30) > 1
    assert any(issubclass(c.category, DataWarning) for c in caught) == sticks_out  # > 1 px: said so


def test_empty_images_give_empty_targets_and_finite_training_losses(tmp_path, coco_images, small_detectors):
    doc = valid_coco()
    doc["annotations"] = []
    ds = open_coco(tmp_path, doc, coco_images)
    image, target = ds.load(1)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["image_id"] == 2
    for name, model in small_detectors.items():
        model.train()
        losses = model([image], [target])
        model.eval()
        assert all(torch.isfinite(v) for v in losses.values()), (name, losses)
        box_losses = {k: float(v) for k, v in losses.items() if "box" in k or "reg" in k}
        assert box_losses and all(v == 0 for v in box_losses.values()), (name, losses)  # nothing to regress


def test_all_crowd_images_are_read_and_scored_as_pycocotools(tmp_path, coco_images):
    doc = valid_coco()
    for ann in doc["annotations"]:
        if ann["image_id"] == 1:
            ann["iscrowd"] = 1
    ds = open_coco(tmp_path, doc, coco_images)
    assert ds.target(0)["iscrowd"].tolist() == [1, 1]
    assert len(open_coco(tmp_path, doc, coco_images, include_crowd=False).target(0)["boxes"]) == 0
    dt = [{"image_id": 1, "category_id": 3, "bbox": [2, 3, 10, 12], "score": 0.9},  # on a crowd: ignored
          {"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.8},
          {"image_id": 2, "category_id": 7, "bbox": [3, 2, 5, 4], "score": 0.7}]
    ours = evaluate_coco(doc, dt)
    np.testing.assert_allclose(list(ours.values()), pycocotools_eval(doc, dt, "bbox").stats, atol=1e-12)


@pytest.mark.parametrize("section, index", [("images", 0), ("annotations", 0), ("categories", 1)])
def test_duplicated_ids_are_refused_naming_the_id(tmp_path, coco_images, section, index):
    doc = valid_coco()
    doc[section].append({**doc[section][index]})
    duplicated = doc[section][index]["id"]
    with pytest.raises(AnnotationError, match=rf"record {duplicated}: duplicated \w+ id {duplicated}"):
        open_coco(tmp_path, doc, coco_images)


def test_duplicated_annotation_ids_are_refused_by_the_evaluator_too():
    doc = valid_coco()
    doc["annotations"][1]["id"] = doc["annotations"][0]["id"]
    with pytest.raises(EvaluationError, match="record annotation 1: annotation id 1 is used twice"):
        evaluate_coco(doc, [])


@pytest.mark.parametrize("category", [0, 4, 99, -7, "7", None])
def test_category_ids_outside_the_list_are_refused(tmp_path, coco_images, category):
    doc = valid_coco()
    doc["annotations"][2]["category_id"] = category
    with pytest.raises(AnnotationError, match=rf"record annotation 3: category_id {category!r} is not in"):
        open_coco(tmp_path, doc, coco_images)
    with pytest.raises(EvaluationError, match="record annotation 2: category_id"):
        evaluate_coco(doc, [])
    dt = [{"image_id": 1, "category_id": category, "bbox": [1, 1, 4, 4], "score": 0.5}]
    with pytest.raises(EvaluationError, match="record detection 0: category_id"):
        evaluate_coco(valid_coco(), dt)


def test_annotations_of_unknown_images_are_refused(tmp_path, coco_images):
    doc = valid_coco()
    doc["annotations"][0]["image_id"] = 42
    with pytest.raises(AnnotationError, match="record annotation 1: unknown image_id 42"):
        open_coco(tmp_path, doc, coco_images)
    with pytest.raises(EvaluationError, match="record detection 0: image_id 42"):
        evaluate_coco(valid_coco(), [{"image_id": 42, "category_id": 7, "bbox": [1, 1, 4, 4], "score": 0.5}])
