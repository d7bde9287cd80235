"""draw_detections: boxes, masks, keypoints land where the detections say; PNG round trip."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from objdet.visualize import PALETTE, draw_detections, save_detections


def _detections() -> dict:
    masks = torch.zeros(2, 1, 40, 60)
    masks[0, 0, 20:30, 30:50] = 0.9
    return {"boxes": torch.tensor([[10.0, 15.0, 30.0, 35.0], [28.0, 18.0, 52.0, 32.0]]),
            "scores": torch.tensor([0.9, 0.2]), "labels": torch.tensor([1, 2]),
            "masks": masks,
            "keypoints": torch.tensor([[[12.0, 30.0, 1.0]], [[40.0, 25.0, 1.0]]])}


def test_box_edges_mask_and_keypoint_are_drawn():
    image = torch.zeros(3, 40, 60)
    picture = np.asarray(draw_detections(image, _detections(), label_names={1: "cat", 2: "dog"}))
    red = np.array(PALETTE[1])
    assert (picture[34, 12:28] == red).all()  # bottom edge of box 0 (y2 - 1 = 34)
    assert (picture[20:33, 10] == red).all()  # left edge below the label
    inside = picture[21:24, 31:37].astype(float)  # mask 0 blended in box 0's colour
    np.testing.assert_allclose(inside, np.broadcast_to(0.45 * red, inside.shape), atol=1)
    assert picture[36:40, 54:60].max() == 0  # far from everything: untouched
    assert (picture[28:33, 11:15] == red).all(-1).sum() >= 4  # keypoint ring at (12, 30)
    assert (picture[23:28, 38:43] == np.array(PALETTE[2])).all(-1).sum() >= 4  # and at (40, 25)
    labelled = picture[5:15, 10:30]
    assert (labelled == red).all(-1).sum() > 20  # the label box above box 0


def test_score_threshold_hides_low_scores():
    image = torch.zeros(3, 40, 60)
    shown = np.asarray(draw_detections(image, _detections()))
    hidden = np.asarray(draw_detections(image, _detections(), score_threshold=0.5))
    green = np.array(PALETTE[2])
    assert (shown == green).all(-1).sum() > 0 and (hidden == green).all(-1).sum() == 0


def test_target_dicts_and_pil_images_are_accepted(tmp_path):
    target = {"boxes": torch.tensor([[2.0, 2.0, 8.0, 8.0]]), "labels": torch.tensor([3]),
              "masks": torch.ones(1, 10, 10, dtype=torch.uint8)}
    path = save_detections(Image.new("RGB", (10, 10), (255, 255, 255)), target, tmp_path / "t.png")
    with Image.open(path) as saved:
        picture = np.asarray(saved)
    assert saved.format == "PNG"
    expected = np.round(0.55 * 255 + 0.45 * np.array(PALETTE[3]))
    np.testing.assert_allclose(picture[9, 9], expected, atol=1)


def test_a_box_under_one_pixel_is_drawn_as_a_point():
    image = torch.zeros(3, 40, 60)
    tiny = {"boxes": torch.tensor([[20.8, 10.4, 21.0, 10.9]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1])}
    picture = np.asarray(draw_detections(image, tiny, label_names={1: "x"}))
    assert (picture[10, 20] == np.array(PALETTE[1])).all()
