"""Matcher against torchvision's Matcher (ties included); fg/bg sampler counts, fractions and IoU floor."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection._utils import Matcher as TvMatcher

from objdet.boxes import box_iou
from objdet.errors import ConfigError
from objdet.matching import FgBgSampler, Matcher

THRESHOLDS = [(0.7, 0.3, True), (0.5, 0.4, True), (0.5, 0.5, False), (0.5, 0.4, False), (0.6, 0.6, True)]


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 40),
    st.sampled_from([4, 10, 1000]),
    st.sampled_from(THRESHOLDS),
    st.integers(0, 2**31 - 1),
)
def test_matches_torchvision_on_random_iou_with_ties(num_gt, num_anchors, levels, thresholds, seed):
    """IoUs quantised to few levels make ties across anchors and across ground truths common."""
    g = torch.Generator().manual_seed(seed)
    iou = torch.randint(0, levels + 1, (num_gt, num_anchors), generator=g).float() / levels
    ours = Matcher(*thresholds)(iou)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, TvMatcher(*thresholds)(iou))


def test_matches_torchvision_on_box_ious():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 200
    anchors = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 60 + 4], dim=1)
    gt = anchors[[3, 50, 51]] + torch.rand(3, 4, generator=g) * 8
    iou = box_iou(gt, anchors)
    for thresholds in THRESHOLDS:
        assert torch.equal(Matcher(*thresholds)(iou), TvMatcher(*thresholds)(iou))


def test_threshold_bands_and_best_anchor_per_object():
    iou = torch.tensor(
        [
            [0.80, 0.50, 0.45, 0.10, 0.00],
            [0.10, 0.20, 0.60, 0.20, 0.20],  # best anchors of gt 1: anchor 2 only
            [0.00, 0.00, 0.00, 0.25, 0.25],  # gt 2 tops out at 0.25, tied on anchors 3 and 4
        ]
    )
    assert Matcher(0.7, 0.3)(iou).tolist() == [0, -2, -2, -1, -1]
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou).tolist() == [0, -2, 1, 2, 2]


def test_no_ground_truth_is_all_background_and_no_anchors_is_empty():
    assert Matcher(0.5, 0.4, True)(torch.zeros(0, 7)).tolist() == [Matcher.BELOW_LOW] * 7
    assert Matcher(0.5, 0.4, True)(torch.zeros(3, 0)).shape == (0,)


def test_matcher_rejects_inverted_thresholds():
    with pytest.raises(ConfigError, match="low threshold"):
        Matcher(0.3, 0.7)


@pytest.mark.parametrize("batch, fraction", [(256, 0.5), (64, 0.25), (512, 0.25)])
def test_sampler_equals_torchvision_with_the_same_seed(batch, fraction):
    g = torch.Generator().manual_seed(batch)
    labels = [torch.randint(-1, 3, (n,), generator=g) for n in (1000, 40, 0)]
    torch.manual_seed(7)
    pos, neg = FgBgSampler(batch, fraction)(labels)
    torch.manual_seed(7)
    tv_pos, tv_neg = BalancedPositiveNegativeSampler(batch, fraction)(labels)
    for ours, theirs in zip(pos + neg, tv_pos + tv_neg):
        assert ours.dtype == torch.bool and torch.equal(ours, theirs.bool())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=3),
    st.integers(0, 128),
    st.floats(0, 1),
    st.sampled_from([0.0, 0.1]),
    st.integers(0, 2**31 - 1),
)
def test_sampler_counts_fractions_and_floor(sizes, batch, fraction, floor, seed):
    g = torch.Generator().manual_seed(seed)
    labels = [torch.randint(-1, 4, (n,), generator=g) for n in sizes]
    ious = [torch.rand(n, generator=g) for n in sizes]
    pos, neg = FgBgSampler(batch, fraction, bg_iou_floor=floor)(labels, ious)
    for lab, iou, p, n in zip(labels, ious, pos, neg):
        available_pos = int((lab >= 1).sum())
        available_neg = int(((lab == 0) & (iou >= floor)).sum())
        expected_pos = min(available_pos, int(batch * fraction))
        assert int(p.sum()) == expected_pos
        assert int(n.sum()) == min(available_neg, batch - expected_pos)
        assert not (p & n).any()
        assert (lab[p] >= 1).all()
        assert (lab[n] == 0).all() and (iou[n] >= floor).all()


def test_hard_negatives_lie_in_the_fast_rcnn_band():
    """Fast R-CNN: 25% foreground (IoU >= 0.5), the rest background with IoU in [0.1, 0.5)."""
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(2000, 2, generator=g) * 300
    rois = torch.cat([xy, xy + torch.rand(2000, 2, generator=g) * 80 + 10], dim=1)
    gt = torch.tensor([[50.0, 50.0, 120.0, 140.0], [150.0, 100.0, 260.0, 200.0]])
    iou = box_iou(gt, rois)
    matches = Matcher(0.5, 0.5)(iou)
    labels = (matches >= 0).long()  # 1 foreground, 0 background
    best = iou.max(dim=0).values
    pos, neg = FgBgSampler(64, 0.25, bg_iou_floor=0.1)([labels], [best])
    assert int(pos[0].sum()) == min(16, int(labels.sum()))
    assert int(neg[0].sum()) == 64 - int(pos[0].sum())
    assert (best[pos[0]] >= 0.5).all()
    assert ((best[neg[0]] >= 0.1) & (best[neg[0]] < 0.5)).all()


def test_sampler_draws_every_candidate_eventually():
    """The draw is random, not the first candidates: over repeated draws every negative is picked."""
    labels = torch.zeros(50, dtype=torch.int64)
    sampler = FgBgSampler(10, 0.5)
    seen = torch.zeros(50, dtype=torch.bool)
    torch.manual_seed(0)
    for _ in range(60):
        seen |= sampler([labels])[1][0]
    assert seen.all()


def test_sampler_floor_without_ious_is_a_config_error():
    with pytest.raises(ConfigError, match="floor"):
        FgBgSampler(64, 0.25, bg_iou_floor=0.1)([torch.zeros(5, dtype=torch.int64)])
