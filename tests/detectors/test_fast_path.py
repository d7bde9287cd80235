"""A detector in eval mode runs the fast path (`objdet.fused`) by default: its detections equal the plain eval
path's, `fuse_for_inference()`'s and, with the same weights, torchvision's.

The weights are random but tamed as training would tame them: norm statistics measured on the test images,
and classifiers scaled so a few dozen detections pass the threshold with spread scores (random weights
otherwise saturate every score at 1.0, where float rounding decides NMS ties)."""

import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import detection as tvd

sys.path.insert(0, str(Path(__file__).parents[1] / "weights"))

from detection_match import assert_same_detections  # noqa: E402
from objdet import fused, zoo  # noqa: E402
from objdet.norm import FrozenBatchNorm2d  # noqa: E402
from objdet.weights.torchvision import from_torchvision  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _images(size=(96, 128)):
    g = torch.Generator().manual_seed(5)
    base = torch.rand(3, size[0] // 8, size[1] // 8, generator=g)  # smooth images with structure
    first = torch.nn.functional.interpolate(base[None], size=size, mode="bilinear")[0]
    return [first, torch.rand(3, size[1], size[0], generator=g)]


@torch.no_grad()
def measure_norms(trunk: torch.nn.Module, x: torch.Tensor) -> None:
    """Batch-norm statistics measured on `x` (a plain average), as training would set them."""
    for m in trunk.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    was = trunk.training
    trunk.train()
    trunk(x)
    trunk.train(was)


def _to_frozen(module: torch.nn.Module, frozen_class) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = frozen_class(child.num_features)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _to_frozen(child, frozen_class)


def _scale_classifier(model: torch.nn.Module, scale: float, bias: float | None = None) -> None:
    for name, m in model.named_modules():
        if name.endswith(("cls_score", "class_head.predict", "cls_logits", "class_head.predict.pointwise")) \
                and isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            with torch.no_grad():
                m.weight.mul_(scale)
                if bias is not None:
                    m.bias.fill_(bias)


def _tame(model: torch.nn.Module, scale: float, bias: float | None = None) -> torch.nn.Module:
    """Norm statistics measured on the test images (BN trunks), then a spread classifier."""
    batch, _ = model.transform(_images())
    measure_norms(model.backbone, batch.tensors)
    _scale_classifier(model, scale, bias)
    return model.eval()


def assert_same_outputs(got: dict, reference: dict) -> None:
    """Detections equal up to float rounding: boxes within 1e-3 (+1e-3 relative; folded norms round differently
    through 50 random layers), scores within 1e-3, pasted masks equal but for 1% of pixels; keypoints equal except where a heatmap's
    two best cells tie (then their scores agree), for at most 1% of them."""
    assert_same_detections(got, reference["boxes"], reference["scores"], reference["labels"], atol=1e-3, rtol=1e-3)
    if not any(k in got for k in ("masks", "keypoints")):
        return
    order = [int(((reference["boxes"] - b).abs().amax(1)).argmin()) for b in got["boxes"]]
    if "masks" in got:  # a box edge that rounds to the next pixel moves its pasted mask's edge by one pixel
        differ = (got["masks"] - reference["masks"][order]).abs() > 1e-3
        assert float(differ.float().mean()) <= 0.01
    if "keypoints" in got:
        torch.testing.assert_close(got["keypoints_scores"], reference["keypoints_scores"][order], atol=1e-3, rtol=1e-3)
        moved = (got["keypoints"] - reference["keypoints"][order]).abs().amax(-1) > 1e-2
        assert int(moved.sum()) <= max(1, moved.numel() // 100)


CASES = [("faster_rcnn_r18_fpn", 2.0, None), ("mask_rcnn_r18_fpn", 2.0, None),
         ("keypoint_rcnn_r18_fpn", 2.0, None), ("retinanet_r18_fpn", 30.0, -2.0),
         ("efficientdet_d0", 3.0, -1.0)]


@pytest.mark.parametrize("name,scale,bias", CASES, ids=[c[0] for c in CASES])
def test_default_path_equals_the_plain_and_the_folded_model(name, scale, bias, one_thread):
    torch.manual_seed(0)
    size = dict(image_size=128) if name.startswith("efficientdet") else dict(min_size=96, max_size=128)
    model = _tame(zoo.build(name, num_classes=4, backbone_norm="BN", detections_per_img=40, **size) if "rcnn" in name
                  else zoo.build(name, num_classes=4, **size), scale, bias)
    images = _images()
    with torch.no_grad():
        default = model(images)
        with fused.disabled():
            plain = model(images)
        model.fuse_for_inference()
        folded = model(images)
    assert sum(len(d["boxes"]) for d in default) >= 10
    for d, p, f in zip(default, plain, folded):
        assert_same_outputs(d, p)
        assert_same_outputs(d, f)


# the mask and keypoint pairs take minutes; bench/inference.py compares the same pairs' detections, and the
# r18 cases above compare their masks and keypoints with the plain path
_SLOW = pytest.mark.slow
TV_CASES = [("fasterrcnn_resnet50_fpn", {}), pytest.param("maskrcnn_resnet50_fpn", {}, marks=_SLOW),
            pytest.param("keypointrcnn_resnet50_fpn", {"num_keypoints": 17}, marks=_SLOW),
            ("retinanet_resnet50_fpn", {})]


@pytest.mark.parametrize("arch,kw", TV_CASES)
def test_default_path_equals_torchvision_with_the_same_weights(arch, kw):
    """The user's path: `from_torchvision(arch, sd).eval()` then a call, against torchvision's model."""
    from torchvision.ops.misc import FrozenBatchNorm2d as TvFrozenBN

    torch.manual_seed(0)
    size = dict(min_size=96, max_size=128)
    tv = getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=5, **size, **kw)
    images = _images()
    batch, _ = tv.transform(images)
    measure_norms(tv.backbone.body, batch.tensors)
    _to_frozen(tv.backbone.body, TvFrozenBN)  # as torchvision's released v1 detectors
    _scale_classifier(tv, 30.0 if "retina" in arch else 1.0, -2.0 if "retina" in arch else None)
    tv.eval()
    ours = from_torchvision(arch, tv.state_dict(), frozen_bn_eps=1e-5, **size).eval()
    assert any(isinstance(m, FrozenBatchNorm2d) for m in ours.modules())
    with torch.no_grad():
        expected, got = tv(images), ours(images)
    assert sum(len(e["boxes"]) for e in expected) >= 10
    for e, g in zip(expected, got):
        if "retina" in arch:  # torchvision's RetinaNet outputs its background channel 0 too; objdet never does
            e = {k: v[e["labels"] > 0] for k, v in e.items()}
        assert_same_outputs(g, e)
