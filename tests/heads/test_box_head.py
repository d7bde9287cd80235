"""RoI box stage: the seed's loss by hand, inference post-processing equal to torchvision's, RoI sampling rules."""

import math

import torch
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead

from objdet import fused
from objdet.boxes import box_iou
from objdet.heads.box_head import BoxPredictor, ConvFCHead, RoIBoxStage, RoISamples, TwoFCHead
from objdet.roi import MultiLevelRoIPooler


def _stage(**kw):
    return RoIBoxStage(MultiLevelRoIPooler(7, 2), TwoFCHead(4, 7, 16), BoxPredictor(16, 3), **kw)


def _smooth_l1(x, beta=1 / 9):
    x = x.abs()
    return torch.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta).sum()


def test_loss_hand_checked():
    stage = _stage()
    samples = RoISamples([torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 40.0]])],
                         [torch.tensor([2, 0])], [torch.tensor([0, 0])])
    targets = [{"boxes": torch.tensor([[1.0, 0.0, 11.0, 12.0]]), "labels": torch.tensor([2])}]
    logits = torch.tensor([[0.1, 0.2, 1.5, -0.3], [2.0, 0.0, 0.5, 0.1]])
    deltas = torch.zeros(2, 16)
    deltas[0, 8:12] = torch.tensor([0.5, 0.2, -0.1, 0.3])  # class 2's deltas for the positive RoI
    deltas[1] = 7.0  # a background RoI's deltas never count
    losses = stage.loss_terms(samples, logits, deltas, targets)
    ce = (-torch.log_softmax(logits[0], 0)[2] - torch.log_softmax(logits[1], 0)[0]) / 2
    # (tx, ty, tw, th) of gt [1, 0, 11, 12] w.r.t. RoI [0, 0, 10, 10], weighted (10, 10, 5, 5)
    target = torch.tensor([10 * 1 / 10, 10 * 1 / 10, 5 * math.log(1.0), 5 * math.log(12 / 10)])
    torch.testing.assert_close(losses["loss_classifier"], ce)
    torch.testing.assert_close(losses["loss_box_reg"], _smooth_l1(deltas[0, 8:12] - target) / 2)


def test_postprocess_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    stage = _stage(score_thresh=0.05, nms_thresh=0.5, detections_per_img=20)
    tv = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, (10.0, 10.0, 5.0, 5.0), 0.05, 0.5, 20)
    proposals = []
    for n in (40, 25):
        xy = torch.rand(n, 2, generator=g) * 80
        proposals.append(torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], 1))
    logits = torch.randn(65, 4, generator=g) * 2
    deltas = torch.randn(65, 16, generator=g)
    sizes = [(100, 110), (90, 120)]
    ours = stage.postprocess(logits, deltas, proposals, sizes)
    boxes, scores, labels = tv.postprocess_detections(logits, deltas, proposals, sizes)
    for d, b, s, lb in zip(ours, boxes, scores, labels):
        assert len(d["boxes"]) == len(b) > 0
        torch.testing.assert_close(d["boxes"], b)
        torch.testing.assert_close(d["scores"], s)
        assert torch.equal(d["labels"], lb)


def test_sampling_follows_fast_rcnn_rules():
    """64 RoIs, at most 25% foreground (IoU >= 0.5), background only from IoU in [0.1, 0.5), gt boxes included."""
    torch.manual_seed(0)
    stage = _stage(batch_size_per_image=64, positive_fraction=0.25, bg_iou_floor=0.1)
    gt = torch.tensor([[20.0, 20.0, 60.0, 60.0], [100.0, 30.0, 150.0, 90.0]])
    xy = torch.rand(2000, 2) * 160
    proposals = torch.cat([xy, xy + 10 + torch.rand(2000, 2) * 50], 1)
    s = stage.sample([proposals], [{"boxes": gt, "labels": torch.tensor([1, 3])}])
    boxes, labels, matched = s.boxes[0], s.labels[0], s.matched[0]
    iou = box_iou(gt, boxes).max(0).values
    assert len(boxes) == 64
    assert (labels > 0).sum() == 16
    assert torch.all(iou[labels > 0] >= 0.5) and torch.all((iou[labels == 0] >= 0.1) & (iou[labels == 0] < 0.5))
    assert torch.equal(labels[labels > 0], torch.tensor([1, 3])[matched[labels > 0]])
    assert torch.equal(box_iou(gt, boxes[labels > 0]).argmax(0), matched[labels > 0])


def test_heads_match_torchvision_layouts():
    x = torch.randn(3, 8, 7, 7)
    ours, tv = TwoFCHead(8, 7, 32), TwoMLPHead(8 * 49, 32)
    tv.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), tv(x))
    ours = ConvFCHead(8, 7, num_convs=2, conv_channels=16, fc=(32,), norm="BN").eval()
    tv = FastRCNNConvFCHead((8, 7, 7), [16, 16], [32], norm_layer=torch.nn.BatchNorm2d).eval()
    with torch.no_grad():
        for p in tv.parameters():
            p.normal_()
    sd = {f"convs.{k}": v for k, v in tv.state_dict().items() if k[0] in "01"}
    sd.update({f"fcs.0.{k[2:]}": v for k, v in tv.state_dict().items() if k.startswith("3.")})
    ours.load_state_dict(sd)
    with fused.disabled():  # the plain path: torchvision's arithmetic (tests/test_fused.py: the folded one)
        torch.testing.assert_close(ours(x), tv(x))
