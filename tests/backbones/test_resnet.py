"""ResNet trunk against torchvision's detection backbone body, freezing rules and weight loading."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet34
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d as TvFrozenBN

from objdet.backbones.resnet import ResNetBackbone
from objdet import fused
from objdet.errors import CheckpointError, ConfigError
from objdet.norm import FrozenBatchNorm2d


@pytest.mark.parametrize("depth,trainable", [(18, 3), (50, 5), (34, 0)])
def test_matches_torchvision_detection_body(depth, trainable):
    torch.manual_seed(depth)
    ctor = getattr(__import__("torchvision.models", fromlist=["x"]), f"resnet{depth}")
    tv = _resnet_fpn_extractor(ctor(norm_layer=TvFrozenBN), trainable).eval()
    ours = ResNetBackbone(depth, norm="FrozenBN", trainable_layers=trainable).eval()
    tv_body = {f"body.{k}": v for k, v in tv.body.state_dict().items()}
    assert set(tv_body) == set(ours.state_dict())  # same key names, no renaming needed
    with torch.no_grad():  # randomise the frozen statistics so norms are not the identity
        for key, value in tv_body.items():
            if "running_var" in key or "bn" in key and key.endswith("weight"):
                value.uniform_(0.5, 1.5)
    ours.load_state_dict(tv_body)
    x = torch.randn(1, 3, 64, 96)
    expected = tv.body(x)
    with fused.disabled():  # the plain path: torchvision's arithmetic to the bit (tests/test_fused.py: the fused one)
        got = ours(x)
    assert list(got) == ["C2", "C3", "C4", "C5"]
    for i, key in enumerate(got):
        torch.testing.assert_close(got[key], expected[str(i)])
        assert got[key].shape[1] == ours.out_channels[key]
        assert got[key].shape[-2:] == (64 // 2 ** (i + 2), 96 // 2 ** (i + 2))
    tv_grad = {f"body.{n}": p.requires_grad for n, p in tv.body.named_parameters()}
    assert tv_grad == {n: p.requires_grad for n, p in ours.named_parameters()}


def test_norm_kinds():
    gn = ResNetBackbone(18, norm="GN", trainable_layers=5)
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in gn.modules())
    assert sum(isinstance(m, nn.GroupNorm) and m.num_groups == 32 for m in gn.modules()) == 20
    bn = ResNetBackbone(18, norm="BN", trainable_layers=5)
    assert all(p.requires_grad for p in bn.parameters())
    frozen = ResNetBackbone(18, norm="BN", trainable_layers=0)
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ConfigError, match="depth"):
        ResNetBackbone(42)
    with pytest.raises(ConfigError, match="trainable_layers"):
        ResNetBackbone(18, trainable_layers=6)


def test_imagenet_weights_load_from_local_file(tmp_path):
    net = resnet18()
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    ours = ResNetBackbone(18, norm="FrozenBN", weights=path)
    for name, value in net.state_dict().items():
        if not name.startswith("fc.") and not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(ours.state_dict()[f"body.{name}"], value)


def test_bad_weight_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ResNetBackbone(18, weights=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        ResNetBackbone(18, weights=garbage)
    r34 = tmp_path / "r34.pth"
    torch.save(resnet34().state_dict(), r34)
    with pytest.raises(CheckpointError, match="r34.pth.*unexpected layer1.2"):
        ResNetBackbone(18, weights=r34)
    r18 = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), r18)
    with pytest.raises(CheckpointError, match="running_mean"):
        ResNetBackbone(18, norm="GN", weights=r18)
    with pytest.raises(CheckpointError, match=r"record layer1.0.conv1.weight: shape \(64, 64, 3, 3\)"):
        ResNetBackbone(50, weights=r18)
