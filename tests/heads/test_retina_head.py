"""RetinaNet subnets against torchvision's heads (same weights), and the prior-probability bias."""

import math

import pytest
import torch
from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead
from functools import partial

from objdet.detectors.dense import flatten_levels
from objdet.heads.retina_head import RetinaSubnet


def _copy(ours, conv_seq, predictor):
    with torch.no_grad():
        for mine, theirs in zip(ours.convs, conv_seq):
            for a, b in zip(mine, theirs):
                for name, p in a.named_parameters():
                    p.copy_(getattr(b, name))
        ours.predict.weight.copy_(predictor.weight)
        ours.predict.bias.copy_(predictor.bias)


@pytest.mark.parametrize("norm", [None, "GN"])
def test_subnets_equal_torchvision_heads(norm, one_thread):
    torch.manual_seed(0)
    norm_layer = None if norm is None else partial(torch.nn.GroupNorm, 32)
    cls_ref = RetinaNetClassificationHead(64, 9, 7, norm_layer=norm_layer)
    box_ref = RetinaNetRegressionHead(64, 9, norm_layer=norm_layer)
    cls, box = RetinaSubnet(64, 9, 7, norm=norm, prior_prob=0.01), RetinaSubnet(64, 9, 4, norm=norm)
    _copy(cls, cls_ref.conv, cls_ref.cls_logits)
    _copy(box, box_ref.conv, box_ref.bbox_reg)
    features = [torch.randn(2, 64, 12, 10), torch.randn(2, 64, 6, 5), torch.randn(2, 64, 3, 3)]
    with torch.no_grad():
        torch.testing.assert_close(flatten_levels(cls(features), 7), cls_ref(features))
        torch.testing.assert_close(flatten_levels(box(features), 4), box_ref(features))


def test_prior_initialisation():
    cls = RetinaSubnet(32, 9, 3, prior_prob=0.01)
    box = RetinaSubnet(32, 9, 4)
    # every class starts at probability pi = 0.01 (the seed's imbalance fix); boxes start unbiased
    torch.testing.assert_close(torch.sigmoid(cls.predict.bias), torch.full((27,), 0.01))
    assert (box.predict.bias == 0).all()
    assert math.isclose(cls.predict.bias[0].item(), -math.log(99), rel_tol=1e-6)


def test_gn_option_and_depth():
    sub = RetinaSubnet(64, 9, 3, depth=2, norm="GN")
    assert len(sub.convs) == 2
    assert isinstance(sub.convs[0][1], torch.nn.GroupNorm) and sub.convs[0][0].bias is None
    plain = RetinaSubnet(64, 9, 3)
    assert len(plain.convs) == 4 and plain.convs[0][0].bias is not None
