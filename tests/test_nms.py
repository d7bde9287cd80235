"""NMS, per-class NMS and per-level top-k against plain Python reference implementations."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from objdet.errors import ConfigError
from objdet.nms import batched_nms, clamped_k, nms, topk_per_level


def py_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def py_nms(boxes, scores, threshold):
    """Greedy NMS: walk boxes by decreasing score, keep one unless it overlaps a kept box by > threshold."""
    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(py_iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


@st.composite
def scored_boxes(draw, max_n=25):
    """Integer-cornered boxes (heavily overlapping) with distinct scores, as float lists."""
    n = draw(st.integers(0, max_n))
    boxes = []
    for _ in range(n):
        x, y = draw(st.integers(0, 40)), draw(st.integers(0, 40))
        w, h = draw(st.integers(1, 30)), draw(st.integers(1, 30))
        boxes.append([float(x), float(y), float(x + w), float(y + h)])
    scores = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    return boxes, [s / 10**6 for s in scores]


def far_from_threshold(boxes, threshold):
    """float32 kernels and float64 Python agree unless some IoU lies within rounding of the threshold."""
    return all(
        abs(py_iou(a, b) - threshold) > 1e-5 for i, a in enumerate(boxes) for b in boxes[i + 1 :]
    )


@settings(max_examples=60, deadline=None)
@given(scored_boxes(), st.floats(0.05, 0.95))
def test_nms_matches_python_reference(data, threshold):
    boxes, scores = data
    assume(far_from_threshold(boxes, threshold))
    keep = nms(torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), threshold)
    assert keep.tolist() == py_nms(boxes, scores, threshold)


@settings(max_examples=40, deadline=None)
@given(scored_boxes(), st.floats(0.05, 0.95))
def test_nms_properties(data, threshold):
    """Kept boxes overlap each other by at most the threshold; each dropped box overlaps a better kept one."""
    boxes, scores = data
    assume(far_from_threshold(boxes, threshold))
    keep = nms(torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), threshold).tolist()
    assert [scores[i] for i in keep] == sorted((scores[i] for i in keep), reverse=True)
    for a in keep:
        assert all(py_iou(boxes[a], boxes[b]) <= threshold for b in keep if b != a)
    for d in set(range(len(boxes))) - set(keep):
        assert any(scores[k] > scores[d] and py_iou(boxes[k], boxes[d]) > threshold for k in keep)


@settings(max_examples=50, deadline=None)
@given(scored_boxes(), st.floats(0.05, 0.95), st.data())
def test_batched_nms_matches_per_class_reference(data, threshold, draw):
    boxes, scores = data
    assume(far_from_threshold(boxes, threshold))
    classes = draw.draw(st.lists(st.integers(0, 3), min_size=len(boxes), max_size=len(boxes)))
    expected = []
    for c in set(classes):
        members = [i for i in range(len(boxes)) if classes[i] == c]
        kept = py_nms([boxes[i] for i in members], [scores[i] for i in members], threshold)
        expected += [members[i] for i in kept]
    expected.sort(key=lambda i: -scores[i])
    keep = batched_nms(
        torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), torch.tensor(classes, dtype=torch.int64), threshold
    )
    assert keep.tolist() == expected


def test_identical_boxes_of_two_classes_both_survive_batched_nms():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2)
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([1, 2]), 0.5).tolist() == [0, 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=5), st.integers(0, 12), st.data())
def test_topk_per_level_matches_reference(level_sizes, k, data):
    n = sum(level_sizes)
    values = data.draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n, unique=True))
    scores = torch.tensor(values, dtype=torch.float32)
    expected, start = [], 0
    for size in level_sizes:
        level = range(start, start + size)
        expected += sorted(level, key=lambda i: -values[i])[:k]
        start += size
    assert topk_per_level(scores, level_sizes, k).tolist() == expected


def test_topk_per_level_batched_rows_match_single_rows():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 50, generator=g)
    sizes = [20, 20, 10]
    batched = topk_per_level(scores, sizes, 7)
    assert batched.shape == (3, 7 * 3)
    for row in range(3):
        assert torch.equal(batched[row], topk_per_level(scores[row], sizes, 7))


def test_topk_per_level_rejects_sizes_that_do_not_add_up():
    with pytest.raises(ConfigError, match="add up"):
        topk_per_level(torch.zeros(10), [4, 5], 3)


@pytest.mark.filterwarnings("ignore")  # tracer warnings about the threshold's Python value
def test_clamped_k_keeps_a_traced_top_k_count_dynamic():
    """Top-5 of the scores above 0.5, traced where more than 5 pass: the graph still runs where fewer pass."""

    def best_above_half(scores):
        passed = scores[scores > 0.5]
        return passed.topk(clamped_k(passed, 5)).values

    many, few = torch.linspace(0, 1, 20), torch.tensor([0.9, 0.1, 0.7, 0.2])
    assert clamped_k(many, 5) == 5 and clamped_k(few[few > 0.5], 5) == 2  # eager: min(k, size)
    traced = torch.jit.trace(best_above_half, (many,), check_trace=False)
    assert torch.equal(traced(few), torch.tensor([0.9, 0.7]))
    assert torch.equal(traced(many), torch.sort(many[many > 0.5], descending=True).values[:5])
