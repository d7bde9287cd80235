"""RetinaNet: training losses equal torchvision's with the same weights; a tiny one overfits a shapes image."""

import pytest
import torch
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

from one_stage_helpers import assert_finds_every_object, two_object_shapes_image

import objdet
from objdet import from_torchvision
from objdet.errors import AnnotationError, ConfigError

TARGETS = [
    {"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0], [60.0, 5.0, 110.0, 40.0]]), "labels": torch.tensor([1, 4])},
    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},  # no objects: all background
    {"boxes": torch.tensor([[30.0, 30.0, 62.0, 70.0]]), "labels": torch.tensor([2])},
]


@pytest.mark.parametrize("arch, builder", [("retinanet_resnet50_fpn", retinanet_resnet50_fpn),
                                           ("retinanet_resnet50_fpn_v2", retinanet_resnet50_fpn_v2)])
def test_training_losses_equal_torchvision(arch, builder, one_thread):
    torch.manual_seed(0)
    ref = builder(weights=None, weights_backbone=None, num_classes=5, min_size=128, max_size=128).train()
    # torchvision's untrained trunk has trainable BatchNorm; train objdet's the same way
    ours = from_torchvision(arch, ref.state_dict(), min_size=128, max_size=128, backbone_norm="BN").train()
    torch.manual_seed(1)
    images = [torch.rand(3, 128, 120), torch.rand(3, 100, 128), torch.rand(3, 128, 128)]
    expected = ref(images, [dict(t) for t in TARGETS])
    got = ours(images, [dict(t) for t in TARGETS])
    assert set(got) == set(expected) == {"classification", "bbox_regression"}
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


def test_subnets_share_no_parameters_and_p6_source():
    seed = objdet.build("retinanet_r18_fpn", num_classes=3)
    assert not {id(p) for p in seed.class_head.parameters()} & {id(p) for p in seed.box_head.parameters()}
    assert seed.neck.p6.in_channels == 512  # the seed: P6 from C5
    v1 = objdet.build("retinanet_r18_fpn", num_classes=3, extra="p6p7_p5")
    assert v1.neck.p6.in_channels == v1.neck.out_channels  # torchvision v1: P6 from P5
    with pytest.raises(ConfigError):
        objdet.build("retinanet_r18_fpn", extra="maxpool")


def test_anchor_scale_sets_the_anchor_sides():
    """Side at level l is anchor_scale * 2^l * 2^(o/3), rounded down as torchvision does: 32 px at P3 by
    default, 16 px with anchor_scale=2 (the ablations' setting for 128 px images)."""
    for scale in (4.0, 2.0):
        sizes = objdet.build("retinanet_r18_fpn", num_classes=3, anchor_scale=scale).anchor_generator.sizes
        expected = [tuple(float(int(scale * 2**l * 2 ** (o / 3))) for o in range(3)) for l in range(3, 8)]
        assert sizes == expected
    assert sizes[0] == (16.0, 20.0, 25.0)


def test_bad_targets_are_annotation_errors():
    model = objdet.build("retinanet_r18_fpn", num_classes=3, min_size=64, max_size=64).train()
    image = [torch.rand(3, 64, 64)]
    with pytest.raises(AnnotationError, match="labels"):
        model(image, [{"boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0]]), "labels": torch.tensor([4])}])
    with pytest.raises(AnnotationError, match="width"):
        model(image, [{"boxes": torch.tensor([[10.0, 1.0, 5.0, 20.0]]), "labels": torch.tensor([1])}])
    with pytest.raises(ConfigError):
        model(image)


def test_inference_respects_threshold_and_cap(one_thread):
    torch.manual_seed(0)
    model = objdet.build("retinanet_r18_fpn", num_classes=3, min_size=96, max_size=96,
                         score_thresh=0.3, detections_per_img=7).eval()
    torch.nn.init.constant_(model.class_head.predict.bias, 0.0)  # every score near 0.5
    with torch.no_grad():
        out = model([torch.rand(3, 90, 80)])[0]
    assert len(out["boxes"]) == 7
    assert (out["scores"] > 0.3).all() and ((out["labels"] >= 1) & (out["labels"] <= 3)).all()
    assert (out["boxes"][:, 2] <= 80).all() and (out["boxes"][:, 3] <= 90).all()


def test_tiny_retinanet_overfits_one_shapes_image(one_thread):
    torch.manual_seed(0)
    image, target = two_object_shapes_image(96)
    model = objdet.build("retinanet_r18_fpn", num_classes=5, min_size=96, max_size=96, fpn_channels=64,
                         head_depth=2, backbone_norm="GN", trainable_layers=5)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    first = None
    for _ in range(40):
        losses = model([image], [target])
        first = first or {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert losses["classification"] < 0.05 * first["classification"]
    assert losses["bbox_regression"] < 0.1 * first["bbox_regression"]
    model.eval()
    with torch.no_grad():
        out = model([image])[0]
    assert_finds_every_object(out, target)


def test_fuse_for_inference_keeps_detections(one_thread):
    torch.manual_seed(0)
    model = objdet.build("retinanet_r18_fpn", num_classes=3, min_size=96, max_size=96, score_thresh=0.2).eval()
    torch.nn.init.normal_(model.class_head.predict.bias, std=1.0)  # some scores above the threshold
    g = torch.Generator().manual_seed(1)
    for m in model.backbone.modules():
        if hasattr(m, "running_var") and m.running_var is not None:
            m.running_mean.copy_((torch.rand(m.running_mean.shape, generator=g) - 0.5) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    images = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        expected = model(images)[0]
        got = model.fuse_for_inference()(images)[0]
    assert not any(type(m).__name__ == "FrozenBatchNorm2d" for m in model.modules())
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=1e-4)
    assert torch.equal(got["labels"], expected["labels"])
