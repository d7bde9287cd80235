"""from_torchvision for RetinaNet (v1 and v2): the same detections as torchvision's model, same weights."""

import pytest
import torch
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

from detection_match import assert_same_detections

from objdet import from_torchvision
from objdet.errors import CheckpointError

BUILDERS = {"retinanet_resnet50_fpn": retinanet_resnet50_fpn, "retinanet_resnet50_fpn_v2": retinanet_resnet50_fpn_v2}
NUM_CLASSES = 5  # torchvision's count, background channel included


def _reference(arch):
    torch.manual_seed(0)
    ref = BUILDERS[arch](weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=128, max_size=192)
    g = torch.Generator().manual_seed(1)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.4)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
    cls = ref.head.classification_head.cls_logits
    with torch.no_grad():
        cls.weight.normal_(std=0.02, generator=g)
        bias = torch.randn(cls.bias.shape, generator=g) * 0.3 - 3.0
        bias[::NUM_CLASSES] = -8.0  # the background channel: rarely above the threshold
        cls.bias.copy_(bias)
        ref.head.regression_head.bbox_reg.bias.normal_(std=0.3, generator=g)
    return ref.eval()


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_detections_equal_torchvision(arch, one_thread):
    ref = _reference(arch)
    # a random-init torchvision model runs BatchNorm2d with eps 1e-5, not the released weights' 0
    ours = from_torchvision(arch, ref.state_dict(), min_size=128, max_size=192, frozen_bn_eps=1e-5).eval()
    torch.manual_seed(2)
    images = [torch.rand(3, 120, 160), torch.rand(3, 150, 100)]
    with torch.no_grad():
        expected, got = ref(images), ours(images)
    for det, exp in zip(got, expected):
        keep = exp["labels"] > 0  # objdet never outputs torchvision's background channel
        assert keep.sum() > 5
        assert_same_detections(det, exp["boxes"][keep], exp["scores"][keep], exp["labels"][keep])
        assert (det["labels"] >= 1).all()


def test_old_checkpoint_layout_loads(one_thread):
    # torchvision < 0.13 wrote the subnet convs as conv.0, conv.2, ... (no Conv2dNormActivation)
    ref = _reference("retinanet_resnet50_fpn")
    old = {}
    for k, v in ref.state_dict().items():
        parts = k.split(".")
        if k.startswith("head.") and parts[2] == "conv":
            k = ".".join(parts[:3] + [str(2 * int(parts[3]))] + parts[5:])
        old[k] = v
    ours = from_torchvision("retinanet_resnet50_fpn", old)
    torch.testing.assert_close(ours.class_head.convs[3][0].weight, ref.head.classification_head.conv[3][0].weight)


def test_not_a_retinanet_checkpoint():
    with pytest.raises(CheckpointError, match="RetinaNet"):
        from_torchvision("retinanet_resnet50_fpn", {"backbone.body.conv1.weight": torch.zeros(1)})
