"""from_torchvision's frozen_bn_eps: torchvision runs its released v1 COCO weights with FrozenBatchNorm2d eps 0."""

import pytest
import torch
from torchvision.models import detection as tvd
from torchvision.models.detection._utils import overwrite_eps
from torchvision.ops.misc import FrozenBatchNorm2d

from detection_match import assert_same_detections, freeze_batchnorms

from objdet.errors import ConfigError
from objdet.norm import FrozenBatchNorm2d as OurFrozenBN
from objdet.weights.torchvision import from_torchvision

SIZE = dict(min_size=192, max_size=192)


def _released_like_retinanet() -> torch.nn.Module:
    """torchvision's RetinaNet v1 as it runs released weights (frozen trunk norms, eps 0), with tiny
    running variances (and weights scaled to match) so that eps 1e-5 against 0 changes the outputs."""
    torch.manual_seed(0)
    model = tvd.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, **SIZE)
    freeze_batchnorms(model.backbone.body)
    overwrite_eps(model, 0.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.backbone.body.modules():
            if isinstance(m, FrozenBatchNorm2d):
                n = len(m.weight)
                m.running_var.copy_(torch.rand(n, generator=g) * 4e-4 + 1e-4)
                m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.02)
                m.weight.copy_(m.running_var.sqrt() * (torch.rand(n, generator=g) + 0.5))
        cls = model.head.classification_head.cls_logits
        cls.weight.normal_(std=0.02, generator=g)
        cls.bias.copy_(torch.randn(cls.bias.shape, generator=g) * 0.3 - 3.0)
    return model.eval()


def test_default_eps_reproduces_torchvision_released_weights_and_1e5_does_not():
    ref = _released_like_retinanet()
    ours = from_torchvision("retinanet_resnet50_fpn", ref.state_dict(), **SIZE).eval()
    off = from_torchvision("retinanet_resnet50_fpn", ref.state_dict(), frozen_bn_eps=1e-5, **SIZE).eval()
    image = torch.rand(3, 192, 192, generator=torch.Generator().manual_seed(2))
    x = ((image - 0.5) / 0.25)[None]
    with torch.no_grad():
        expected = ref([image])[0]
        got = ours([image])[0]
        trunk = list(ref.backbone.body(x).values())[-1]
        same = list(ours.backbone(x).values())[-1]
        shifted = list(off.backbone(x).values())[-1]
    keep = expected["labels"] > 0  # objdet never outputs torchvision's background channel
    assert keep.sum() > 5
    assert_same_detections(got, expected["boxes"][keep], expected["scores"][keep], expected["labels"][keep])
    scale = trunk.abs().max().item()
    torch.testing.assert_close(same, trunk, atol=1e-4 * scale, rtol=0)
    assert (shifted - trunk).abs().max().item() > 1e-2 * scale


def test_v1_rcnn_default_eps_and_explicit_value():
    """A v1 R-CNN defaults to eps 0 like torchvision's `overwrite_eps(model, 0.0)`; an explicit value
    reaches every frozen norm; a negative one is a ConfigError. (The v2 trunks use BatchNorm2d.)"""
    torch.manual_seed(0)
    sd = tvd.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=3).state_dict()
    for kw, expected in (({}, 0.0), ({"frozen_bn_eps": 1e-3}, 1e-3)):
        frozen = [m for m in from_torchvision("keypointrcnn_resnet50_fpn", sd, **kw).modules()
                  if isinstance(m, OurFrozenBN)]
        assert len(frozen) == 53 and all(m.eps == expected for m in frozen)  # ResNet-50: 53 norms
    with pytest.raises(ConfigError, match="frozen_bn_eps"):
        from_torchvision("keypointrcnn_resnet50_fpn", sd, frozen_bn_eps=-1.0)
