"""Fast R-CNN: no RPN; external proposals per image (e.g. selective search from a file), RoIPool 7x7,
64 RoIs per image (25% with IoU >= 0.5, the rest with IoU in [0.1, 0.5)), a K+1 softmax classifier
with class-specific box regression, per-class NMS 0.3 at inference. The parts are Faster R-CNN's
(`faster_rcnn.build_rcnn`) without the RPN."""

from __future__ import annotations

from typing import Any

from objdet.detectors.faster_rcnn import SMALL

# Zoo defaults of the Fast R-CNN entries: the seed's settings on a ResNet-FPN trunk.
FAST: dict[str, Any] = dict(rpn=False, roi_pooler="pool", box_batch_size=64, box_positive_fraction=0.25,
                            box_bg_iou_floor=0.1, nms=0.3)
SMALL_FAST: dict[str, Any] = {k: v for k, v in SMALL.items() if not k.startswith("rpn") and k != "anchor_sizes"}
