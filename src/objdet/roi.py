"""RoI feature extraction: RoIPool, RoIWarp, RoIAlign (avg | max) and the FPN multi-level pooler.

``rois`` rows are ``(batch_index, x1, y1, x2, y2)`` in image pixels; ``spatial_scale`` maps image
pixels to feature cells (1/stride). The Mask R-CNN ablation (seed, Table 2c) compares:
RoIPool (quantised, max), RoIWarp (quantised RoI, bilinear, max | avg), RoIAlign (bilinear, max | avg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from objdet.boxes import box_area
from objdet.errors import ConfigError

POOLER_KINDS = ("align", "align_max", "pool", "warp", "warp_avg")
_ROIS_PER_THREAD = 32  # below this many RoIs per thread, starting threads costs more than it saves


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_rois(rois: Tensor) -> None:
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ConfigError(f"rois must be [K, 5] rows (batch_index, x1, y1, x2, y2), got "
                          f"{tuple(rois.shape)}", record="rois")


def _pooled_in_float32(op, features: Tensor, rois: Tensor, *args) -> Tensor:
    """torchvision's `op` on float32 copies of features and RoIs, cast back to the features' dtype."""
    return op(features.float(), rois.float(), *args).to(features.dtype)


def roi_pool(features: Tensor, rois: Tensor, output_size: int | Sequence[int],
             spatial_scale: float) -> Tensor:
    """RoIPool (Fast R-CNN): max over bins of the RoI rounded to feature cells -> ``[K, C, h, w]``.

    torchvision's CPU kernel has no bfloat16 version, so reduced-precision features (autocast) are pooled
    in float32; a max is exact in either precision, so the result is cast back.
    """
    _check_rois(rois)
    if features.dtype in (torch.bfloat16, torch.float16):
        return _pooled_in_float32(torchvision.ops.roi_pool, features, rois, _pair(output_size), spatial_scale)
    return torchvision.ops.roi_pool(features, rois, _pair(output_size), spatial_scale)


def _bilinear_gather(flat: Tensor, batch: Tensor, ys: Tensor, xs: Tensor, height: int,
                     width: int) -> Tensor:
    """Bilinear samples at the grid ``ys [K, h] x xs [K, w]`` of image ``batch [K]`` -> [K, h, w, C].

    ``flat`` is the feature map as ``[N * H * W, C]``. Edge rules are RoIAlign's: points more than
    one cell outside the map read 0, points in the border cell read the clamped edge.
    """
    def axis(coord: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        inside = (coord >= -1.0) & (coord <= size)
        coord = coord.clamp(min=0.0)
        low = coord.floor().long()
        edge = low >= size - 1
        low = torch.where(edge, size - 1, low)
        high = torch.where(edge, size - 1, low + 1)
        frac = torch.where(edge, torch.zeros_like(coord), coord - low.to(coord.dtype))
        return low, high, frac, inside

    y_lo, y_hi, ly, y_in = axis(ys, height)
    x_lo, x_hi, lx, x_in = axis(xs, width)
    base = (batch * height * width)[:, None, None]

    def read(yi: Tensor, xi: Tensor) -> Tensor:
        return flat[base + yi[:, :, None] * width + xi[:, None, :]]

    wy_lo, wy_hi = (1 - ly)[:, :, None, None], ly[:, :, None, None]
    wx_lo, wx_hi = (1 - lx)[:, None, :, None], lx[:, None, :, None]
    out = (read(y_lo, x_lo) * wy_lo * wx_lo + read(y_lo, x_hi) * wy_lo * wx_hi
           + read(y_hi, x_lo) * wy_hi * wx_lo + read(y_hi, x_hi) * wy_hi * wx_hi)
    inside = (y_in[:, :, None] & x_in[:, None, :])[..., None]
    return out * inside.to(out.dtype)


def _roi_align_max(features: Tensor, rois: Tensor, output_size: tuple[int, int],
                   spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
    """RoIAlign with max instead of mean over each bin's bilinear samples (same sample points).

    Vectorised over RoIs and bins; the loop runs over the sample positions inside a bin only
    (at most ``sampling_ratio**2``, or the largest adaptive grid), keeping a running maximum.
    """
    n, c, height, width = features.shape
    ph, pw = output_size
    rois = rois.detach().to(features.dtype)
    batch = rois[:, 0].long()
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / pw, roi_h / ph
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(roi_h, float(sampling_ratio))
    else:
        grid_h, grid_w = torch.ceil(roi_h / ph), torch.ceil(roi_w / pw)
    flat = features.permute(0, 2, 3, 1).reshape(n * height * width, c)
    bins_y = torch.arange(ph, dtype=rois.dtype, device=rois.device)
    bins_x = torch.arange(pw, dtype=rois.dtype, device=rois.device)
    best = features.new_full((rois.shape[0], ph, pw, c), float("-inf"))
    steps_h = int(grid_h.max()) if len(rois) else 0
    steps_w = int(grid_w.max()) if len(rois) else 0
    for iy in range(steps_h):
        ys = y1[:, None] + bins_y * bin_h[:, None] + ((iy + 0.5) * bin_h / grid_h)[:, None]
        for ix in range(steps_w):
            xs = x1[:, None] + bins_x * bin_w[:, None] + ((ix + 0.5) * bin_w / grid_w)[:, None]
            vals = _bilinear_gather(flat, batch, ys, xs, height, width)
            valid = ((iy < grid_h) & (ix < grid_w))[:, None, None, None]
            best = torch.maximum(best, torch.where(valid, vals, float("-inf")))
    best = torch.where(torch.isinf(best), torch.zeros_like(best), best)  # bins with no sample
    return best.permute(0, 3, 1, 2)


class _ThreadedRoIAlign(torch.autograd.Function):
    """torchvision's RoIAlign with its CPU backward run on slices of the channels in parallel threads.

    That backward is one serial loop, up to a quarter of a small Faster R-CNN's training step. Channels do not
    mix, so each slice's gradient is bit for bit the matching slice of the serial one.
    """

    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.settings = (features.shape, size, spatial_scale, sampling_ratio, aligned)
        return torch.ops.torchvision.roi_align(features, rois, spatial_scale, *size, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors
        (batch, _, height, width), size, spatial_scale, sampling_ratio, aligned = ctx.settings

        def slice_grad(part: Tensor) -> Tensor:
            return torch.ops.torchvision._roi_align_backward(
                part.contiguous(), rois, spatial_scale, *size, batch, part.shape[1], height, width,
                sampling_ratio, aligned)

        parts = grad.chunk(torch.get_num_threads(), dim=1)
        if len(parts) == 1:
            return slice_grad(grad), None, None, None, None, None
        with ThreadPoolExecutor(len(parts)) as pool:  # the kernel releases the GIL
            return torch.cat(list(pool.map(slice_grad, parts)), 1), None, None, None, None, None


def _roi_align_avg(features: Tensor, rois: Tensor, size: tuple[int, int], spatial_scale: float,
                   sampling_ratio: int, aligned: bool) -> Tensor:
    """torchvision's RoIAlign, with its CPU loops (a serial loop over RoIs forward, over channels backward)
    spread over `torch.get_num_threads()` threads; each RoI and channel is computed as before, bit for bit."""
    cpu = features.device.type == "cpu" and not torch.jit.is_tracing()
    if cpu and features.requires_grad and torch.is_grad_enabled():
        return _ThreadedRoIAlign.apply(features, rois, size, spatial_scale, sampling_ratio, aligned)
    threads = min(torch.get_num_threads(), len(rois) // _ROIS_PER_THREAD)
    if cpu and threads > 1:
        features = features.contiguous()  # the kernel's own copy, made once for all threads

        def part(chunk: Tensor) -> Tensor:
            return torchvision.ops.roi_align(features, chunk, size, spatial_scale, sampling_ratio, aligned)

        with ThreadPoolExecutor(threads) as pool:  # the kernel releases the GIL
            return torch.cat(list(pool.map(part, rois.chunk(threads))))
    return torchvision.ops.roi_align(features, rois, size, spatial_scale, sampling_ratio, aligned)


def roi_align(features: Tensor, rois: Tensor, output_size: int | Sequence[int],
              spatial_scale: float, sampling_ratio: int = -1, aligned: bool = False,
              mode: str = "avg") -> Tensor:
    """RoIAlign (Mask R-CNN): bilinear samples on an unquantised grid, averaged or max-ed per bin.

    ``sampling_ratio`` samples per bin side (<= 0: adaptive ``ceil(roi_size / output_size)``);
    ``aligned`` shifts by half a pixel so pixel centres sit at +0.5 (detectron2's fix).
    """
    _check_rois(rois)
    size = _pair(output_size)
    if mode == "avg" and features.dtype != rois.dtype:  # a bfloat16 model's features, float32 boxes
        return _pooled_in_float32(_roi_align_avg, features, rois, size, spatial_scale, sampling_ratio, aligned)
    if mode == "avg":
        return _roi_align_avg(features, rois, size, spatial_scale, sampling_ratio, aligned)
    if mode == "max":
        return _roi_align_max(features, rois, size, spatial_scale, sampling_ratio, aligned)
    raise ConfigError(f"unknown RoIAlign mode {mode!r}; choose 'avg' or 'max'", record="mode")


def quantise_rois(rois: Tensor, spatial_scale: float) -> Tensor:
    """RoIs scaled to feature cells and rounded to whole cells (half away from zero, as RoIPool)."""
    scaled = rois[:, 1:] * spatial_scale
    rounded = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)
    return torch.cat([rois[:, :1], rounded], dim=1)


def roi_warp(features: Tensor, rois: Tensor, output_size: int | Sequence[int],
             spatial_scale: float, sampling_ratio: int = -1, mode: str = "max") -> Tensor:
    """RoIWarp (MNC): bilinear sampling like RoIAlign, but of the RoI quantised to feature cells."""
    _check_rois(rois)
    return roi_align(features, quantise_rois(rois, spatial_scale), output_size, 1.0,
                     sampling_ratio, aligned=False, mode=mode)


def assign_levels(boxes: Tensor, k_min: int, k_max: int, canonical_scale: float = 224,
                  canonical_level: int = 4, eps: float = 1e-6) -> Tensor:
    """FPN level per box: ``floor(k0 + log2(sqrt(wh) / 224) + eps)`` clamped to [k_min, k_max].

    ``eps`` is torchvision's, so a box of exactly 224 * 2^j px lands on level k0 + j despite
    rounding in log2.
    """
    scale = torch.sqrt(box_area(boxes))
    levels = torch.floor(canonical_level + torch.log2(scale / canonical_scale)
                         + torch.tensor(eps, dtype=scale.dtype, device=scale.device))
    return levels.clamp(min=k_min, max=k_max).to(torch.int64)


def infer_scales(features: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[float]:
    """Feature/image scale per level as a power of two, from the largest image height (torchvision)."""
    if not image_sizes:
        raise ConfigError("image_sizes is empty", record="image_sizes")
    max_h = max(int(s[0]) for s in image_sizes)
    # log2 in float32 and round-half-even, exactly as torchvision's _infer_scale
    return [2.0 ** float(torch.tensor(f.shape[-2] / max_h).log2().round()) for f in features]


def boxes_to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image box lists -> one ``[K, 5]`` tensor of ``(batch_index, x1, y1, x2, y2)`` rows."""
    index = torch.cat([torch.full_like(b[:, :1], float(i)) for i, b in enumerate(boxes)])  # traceable sizes
    return torch.cat([index, torch.cat(list(boxes))], dim=1)


def split_per_image(values: Tensor, boxes: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Rows of ``values`` (one per row of ``boxes_to_rois(boxes)``) split back per image. A single image
    takes every row without reading its box count, so an ONNX trace does not freeze that count."""
    if len(boxes) == 1:
        return (values,)
    return values.split([len(b) for b in boxes])


class MultiLevelRoIPooler(nn.Module):
    """Pools each RoI from the FPN level its size selects; reproduces torchvision's MultiScaleRoIAlign.

    ``kind``: "align" (RoIAlign avg), "align_max", "pool" (RoIPool), "warp" (RoIWarp max) or
    "warp_avg". Scales are inferred per call from feature and image sizes; the level range from the
    finest and coarsest scale.
    """

    def __init__(self, output_size: int | Sequence[int], sampling_ratio: int = -1,
                 kind: str = "align", aligned: bool = False, canonical_scale: float = 224,
                 canonical_level: int = 4):
        super().__init__()
        if kind not in POOLER_KINDS:
            raise ConfigError(f"unknown pooler kind {kind!r}; choose one of {POOLER_KINDS}",
                              record="kind")
        self.output_size = _pair(output_size)
        self.sampling_ratio = sampling_ratio
        self.kind = kind
        self.aligned = aligned
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def pool(self, features: Tensor, rois: Tensor, scale: float) -> Tensor:
        """Pool ``rois`` from one feature map at ``scale`` with this pooler's operator."""
        if self.kind == "pool":
            return roi_pool(features, rois, self.output_size, scale)
        if self.kind.startswith("warp"):
            mode = "avg" if self.kind == "warp_avg" else "max"
            return roi_warp(features, rois, self.output_size, scale, self.sampling_ratio, mode)
        mode = "max" if self.kind == "align_max" else "avg"
        return roi_align(features, rois, self.output_size, scale, self.sampling_ratio,
                         self.aligned, mode)

    def forward(self, features: Sequence[Tensor], boxes: Sequence[Tensor],
                image_sizes: Sequence[tuple[int, int]]) -> Tensor:
        scales = infer_scales(features, image_sizes)
        rois = boxes_to_rois(boxes)
        if len(features) == 1:
            return self.pool(features[0], rois, scales[0])
        k_min = int(-math.log2(scales[0]))
        k_max = int(-math.log2(scales[-1]))
        levels = assign_levels(rois[:, 1:], k_min, k_max, self.canonical_scale,
                               self.canonical_level) - k_min
        if torch.jit.is_tracing():  # ONNX export: every RoI at every level, each keeps its own level's
            pooled = [self.pool(feature, rois, scale) for feature, scale in zip(features, scales)]
            out = pooled[0]
            for level, feature_pooled in enumerate(pooled[1:], start=1):
                out = torch.where((levels == level)[:, None, None, None], feature_pooled, out)
            return out
        ref = features[0]
        out = ref.new_zeros((len(rois), ref.shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, scales)):
            index = torch.where(levels == level)[0]
            out[index] = self.pool(feature, rois[index], scale).to(out.dtype)
        return out
