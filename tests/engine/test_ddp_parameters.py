"""DDP runs without searching for unused parameters: every zoo detector must give every trainable parameter a
gradient on every step, with objects and on images without any (else DDP would fail at the next step)."""

import pytest
import torch

import objdet
from objdet.data.loader import collate
from objdet.data.shapes import ShapesDataset
from objdet.demo import model_fields

MODELS = ["faster_rcnn_r18_fpn", "mask_rcnn_r18_fpn", "keypoint_rcnn_r18_fpn", "retinanet_r18_fpn",
          "efficientdet_d0"]


def _empty(target):
    return {k: (v[:0] if torch.is_tensor(v) and v.ndim and k != "image_id" else v) for k, v in target.items()}


@pytest.mark.parametrize("name", MODELS)
def test_every_trainable_parameter_gets_a_gradient(name):
    data = ShapesDataset("train", length=2, image_size=128, seed=0)
    images, targets = collate([data[0], data[1]])
    torch.manual_seed(0)
    model = objdet.build(name, **model_fields(name, data, 128)).train()
    assert not getattr(model, "find_unused_parameters", False)
    for batch in (targets, [_empty(t) for t in targets]):
        model.zero_grad(set_to_none=True)
        sum(model(images, batch).values()).backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert unused == [], unused[:5]
