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


def _released_like_retinanet(frozen: bool = True) -> torch.nn.Module:
    """torchvision's RetinaNet v1 as it runs released weights (frozen trunk norms, eps 0), or as torchvision
    builds it without detection weights (`frozen=False`: plain BatchNorm2d, eps 1e-5), with tiny running variances
    (and weights scaled to match) so that eps 1e-5 against 0 changes the outputs."""
    torch.manual_seed(0)
    model = tvd.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5, **SIZE)
    if frozen:
        freeze_batchnorms(model.backbone.body)
        overwrite_eps(model, 0.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.backbone.body.modules():
            if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
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


def test_a_torchvision_model_built_without_detection_weights_loads_with_its_detections():
    """Its trunk is plain BatchNorm2d (eps 1e-5, `num_batches_tracked` in the state dict): the default eps follows
    the state dict, so the detections are torchvision's; the released weights' eps 0 would move them."""
    ref = _released_like_retinanet(frozen=False)
    assert isinstance(ref.backbone.body.bn1, torch.nn.BatchNorm2d)
    ours = from_torchvision("retinanet_resnet50_fpn", ref.state_dict(), **SIZE).eval()
    zero = from_torchvision("retinanet_resnet50_fpn", ref.state_dict(), frozen_bn_eps=0.0, **SIZE).eval()
    image = torch.rand(3, 192, 192, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got, off = ref([image])[0], ours([image])[0], zero([image])[0]
    keep = expected["labels"] > 0
    assert keep.sum() > 5
    assert_same_detections(got, expected["boxes"][keep], expected["scores"][keep], expected["labels"][keep])
    with pytest.raises(AssertionError):
        assert_same_detections(off, expected["boxes"][keep], expected["scores"][keep], expected["labels"][keep])


def test_v1_rcnn_default_eps_and_explicit_value():
    """A v1 R-CNN state dict in the frozen layout of the released weights (no `num_batches_tracked`) defaults to
    eps 0 like torchvision's `overwrite_eps(model, 0.0)`; one saved from plain BatchNorm2d (a torchvision model
    built without detection weights) to BatchNorm2d's 1e-5; an explicit value reaches every frozen norm; a
    negative one is a ConfigError."""
    torch.manual_seed(0)
    plain = tvd.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=3)
    sd = plain.state_dict()
    freeze_batchnorms(plain.backbone.body)
    frozen_sd = plain.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in sd) and not any(k.endswith("num_batches_tracked") for k in frozen_sd)
    for state, kw, expected in ((frozen_sd, {}, 0.0), (sd, {}, 1e-5), (sd, {"frozen_bn_eps": 1e-3}, 1e-3)):
        frozen = [m for m in from_torchvision("keypointrcnn_resnet50_fpn", state, **kw).modules()
                  if isinstance(m, OurFrozenBN)]
        assert len(frozen) == 53 and all(m.eps == expected for m in frozen)  # ResNet-50: 53 norms
    with pytest.raises(ConfigError, match="frozen_bn_eps"):
        from_torchvision("keypointrcnn_resnet50_fpn", sd, frozen_bn_eps=-1.0)
