"""Norm layers against torchvision's FrozenBatchNorm2d and torch's BatchNorm2d, and BN folding."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.ops.misc import FrozenBatchNorm2d as TvFrozenBN

from objdet.errors import ConfigError
from objdet.norm import FrozenBatchNorm2d, fold_frozen_batchnorms, fold_frozen_bn, make_norm


def _random_bn_state(c: int, gen: torch.Generator) -> dict:
    return {
        "weight": torch.rand(c, generator=gen) + 0.5,
        "bias": torch.randn(c, generator=gen),
        "running_mean": torch.randn(c, generator=gen),
        "running_var": torch.rand(c, generator=gen) + 0.1,
        "num_batches_tracked": torch.tensor(7),
    }


def test_frozen_bn_matches_torchvision_and_eval_batchnorm():
    gen = torch.Generator().manual_seed(0)
    state = _random_bn_state(6, gen)
    ours, tv, bn = FrozenBatchNorm2d(6), TvFrozenBN(6), nn.BatchNorm2d(6).eval()
    ours.load_state_dict(dict(state))  # num_batches_tracked is accepted and dropped
    tv.load_state_dict(dict(state))
    bn.load_state_dict(dict(state))
    x = torch.randn(2, 6, 5, 4, generator=gen)
    torch.testing.assert_close(ours(x), tv(x))
    torch.testing.assert_close(ours(x), bn(x), rtol=1e-5, atol=1e-5)
    assert set(ours.state_dict()) == set(tv.state_dict())
    assert not list(ours.parameters())


def test_make_norm_kinds():
    assert isinstance(make_norm("BN", 64), nn.BatchNorm2d)
    assert isinstance(make_norm("FrozenBN", 64), FrozenBatchNorm2d)
    gn = make_norm("GN", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32 and gn.num_channels == 64
    assert isinstance(make_norm(None, 64), nn.Identity)
    with pytest.raises(ConfigError, match="LayerNorm"):
        make_norm("LayerNorm", 64)
    with pytest.raises(ConfigError, match="divisible"):
        make_norm("GN", 48)


@pytest.mark.parametrize("bias", [False, True])
def test_fold_single_conv(bias):
    gen = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=bias)
    bn = FrozenBatchNorm2d(8)
    bn.load_state_dict(_random_bn_state(8, gen))
    x = torch.randn(2, 3, 9, 7, generator=gen)
    folded = fold_frozen_bn(conv, bn)
    torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_fold_whole_resnet_same_outputs():
    gen = torch.Generator().manual_seed(2)
    net = resnet18(norm_layer=FrozenBatchNorm2d).eval()
    for m in net.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.load_state_dict(_random_bn_state(m.num_features, gen))
    net = net.double()  # float64 so 20 stacked layers compare to a tight tolerance
    x = torch.randn(1, 3, 64, 64, generator=gen, dtype=torch.float64)
    expected = net(x)
    fold_frozen_batchnorms(net)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    torch.testing.assert_close(net(x), expected, rtol=1e-9, atol=1e-9)
