"""RPN: same proposals and losses as torchvision's RegionProposalNetwork with the same weights; loss by hand."""

import math

import torch
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork as TVRPN
from torchvision.models.detection.rpn import RPNHead as TVHead

from objdet.anchors import AnchorGenerator
from objdet.heads.rpn import RegionProposalNetwork, RPNHead

SIZES, RATIOS = ((16,), (32,)), ((0.5, 1.0, 2.0),) * 2


def _pair(channels=8, convs=1):
    torch.manual_seed(0)
    tv = TVRPN(TVAnchors(SIZES, RATIOS), TVHead(channels, 3, conv_depth=convs), 0.7, 0.3, 256, 0.5,
               dict(training=300, testing=200), dict(training=150, testing=100), 0.7)
    ours = RegionProposalNetwork(AnchorGenerator(SIZES, RATIOS), RPNHead(channels, 3, convs),
                                 pre_nms_top_n=(300, 200), post_nms_top_n=(150, 100))
    sd = tv.head.state_dict()
    mapped = {}
    for k, v in sd.items():
        k = k.replace("cls_logits", "objectness").replace("bbox_pred", "deltas")
        if k.startswith("conv."):  # torchvision's Conv2dNormActivation blocks map to ConvNormAct blocks
            k = "convs." + k[len("conv."):]
        mapped[k] = v
    ours.head.load_state_dict(mapped)
    return tv, ours


def _inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.zeros(2, 3, 96, 128)
    sizes = [(96, 120), (80, 128)]
    feats = [torch.randn(2, 8, 24, 32, generator=g), torch.randn(2, 8, 12, 16, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0], [60.0, 20.0, 100.0, 44.0]])},
        {"boxes": torch.tensor([[30.0, 30.0, 62.0, 70.0]])},
    ]
    return images, sizes, feats, targets


def test_proposals_equal_torchvision():
    for convs in (1, 2):
        tv, ours = _pair(convs=convs)
        images, sizes, feats, _ = _inputs()
        tv.eval(), ours.eval()
        ref, _ = tv(ImageList(images, sizes), {"0": feats[0], "1": feats[1]})
        got, losses = ours(images, sizes, feats)
        assert losses == {}
        for a, b in zip(got, ref):
            assert a.shape == b.shape and len(a) <= 100
            torch.testing.assert_close(a, b)


def test_training_losses_equal_torchvision():
    tv, ours = _pair()
    images, sizes, feats, targets = _inputs()
    tv.train(), ours.train()
    torch.manual_seed(5)
    ref_props, ref = tv(ImageList(images, sizes), {"0": feats[0], "1": feats[1]}, targets)
    torch.manual_seed(5)
    props, got = ours(images, sizes, feats, targets)
    for a, b in zip(props, ref_props):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(got["loss_objectness"], ref["loss_objectness"])
    torch.testing.assert_close(got["loss_rpn_box_reg"], ref["loss_rpn_box_reg"])


def test_loss_hand_checked():
    """Three anchors: one positive (IoU 0.9 >= 0.7), one negative (IoU 0), one ignored (IoU 0.5)."""
    _, rpn = _pair()
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([[0.0, 0.0, 10.0, 9.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 5.0]])
    logits = torch.tensor([[2.0, -1.0, 0.3]])
    deltas = torch.tensor([[[0.1, 0.0, 0.0, 0.5], [9.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]]])
    losses = rpn.loss(logits, deltas, anchors, [gt])
    bce = -math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(1.0)))
    h = 9.0
    target = torch.tensor([0.0, (5.0 - h / 2) / h, 0.0, math.log(10.0 / h)])
    diff = (deltas[0, 0] - target).abs()
    beta = 1 / 9
    sl1 = torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta).sum()
    torch.testing.assert_close(losses["loss_objectness"], torch.tensor(bce / 2))
    torch.testing.assert_close(losses["loss_rpn_box_reg"], sl1 / 2)


def test_no_ground_truth_gives_only_negatives():
    _, rpn = _pair()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    logits = torch.tensor([[0.5, -0.5]])
    losses = rpn.loss(logits, torch.zeros(1, 2, 4), anchors, [torch.zeros(0, 4)])
    torch.testing.assert_close(losses["loss_objectness"], F.binary_cross_entropy_with_logits(logits[0], torch.zeros(2)))
    assert losses["loss_rpn_box_reg"].item() == 0
