"""Flip and resize against torchvision.transforms.v2 and closed forms; flip keeps shapes consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors

from objdet.data.augment import Compose, HorizontalFlip, Resize, flip_permutation, hflip, resize
from objdet.data.shapes import ShapesDataset, extremal_points

COCO_PERSON = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]


@pytest.fixture(scope="module")
def sample():
    return ShapesDataset("val", length=1, image_size=64, seed=2)[0]


def test_flip_permutation_swaps_left_and_right():
    assert flip_permutation(COCO_PERSON) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13,
                                             16, 15]
    assert flip_permutation(["top", "right", "bottom", "left"]) == [0, 3, 2, 1]


def test_hflip_matches_torchvision(sample):
    image, target = sample
    flipped, out = hflip(image, target, [0, 3, 2, 1])
    h, w = image.shape[1:]
    torch.testing.assert_close(flipped, TF.horizontal_flip_image(image))
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
    torch.testing.assert_close(out["boxes"], TF.horizontal_flip(boxes).as_subclass(torch.Tensor))
    torch.testing.assert_close(out["masks"], TF.horizontal_flip_mask(target["masks"]))
    # torchvision mirrors keypoints as pixel indices (W - 1 - x); objdet as coordinates (W - x)
    tv_xy = TF.horizontal_flip_keypoints(target["keypoints"][..., :2], (h, w)) + torch.tensor(
        [1.0, 0.0])
    torch.testing.assert_close(out["keypoints"][..., :2], tv_xy[:, [0, 3, 2, 1]])
    torch.testing.assert_close(out["keypoints"][..., 2], target["keypoints"][:, [0, 3, 2, 1], 2])
    back_image, back = hflip(flipped, out, [0, 3, 2, 1])
    assert torch.equal(back_image, image) and torch.equal(back["masks"], target["masks"])
    torch.testing.assert_close(back["keypoints"], target["keypoints"])


def test_flipped_extremal_points_are_the_extremal_points_of_the_mirror():
    rng = np.random.default_rng(0)
    for _ in range(20):
        vertices = rng.uniform(0, 50, (7, 2))
        mirrored = vertices * [-1, 1] + [50, 0]
        kps = torch.tensor(np.concatenate([extremal_points(vertices), np.full((4, 1), 2.0)], 1))
        _, out = hflip(torch.zeros(3, 4, 50), {"keypoints": kps[None]}, [0, 3, 2, 1])
        np.testing.assert_allclose(out["keypoints"][0, :, :2].numpy(), extremal_points(mirrored))


def test_unlabeled_keypoints_stay_zero_after_flip():
    kps = torch.tensor([[[3.0, 4.0, 2.0], [0.0, 0.0, 0.0]]])
    _, out = hflip(torch.zeros(3, 10, 10), {"keypoints": kps})
    assert out["keypoints"].tolist() == [[[7.0, 4.0, 2.0], [0.0, 0.0, 0.0]]]


def test_resize_matches_torchvision(sample):
    image, target = sample
    size = (96, 80)
    resized, out = resize(image, target, size)
    torch.testing.assert_close(resized, TF.resize_image(image, list(size), antialias=False))
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(64, 64))
    torch.testing.assert_close(out["boxes"], TF.resize(boxes, list(size)).as_subclass(torch.Tensor))
    assert torch.equal(out["masks"], TF.resize_mask(target["masks"], list(size)))
    kps, _ = TF.resize_keypoints(target["keypoints"][..., :2], list(size), (64, 64))
    torch.testing.assert_close(out["keypoints"][..., :2], kps)
    torch.testing.assert_close(out["area"], target["area"] * (80 / 64) * (96 / 64))


def test_resize_scale_jitter_and_max_size(sample):
    image, target = sample
    g = torch.Generator().manual_seed(0)
    jitter = Resize(100, scale_range=(0.5, 1.5), generator=g)
    sides = {jitter(image, target)[0].shape[-1] for _ in range(20)}
    assert len(sides) > 5 and min(sides) >= 50 and max(sides) <= 150
    capped = Resize([200, 300], max_size=120)(image[:, :, :32], {})[0]
    assert capped.shape[1:] == (120, 60)


def test_compose_and_flip_probability(sample):
    image, target = sample
    never = Compose([HorizontalFlip(p=0.0), Resize(32)])
    out_image, out = never(image, target)
    assert out_image.shape[1:] == (32, 32) and torch.equal(out["labels"], target["labels"])
    always = HorizontalFlip(p=1.0, keypoint_names=["top", "right", "bottom", "left"])
    assert torch.equal(always(image, target)[1]["keypoints"],
                       hflip(image, target, [0, 3, 2, 1])[1]["keypoints"])
