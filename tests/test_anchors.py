"""Anchor generation against torchvision's AnchorGenerator and effdet's Anchors, bit for bit."""

import pytest
import torch
from effdet.anchors import Anchors as EffdetAnchors
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from objdet.anchors import AnchorGenerator, retinanet_sizes
from objdet.errors import ConfigError

RATIOS = (0.5, 1.0, 2.0)
EFFDET_RATIOS = [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)]
FASTER_RCNN_C4 = (((32, 64, 128, 256, 512),), (RATIOS,), (16,))
FPN = (((32,), (64,), (128,), (256,), (512,)), (RATIOS,) * 5, (4, 8, 16, 32, 64))
RETINANET = (tuple(retinanet_sizes(truncate=True)), (RATIOS,) * 5, (8, 16, 32, 64, 128))


def torchvision_anchors(sizes, ratios, image_size, feature_shapes, batch=2):
    images = ImageList(torch.zeros(batch, 3, *image_size), [tuple(image_size)] * batch)
    features = [torch.zeros(batch, 1, h, w) for h, w in feature_shapes]
    generator = TvAnchorGenerator(sizes, ratios)
    per_image = generator(images, features)
    assert all(torch.equal(per_image[0], other) for other in per_image[1:])
    return generator, per_image[0]


def ceil_shapes(image_size, strides):
    return [(-(-image_size[0] // s), -(-image_size[1] // s)) for s in strides]


def test_retinanet_sizes_match_torchvision_and_the_seed_formula():
    tv = [(x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512]]
    assert retinanet_sizes(truncate=True) == tv
    for level, sizes in zip(range(3, 8), retinanet_sizes()):
        assert sizes == pytest.approx([s * 4 * 2**level for s in (1, 2 ** (1 / 3), 2 ** (2 / 3))], rel=1e-12)


@pytest.mark.parametrize("config", [FASTER_RCNN_C4, FPN, RETINANET], ids=["faster_rcnn_c4", "fpn", "retinanet"])
@pytest.mark.parametrize("image_size", [(256, 320), (250, 333), (128, 96)])
def test_matches_torchvision_anchor_generator(config, image_size):
    sizes, ratios, strides = config
    shapes = ceil_shapes(image_size, strides)
    tv_generator, expected = torchvision_anchors(sizes, ratios, image_size, shapes)
    ours = AnchorGenerator(sizes, ratios)
    anchors = ours(image_size, shapes)
    assert anchors.dtype == torch.float32
    assert torch.equal(anchors, expected)
    assert ours.num_anchors_per_location() == tv_generator.num_anchors_per_location()
    for mine, theirs in zip(ours.cell_anchors, tv_generator.cell_anchors):
        assert torch.equal(mine, theirs)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(4, 600), min_size=1, max_size=3),
            st.lists(st.floats(0.2, 5), min_size=1, max_size=3),
            st.integers(1, 9),
            st.integers(1, 9),
        ),
        min_size=1,
        max_size=3,
    ),
    st.integers(1, 4),
)
def test_random_configs_match_torchvision(levels, scale):
    sizes = tuple(tuple(level[0]) for level in levels)
    ratios = tuple(tuple(level[1]) for level in levels)
    shapes = [(h, w) for _, _, h, w in levels]
    image_size = (max(h for h, _ in shapes) * 8 * scale, max(w for _, w in shapes) * 8 * scale)
    _, expected = torchvision_anchors(sizes, ratios, image_size, shapes, batch=1)
    assert torch.equal(AnchorGenerator(sizes, ratios)(image_size, shapes), expected)


def test_grid_anchors_are_ordered_y_x_anchor():
    generator = AnchorGenerator([(10.0, 20.0)], [(1.0,)])
    (anchors,) = generator.grid_anchors([(2, 3)], [(16, 8)])
    assert anchors.shape == (2 * 3 * 2, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    expected = [(x * 8.0, y * 16.0) for y in range(2) for x in range(3) for _ in range(2)]
    assert centres.tolist() == [list(c) for c in expected]
    assert (anchors[:, 2] - anchors[:, 0]).tolist() == [10.0, 20.0] * 6


def effdet_generator(anchor_scale=4.0):
    return AnchorGenerator(
        retinanet_sizes(anchor_scale=anchor_scale),
        [EFFDET_RATIOS] * 5,
        offset=0.5,
        round_base=False,
        size_major=True,
    )


@pytest.mark.parametrize("image_size", [(512, 512), (256, 384), (640, 128)])
@pytest.mark.parametrize("anchor_scale", [4.0, 3.0])
def test_matches_effdet_anchors(image_size, anchor_scale):
    reference = EffdetAnchors(3, 7, 3, EFFDET_RATIOS, anchor_scale, image_size)
    shapes = ceil_shapes(image_size, [2**level for level in range(3, 8)])
    anchors = effdet_generator(anchor_scale)(image_size, shapes)
    yxyx = reference.boxes
    assert torch.equal(anchors, yxyx[:, [1, 0, 3, 2]])
    assert effdet_generator().num_anchors_per_location() == [reference.get_anchors_per_location()] * 5


def test_effdet_convention_closed_form():
    """First P3 anchor of effdet D0: centre (4, 4), square of side 4 * 8 = 32; next: 1.4 x 0.7 of it."""
    anchors = effdet_generator()((512, 512), ceil_shapes((512, 512), [8, 16, 32, 64, 128]))
    torch.testing.assert_close(anchors[0], torch.tensor([-12.0, -12.0, 20.0, 20.0]))
    torch.testing.assert_close(anchors[1], torch.tensor([4 - 32 * 0.7, 4 - 16 * 0.7, 4 + 32 * 0.7, 4 + 16 * 0.7]))


def test_mismatched_levels_raise_config_error():
    with pytest.raises(ConfigError, match="levels"):
        AnchorGenerator([(32,), (64,)], [RATIOS])
    generator = AnchorGenerator([(32,), (64,)], [RATIOS] * 2)
    with pytest.raises(ConfigError, match="feature maps"):
        generator((64, 64), [(8, 8)])
    with pytest.raises(ConfigError, match="width, height"):
        AnchorGenerator([(32,)], [[(1.0, 2.0, 3.0)]])
