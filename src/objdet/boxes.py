"""Box arithmetic: formats, area, IoU, clipping, and the (t_x, t_y, t_w, t_h) box parametrisation.

Boxes are ``[..., 4]`` float tensors in absolute pixels; ``"xyxy"`` is the internal format.
Arithmetic follows torchvision's operation order so results agree with it bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from objdet.errors import ConfigError

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def full_precision(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The tensors in float32 where autocast made them float16/bfloat16, else unchanged.

    Heads may run in reduced precision, but box arithmetic may not: bfloat16 holds 8 significant bits,
    so a coordinate is rounded to 1 px from 128 px and to 4 px from 512 px. Detectors pass their head
    outputs through this before anchors, IoU, encoding, decoding and NMS.
    """
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must have shape [..., 4], got {tuple(boxes.shape)}")


def _to_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return boxes
    a, b, c, d = boxes.unbind(-1)
    if fmt == "xywh":
        return torch.stack((a, b, a + c, b + d), dim=-1)
    return torch.stack((a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d), dim=-1)


def _from_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return boxes
    x1, y1, x2, y2 = boxes.unbind(-1)
    w, h = x2 - x1, y2 - y1
    if fmt == "xywh":
        return torch.stack((x1, y1, w, h), dim=-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, w, h), dim=-1)


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between ``"xyxy"`` (corners), ``"xywh"`` (COCO) and ``"cxcywh"`` (centre, size)."""
    for fmt in (in_fmt, out_fmt):
        if fmt not in BOX_FORMATS:
            raise ConfigError(f"unknown box format {fmt!r}; expected one of {BOX_FORMATS}")
    _check_boxes(boxes)
    if in_fmt == out_fmt:
        return boxes.clone()
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


def box_area(boxes: Tensor) -> Tensor:
    """Area ``(x2 - x1) * (y2 - y1)`` of xyxy boxes ``[..., 4] -> [...]``."""
    _check_boxes(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union of xyxy boxes ``[N, 4] x [M, 4] -> [N, M]``."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    sides = (bottom_right - top_left).clamp(min=0)
    inter = sides[..., 0] * sides[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter / union


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip xyxy boxes to an image of ``size = (height, width)``: x into [0, w], y into [0, h]."""
    _check_boxes(boxes)
    height, width = size
    if isinstance(width, Tensor):  # graph values of an export taking any image size (objdet.tracing)
        x = torch.minimum(boxes[..., 0::2].clamp(min=0), width.to(boxes.dtype))
        y = torch.minimum(boxes[..., 1::2].clamp(min=0), height.to(boxes.dtype))
    else:
        x = boxes[..., 0::2].clamp(min=0, max=width)
        y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (LongTensor) of the xyxy boxes whose width and height are both at least ``min_size``."""
    _check_boxes(boxes)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


class BoxCoder:
    """The seed's box parametrisation, ``t = (w_x (x - x_r)/w_r, w_y (y - y_r)/h_r, w_w log(w/w_r), w_h log(h/h_r))``.

    ``(x, y)`` are box centres and ``(w, h)`` sizes (``x2 - x1``, no +1); ``clamp`` bounds the
    decoded ``t_w, t_h`` so ``exp`` cannot overflow. Decoding matches torchvision's BoxCoder exactly.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clamp: float = math.log(1000.0 / 16)):
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ConfigError(f"BoxCoder weights must be 4 positive numbers, got {tuple(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    @staticmethod
    def _centres_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights

    def encode(self, boxes: Tensor, reference: Tensor) -> Tensor:
        """Deltas ``[N, 4]`` that take each ``reference`` box (anchor, proposal) onto its ``boxes`` row."""
        _check_boxes(boxes)
        _check_boxes(reference, "reference")
        if boxes.shape[0] != reference.shape[0]:
            raise ValueError(f"encode needs one reference per box, got {boxes.shape[0]} and {reference.shape[0]}")
        wx, wy, ww, wh = torch.as_tensor(self.weights, dtype=reference.dtype, device=reference.device)
        x, y, w, h = self._centres_and_sizes(boxes)
        x_r, y_r, w_r, h_r = self._centres_and_sizes(reference)
        return torch.stack(
            (
                wx * (x - x_r) / w_r,
                wy * (y - y_r) / h_r,
                ww * torch.log(w / w_r),
                wh * torch.log(h / h_r),
            ),
            dim=1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes ``[N, 4k]`` (xyxy) from deltas ``[N, 4k]`` (k boxes per reference, e.g. one per class)."""
        _check_boxes(reference, "reference")
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0 or deltas.shape[0] != reference.shape[0]:
            raise ValueError(
                f"decode needs deltas [N, 4k] with N = {reference.shape[0]} references, got {tuple(deltas.shape)}"
            )
        reference = reference.to(deltas.dtype)
        x_r, y_r, w_r, h_r = self._centres_and_sizes(reference)
        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.clamp)
        x = dx * w_r[:, None] + x_r[:, None]
        y = dy * h_r[:, None] + y_r[:, None]
        half_w = 0.5 * (torch.exp(dw) * w_r[:, None])
        half_h = 0.5 * (torch.exp(dh) * h_r[:, None])
        return torch.stack((x - half_w, y - half_h, x + half_w, y + half_h), dim=2).flatten(1)
