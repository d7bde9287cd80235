"""Box formats, area, IoU, clipping and the BoxCoder, against torchvision and closed forms."""

import math

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TvBoxCoder

from objdet.boxes import BOX_FORMATS, BoxCoder, box_area, box_convert, box_iou, clip_boxes, remove_small_boxes
from objdet.errors import ConfigError

coords = st.floats(min_value=-500, max_value=500, allow_nan=False, width=32)
sizes = st.floats(min_value=0.5, max_value=300, allow_nan=False, width=32)


@st.composite
def xyxy_boxes(draw, min_n=0, max_n=12, size=sizes):
    """A [N, 4] float32 tensor of valid xyxy boxes (positive widths and heights)."""
    n = draw(st.integers(min_n, max_n))
    rows = [
        (x, y, x + w, y + h)
        for x, y, w, h in (draw(st.tuples(coords, coords, size, size)) for _ in range(n))
    ]
    return torch.tensor(rows, dtype=torch.float32).reshape(n, 4)


def random_boxes(n, generator, scale=100.0, min_size=1.0):
    xy = torch.rand(n, 2, generator=generator) * scale
    wh = torch.rand(n, 2, generator=generator) * scale + min_size
    return torch.cat([xy, xy + wh], dim=1)


@settings(max_examples=40, deadline=None)
@given(xyxy_boxes(), st.sampled_from(BOX_FORMATS), st.sampled_from(BOX_FORMATS))
def test_convert_matches_torchvision_and_inverts(boxes, in_fmt, out_fmt):
    source = torchvision.ops.box_convert(boxes, "xyxy", in_fmt)
    converted = box_convert(source, in_fmt, out_fmt)
    torch.testing.assert_close(converted, torchvision.ops.box_convert(source, in_fmt, out_fmt), rtol=0, atol=1e-4)
    torch.testing.assert_close(box_convert(converted, out_fmt, in_fmt), source, rtol=1e-6, atol=1e-3)


def test_convert_closed_form():
    box = torch.tensor([[10.0, 20.0, 40.0, 80.0]])
    assert box_convert(box, "xyxy", "xywh").tolist() == [[10.0, 20.0, 30.0, 60.0]]
    assert box_convert(box, "xyxy", "cxcywh").tolist() == [[25.0, 50.0, 30.0, 60.0]]
    assert box_convert(torch.tensor([[25.0, 50.0, 30.0, 60.0]]), "cxcywh", "xyxy").tolist() == box.tolist()


def test_convert_rejects_unknown_format_and_bad_shape():
    with pytest.raises(ConfigError, match="yxyx"):
        box_convert(torch.zeros(2, 4), "yxyx", "xyxy")
    with pytest.raises(ValueError, match=r"\[..., 4\]"):
        box_convert(torch.zeros(2, 5), "xyxy", "xywh")


@settings(max_examples=30, deadline=None)
@given(xyxy_boxes())
def test_area_matches_torchvision_and_width_times_height(boxes):
    area = box_area(boxes)
    assert torch.equal(area, torchvision.ops.box_area(boxes))
    xywh = box_convert(boxes, "xyxy", "xywh")
    torch.testing.assert_close(area, xywh[:, 2] * xywh[:, 3])


@settings(max_examples=40, deadline=None)
@given(xyxy_boxes(), xyxy_boxes())
def test_iou_matches_torchvision_is_symmetric_and_bounded(a, b):
    iou = box_iou(a, b)
    assert iou.shape == (len(a), len(b))
    assert torch.equal(iou, torchvision.ops.box_iou(a, b))
    torch.testing.assert_close(iou, box_iou(b, a).T)
    assert ((iou >= 0) & (iou <= 1 + 1e-6)).all()


@settings(max_examples=30, deadline=None)
@given(xyxy_boxes(min_n=1))
def test_iou_with_itself_is_one(boxes):
    torch.testing.assert_close(box_iou(boxes, boxes).diagonal(), torch.ones(len(boxes)))


@settings(max_examples=50, deadline=None)
@given(
    st.floats(1, 100), st.floats(1, 100), st.floats(0, 1), st.floats(0, 1)
)
def test_iou_of_shifted_box_closed_form(w, h, fx, fy):
    """A w x h box shifted by (dx, dy) inside its own size: inter = (w-dx)(h-dy), union = 2wh - inter."""
    dx, dy = fx * w, fy * h
    a = torch.tensor([[0.0, 0.0, w, h]], dtype=torch.float64)
    b = torch.tensor([[dx, dy, dx + w, dy + h]], dtype=torch.float64)
    inter = (w - dx) * (h - dy)
    expected = inter / (2 * w * h - inter)
    assert box_iou(a, b).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_iou_of_disjoint_and_nested_boxes():
    outer = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    inner = torch.tensor([[2.0, 2.0, 7.0, 7.0]])
    far = torch.tensor([[20.0, 20.0, 30.0, 30.0]])
    assert box_iou(outer, inner).item() == pytest.approx(25 / 100)
    assert box_iou(outer, far).item() == 0.0


@settings(max_examples=30, deadline=None)
@given(xyxy_boxes(), st.integers(1, 400), st.integers(1, 400))
def test_clip_matches_torchvision_and_stays_inside(boxes, h, w):
    clipped = clip_boxes(boxes, (h, w))
    assert torch.equal(clipped, torchvision.ops.clip_boxes_to_image(boxes, (h, w)))
    assert (clipped[:, 0::2] >= 0).all() and (clipped[:, 0::2] <= w).all()
    assert (clipped[:, 1::2] >= 0).all() and (clipped[:, 1::2] <= h).all()
    inside = (boxes[:, :2] >= 0).all(1) & (boxes[:, 2] <= w) & (boxes[:, 3] <= h)
    assert torch.equal(clipped[inside], boxes[inside])


@settings(max_examples=30, deadline=None)
@given(xyxy_boxes(size=st.floats(0, 20, width=32)), st.floats(0, 15, width=32))
def test_remove_small_matches_torchvision(boxes, min_size):
    keep = remove_small_boxes(boxes, min_size)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, torchvision.ops.remove_small_boxes(boxes, min_size))
    sides = box_convert(boxes, "xyxy", "xywh")[:, 2:]
    expected = [i for i in range(len(boxes)) if sides[i].min().item() >= min_size]
    assert keep.tolist() == expected


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 7.0, 0.5)])
@pytest.mark.parametrize("k", [1, 3])
def test_decode_equals_torchvision_exactly(weights, k):
    g = torch.Generator().manual_seed(k + int(sum(weights)))
    reference = random_boxes(200, g)
    deltas = torch.randn(200, 4 * k, generator=g) * 3
    deltas[:5] = 40.0  # beyond the clamp: exp must not overflow
    ours = BoxCoder(weights).decode(deltas, reference)
    theirs = TvBoxCoder(weights).decode_single(deltas, reference)
    assert ours.shape == (200, 4 * k)
    assert torch.equal(ours, theirs)
    assert torch.isfinite(ours).all()


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_equals_torchvision(weights):
    g = torch.Generator().manual_seed(3)
    boxes, reference = random_boxes(100, g), random_boxes(100, g)
    torch.testing.assert_close(
        BoxCoder(weights).encode(boxes, reference), TvBoxCoder(weights).encode_single(boxes, reference)
    )


def test_encode_closed_form():
    """Shift the reference by its own width and double its height: t = (w_x, 0.5 w_y, 0, w_h log 2)."""
    reference = torch.tensor([[10.0, 10.0, 30.0, 50.0]])  # centre (20, 30), 20 x 40
    box = torch.tensor([[30.0, -10.0, 50.0, 70.0]])  # centre (40, 30), 20 x 80
    deltas = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(box, reference)
    torch.testing.assert_close(deltas, torch.tensor([[10.0, 0.0, 0.0, 5.0 * math.log(2.0)]]))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 10000),
    st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]),
)
def test_encode_decode_round_trip(seed, weights):
    g = torch.Generator().manual_seed(seed)
    # sizes within a factor 10 of each other, so log(w / w_r) stays below the clamp
    reference = random_boxes(30, g, min_size=10.0)
    boxes = random_boxes(30, g, min_size=10.0)
    coder = BoxCoder(weights)
    torch.testing.assert_close(coder.decode(coder.encode(boxes, reference), reference), boxes, rtol=1e-5, atol=1e-3)
    deltas = torch.randn(30, 4, generator=g) * 0.5 * torch.tensor(weights)
    torch.testing.assert_close(coder.encode(coder.decode(deltas, reference), reference), deltas, rtol=1e-4, atol=1e-4)


def test_decode_clamps_log_sizes():
    reference = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    boxes = BoxCoder(clamp=math.log(1000.0 / 16)).decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), reference)
    torch.testing.assert_close(box_convert(boxes, "xyxy", "cxcywh"), torch.tensor([[8.0, 8.0, 1000.0, 1000.0]]))


def test_box_coder_rejects_bad_weights_and_shapes():
    with pytest.raises(ConfigError):
        BoxCoder((1.0, 1.0, 1.0))
    with pytest.raises(ConfigError):
        BoxCoder((1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="4k"):
        BoxCoder().decode(torch.zeros(3, 5), torch.zeros(3, 4))
