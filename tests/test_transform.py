"""DetectionTransform against torchvision's GeneralizedRCNNTransform, and the letterbox mode."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from objdet.errors import AnnotationError, ImageError
from objdet.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform

SIZES = [(3, 150, 200), (3, 257, 117), (3, 60, 45)]


def _data(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for c, h, w in sizes:
        images.append(torch.rand(c, h, w, generator=gen))
        xy = torch.rand(4, 2, generator=gen) * torch.tensor([w / 2, h / 2])
        boxes = torch.cat([xy, xy + torch.rand(4, 2, generator=gen) * torch.tensor([w / 2, h / 2])], 1)
        kps = torch.rand(4, 5, 3, generator=gen) * torch.tensor([w, h, 2.0])
        masks = (torch.rand(4, h, w, generator=gen) > 0.5).to(torch.uint8)
        targets.append({"boxes": boxes, "labels": torch.ones(4, dtype=torch.int64),
                        "keypoints": kps, "masks": masks})
    return images, targets


def _assert_same(ours, theirs):
    (batch, targets), (tv_batch, tv_targets) = ours, theirs
    torch.testing.assert_close(batch.tensors, tv_batch.tensors, rtol=0, atol=0)
    assert batch.image_sizes == [tuple(s) for s in tv_batch.image_sizes]
    for t, tv_t in zip(targets, tv_targets):
        assert set(t) == set(tv_t)
        for key in t:
            torch.testing.assert_close(t[key], tv_t[key], rtol=0, atol=0)


@pytest.mark.parametrize("min_size,max_size,divisible", [(100, 133, 32), (64, 300, 16), (200, 210, 1)])
def test_eval_matches_torchvision(min_size, max_size, divisible):
    images, targets = _data(SIZES)
    tv = GeneralizedRCNNTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD, divisible).eval()
    ours = DetectionTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD, divisible).eval()
    _assert_same(ours(images, copy.deepcopy(targets)), tv(images, copy.deepcopy(targets)))
    tv_batch, _ = tv(images)
    batch, none = ours(images)
    assert none is None
    torch.testing.assert_close(batch.tensors, tv_batch.tensors, rtol=0, atol=0)


@pytest.mark.parametrize("min_size", [96, (64, 80, 96, 112)])
def test_train_matches_torchvision_with_the_same_rng(min_size):
    images, targets = _data(SIZES, seed=1)
    tv = GeneralizedRCNNTransform(min_size, 200, [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]).train()
    ours = DetectionTransform(min_size, 200, [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]).train()
    for seed in range(3):
        torch.manual_seed(seed)
        expected = tv(images, copy.deepcopy(targets))
        torch.manual_seed(seed)
        _assert_same(ours(images, copy.deepcopy(targets)), expected)


def test_fixed_size_matches_torchvision():
    images, targets = _data(SIZES, seed=2)
    tv = GeneralizedRCNNTransform(0, 0, IMAGENET_MEAN, IMAGENET_STD, fixed_size=(96, 64)).eval()
    ours = DetectionTransform(0, 0, IMAGENET_MEAN, IMAGENET_STD, fixed_size=(96, 64)).eval()
    _assert_same(ours(images, copy.deepcopy(targets)), tv(images, copy.deepcopy(targets)))
    assert ours(images)[0].image_sizes == [(64, 96)] * 3


def test_postprocess_matches_torchvision():
    gen = torch.Generator().manual_seed(3)
    tv = GeneralizedRCNNTransform(100, 133, IMAGENET_MEAN, IMAGENET_STD).eval()
    ours = DetectionTransform(100, 133).eval()
    image_sizes, original = [(100, 133), (100, 46), (98, 70)], [(150, 200), (257, 117), (60, 45)]
    detections = []
    for h, w in image_sizes:
        xy = torch.rand(6, 2, generator=gen) * torch.tensor([w, h]) - 5
        boxes = torch.cat([xy, xy + torch.rand(6, 2, generator=gen) * 60 + 0.5], 1)
        detections.append({"boxes": boxes, "scores": torch.rand(6, generator=gen),
                           "masks": torch.rand(6, 1, 28, 28, generator=gen),
                           "keypoints": torch.rand(6, 17, 3, generator=gen) * 90})
    detections.append({"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 1, 28, 28)})
    image_sizes.append((50, 50))
    original.append((80, 90))
    expected = tv.postprocess(copy.deepcopy(detections), image_sizes, original)
    got = ours.postprocess(detections, image_sizes, original)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=0, atol=0)
        torch.testing.assert_close(g["masks"], e["masks"], rtol=1e-5, atol=1e-5)
        if "keypoints" in e:
            torch.testing.assert_close(g["keypoints"], e["keypoints"], rtol=0, atol=0)
            torch.testing.assert_close(g["scores"], e["scores"])


def test_letterbox_resizes_long_side_pads_bottom_right_and_round_trips():
    images, targets = _data(SIZES, seed=4)
    t = DetectionTransform(letterbox=128, image_mean=(0.1, 0.2, 0.3), image_std=(0.5, 0.5, 0.5)).eval()
    batch, out_targets = t(images, copy.deepcopy(targets))
    assert batch.tensors.shape == (3, 3, 128, 128)
    for i, (image, (h, w)) in enumerate(zip(images, batch.image_sizes)):
        assert max(h, w) == 128 and h == image.shape[1] * 128 // max(image.shape[1:])
        normalised = (image - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) / 0.5
        resized = F.interpolate(normalised[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(batch.tensors[i, :, :h, :w], resized)
        assert not batch.tensors[i, :, h:, :].any() and not batch.tensors[i, :, :, w:].any()
        ratio = torch.tensor([w / image.shape[2], h / image.shape[1]] * 2)
        torch.testing.assert_close(out_targets[i]["boxes"], targets[i]["boxes"] * ratio)
        assert out_targets[i]["masks"].shape[-2:] == (h, w)
    resized = [{"boxes": o["boxes"], "keypoints": o["keypoints"]} for o in out_targets]
    back = t.postprocess(resized, batch.image_sizes, [im.shape[1:] for im in images])
    for b, target in zip(back, targets):
        torch.testing.assert_close(b["boxes"], target["boxes"], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(b["keypoints"][..., :2], target["keypoints"][..., :2],
                                   rtol=1e-5, atol=1e-4)


def test_bad_input_raises_objdet_errors():
    t = DetectionTransform(64, 100)
    with pytest.raises(ImageError, match="image 1"):
        t([torch.rand(3, 20, 20), torch.rand(20, 20)])
    with pytest.raises(ImageError, match="uint8"):
        t([torch.zeros(3, 20, 20, dtype=torch.uint8)])
    with pytest.raises(AnnotationError, match="target 0"):
        t([torch.rand(3, 20, 20)], [{"labels": torch.ones(1, dtype=torch.int64)}])
