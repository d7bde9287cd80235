"""TorchScript of a detector by tracing (detectors are Python, not scriptable): the same single-image graph as the
ONNX export, taking any image size, loadable with `torch.jit.load` without objdet."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from objdet.export.onnx import output_names, trace_single


def export_torchscript(model: nn.Module, path: str | os.PathLike, image_size: tuple[int, int] = (256, 256)) -> Path:
    """Trace `model` (eval mode, CPU) on an example image of `image_size`; the file's module maps an image
    [3, H, W] of any size to the tuple of outputs `output_names` lists."""
    path = Path(path)
    model = model.cpu().eval()
    names = output_names(model, image_size)
    example = torch.rand(3, *image_size, generator=torch.Generator().manual_seed(0))
    traced = trace_single(model, names, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path
