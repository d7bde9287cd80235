"""Stand-ins for published weight files (random weights in the released layout)."""

import torch
from detection_match import freeze_batchnorms
from torchvision.models import detection as tvd


def released_faster_rcnn_state() -> dict:
    """torchvision's COCO Faster R-CNN as its released file is laid out (random weights, frozen trunk norms)."""
    torch.manual_seed(0)
    model = tvd.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    freeze_batchnorms(model.backbone.body)  # the released files' frozen layout: no num_batches_tracked
    return model.state_dict()
