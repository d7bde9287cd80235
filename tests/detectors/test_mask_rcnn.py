"""Mask R-CNN training: the same losses as torchvision's MaskRCNN with the same weights and seed;
options of the seed's ablations (softmax masks, MLP mask head) train; bad targets are rejected."""

import pytest
import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from objdet import build
from objdet.errors import AnnotationError, ConfigError
from objdet.weights.torchvision import rcnn_state_dict

SMALL = dict(min_size=128, max_size=128)


def _targets():
    masks = torch.zeros(2, 120, 150, dtype=torch.uint8)
    masks[0, 10:60, 20:90] = 1
    masks[1, 50:110, 80:140] = 1
    return [{"boxes": torch.tensor([[20.0, 10.0, 90.0, 60.0], [80.0, 50.0, 140.0, 110.0]]),
             "labels": torch.tensor([1, 3]), "masks": masks, "image_id": 7}]


def test_losses_equal_torchvision():
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   norm_layer=FrozenBatchNorm2d)
    tv = MaskRCNN(backbone, num_classes=4, **SMALL).train()
    ours = build("mask_rcnn_r18_fpn", num_classes=3, fpn_channels=256, anchor_sizes=(32, 64, 128, 256, 512),
                 rpn_pre_nms_top_n=(2000, 1000), rpn_post_nms_top_n=(2000, 1000), box_batch_size=512, **SMALL)
    ours.load_state_dict(rcnn_state_dict(tv.state_dict()))
    ours.train()
    images = [torch.rand(3, 120, 150, generator=torch.Generator().manual_seed(1))]
    torch.manual_seed(42)
    expected = tv(images, _targets())
    torch.manual_seed(42)
    got = ours(images, _targets())
    assert set(got) == set(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)
    sum(got.values()).backward()
    assert ours.mask_stage.head.logits.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [dict(mask_softmax=True), dict(mask_head="mlp")])
def test_ablation_options_train(options):
    torch.manual_seed(0)
    model = build("mask_rcnn_r18_fpn", num_classes=3, **SMALL, **options).train()
    images = [torch.rand(3, 120, 150)]
    losses = model(images, _targets())
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)[0]
    assert out["masks"].shape[1:] == (1, 120, 150) and len(out["masks"]) == len(out["boxes"])
    assert out["masks"].min() >= 0 and out["masks"].max() <= 1


def test_bad_targets_name_the_image():
    model = build("mask_rcnn_r18_fpn", num_classes=3, **SMALL).train()
    images = [torch.rand(3, 120, 150)]
    with pytest.raises(ConfigError, match="targets"):
        model(images)
    bad = _targets()
    bad[0]["boxes"][1] = torch.tensor([50.0, 50.0, 40.0, 60.0])
    with pytest.raises(AnnotationError, match="image 7"):
        model(images, bad)
    bad = _targets()
    bad[0]["labels"] = torch.tensor([1, 4])
    with pytest.raises(AnnotationError, match="labels must lie in 1..3"):
        model(images, bad)
    bad = _targets()
    bad[0]["masks"] = bad[0]["masks"][:1]
    with pytest.raises(AnnotationError, match="masks of shape"):
        model(images, bad)
    bad = _targets()
    del bad[0]["masks"]
    with pytest.raises(AnnotationError, match="masks"):
        model(images, bad)


def test_an_image_without_objects_trains():
    torch.manual_seed(0)
    model = build("mask_rcnn_r18_fpn", num_classes=3, **SMALL).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 120, 150, dtype=torch.uint8)}
    losses = model([torch.rand(3, 120, 150), torch.rand(3, 120, 150)], [empty, _targets()[0]])
    assert all(torch.isfinite(v) for v in losses.values())
    alone = model([torch.rand(3, 120, 150)], [empty])
    assert alone["loss_rpn_box_reg"] == 0 and alone["loss_box_reg"] == 0 and alone["loss_mask"] == 0
    sum(alone.values()).backward()
