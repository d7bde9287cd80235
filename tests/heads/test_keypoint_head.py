"""Keypoint head: heatmap targets, softmax-over-positions loss and decoding, against torchvision and by hand."""

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints as tv_decode
from torchvision.models.detection.roi_heads import keypoints_to_heatmap

from objdet.heads.keypoint_head import KeypointHead, heatmaps_to_keypoints, keypoint_loss, keypoint_targets


def test_targets_equal_torchvision():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 90.0], [0.0, 0.0, 30.0, 30.0], [5.0, 5.0, 6.5, 9.0]])
    kp = torch.rand(3, 5, 3, generator=g) * 100
    kp[..., 2] = (torch.rand(3, 5, generator=g) > 0.3).float()
    kp[0, 0] = torch.tensor([50.0, 90.0, 1.0])  # on the right/bottom edge: the last cell
    index, valid = keypoint_targets(kp, boxes, 56)
    ref_index, ref_valid = keypoints_to_heatmap(kp, boxes, 56)
    assert torch.equal(valid, ref_valid.bool())
    assert torch.equal(index[valid], ref_index[valid])
    assert index[0, 0] == 56 * 56 - 1 and valid[0, 0]


def test_loss_is_cross_entropy_over_positions():
    logits = torch.randn(2, 3, 4, 4)
    index = torch.tensor([[0, 5, 15], [3, 3, 9]])
    valid = torch.tensor([[True, False, True], [True, True, False]])
    terms = [-torch.log_softmax(logits[r, k].flatten(), 0)[index[r, k]] for r in range(2) for k in range(3) if valid[r, k]]
    torch.testing.assert_close(keypoint_loss(logits, index, valid), torch.stack(terms).mean())
    assert keypoint_loss(logits, index, torch.zeros_like(valid)).item() == 0


def test_decode_equals_torchvision():
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(4, 3, 56, 56, generator=g)
    boxes = torch.tensor([[3.0, 4.0, 40.5, 60.2], [10.0, 10.0, 11.0, 11.0], [0.0, 0.0, 120.0, 80.0], [5.0, 6.0, 30.0, 9.0]])
    xy, scores = heatmaps_to_keypoints(maps, boxes)
    ref_xy, ref_scores = tv_decode(maps, boxes)
    torch.testing.assert_close(xy, ref_xy)
    torch.testing.assert_close(scores, ref_scores)


def test_decode_finds_a_peak():
    maps = torch.zeros(1, 1, 56, 56)
    maps[0, 0, 28, 14] = 10.0  # cell (x=14, y=28) of a 56x56 map over a 56x56 box at (100, 200)
    xy, _ = heatmaps_to_keypoints(maps, torch.tensor([[100.0, 200.0, 156.0, 256.0]]))
    torch.testing.assert_close(xy[0, 0], torch.tensor([114.5, 228.5, 1.0]))


def test_head_makes_56x56_heatmaps():
    head = KeypointHead(8, 5, num_convs=2, channels=16)
    out = head(torch.randn(2, 8, 14, 14))
    assert out.shape == (2, 5, 56, 56)
    low = head.deconv(head.convs(torch.ones(1, 8, 14, 14)))
    torch.testing.assert_close(head(torch.ones(1, 8, 14, 14)), F.interpolate(low, scale_factor=2, mode="bilinear"))
