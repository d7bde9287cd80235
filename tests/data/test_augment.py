"""Flip and resize against torchvision.transforms.v2 and closed forms; the `--aug` presets keep boxes, masks and
keypoints consistent (closed forms on generated rectangles), drop what a crop removes, and are seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors
from torchvision.transforms import v2

from objdet.data.augment import (
    PRESETS,
    Compose,
    HorizontalFlip,
    Resize,
    flip_permutation,
    hflip,
    presets,
    resize,
)
from objdet.data.scale_jitter import ScaleJitterCrop
from objdet.data.shapes import ShapesDataset, extremal_points
from objdet.data.tv_targets import TvTransform, mask_extent
from objdet.detectors.base import check_targets
from objdet.engine.trainer import SeededDataset
from objdet.errors import ConfigError

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


SIDES = ["top", "right", "bottom", "left"]


def rectangles(seed: int, n: int = 5, height: int = 48, width: int = 64, side: int = 40) -> tuple[torch.Tensor, dict]:
    """A random image with n filled rectangles (sides 3..`side`): label i + 1 for object i (to follow it through
    drops), its mask, its edge midpoints as keypoints (top, right, bottom, left; every even label's unlabeled)."""
    g = torch.Generator().manual_seed(seed)
    corner = torch.randint(0, 1000, (n, 2), generator=g) % torch.tensor([width - 3, height - 3])
    far = (corner + torch.randint(3, side + 1, (n, 2), generator=g)).minimum(torch.tensor([width, height]))
    x, y = torch.stack([corner[:, 0], far[:, 0]], 1), torch.stack([corner[:, 1], far[:, 1]], 1)
    boxes = torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).float()
    masks = torch.zeros(n, height, width, dtype=torch.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist(), strict=True):
        m[y1:y2, x1:x2] = 1
    kps = midpoints(boxes)
    kps[1::2] = 0
    target = {"boxes": boxes, "labels": torch.arange(1, n + 1), "masks": masks, "keypoints": kps,
              "area": masks.sum((1, 2)).float(), "iscrowd": torch.zeros(n, dtype=torch.int64), "image_id": seed}
    return torch.rand(3, height, width, generator=g), target


def midpoints(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4, 3]: the top, right, bottom and left edge midpoints of xyxy boxes, visibility 2."""
    x1, y1, x2, y2 = boxes.unbind(1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    xy = torch.stack([torch.stack([cx, y1], 1), torch.stack([x2, cy], 1), torch.stack([cx, y2], 1),
                      torch.stack([x1, cy], 1)], 1)
    return torch.cat([xy, torch.full((len(boxes), 4, 1), 2.0)], 2)


def assert_valid(image: torch.Tensor, t: dict, keypoints: int = 4) -> None:
    """objdet's target format after augmentation: one row per object in every field, boxes inside the image
    with positive sides, masks inside their boxes, visible keypoints inside the image, the rest (0, 0, 0)."""
    n, (h, w) = len(t["boxes"]), image.shape[-2:]
    assert t["boxes"].dtype == torch.float32 and t["masks"].dtype == torch.uint8 and t["labels"].dtype == torch.int64
    assert t["masks"].shape == (n, h, w) and t["keypoints"].shape == (n, keypoints, 3)
    assert len(t["labels"]) == len(t["area"]) == len(t["iscrowd"]) == n
    check_targets([t], num_classes=100, needs=("masks", "keypoints"))
    b = t["boxes"]
    assert (b >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    extent, filled = mask_extent(t["masks"])
    assert filled.all()
    # nearest-neighbour masks: pixels s*a <= i < s*b of a scaled span [a, b) stay, so the extent lies in
    # [box x1, box x2 + 1)
    assert (extent[:, :2] >= b[:, :2] - 1e-4).all() and (extent[:, 2:] < b[:, 2:] + 1).all()
    kps = t["keypoints"]
    visible = kps[..., 2] > 0
    assert (kps[~visible] == 0).all()
    xy = kps[..., :2][visible]
    assert (xy >= 0).all() and (xy[:, 0] <= w).all() and (xy[:, 1] <= h).all()


@pytest.mark.parametrize("name", list(PRESETS))
def test_rectangles_stay_consistent_under_every_preset(name):
    transform = presets(name, SIDES)
    kept = 0
    for seed in range(30):
        image, target = rectangles(seed)
        torch.manual_seed(seed)
        out_image, out = transform(image, target) if transform else (image, target)
        assert_valid(out_image, out)
        h, w = out_image.shape[-2:]
        extent, _ = mask_extent(out["masks"])
        # a rectangle's mask is its box to within a pixel, also where a crop cut it (the box is clipped and
        # tightened to the mask's visible part)
        assert ((extent - out["boxes"]).abs() < 1 + 1e-4).all()
        b = out["boxes"]
        inner = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < w) & (b[:, 3] < h)
        labelled = out["labels"] % 2 == 1
        # keypoints move with their box, by name: the edge midpoints stay the edge midpoints (flip swaps left and
        # right); unlabeled ones stay (0, 0, 0)
        torch.testing.assert_close(out["keypoints"][inner & labelled], midpoints(b[inner & labelled]))
        assert (out["keypoints"][~labelled] == 0).all()
        kps = out["keypoints"][labelled]
        visible = kps[..., 2] > 0
        near = (kps[..., :2] >= b[labelled, None, :2] - 1) & (kps[..., :2] <= b[labelled, None, 2:] + 1)
        assert near.all(-1)[visible].all()  # keypoints inside their box (within the tightening's pixel)
        if name in ("none", "flip"):
            assert torch.equal(out["labels"], target["labels"])
        kept += len(b)
    assert kept > 0


@pytest.mark.parametrize("scale", [0.5, 0.8, 1.25, 2.0])
def test_scale_maps_boxes_by_the_factor_and_moves_them_with_the_image(scale):
    checked = 0
    for seed in range(8):
        image, target = rectangles(seed, n=8, height=40, width=56, side=12)
        torch.manual_seed(seed)
        out_image, out = TvTransform(ScaleJitterCrop((scale, scale)))(image, target)
        assert out_image.shape == image.shape
        size = [round(40 * scale), round(56 * scale)]
        factor = torch.tensor([size[1] / 56, size[0] / 40] * 2)
        moved = target["boxes"][out["labels"] - 1] * factor
        b = out["boxes"]
        inner = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < 56) & (b[:, 3] < 40)
        if not inner.any():
            continue
        checked += 1
        # one translation for every box: the crop's (or the padding's) offset
        offset = (moved[inner] - b[inner])[:, :2]
        torch.testing.assert_close(offset, offset[:1].expand_as(offset))
        left, top = (round(v) for v in offset[0].tolist())
        torch.testing.assert_close(offset[0], torch.tensor([left, top], dtype=torch.float32))
        torch.testing.assert_close(b[inner][:, 2:] - b[inner][:, :2], (moved[inner][:, 2:] - moved[inner][:, :2]))
        area = target["area"][out["labels"] - 1] * factor[0] * factor[1]
        torch.testing.assert_close(out["area"][inner], area[inner])
        # the image moved by the same offset: torch's antialiased bilinear resize, then the window at the offset
        scaled = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        canvas = torch.zeros(3, max(size[0], 40) + 80, max(size[1], 56) + 80)
        canvas[:, 40:40 + size[0], 40:40 + size[1]] = scaled
        torch.testing.assert_close(out_image, canvas[:, 40 + top:80 + top, 40 + left:96 + left])
        if scale < 1:
            assert len(b) == len(target["boxes"])  # zooming out keeps every object
    assert checked >= 4


def test_a_crop_that_removes_every_box_leaves_an_empty_valid_target():
    image, target = rectangles(0)
    target = {**target, "boxes": torch.tensor([[0.0, 0.0, 6.0, 5.0], [52.0, 40.0, 64.0, 48.0]]),
              "labels": torch.tensor([1, 3]), "masks": target["masks"][:2], "keypoints": target["keypoints"][:2],
              "area": target["area"][:2], "iscrowd": target["iscrowd"][:2]}
    out_image, out = TvTransform(v2.CenterCrop(16))(image, target)
    assert out_image.shape == (3, 16, 16)
    assert_valid(out_image, out)
    assert len(out["boxes"]) == 0 and out["boxes"].shape == (0, 4) and out["image_id"] == 0


def test_keypoints_leaving_the_image_become_unlabeled_and_occluded_ones_stay_occluded():
    image = torch.rand(3, 20, 20)
    target = {"boxes": torch.tensor([[2.0, 2.0, 18.0, 18.0], [0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1, 2]),
              "difficult": torch.tensor([False, True]),
              "keypoints": torch.tensor([[[3.0, 3.0, 2.0], [10.0, 10.0, 1.0], [12.0, 12.0, 0.0], [17.0, 10.0, 2.0]],
                                         [[2.0, 2.0, 2.0]] * 4])}
    _, out = TvTransform(v2.CenterCrop(10))(image, target)  # the window 5..15 in both axes
    assert out["keypoints"].tolist() == [[[0.0, 0.0, 0.0], [5.0, 5.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    assert out["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert out["labels"].tolist() == [1] and out["difficult"].tolist() == [False]  # VOC's flag goes with its box


class Window(v2.Transform):
    """Crop a fixed window (top, left, height, width)."""

    def __init__(self, *window: int):
        super().__init__()
        self.window = window

    def transform(self, inpt, params):
        return self._call_kernel(TF.crop, inpt, *self.window)


def test_a_box_the_crop_cuts_is_tightened_to_its_mask_and_an_emptied_mask_drops_its_object():
    ys, xs = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    triangle = (ys >= xs).to(torch.uint8)  # the lower-left half of its box
    target = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]]), "labels": torch.tensor([1]), "masks": triangle[None],
              "area": torch.tensor([210.0])}
    # rows 5..14, columns 10..19: the triangle keeps x 10..14, y 10..14 (window: x 0..4, y 5..9)
    _, out = TvTransform(Window(5, 10, 10, 10))(torch.rand(3, 20, 20), target)
    assert out["boxes"].tolist() == [[0.0, 5.0, 5.0, 10.0]] and out["masks"].sum() == 15
    torch.testing.assert_close(out["area"], torch.tensor([210.0 * 25 / 400]))  # area scales with the box
    _, out = TvTransform(Window(0, 10, 10, 10))(torch.rand(3, 20, 20), target)  # above the diagonal: no pixel
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 10, 10)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_on_shapes_with_masks_and_keypoints(name):
    data = ShapesDataset("train", length=12, image_size=64, seed=3,
                         transforms=presets(name, ShapesDataset.keypoint_names))
    seeded = SeededDataset(data, seed=0, epoch=0)
    objects = 0
    for i in range(len(data)):
        image, target = seeded[i]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert_valid(image, target)
        objects += len(target["boxes"])
    assert objects > 0


@pytest.mark.parametrize("name", ["flip", "standard", "strong"])
def test_presets_are_reproducible_under_a_seed(name):
    data = ShapesDataset("train", length=4, image_size=64, seed=1,
                         transforms=presets(name, ShapesDataset.keypoint_names))
    first = [SeededDataset(data, seed=5, epoch=e)[2] for e in range(6)]
    again = [SeededDataset(data, seed=5, epoch=e)[2] for e in range(6)]
    for (image, t), (image2, t2) in zip(first, again, strict=True):
        assert torch.equal(image, image2) and all(torch.equal(torch.as_tensor(t[k]), torch.as_tensor(t2[k])) for k in t)
    assert len({tuple(t["boxes"].flatten().tolist()) for _, t in first}) > 1  # epochs draw differently


def test_flip_preset_is_the_previous_default_and_unknown_names_are_refused():
    image, target = ShapesDataset("train", length=1, image_size=64, seed=4).load(0)
    for seed in range(6):
        torch.manual_seed(seed)
        got = presets("flip", ShapesDataset.keypoint_names)(image, target)
        torch.manual_seed(seed)
        want = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names)(image, target)
        assert torch.equal(got[0], want[0]) and all(torch.equal(got[1][k], want[1][k]) for k in ("boxes", "keypoints"))
    assert presets("none") is None
    with pytest.raises(ConfigError, match="unknown augmentation preset 'mosaic'"):
        presets("mosaic")
