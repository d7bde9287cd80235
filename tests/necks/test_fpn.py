"""FPN against torchvision.ops.FeaturePyramidNetwork with the same weights (via the key mapping)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from objdet.errors import ConfigError
from objdet.necks.fpn import FPN, fpn_state_dict_from_torchvision

CHANNELS = {"C2": 16, "C3": 32, "C4": 64, "C5": 128}


def _features(keys, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # odd sizes: the top-down path must upsample to each lateral's exact shape
    sizes = {"C2": (33, 41), "C3": (17, 21), "C4": (9, 11), "C5": (5, 6)}
    return {k: torch.randn(2, CHANNELS[k], *sizes[k], generator=gen) for k in keys}


def _tv_fpn(keys, extra, norm):
    blocks = {None: None, "maxpool": LastLevelMaxPool(),
              "p6p7": LastLevelP6P7(CHANNELS[keys[-1]], 32), "p6p7_p5": LastLevelP6P7(32, 32)}
    norm_layer = (lambda c: nn.GroupNorm(32, c)) if norm == "GN" else None
    tv = FeaturePyramidNetwork([CHANNELS[k] for k in keys], 32, blocks[extra], norm_layer)
    for m in tv.modules():  # random norms, so a wrong mapping cannot hide behind identity init
        if isinstance(m, nn.GroupNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return tv


@pytest.mark.parametrize("keys,extra,norm", [
    (["C2", "C3", "C4", "C5"], "maxpool", None),
    (["C3", "C4", "C5"], "p6p7", None),
    (["C3", "C4", "C5"], "p6p7_p5", None),
    (["C2", "C3", "C4", "C5"], None, "GN"),
    (["C3", "C4", "C5"], "p6p7", "GN"),
])
def test_matches_torchvision_with_mapped_weights(keys, extra, norm):
    torch.manual_seed(1)
    tv = _tv_fpn(keys, extra, norm)
    ours = FPN({k: CHANNELS[k] for k in keys}, 32, extra=extra, norm=norm)
    ours.load_state_dict(fpn_state_dict_from_torchvision(tv.state_dict()))  # strict: all keys
    feats = _features(keys)
    expected = tv(OrderedDict((str(i), feats[k]) for i, k in enumerate(keys)))
    got = ours(feats)
    first = int(keys[0][1:])
    assert list(got) == [f"P{first + i}" for i in range(len(expected))] == ours.out_keys
    for g, e in zip(got.values(), expected.values()):
        torch.testing.assert_close(g, e)
        assert g.shape[1] == ours.out_channels


def test_p6_source_differs_between_variants():
    """"p6p7" reads C5 and "p6p7_p5" reads P5: the p6 conv's input channels tell them apart."""
    keys = {k: CHANNELS[k] for k in ("C3", "C4", "C5")}
    assert FPN(keys, 32, extra="p6p7").p6.in_channels == 128
    assert FPN(keys, 32, extra="p6p7_p5").p6.in_channels == 32


def test_key_mapping_detection_prefix_and_old_format():
    tv = _tv_fpn(["C2", "C3", "C4", "C5"], "maxpool", None)
    ours = FPN(CHANNELS, 32)
    old_format = {}
    for key, value in tv.state_dict().items():  # torchvision < 0.13 keys, as in older checkpoints
        old_format["backbone.fpn." + key.replace(".0.", ".", 1)] = value
    old_format["backbone.body.conv1.weight"] = torch.zeros(1)  # other keys are skipped
    ours.load_state_dict(fpn_state_dict_from_torchvision(old_format, prefix="backbone.fpn."))
    feats = _features(CHANNELS)
    expected = tv(OrderedDict((str(i), v) for i, v in enumerate(feats.values())))
    for g, e in zip(ours(feats).values(), expected.values()):
        torch.testing.assert_close(g, e)
    with pytest.raises(ConfigError, match="not a torchvision FPN key"):
        fpn_state_dict_from_torchvision({"fpn.head.weight": torch.zeros(1)}, prefix="fpn.")


def test_bad_config():
    with pytest.raises(ConfigError, match="extra"):
        FPN(CHANNELS, extra="p6")
    with pytest.raises(ConfigError, match="consecutive"):
        FPN({"C2": 16, "C4": 64})
