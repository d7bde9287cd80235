"""Mask head: pasting equals torchvision's, targets are crops of the ground truth, losses as the formulas."""

import math

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes

from objdet import fused
from objdet.heads.mask_head import FCNMaskHead, MLPMaskHead, mask_loss, mask_probs, mask_targets, paste_masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paste_masks_equals_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    h, w, n = 61, 89, 25
    masks = torch.rand(n, 1, 28, 28, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    ours = paste_masks(masks, boxes, (h, w))
    ref = paste_masks_in_image(masks, boxes, (h, w))
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_paste_masks_empty():
    assert paste_masks(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (10, 12)).shape == (0, 1, 10, 12)


def test_mask_targets_crop_the_ground_truth():
    gt = torch.zeros(2, 40, 40)
    gt[1, 10:20, 10:30] = 1  # a 20x10 rectangle in the second object's mask
    boxes = torch.tensor([[10.0, 10.0, 30.0, 20.0], [0.0, 25.0, 10.0, 35.0]])
    t = mask_targets(gt, boxes, torch.tensor([1, 1]), 28)
    assert t.shape == (2, 28, 28)
    assert torch.all(t[0, :20, :20] > 0.99)  # the box is the rectangle: foreground (up to the far half-pixel edge)
    assert torch.all(t[1] == 0)  # a box outside the rectangle: all background
    ref = project_masks_on_boxes(gt, boxes, torch.tensor([1, 1]), 28)
    torch.testing.assert_close(t, ref)


def test_sigmoid_mask_loss_uses_only_the_true_class():
    logits = torch.randn(3, 4, 5, 5)
    targets = (torch.rand(3, 5, 5) > 0.5).float()
    labels = torch.tensor([1, 3, 2])
    expected = 0.0
    for i in range(3):
        x, y = logits[i, labels[i]], targets[i]
        expected += (-(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x)))).mean() / 3
    torch.testing.assert_close(mask_loss(logits, targets, labels), expected)
    other = logits.clone()
    other[0, 2] += 5  # another class's channel does not change the per-class sigmoid loss
    torch.testing.assert_close(mask_loss(other, targets, labels), expected)
    assert mask_loss(other, targets, labels, softmax=True) != mask_loss(logits, targets, labels, softmax=True)


def test_softmax_mask_loss_is_multinomial_over_classes():
    logits = torch.randn(2, 3, 2, 2)
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
    labels = torch.tensor([2, 1])
    total = 0.0
    for i in range(2):
        for y in range(2):
            for x in range(2):
                cls = int(labels[i]) if targets[i, y, x] >= 0.5 else 0
                p = torch.softmax(logits[i, :, y, x], 0)
                total += -math.log(p[cls])
    torch.testing.assert_close(mask_loss(logits, targets, labels, softmax=True), torch.tensor(total / 8))
    probs = mask_probs(logits, labels, softmax=True)
    torch.testing.assert_close(probs[:, 0], torch.softmax(logits, 1)[torch.arange(2), labels])


def test_heads_output_28x28_per_class():
    x = torch.randn(2, 8, 14, 14)
    assert FCNMaskHead(8, 3, channels=16)(x).shape == (2, 4, 28, 28)
    assert FCNMaskHead(8, 3, channels=32, norm="GN")(x).shape == (2, 4, 28, 28)
    assert MLPMaskHead(8, 14, 3, hidden=32)(x).shape == (2, 4, 28, 28)
    assert mask_loss(torch.zeros(0, 4, 28, 28, requires_grad=True), torch.zeros(0, 28, 28),
                     torch.zeros(0, dtype=torch.long)).item() == 0


@pytest.mark.parametrize("norm", [None, "GN"])
def test_class_logits_equal_the_full_heads_rows(norm, one_thread):
    """The eval fast path computes each detection's own class only (deconv as one matmul, one logits row):
    equal to the plain head's K+1 maps gathered at the labels."""
    g = torch.Generator().manual_seed(0)
    head = FCNMaskHead(16, 5, channels=32, norm=norm).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    x = torch.randn(7, 16, 14, 14, generator=g)
    labels = torch.tensor([1, 2, 3, 4, 5, 0, 2])
    with torch.no_grad():
        got = head.class_logits(x, labels)
        with fused.disabled():
            assert head.class_logits(x, labels) is None  # the plain path runs the whole head
            full = head(x)
        assert head.class_logits(x[:0], labels[:0]).shape == (0, 1, 28, 28)
    expected = full.gather(1, labels.view(-1, 1, 1, 1).expand(-1, 1, 28, 28))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, full[:, :1], atol=1e-2)  # the labels matter: the comparison can fail
    torch.testing.assert_close(mask_probs(full, labels), got.sigmoid(), rtol=1e-4, atol=1e-5)
