"""RoI operators against torchvision.ops and a plain per-bin reference written from the papers."""

import math
from collections import OrderedDict

import pytest
import torch
import torchvision

from objdet.errors import ConfigError
from objdet.roi import (MultiLevelRoIPooler, assign_levels, roi_align, roi_pool, roi_warp)


def _bilinear(feat, y, x):
    """One bilinear read of feat [C, H, W] at (y, x) with RoIAlign's border rules."""
    _, h, w = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(feat.shape[0], dtype=feat.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feat[:, y0, x0] + (1 - ly) * lx * feat[:, y0, x1]
            + ly * (1 - lx) * feat[:, y1, x0] + ly * lx * feat[:, y1, x1])


def reference_align(features, rois, out, scale, ratio, aligned):
    """RoIAlign by the definition: per RoI, per bin, a grid of bilinear samples; (avg, max)."""
    ph, pw = out
    avg = torch.zeros(len(rois), features.shape[1], ph, pw, dtype=features.dtype)
    mx = torch.zeros_like(avg)
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (v * scale - off for v in (x1, y1, x2, y2))
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = ratio if ratio > 0 else math.ceil(rh / ph)
        gw = ratio if ratio > 0 else math.ceil(rw / pw)
        for i in range(ph):
            for j in range(pw):
                samples = [_bilinear(features[int(b)], y1 + (i + (a + 0.5) / gh) * rh / ph,
                                     x1 + (j + (c + 0.5) / gw) * rw / pw)
                           for a in range(gh) for c in range(gw)]
                if samples:
                    stack = torch.stack(samples)
                    avg[k, :, i, j] = stack.sum(0) / max(gh * gw, 1)
                    mx[k, :, i, j] = stack.max(0).values
    return avg, mx


def reference_pool(features, rois, out, scale):
    """RoIPool by the definition: RoI rounded to cells, split in bins, max over each bin's cells."""
    ph, pw = out
    _, c, h, w = features.shape
    res = torch.zeros(len(rois), c, ph, pw, dtype=features.dtype)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy, ex, ey = (int(math.floor(v * scale + 0.5)) for v in (x1, y1, x2, y2))
        bh, bw = max(ey - sy + 1, 1) / ph, max(ex - sx + 1, 1) / pw
        for i in range(ph):
            for j in range(pw):
                hs = min(max(int(math.floor(i * bh)) + sy, 0), h)
                he = min(max(int(math.ceil((i + 1) * bh)) + sy, 0), h)
                ws = min(max(int(math.floor(j * bw)) + sx, 0), w)
                we = min(max(int(math.ceil((j + 1) * bw)) + sx, 0), w)
                if he > hs and we > ws:
                    res[k, :, i, j] = features[int(b), :, hs:he, ws:we].amax(dim=(1, 2))
    return res


def _case(seed=0, n=2, c=3, h=12, w=10, k=7, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    xy = torch.rand(k, 2, generator=gen, dtype=dtype) * torch.tensor([w * 8.0, h * 8.0], dtype=dtype)
    wh = torch.rand(k, 2, generator=gen, dtype=dtype) * 40 + 0.5
    boxes = torch.cat([xy - 6, xy + wh], dim=1)  # some start outside the image
    batch = torch.randint(0, n, (k, 1), generator=gen).to(dtype)
    return features, torch.cat([batch, boxes], dim=1)


@pytest.mark.parametrize("ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_avg_and_max_against_reference(ratio, aligned):
    features, rois = _case(seed=ratio + 3 * aligned)
    ref_avg, ref_max = reference_align(features, rois, (3, 4), 0.125, ratio, aligned)
    tv = torchvision.ops.roi_align(features, rois, (3, 4), 0.125, ratio, aligned)
    torch.testing.assert_close(ref_avg, tv, rtol=1e-5, atol=1e-5)  # the reference is right
    ours_avg = roi_align(features, rois, (3, 4), 0.125, ratio, aligned, mode="avg")
    torch.testing.assert_close(ours_avg, tv, rtol=1e-5, atol=1e-5)
    ours_max = roi_align(features, rois, (3, 4), 0.125, ratio, aligned, mode="max")
    torch.testing.assert_close(ours_max, ref_max, rtol=1e-5, atol=1e-5)
    assert (ours_max >= ours_avg - 1e-6).all()


def test_roi_pool_against_reference_and_torchvision():
    features, rois = _case(seed=5)
    ours = roi_pool(features, rois, 3, 0.125)
    torch.testing.assert_close(ours, reference_pool(features, rois, (3, 3), 0.125))
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(features, rois, (3, 3), 0.125))


def test_roi_pool_takes_bfloat16_features():
    """torchvision's CPU RoIPool has no bfloat16 kernel; under autocast ours pools in float32, and a max of
    bfloat16 values is exactly one of them, so the result equals float32 pooling of the same values."""
    features, rois = _case(seed=5)
    low = features.bfloat16()
    ours = roi_pool(low, rois, 3, 0.125)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), reference_pool(low.float(), rois, (3, 3), 0.125), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_roi_warp_is_align_on_rounded_rois(mode):
    features, rois = _case(seed=6)
    rounded = rois.clone()
    # floor(x + 0.5) is round-half-away-from-zero except at exact negative halves (not hit here)
    rounded[:, 1:] = torch.floor(rois[:, 1:] * 0.125 + 0.5)
    ref_avg, ref_max = reference_align(features, rounded, (3, 3), 1.0, 2, False)
    ours = roi_warp(features, rois, 3, 0.125, sampling_ratio=2, mode=mode)
    torch.testing.assert_close(ours, ref_max if mode == "max" else ref_avg, rtol=1e-5, atol=1e-5)
    # sub-cell shifts that do not change the rounding leave RoIWarp unchanged, unlike RoIAlign
    shifted = rois.clone()
    shifted[:, 1:] = rounded[:, 1:] / 0.125 + 0.3
    torch.testing.assert_close(roi_warp(features, shifted, 3, 0.125, 2, mode), ours)
    assert not torch.allclose(roi_align(features, shifted, 3, 0.125, 2, mode=mode), ours)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_gradient_is_torchvisions_bit_for_bit_at_any_thread_count(threads, aligned):
    """The CPU backward runs channel slices in parallel threads: same bits as torchvision's serial loop."""
    features, rois = _case(seed=11, c=7)
    grad = torch.randn(len(rois), 7, 3, 4, generator=torch.Generator().manual_seed(1))
    results = []
    before = torch.get_num_threads()
    try:
        for align, count in ((torchvision.ops.roi_align, 1), (roi_align, threads)):
            torch.set_num_threads(count)
            leaf = features.clone().requires_grad_(True)
            out = align(leaf, rois, (3, 4), 0.125, 2, aligned)
            out.backward(grad)
            results.append((out, leaf.grad))
    finally:
        torch.set_num_threads(before)
    (tv_out, tv_grad), (ours_out, ours_grad) = results
    assert torch.equal(ours_out, tv_out)
    assert ours_grad.abs().sum() > 0 and torch.equal(ours_grad, tv_grad)


def test_roi_align_gradients_are_numerical_and_reach_bfloat16_features():
    """The float32 detour for low-precision features keeps gradients flowing to the bfloat16 input, and the
    float64 gradient is the numerical one."""
    features, rois = _case(seed=12, n=1, c=3, h=6, w=5, k=4, dtype=torch.float64)
    features.requires_grad_(True)
    roi_align(features, rois, 2, 0.125, sampling_ratio=2).sum().backward()
    assert (features.grad != 0).sum() > 10  # the RoIs do cover the map
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, 0.125, sampling_ratio=2), (features,))
    low = features.detach().bfloat16().requires_grad_(True)
    roi_align(low, rois.float(), 2, 0.125, sampling_ratio=2).sum().backward()
    assert low.grad is not None and low.grad.dtype == torch.bfloat16 and low.grad.abs().sum() > 0


def test_max_variants_have_gradients():
    features, rois = _case(seed=7, n=1, c=2, h=6, w=5, k=3, dtype=torch.float64)
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f: roi_align(f, rois, 2, 0.25, sampling_ratio=2, aligned=True, mode="max"), (features,))
    assert torch.autograd.gradcheck(
        lambda f: roi_warp(f, rois, 2, 0.25, sampling_ratio=2, mode="max"), (features,))


def test_bad_input_raises_objdet_errors():
    features, rois = _case()
    with pytest.raises(ConfigError, match="rois"):
        roi_align(features, rois[:, 1:], 3, 1.0)
    with pytest.raises(ConfigError, match="median"):
        roi_align(features, rois, 3, 1.0, mode="median")
    with pytest.raises(ConfigError, match="kind"):
        MultiLevelRoIPooler(7, 2, kind="bilinear")


def test_assign_levels_closed_form():
    sides = torch.tensor([10.0, 111.9, 112.0, 150.0, 224.0, 447.0, 448.0, 896.0, 5000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    expected = [min(max(math.floor(4 + math.log2(s / 224) + 1e-6), 2), 5) for s in sides.tolist()]
    assert assign_levels(boxes, 2, 5).tolist() == expected
    assert expected[2] == 3 and expected[4] == 4 and expected[6] == 5  # exact powers land on k0+j


def _fpn_inputs(image_sizes, seed):
    gen = torch.Generator().manual_seed(seed)
    pad_h = max(s[0] for s in image_sizes)
    pad_w = max(s[1] for s in image_sizes)
    pad_h, pad_w = -(-pad_h // 32) * 32, -(-pad_w // 32) * 32
    feats = OrderedDict((str(i), torch.randn(len(image_sizes), 4, pad_h // 2 ** (i + 2),
                                             pad_w // 2 ** (i + 2), generator=gen))
                        for i in range(4))
    boxes = []
    for h, w in image_sizes:
        xy = torch.rand(12, 2, generator=gen) * torch.tensor([w * 0.3, h * 0.3])
        wh = torch.rand(12, 2, generator=gen) ** 2 * torch.tensor([w * 0.7, h * 0.7]) + 2
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    boxes[0][0] = torch.tensor([10.0, 10.0, 122.0, 122.0])  # exactly 112 px: the eps case
    boxes[0][1] = torch.tensor([0.0, 0.0, 300.0, 300.0])  # level 4
    boxes[0][2] = torch.tensor([5.0, 5.0, 465.0, 515.0])  # level 5
    return feats, boxes


@pytest.mark.parametrize("image_sizes", [[(520, 470), (400, 610)], [(130, 300)], [(64, 64)]])
def test_multilevel_pooler_matches_torchvision(image_sizes):
    feats, boxes = _fpn_inputs(image_sizes, seed=len(image_sizes))
    tv = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    expected = tv(feats, boxes, image_sizes)
    ours = MultiLevelRoIPooler(7, 2)(list(feats.values()), boxes, image_sizes)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    single = torchvision.ops.MultiScaleRoIAlign(["1"], (5, 3), 0)(feats, boxes, image_sizes)
    torch.testing.assert_close(MultiLevelRoIPooler((5, 3), 0)([feats["1"]], boxes, image_sizes),
                               single, rtol=0, atol=0)


def test_multilevel_pooler_other_kinds_use_the_same_levels():
    image_sizes = [(520, 470), (400, 610)]
    feats, boxes = _fpn_inputs(image_sizes, seed=9)
    feats = list(feats.values())
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1)
                      for i, b in enumerate(boxes)])
    levels = assign_levels(rois[:, 1:], 2, 5)
    assert len(set(levels.tolist())) >= 3  # the case exercises several levels
    for kind in ("pool", "align_max", "warp", "warp_avg"):
        out = MultiLevelRoIPooler(4, 2, kind=kind)(feats, boxes, image_sizes)
        for k, level in enumerate(levels.tolist()):
            scale = 2.0 ** -level
            one = rois[k:k + 1]
            if kind == "pool":
                expected = reference_pool(feats[level - 2], one, (4, 4), scale)
            else:
                if kind.startswith("warp"):
                    one = torch.cat([one[:, :1], torch.floor(one[:, 1:] * scale + 0.5)], 1)
                avg, mx = reference_align(feats[level - 2], one, (4, 4),
                                          1.0 if kind.startswith("warp") else scale, 2, False)
                expected = avg if kind == "warp_avg" else mx
            torch.testing.assert_close(out[k:k + 1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore")  # tracer warnings: the features and image sizes are frozen, as intended
def test_traced_multilevel_pooler_keeps_the_roi_count_dynamic():
    """The tracing (ONNX export) branch: traced on 12 RoIs, the graph pools 5 others like torchvision does."""
    image_sizes = [(520, 470)]
    feats, boxes = _fpn_inputs(image_sizes, seed=3)
    _, other = _fpn_inputs(image_sizes, seed=4)
    other = other[0][:5]
    assert len(set(assign_levels(other, 2, 5).tolist())) >= 3  # the selection picks among several levels
    pooler = MultiLevelRoIPooler(7, 2)
    traced = torch.jit.trace(lambda b: pooler(list(feats.values()), [b], image_sizes), (boxes[0],),
                             check_trace=False)
    expected = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, [other], image_sizes)
    torch.testing.assert_close(traced(other), expected, rtol=0, atol=0)
