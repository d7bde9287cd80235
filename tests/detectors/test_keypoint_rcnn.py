"""Keypoint R-CNN training: the same losses as torchvision's KeypointRCNN with the same weights and seed."""

import torch
from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from objdet import build
from objdet.weights.torchvision import rcnn_state_dict

SMALL = dict(min_size=128, max_size=128)


def _targets():
    kp = torch.tensor([[[30.0, 20.0, 2.0], [80.0, 50.0, 1.0], [0.0, 0.0, 0.0]],
                       [[90.0, 60.0, 2.0], [130.0, 100.0, 2.0], [100.0, 70.0, 1.0]]])
    return [{"boxes": torch.tensor([[20.0, 10.0, 90.0, 60.0], [80.0, 50.0, 140.0, 110.0]]),
             "labels": torch.tensor([1, 1]), "keypoints": kp}]


def test_losses_equal_torchvision_and_outputs_have_keypoints():
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   norm_layer=FrozenBatchNorm2d)
    tv = KeypointRCNN(backbone, num_classes=2, num_keypoints=3, **SMALL).train()
    ours = build("keypoint_rcnn_r18_fpn", num_keypoints=3, fpn_channels=256, anchor_sizes=(32, 64, 128, 256, 512),
                 rpn_pre_nms_top_n=(2000, 1000), rpn_post_nms_top_n=(2000, 1000), box_batch_size=512,
                 keypoint_convs=8, keypoint_channels=512, **SMALL)
    ours.load_state_dict(rcnn_state_dict(tv.state_dict()))
    ours.train()
    images = [torch.rand(3, 120, 150, generator=torch.Generator().manual_seed(1))]
    torch.manual_seed(42)
    expected = tv(images, _targets())
    torch.manual_seed(42)
    got = ours(images, _targets())
    assert set(got) == set(expected) and "loss_keypoint" in got
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)
    ours.eval()
    with torch.no_grad():
        out = ours(images)[0]
    n = len(out["boxes"])
    assert out["keypoints"].shape == (n, 3, 3) and out["keypoints_scores"].shape == (n, 3)
    inside = (out["keypoints"][..., 0] >= out["boxes"][:, None, 0]) & (out["keypoints"][..., 0] <= out["boxes"][:, None, 2])
    assert inside.all()
