"""EfficientDet compound scaling: the seed's D0..D7 table row by row, and parameter counts."""

import math

import pytest
import torch
from effdet import create_model

import objdet
from objdet.errors import ConfigError
from objdet.detectors.efficientdet import efficientdet_scaling

# The seed's Table 1 (EfficientDet paper): R_input, backbone, W_bifpn, D_bifpn, D_class.
SEED_TABLE = {
    0: (512, "b0", 64, 3, 3),
    1: (640, "b1", 88, 4, 3),
    2: (768, "b2", 112, 5, 3),
    3: (896, "b3", 160, 6, 4),
    4: (1024, "b4", 224, 7, 4),
    5: (1280, "b5", 288, 7, 4),
    6: (1280, "b6", 384, 8, 5),
    7: (1536, "b6", 384, 8, 5),
}
# The seed's parameter counts (Table 2), in millions.
SEED_PARAMS = {0: 3.9, 1: 6.6, 2: 8.1, 3: 12, 4: 21, 5: 34, 6: 52, 7: 52}


@pytest.mark.parametrize("phi", range(8))
def test_scaling_reproduces_seed_table(phi):
    fields = efficientdet_scaling(phi)
    size, trunk, width, depth, head = SEED_TABLE[phi]
    assert fields["image_size"] == size
    assert fields["backbone"].endswith(f"efficientnet_{trunk}")
    assert (fields["fpn_channels"], fields["fpn_layers"], fields["head_depth"]) == (width, depth, head)


@pytest.mark.parametrize("phi", range(7))
def test_published_values_follow_the_formulas(phi):
    # the table's hand rounding stays close to the seed's formulas (D7 alone reuses D6's width)
    fields = efficientdet_scaling(phi)
    assert abs(fields["fpn_channels"] - 64 * 1.35**phi) / (64 * 1.35**phi) < 0.06
    assert fields["head_depth"] == 3 + math.floor(phi / 3)
    assert 0 <= (3 + phi) - fields["fpn_layers"] <= 1
    assert fields["image_size"] >= 512 + 128 * phi


@pytest.mark.parametrize("phi", [-1, 8])
def test_scaling_rejects_unknown_phi(phi):
    with pytest.raises(ConfigError):
        efficientdet_scaling(phi)


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("phi", range(8))
def test_parameter_counts_match_seed_and_effdet(phi):
    with torch.device("meta"):
        ours = objdet.build(f"efficientdet_d{phi}")
        ref = create_model(f"tf_efficientdet_d{phi}", pretrained=False, pretrained_backbone=False)
    assert _count(ours) == _count(ref)
    assert abs(_count(ours) / 1e6 - SEED_PARAMS[phi]) / SEED_PARAMS[phi] < 0.02


def test_zoo_lists_one_stage_models():
    names = objdet.list_models()
    for name in ["retinanet_r50_fpn", "retinanet_r18_fpn", *(f"efficientdet_d{i}" for i in range(8))]:
        assert name in names
