"""EfficientNet trunk: C3..C5 at strides 8/16/32 with effdet's channel counts."""

import pytest
import torch
from effdet import create_model

from objdet.backbones.efficientnet import EfficientNetBackbone
from objdet.errors import ConfigError


@pytest.mark.parametrize("name", ["efficientnet_b0", "tf_efficientnet_b0"])
def test_levels_strides_and_channels(name, one_thread):
    trunk = EfficientNetBackbone(name).eval()
    with torch.device("meta"):
        ref = create_model("tf_efficientdet_d0", pretrained=False, pretrained_backbone=False)
    assert list(trunk.out_channels.values()) == ref.backbone.feature_info.channels()
    with torch.no_grad():
        out = trunk(torch.rand(1, 3, 96, 160))
    assert list(out) == ["C3", "C4", "C5"]
    assert [tuple(v.shape[1:]) for v in out.values()] == [(40, 12, 20), (112, 6, 10), (320, 3, 5)]


def test_same_padding_variant_differs_on_odd_sizes(one_thread):
    # the tf_ trunk pads like TensorFlow "same" (right/bottom first), so on odd sizes it is another function
    torch.manual_seed(0)
    tf, pt = EfficientNetBackbone("tf_efficientnet_b0").eval(), EfficientNetBackbone("efficientnet_b0").eval()
    pt.body.load_state_dict(tf.body.state_dict())
    x = torch.rand(1, 3, 33, 33)
    with torch.no_grad():
        assert tf(x)["C5"].shape == pt(x)["C5"].shape
        assert not torch.allclose(tf(x)["C5"], pt(x)["C5"])


def test_unknown_trunk_is_config_error():
    with pytest.raises(ConfigError):
        EfficientNetBackbone("resnet50")
    with pytest.raises(ConfigError):
        EfficientNetBackbone("efficientnet_b42")
