"""Sliced inference: tiles cover the image, tile detections come back in image pixels, cut ones are dropped, the
merge is class-wise NMS."""

import torch

from objdet.engine.slicing import sliced_predict, tile_starts, tiles


def test_tiles_cover_the_image_with_the_overlap():
    assert tile_starts(1000, 256, 0.25) == [0, 192, 384, 576, 744]
    assert tile_starts(200, 256, 0.25) == [0]
    grid = tiles(300, 500, 256, 0.2)
    covered = torch.zeros(300, 500, dtype=torch.bool)
    for y0, x0, y1, x1 in grid:
        assert y1 - y0 <= 256 and x1 - x0 <= 256
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def _bright_square_detector(images):
    """A stand-in model that finds the bounding box of the pixels brighter than 0.5 in each input, if any."""
    out = []
    for image in images:
        ys, xs = torch.where(image[0] > 0.5)
        if len(ys):
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            out.append({"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])})
        else:
            out.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)})
    return out


def test_tile_detections_in_image_pixels_cut_ones_dropped_and_merged():
    image = torch.zeros(3, 300, 400)
    image[:, 120:140, 250:270] = 1.0  # one object, inside several overlapping tiles
    merged = sliced_predict(_bright_square_detector, [image], size=160, overlap=0.5, whole=False)[0]
    assert merged["boxes"].tolist() == [[250.0, 120.0, 270.0, 140.0]]  # one detection after the merge
    image[:, 140:160, 140:160] = 1.0  # now the whole image's box spans both objects; tiles see them apart
    got = sliced_predict(_bright_square_detector, [image], size=100, overlap=0.5, whole=False, iou=0.6)[0]
    assert sorted(got["boxes"].tolist()) == [[140.0, 140.0, 160.0, 160.0], [250.0, 120.0, 270.0, 140.0]]
    kept_cut = sliced_predict(_bright_square_detector, [image], size=100, overlap=0.5, whole=False, iou=0.6,
                              drop_cut=False)[0]
    assert len(kept_cut["boxes"]) > 2  # without the edge rule, boxes of objects cut by a tile edge survive
