"""Anchors: boxes of several sizes x aspect ratios laid on every cell of every pyramid level.

Two conventions are reproduced exactly: torchvision's (base anchors rounded to integers, centred on
``i * stride``, aspect-ratio-major order) and effdet's (no rounding, centred on ``(i + 0.5) * stride``,
size-major order, aspect ratios given as (width, height) multipliers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from objdet.errors import ConfigError
from objdet.tracing import size_value

AspectRatio = float | tuple[float, float]


def retinanet_sizes(
    levels: Sequence[int] = (3, 4, 5, 6, 7),
    scales_per_octave: int = 3,
    anchor_scale: float = 4.0,
    truncate: bool = False,
) -> list[tuple[float, ...]]:
    """RetinaNet's anchor sizes per level: ``anchor_scale * 2^l * 2^(o / scales_per_octave)``.

    With the defaults that is ``{2^0, 2^(1/3), 2^(2/3)} * 4 * 2^l`` for P3..P7. ``truncate=True``
    rounds the sizes down to integers as torchvision's RetinaNet does.
    """
    sizes = []
    for level in levels:
        level_sizes = [anchor_scale * 2**level * 2 ** (o / scales_per_octave) for o in range(scales_per_octave)]
        sizes.append(tuple(float(int(s)) if truncate else s for s in level_sizes))
    return sizes


def _multipliers(aspect_ratios: Sequence[AspectRatio], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Width and height multipliers of each aspect ratio: a number is height / width (torchvision),
    a pair is (width, height) multipliers as given (effdet)."""
    widths, heights = [], []
    for ratio in aspect_ratios:
        if isinstance(ratio, (tuple, list)):
            if len(ratio) != 2:
                raise ConfigError(f"an aspect ratio pair must be (width, height), got {ratio!r}")
            w, h = torch.tensor(ratio, dtype=dtype)
        else:
            h = torch.sqrt(torch.tensor(ratio, dtype=dtype))
            w = 1 / h
        widths.append(w)
        heights.append(h)
    return torch.stack(widths), torch.stack(heights)


class AnchorGenerator:
    """Anchors for a feature pyramid: at each level, ``sizes[l] x aspect_ratios[l]`` boxes per grid cell.

    An aspect ratio is either a number (height / width, area kept at ``size^2``) or a pair of
    (width, height) multipliers of ``size``. ``offset`` places centres at ``(i + offset) * stride``;
    ``round_base`` rounds the base anchors to integers; ``size_major`` orders the anchors of a cell by
    size first (effdet) rather than by aspect ratio first (torchvision).
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[AspectRatio]],
        offset: float = 0.0,
        round_base: bool = True,
        size_major: bool = False,
    ):
        if len(sizes) != len(aspect_ratios):
            raise ConfigError(f"anchor sizes have {len(sizes)} levels but aspect ratios have {len(aspect_ratios)}")
        self.sizes = [tuple(level) for level in sizes]
        self.aspect_ratios = [tuple(level) for level in aspect_ratios]
        self.offset = offset
        self.round_base = round_base
        self.size_major = size_major
        # torchvision rounds float32 products; without rounding keep float64 like effdet's numpy
        self._base = [self._base_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def _base_anchors(self, sizes: Sequence[float], aspect_ratios: Sequence[AspectRatio]) -> Tensor:
        dtype = torch.float32 if self.round_base else torch.float64
        scales = torch.tensor(sizes, dtype=dtype)
        w_mult, h_mult = _multipliers(aspect_ratios, dtype)
        if self.size_major:
            ws = (scales[:, None] * w_mult[None, :]).reshape(-1)
            hs = (scales[:, None] * h_mult[None, :]).reshape(-1)
        else:
            ws = (w_mult[:, None] * scales[None, :]).reshape(-1)
            hs = (h_mult[:, None] * scales[None, :]).reshape(-1)
        base = torch.stack((-ws, -hs, ws, hs), dim=1) / 2
        return (base.round() if self.round_base else base).to(torch.float64)

    @property
    def cell_anchors(self) -> list[Tensor]:
        """Base anchors ``[A_l, 4]`` of each level, centred on the origin (float32)."""
        return [base.float() for base in self._base]

    def num_anchors_per_location(self) -> list[int]:
        """Number of anchors per grid cell at each level."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(
        self, feature_shapes: Sequence[tuple[int, int]], strides: Sequence[tuple[float, float]]
    ) -> list[Tensor]:
        """Anchors ``[h_l * w_l * A_l, 4]`` (xyxy, float32) of each level, ordered (y, x, anchor)."""
        if not len(feature_shapes) == len(strides) == len(self._base):
            raise ConfigError(
                f"anchor generator has {len(self._base)} levels but got {len(feature_shapes)} feature maps "
                f"and {len(strides)} strides"
            )
        anchors = []
        for (height, width), (stride_y, stride_x), base in zip(feature_shapes, strides, self._base):
            xs = torch.arange(size_value(width), dtype=torch.float64) * stride_x + self.offset * stride_x
            ys = torch.arange(size_value(height), dtype=torch.float64) * stride_y + self.offset * stride_y
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
            anchors.append((centres + base[None]).reshape(-1, 4).float())
        return anchors

    def __call__(
        self, image_size: tuple[int, int], feature_shapes: Sequence[tuple[int, int]], device: torch.device | None = None
    ) -> Tensor:
        """All anchors ``[sum_l h_l * w_l * A_l, 4]`` of a padded image batch of ``image_size = (H, W)``.

        Strides are ``(H // h_l, W // w_l)``, torchvision's rule.
        """
        height, width = (size_value(v) for v in image_size)
        strides = [(height // size_value(h), width // size_value(w)) for h, w in feature_shapes]
        return torch.cat(self.grid_anchors(feature_shapes, strides)).to(device)


def effdet_anchor_generator(min_level: int, max_level: int, num_scales: int,
                            aspect_ratios: Sequence[tuple[float, float]], anchor_scale: float) -> AnchorGenerator:
    """effdet's anchors: unrounded, centred on (i + 0.5) * stride, octave scales before aspect ratios."""
    levels = range(min_level, max_level + 1)
    return AnchorGenerator(retinanet_sizes(levels, num_scales, anchor_scale), [aspect_ratios] * len(levels),
                           offset=0.5, round_base=False, size_major=True)
