"""EfficientDet head against effdet's HeadNet with the same weights."""

import pytest
import torch
from effdet import get_efficientdet_config
from effdet.efficientdet import HeadNet

from objdet.heads.effdet_head import EffDetHead
from objdet.weights.effdet import _head_key


@pytest.mark.parametrize("num_outputs", [4, 6])
@pytest.mark.parametrize("redundant_bias", [True, False])
def test_head_equals_effdet_headnet(num_outputs, redundant_bias, one_thread):
    torch.manual_seed(0)
    config = get_efficientdet_config("tf_efficientdet_d0")
    config.redundant_bias = redundant_bias
    ref = HeadNet(config, num_outputs=num_outputs).eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.3, 0.3)
    ours = EffDetHead(64, num_outputs, num_anchors=9, depth=3, num_levels=5, conv_bias=redundant_bias).eval()
    prefix = "box_net." if num_outputs == 4 else "class_net."
    state = {_head_key(prefix + k).split(".", 1)[1]: v for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    features = [torch.randn(2, 64, s, s) for s in (16, 8, 4, 2, 1)]
    with torch.no_grad():
        for a, b in zip(ours(features), ref(features)):
            torch.testing.assert_close(a, b)


def test_levels_have_their_own_batchnorm_but_share_convs():
    head = EffDetHead(16, 4, num_anchors=9, depth=3, num_levels=5)
    assert len(head.convs) == 3 and all(len(level_norms) == 5 for level_norms in head.norms)
    assert len({id(bn) for level_norms in head.norms for bn in level_norms}) == 15


def test_class_prior_bias():
    head = EffDetHead(16, 3, num_anchors=9, depth=1, num_levels=5, prior_prob=0.01)
    torch.testing.assert_close(torch.sigmoid(head.predict.pointwise.bias), torch.full((27,), 0.01))
