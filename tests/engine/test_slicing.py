"""Sliced inference: tiles cover the image, tile detections come back in image pixels, cut ones are dropped, the
merge is class-wise NMS."""

import torch

from objdet.boxes import box_iou
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


class _FixedInputDetector:
    """A constructed detector with a real detector's fixed input size: each image is area-resized so its long side
    is `side` px (as a detector's transform resizes), then every 10 x 10 window averaging above 0.9 that is a
    local maximum is a box (mapped back to the image's pixels). A 10 px square is found at scale 1 (a tile) and
    lost when a large image is shrunk 4x, as small objects are."""

    def __init__(self, side: int = 128):
        self.side = side

    def __call__(self, images):
        out = []
        for image in images:
            h, w = image.shape[-2:]
            scale = self.side / max(h, w)
            small = torch.nn.functional.interpolate(image[None, :1], scale_factor=scale, mode="area")
            score = torch.nn.functional.avg_pool2d(small, 10, stride=1)[0, 0]
            peak = (score == torch.nn.functional.max_pool2d(score[None, None], 11, 1, 5)[0, 0]) & (score > 0.9)
            ys, xs = torch.where(peak)
            boxes = torch.stack([xs, ys, xs + 10, ys + 10], 1).float() / scale
            out.append({"boxes": boxes, "scores": score[ys, xs], "labels": torch.ones(len(ys), dtype=torch.long)})
        return out


def test_sliced_prediction_finds_the_small_objects_that_whole_image_prediction_misses():
    torch.manual_seed(0)
    image = torch.rand(3, 512, 512) * 0.2
    truth = []
    for k in range(12):  # 10 px squares spread over the image, some across tile borders
        y, x = 23 + 41 * k, 17 + (97 * k) % 470
        image[:, y:y + 10, x:x + 10] = 1.0
        truth.append([x, y, x + 10, y + 10])
    truth = torch.tensor(truth, dtype=torch.float32)
    model = _FixedInputDetector(128)

    def recall(det):
        return float((box_iou(truth, det["boxes"]).max(1).values > 0.9).float().mean()) if len(det["boxes"]) else 0.0

    whole = model([image])[0]
    sliced = sliced_predict(model, [image], 128, overlap=0.25)[0]
    assert recall(whole) == 0.0  # shrunk 4x, every square averages far below the threshold
    assert recall(sliced) == 1.0 and len(sliced["boxes"]) == len(truth)  # each found once, in image pixels
