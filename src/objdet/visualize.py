"""Draw detections or ground truth (boxes with label and score, translucent masks, keypoints) to PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from objdet.data.image import to_pil

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128), (128, 128, 0)]


def draw_detections(
    image: torch.Tensor | Image.Image,
    detections: Mapping[str, torch.Tensor],
    label_names: Mapping[int, str] | Sequence[str] | None = None,
    score_threshold: float = 0.0,
    mask_threshold: float = 0.5,
    mask_alpha: float = 0.45,
    skeleton: Sequence[Sequence[int]] | None = None,
) -> Image.Image:
    """Return a picture of `image` with `detections` (a model output or a target dict) drawn on it.

    Boxes carry "name score" (score only when the dict has `scores`); masks (N x 1 x H x W or
    N x H x W) are blended in the box colour; keypoints with visibility > 0 are dots joined by the
    optional 1-based `skeleton` pairs.
    """
    canvas = to_pil(image)
    boxes = torch.as_tensor(detections["boxes"]).detach().cpu().reshape(-1, 4)
    labels = detections.get("labels", torch.zeros(len(boxes), dtype=torch.int64))
    scores = detections.get("scores")
    keep = torch.ones(len(boxes), dtype=torch.bool)
    if scores is not None:
        scores = torch.as_tensor(scores).detach().cpu()
        keep = scores >= score_threshold
    colours = [PALETTE[int(lab) % len(PALETTE)] for lab in labels]

    masks = detections.get("masks")
    if masks is not None and len(boxes):
        masks = torch.as_tensor(masks).detach().cpu()
        masks = masks.reshape(len(boxes), *masks.shape[-2:]).float() > mask_threshold
        pixels = np.asarray(canvas, dtype=np.float32)
        for k in torch.nonzero(keep).flatten().tolist():
            m = masks[k].numpy()
            pixels[m] = (1 - mask_alpha) * pixels[m] + mask_alpha * np.array(colours[k], np.float32)
        canvas = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(canvas)
    kps = detections.get("keypoints")
    for k in torch.nonzero(keep).flatten().tolist():
        colour = colours[k]
        x1, y1, x2, y2 = boxes[k].tolist()
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=1)  # boxes under 1 px too
        label = int(labels[k])
        if isinstance(label_names, Mapping):
            name = label_names.get(label, str(label))
        elif label_names is not None and 0 <= label < len(label_names):
            name = label_names[label]
        else:
            name = str(label)
        text = name if scores is None else f"{name} {float(scores[k]):.2f}"
        tx, ty = x1, max(y1 - 11, 0)
        draw.rectangle(draw.textbbox((tx, ty), text), fill=colour)
        draw.text((tx, ty), text, fill=(0, 0, 0))
        if kps is not None:
            points = torch.as_tensor(kps[k]).detach().cpu().tolist()
            for a, b in skeleton or []:
                if points[a - 1][2] > 0 and points[b - 1][2] > 0:
                    draw.line([tuple(points[a - 1][:2]), tuple(points[b - 1][:2])], fill=colour)
            for x, y, v in points:
                if v > 0:
                    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255) if v > 1
                                 else (0, 0, 0), outline=colour)
    return canvas


def save_detections(image: torch.Tensor | Image.Image, detections: Mapping[str, torch.Tensor],
                    path: str | os.PathLike, **options) -> Path:
    """Draw detections (see `draw_detections` for the options) and save the picture as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_detections(image, detections, **options).save(path, format="PNG")
    return path


def draw_samples(dataset: Any, out_dir: str | os.PathLike, count: int = 8, prefix: str = "sample") -> list[Path]:
    """Draw the first `count` samples of a data set with their targets (boxes, masks, keypoints and the
    categories' names and skeleton) to PNGs `<prefix>_000.png`, ... in `out_dir`."""
    categories = list(getattr(dataset, "categories", []) or [])
    names = {i + 1: c["name"] for i, c in enumerate(categories)}
    skeleton = next((c["skeleton"] for c in categories if c.get("skeleton")), None)
    out_dir = Path(out_dir)
    paths = []
    for i in range(min(count, len(dataset))):
        image, target = dataset[i]
        paths.append(save_detections(image, target, out_dir / f"{prefix}_{i:03d}.png",
                                     label_names=names, skeleton=skeleton))
    return paths
