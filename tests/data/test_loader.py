"""collate and make_loader: lists of differently sized images, reproducible shuffling."""

from __future__ import annotations

import torch

from objdet.data.augment import Resize
from objdet.data.loader import collate, make_loader
from objdet.data.shapes import ShapesDataset


def test_collate_keeps_images_of_different_sizes_in_lists():
    a, b = torch.zeros(3, 4, 5), torch.ones(3, 6, 2)
    images, targets = collate([(a, {"image_id": 1}), (b, {"image_id": 2})])
    assert images[0] is a and images[1] is b and [t["image_id"] for t in targets] == [1, 2]


def test_make_loader_batches_and_seeded_shuffle():
    g = torch.Generator().manual_seed(0)
    ds = ShapesDataset("train", length=6, image_size=48,
                       transforms=Resize(48, scale_range=(0.5, 1.5), generator=g))
    order = [[t["image_id"] for _, ts in make_loader(ds, 4, shuffle=True, seed=s) for t in ts]
             for s in (1, 1, 2)]
    assert order[0] == order[1] and sorted(order[0]) == list(range(1, 7))
    assert order[0] != order[2]
    batches = list(make_loader(ds, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 2]
    assert len({im.shape for im in batches[0][0]}) > 1
