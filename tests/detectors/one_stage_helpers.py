"""Shared by the one-stage detector tests."""

import torch

from objdet.boxes import box_iou
from objdet.data.shapes import ShapesDataset


def two_object_shapes_image(size):
    """The first generated shapes image holding two objects (deterministic)."""
    data = ShapesDataset("train", length=20, image_size=size, max_objects=2)
    return next(data[i] for i in range(len(data)) if len(data.target(i)["boxes"]) == 2)


def assert_finds_every_object(out, target):
    """The best detections, one per object, find every object with its class, confidently."""
    top = torch.arange(len(target["boxes"]))
    assert (out["scores"][top] > 0.5).all()
    for box, label in zip(target["boxes"], target["labels"]):
        same = out["labels"][top] == label
        assert box_iou(box[None], out["boxes"][top][same]).max() > 0.5
