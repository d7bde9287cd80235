"""Fast R-CNN trains from given proposals (selective-search style boxes) and needs them to run."""

import pytest
import torch

from objdet import build
from objdet.boxes import box_iou
from objdet.data.shapes import ShapesDataset
from objdet.errors import ConfigError


def _proposals(boxes: torch.Tensor, n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Jittered copies of the objects plus random boxes, as an external proposal method would give."""
    jitter = boxes.repeat(8, 1) + torch.randn(8 * len(boxes), 4, generator=g) * 4
    xy = torch.rand(n, 2, generator=g) * (size - 20)
    rand = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 60], 1)
    return torch.cat([jitter, rand]).clamp(0, size)


def test_trains_from_given_proposals():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ds = ShapesDataset("train", length=1, image_size=128)
    image, target = ds[0]
    proposals = [_proposals(target["boxes"], 200, 128, g)]
    model = build("fast_rcnn_r18_fpn", num_classes=ds.num_classes, backbone_norm="GN", trainable_layers=0,
                  fpn_channels=64, min_size=128, max_size=128)
    assert model.rpn is None and model.box_stage.pooler.kind == "pool"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    k = len(target["boxes"])
    first = found = None
    for step in range(1, 41):
        losses = model.train()([image], [target], proposals=proposals)
        loss = sum(losses.values())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            with torch.no_grad():
                out = model.eval()([image], proposals=proposals)[0]
            # every object found, with its class, by one of the top-k detections (k = number of objects)
            iou = box_iou(target["boxes"], out["boxes"][:k])
            found = bool(torch.all(((iou >= 0.5) & (target["labels"][:, None] == out["labels"][:k][None])).any(1)))
            if found:
                break
    assert found and loss.item() < 0.5 * first


def test_needs_proposals():
    model = build("fast_rcnn_r18_fpn", num_classes=2, min_size=64, max_size=64).eval()
    with pytest.raises(ConfigError, match="proposals"):
        model([torch.rand(3, 64, 64)])
    with pytest.raises(ConfigError, match="proposals of image 0"):
        model([torch.rand(3, 64, 64)], proposals=[torch.zeros(5, 5)])
