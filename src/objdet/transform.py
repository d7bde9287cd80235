"""The batch transform: normalise, resize, pad images into one batch; map detections back afterwards.

The default mode reproduces torchvision's ``GeneralizedRCNNTransform`` exactly (min_size/max_size
rule, the same ``interpolate`` call, padding to ``size_divisible``). ``letterbox=S`` is EfficientDet's
fixed-size mode: the long side is resized to S and the image padded to S x S at the bottom/right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet.errors import AnnotationError, ImageError
from objdet.heads.mask_head import paste_masks
from objdet.tracing import as_float32, image_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Size = tuple[int, int]


@dataclass
class ImageBatch:
    """Padded images ``tensors [B, C, H, W]`` and each image's resized (unpadded) ``(h, w)``."""

    tensors: Tensor
    image_sizes: list[Size]

    def to(self, device: torch.device | str) -> ImageBatch:
        """The same batch on ``device``."""
        return ImageBatch(self.tensors.to(device), list(self.image_sizes))


def _ratios(old: Sequence[int], new: Sequence[int], device: torch.device) -> tuple[Tensor, Tensor]:
    """(height, width) ratios new/old as float32 tensors, computed as torchvision computes them."""
    rh, rw = (as_float32(n, device) / as_float32(o, device) for o, n in zip(old, new))
    return rh, rw


def resize_boxes(boxes: Tensor, old: Sequence[int], new: Sequence[int]) -> Tensor:
    """Scale xyxy ``boxes`` from an image of size ``old (h, w)`` to one of size ``new``."""
    rh, rw = _ratios(old, new, boxes.device)
    return boxes * torch.stack([rw, rh, rw, rh])


def resize_keypoints(keypoints: Tensor, old: Sequence[int], new: Sequence[int]) -> Tensor:
    """Scale ``[..., K, 3]`` keypoints (x, y, visibility) from image size ``old`` to ``new``."""
    rh, rw = _ratios(old, new, keypoints.device)
    out = keypoints.clone()
    out[..., 0] *= rw
    out[..., 1] *= rh
    return out


class DetectionTransform(nn.Module):
    """Normalise, resize and batch images (and resize their targets); ``postprocess`` undoes the resize.

    Resizing: ``letterbox=S`` scales the long side to S and pads to S x S; else ``fixed_size``
    ``(width, height)`` (torchvision's meaning) resizes to exactly that; else the shorter side goes
    to ``min_size`` (in training a random choice when it is a sequence) unless the longer would
    exceed ``max_size``.
    """

    def __init__(self, min_size: int | Sequence[int] = 800, max_size: int = 1333,
                 image_mean: Sequence[float] = IMAGENET_MEAN,
                 image_std: Sequence[float] = IMAGENET_STD, size_divisible: int = 32,
                 fixed_size: Size | None = None, letterbox: int | None = None):
        super().__init__()
        self.min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        self.max_size = max_size
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size
        self.letterbox = letterbox

    def forward(self, images: Sequence[Tensor], targets: Sequence[dict] | None = None
                ) -> tuple[ImageBatch, list[dict] | None]:
        out_images: list[Tensor] = []
        out_targets: list[dict] | None = None if targets is None else []
        for i, image in enumerate(images):
            if image.dim() != 3:
                raise ImageError(f"expected a [C, H, W] tensor, got shape {tuple(image.shape)}",
                                 record=f"image {i}")
            if not image.is_floating_point():
                raise ImageError(f"expected a float image in 0..1, got {image.dtype}",
                                 record=f"image {i}")
            target = None if targets is None else dict(targets[i])
            if target is not None and "boxes" not in target:
                raise AnnotationError("target has no 'boxes'", record=f"target {i}")
            image, target = self.resize(self.normalize(image), target)
            out_images.append(image)
            if out_targets is not None and target is not None:  # both are None exactly when targets is
                out_targets.append(target)
        sizes = [image_size(im) for im in out_images]
        return ImageBatch(self.batch(out_images), sizes), out_targets

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per channel."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def _resize_args(self, h: int, w: int, training: bool | None = None) -> dict:
        """``interpolate`` arguments (size or scale factor) for an ``h x w`` image in this mode (or in training
        or eval mode when ``training`` says which)."""
        if self.letterbox is not None:
            longest = max(h, w)
            return {"size": [max(1, h * self.letterbox // longest), max(1, w * self.letterbox // longest)]}
        if self.fixed_size is not None:
            return {"size": [self.fixed_size[1], self.fixed_size[0]]}
        if self.training if training is None else training:  # torchvision's torch_choice: same RNG draw, same pick
            index = int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())
            min_size = self.min_size[index]
        else:
            min_size = self.min_size[-1]
        scale = min(min_size / min(h, w), self.max_size / max(h, w))
        if h * scale < 1 or w * scale < 1:  # a sliver (1 x 300 px) would shrink to 0 rows: keep one
            return {"size": [max(1, math.floor(h * scale)), max(1, math.floor(w * scale))]}
        return {"scale_factor": scale, "recompute_scale_factor": True}

    def _traced_size(self, h: Tensor, w: Tensor) -> list[Tensor]:
        """The eval-mode resized ``(h, w)`` as graph values (an export that takes any image size): the same
        rule and the same double-precision arithmetic as ``_resize_args``."""
        if self.letterbox is not None:
            longest = torch.maximum(h, w)
            return [(n * self.letterbox // longest).clamp(min=1) for n in (h, w)]
        if self.fixed_size is not None:
            return [torch.tensor(self.fixed_size[1]), torch.tensor(self.fixed_size[0])]
        hd, wd = h.double(), w.double()
        scale = torch.minimum(self.min_size[-1] / torch.minimum(hd, wd), self.max_size / torch.maximum(hd, wd))
        return [(n * scale).floor().clamp(min=1).long() for n in (hd, wd)]

    def resize(self, image: Tensor, target: dict | None = None) -> tuple[Tensor, dict | None]:
        """Resize one normalised image and its target's boxes, masks and keypoints."""
        h, w = image.shape[-2:]
        if torch.jit.is_tracing() and target is None:
            size = self._traced_size(h, w)
            return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0], None
        args = self._resize_args(h, w)
        image = F.interpolate(image[None], mode="bilinear", align_corners=False, **args)[0]
        if target is None:
            return image, None
        new = image.shape[-2:]
        target["boxes"] = resize_boxes(target["boxes"], (h, w), new)
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), new)
        if "masks" in target:
            masks = F.interpolate(target["masks"][:, None].float(), **args)[:, 0]
            target["masks"] = masks.byte()
        return image, target

    def input_size(self, height: int, width: int) -> tuple[Size, Size]:
        """The eval-mode network input of one ``height x width`` image: its resized ``(h, w)`` and the padded
        ``(H, W)`` of a batch holding it alone (what anchors are laid on)."""
        args = self._resize_args(height, width, training=False)
        size = args.get("size") or [math.floor(n * args["scale_factor"]) for n in (height, width)]
        return (int(size[0]), int(size[1])), self._padded(int(size[0]), int(size[1]))

    def _padded(self, height: int, width: int) -> Size:
        """S x S in letterbox mode, else the size rounded up to ``size_divisible``."""
        if self.letterbox is not None:
            return self.letterbox, self.letterbox
        stride = float(self.size_divisible)
        return int(math.ceil(height / stride) * stride), int(math.ceil(width / stride) * stride)

    def batch(self, images: Sequence[Tensor]) -> Tensor:
        """Zero-pad images at the bottom/right to one size (S x S in letterbox mode, else the
        largest image rounded up to ``size_divisible``) and stack them."""
        if torch.jit.is_tracing() and len(images) == 1:  # an export: one image, padded by graph values
            h, w = image_size(images[0])
            if self.letterbox is not None:
                height = width = self.letterbox
            else:
                height, width = ((n + self.size_divisible - 1) // self.size_divisible * self.size_divisible
                                 for n in (h, w))
            return F.pad(images[0], (0, width - w, 0, height - h))[None]
        height, width = self._padded(max(im.shape[-2] for im in images), max(im.shape[-1] for im in images))
        channels = max(im.shape[0] for im in images)
        out = images[0].new_zeros((len(images), channels, height, width))
        for i, im in enumerate(images):
            out[i, : im.shape[0], : im.shape[1], : im.shape[2]].copy_(im)
        return out

    def postprocess(self, detections: Sequence[dict], image_sizes: Sequence[Size],
                    original_sizes: Sequence[Size]) -> list[dict]:
        """Map boxes and keypoints from resized to original pixels and paste ``[N, 1, M, M]`` RoI
        masks into ``[N, 1, H, W]`` original-size image masks (torchvision's rule)."""
        results = []
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det = dict(det)
            det["boxes"] = resize_boxes(det["boxes"], size, original)
            if "masks" in det:
                det["masks"] = paste_masks(det["masks"], det["boxes"], (original[0], original[1]))
            if "keypoints" in det:
                det["keypoints"] = resize_keypoints(det["keypoints"], size, original)
            results.append(det)
        return results
