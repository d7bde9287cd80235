"""The generated `shapes` data set: determinism, target consistency, sizes, occlusion, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import masks_to_boxes

from objdet.data.coco import CocoDataset, write_coco_dataset
from objdet.data.shapes import (CLASSES, SPLITS, ShapesDataset, extremal_points, generate,
                                occlude)
from objdet.errors import ConfigError


@pytest.fixture(scope="module")
def items():
    ds = ShapesDataset("train", length=40, seed=3)
    return ds, [ds[i] for i in range(len(ds))]


def test_items_are_reproducible_in_any_order_and_splits_differ(items):
    ds, seen = items
    again = ShapesDataset("train", length=40, seed=3)
    for i in (17, 3, 0):
        image, target = again[i]
        assert torch.equal(image, seen[i][0]) and torch.equal(target["masks"], seen[i][1]["masks"])
    images = [ShapesDataset(split, length=1, seed=3)[0][0] for split in SPLITS]
    images.append(ShapesDataset("train", length=1, seed=4)[0][0])
    assert all(not torch.equal(a, b) for k, a in enumerate(images) for b in images[k + 1:])


def test_targets_are_consistent(items):
    ds, seen = items
    for image, t in seen:
        n = len(t["boxes"])
        assert n >= 1 and image.shape == (3, 160, 160) and 0 <= image.min() <= image.max() <= 1
        assert t["labels"].dtype == torch.int64 and set(t["labels"].tolist()) <= {1, 2, 3, 4, 5}
        tight = masks_to_boxes(t["masks"]) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        torch.testing.assert_close(t["boxes"], tight)
        assert t["area"].tolist() == t["masks"].flatten(1).sum(1).float().tolist()
        assert t["masks"].sum(0).max() <= 1  # visible parts of different objects never overlap
        assert t["keypoints"].shape == (n, 4, 3)
        assert set(t["keypoints"][..., 2].unique().tolist()) <= {1.0, 2.0}
        masks, kps = t["masks"].numpy(), t["keypoints"].numpy()
        for k in range(n):  # visible keypoints touch their mask, hidden ones do not
            for x, y, v in kps[k]:
                r, c = int(y), int(x)
                assert masks[k, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any() == (v == 2)


def test_sizes_span_small_to_large(items):
    _, seen = items
    areas = torch.cat([t["area"] for _, t in seen])
    assert (areas < 32 ** 2).sum() >= 5 and (areas > 96 ** 2).sum() >= 1
    assert ((areas >= 32 ** 2) & (areas <= 96 ** 2)).sum() >= 5


def test_occlusion_keeps_visible_parts_and_drops_hidden_objects():
    canvas = np.zeros((10, 10), dtype=bool)
    bottom, middle, top = canvas.copy(), canvas.copy(), canvas.copy()
    bottom[0:4, 0:5] = True  # 20 px, 16 of them under `middle`
    middle[0:8, 1:5] = True  # 32 px, 8 of them under `top`
    top[6:10, 0:10] = True
    visible = occlude([bottom, middle, top], min_visible=0.3)
    assert visible[0] is None  # 4/20 visible < 0.3
    assert np.array_equal(visible[1], middle & ~top) and np.array_equal(visible[2], top)
    low = occlude([bottom, middle, top], min_visible=0.2)
    assert np.array_equal(low[0], bottom & ~middle)
    strict = occlude([bottom, middle, top], min_visible=1.0)  # `middle` dropped: bottom uncovered
    assert strict[1] is None and np.array_equal(strict[0], bottom)


def test_nothing_is_hidden_when_every_object_must_be_fully_visible():
    for i in range(20):
        _, t = generate(np.random.default_rng([5, i]), 96, 8, 1.0)
        assert (t["keypoints"][..., 2] == 2).all()


def test_extremal_points_closed_form():
    square = np.array([[0, 0], [4, 0], [4, 2], [0, 2]], dtype=float)
    assert extremal_points(square).tolist() == [[2, 0], [4, 1], [2, 2], [0, 1]]
    diamond = np.array([[0, 1], [1, 0], [2, 1], [1, 3]], dtype=float)
    assert extremal_points(diamond).tolist() == [[1, 0], [2, 1], [1, 3], [0, 1]]


def test_export_to_coco_reads_back_identically(tmp_path):
    ds = ShapesDataset("val", length=3, image_size=64)
    ann_file, image_dir = write_coco_dataset(ds, tmp_path)
    back = CocoDataset(ann_file, image_dir)
    assert back.categories == ds.categories and back.keypoint_names == ds.keypoint_names
    for i in range(3):
        (a_img, a), (b_img, b) = ds[i], back[i]
        assert (a_img - b_img).abs().max() <= 0.5 / 255 + 1e-6
        for key in ("boxes", "labels", "masks", "keypoints", "area", "iscrowd"):
            assert torch.equal(a[key], b[key]), key
        assert a["image_id"] == b["image_id"]


def test_draw_samples_writes_pngs(tmp_path):
    from objdet.visualize import draw_samples

    paths = draw_samples(ShapesDataset("train", length=4, seed=1), tmp_path, count=2)
    assert len(paths) == 2
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size == (160, 160)


@pytest.mark.parametrize("kwargs", [{"split": "bogus"}, {"image_size": 8}, {"length": -1}])
def test_bad_options_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        ShapesDataset(**kwargs)


def test_a_class_subset_draws_only_those_shapes_with_their_own_labels():
    full = ShapesDataset("train", length=6, seed=3)
    every = ShapesDataset("train", length=6, seed=3, classes=list(CLASSES))
    for i in range(6):  # naming all classes in order changes nothing
        assert torch.equal(full[i][0], every[i][0]) and torch.equal(full[i][1]["labels"], every[i][1]["labels"])
    sub = ShapesDataset("train", length=20, seed=3, classes=["star", "cross"])
    assert [c["name"] for c in sub.categories] == ["star", "cross"] and sub.num_classes == 2
    labels = torch.cat([sub[i][1]["labels"] for i in range(20)])
    assert set(labels.tolist()) == {1, 2}
    with pytest.raises(ConfigError):
        ShapesDataset(classes=["hexagon"])
