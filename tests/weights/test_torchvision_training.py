"""Faster R-CNN and RetinaNet trained in float32 from the same weights on the same batches: objdet's
gradients and weights are torchvision's to the last bit, step after step, so the two libraries train
to the same model. objdet's RetinaNet trains channels-last, so torchvision's runs in that layout too.

(bench/raccoon.py --no-amp runs this over a whole 480-step schedule.)
"""

from collections.abc import Callable

import torch
from torchvision.models import resnet18
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from objdet import build
from objdet.weights.torchvision import rcnn_state_dict, retinanet_state_dict

SIZE = 128


def _torchvision_faster_rcnn() -> FasterRCNN:
    layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    backbone = BackboneWithFPN(resnet18(weights=None), layers, [64, 128, 256, 512], 64,
                               extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    return FasterRCNN(backbone, num_classes=3, min_size=SIZE, max_size=SIZE, rpn_anchor_generator=anchors,
                      rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=200, box_batch_size_per_image=64)


def _batch(step: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(step)
    images = [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(2)]
    corners = torch.rand(2, 3, 2, generator=g) * 80
    sizes = 16 + torch.rand(2, 3, 2, generator=g) * 40
    targets = [{"boxes": torch.cat([c, c + s], 1), "labels": torch.randint(1, 3, (3,), generator=g)}
               for c, s in zip(corners, sizes)]
    return images, targets


def _train_side_by_side(tv: torch.nn.Module, ours: torch.nn.Module, convert: Callable[[dict], dict]) -> None:
    """Four AdamW steps on each model; after each, objdet's weights must be torchvision's exactly."""
    tv.train()
    ours.load_state_dict(convert(tv.state_dict()))
    ours.train()
    optimisers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (tv, ours)]
    for step in range(4):
        images, targets = _batch(step)
        for model, optimiser in zip((tv, ours), optimisers):
            torch.manual_seed(100 + step)  # the same RoI and anchor samples on both sides
            optimiser.zero_grad()
            sum(model(images, targets).values()).backward()
            optimiser.step()
        expected = convert(tv.state_dict())
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=f"step {step}: {key}")


def test_faster_rcnn_float32_training_steps_equal_torchvision_bit_for_bit(one_thread):
    torch.manual_seed(0)
    ours = build("faster_rcnn_r18_fpn", num_classes=2, backbone_norm="BN", trainable_layers=5, fpn_channels=64,
                 anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms_top_n=(600, 1000), rpn_post_nms_top_n=(200, 1000),
                 box_batch_size=64, min_size=SIZE, max_size=SIZE)
    _train_side_by_side(_torchvision_faster_rcnn(), ours, rcnn_state_dict)


def test_retinanet_float32_training_steps_equal_torchvision_bit_for_bit(one_thread):
    torch.manual_seed(0)
    layers = {"layer2": "0", "layer3": "1", "layer4": "2"}
    backbone = BackboneWithFPN(resnet18(weights=None), layers, [128, 256, 512], 64,
                               extra_blocks=LastLevelP6P7(512, 64))
    tv = RetinaNet(backbone, num_classes=3, min_size=SIZE, max_size=SIZE).to(memory_format=torch.channels_last)
    # torchvision's layout: a (never used) background channel and an L1 box loss
    ours = build("retinanet_r18_fpn", num_classes=2, backbone_norm="BN", trainable_layers=5, fpn_channels=64,
                 background_channel=True, box_loss="l1", min_size=SIZE, max_size=SIZE)
    _train_side_by_side(tv, ours, retinanet_state_dict)
