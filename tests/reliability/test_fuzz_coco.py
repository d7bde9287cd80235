"""Fuzzing the COCO reader: any corruption of a valid file is refused with an objdet error or read
into targets that are still valid (finite boxes inside their image, labels in range)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from objdet.data.coco import CocoDataset, dataset_to_coco
from objdet.errors import ObjdetError

from .conftest import valid_coco
from .corrupt import CORRUPTIONS, TRUNCATION, corrupt, json_text

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_valid_targets(ds: CocoDataset) -> None:
    """What a reader that accepted a file must hand on: usable targets and images."""
    for i in range(len(ds)):
        image, target = ds.load(i)
        h, w = image.shape[1:]
        boxes = target["boxes"]
        assert torch.isfinite(boxes).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        labels = target["labels"]
        assert ((labels >= 1) & (labels <= ds.num_classes)).all()
        assert len(labels) == len(boxes) == len(target["iscrowd"]) == len(target["area"])
        assert torch.isfinite(target["area"]).all()
        if "masks" in target:
            assert target["masks"].shape == (len(boxes), h, w)
        if "keypoints" in target:
            assert torch.isfinite(target["keypoints"]).all()


def read_everything(ann_file, image_dir) -> None:
    """Open the file and touch every record the way training and evaluation do."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(ann_file, image_dir)
        assert_valid_targets(ds)
        dataset_to_coco(ds)


def test_the_uncorrupted_file_reads(tmp_path, coco_images):
    ann = tmp_path / "a.json"
    ann.write_text(json_text(valid_coco(), None))
    read_everything(ann, coco_images)


@FUZZ
@given(corruptions=CORRUPTIONS, truncate=TRUNCATION)
def test_corrupted_coco_file_gives_an_objdet_error_or_valid_targets(tmp_path, coco_images, corruptions, truncate):
    ann = tmp_path / "a.json"
    ann.write_text(json_text(corrupt(valid_coco(), corruptions), truncate), encoding="utf-8")
    try:
        read_everything(ann, coco_images)
    except ObjdetError as err:
        assert str(ann) in str(err) or str(coco_images) in str(err), f"error does not name the file: {err}"


@pytest.mark.parametrize("field, value", [("keypoints", [5, 4, 2, 10**400, 14, 1]), ("area", 10**400),
                                          ("segmentation", [[2, 3, 10**400, 3, 12, 15, 2, 15]])])
def test_an_integer_too_large_for_a_float_is_refused_naming_the_file(tmp_path, coco_images, field, value):
    """Found by the fuzzer: JSON ints beyond float range made math.isfinite raise a bare OverflowError."""
    data = valid_coco()
    data["annotations"][0][field] = value
    ann = tmp_path / "a.json"
    ann.write_text(json_text(data, None), encoding="utf-8")
    with pytest.raises(ObjdetError, match="a.json"):
        read_everything(ann, coco_images)
