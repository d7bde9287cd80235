"""ONNX export of a detector in eval mode: one image [3, H, W] in, its detections out.

The graph is traced at a fixed image size (`image_size`); the number of detections stays dynamic.
Outputs are named `boxes`, `scores`, `labels` (+ `masks`, `keypoints`, `keypoints_scores` when the
model has them), in the order `output_names(model)` gives. The file's metadata (`objdet` key) holds the
traced size, the zoo name, the class names and the category map, so `export.runtime` can run it as the
checkpoint runs. `run_onnx` runs the file with onnxruntime.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from objdet.errors import ConfigError

_OPTIONAL = ("masks", "keypoints", "keypoints_scores")


class SingleImage(nn.Module):
    """Adapts the list-in, list-of-dicts-out detector to tensor in, tuple of tensors out."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detections = self.model([image])[0]
        return tuple(detections[k] for k in self.names)


@torch.no_grad()
def output_names(model: nn.Module, image_size: tuple[int, int]) -> list[str]:
    """Names of the outputs the exported graph has (probed with one forward pass)."""
    model.eval()
    det = model([torch.zeros(3, *image_size)])[0]
    return ["boxes", "scores", "labels"] + [k for k in _OPTIONAL if k in det]


def export_onnx(model: nn.Module, path: str | os.PathLike, image_size: tuple[int, int] = (256, 256),
                opset: int = 17, example: torch.Tensor | None = None, metadata: dict | None = None) -> Path:
    """Trace `model` (eval mode, CPU) on an image of `image_size` and write an ONNX file to `path`; `metadata`
    (json-ready: the checkpoint's category map, skeleton) is stored with it."""
    path = Path(path)
    if len(image_size) != 2 or min(image_size) < 32:
        raise ConfigError(f"export image size must be (H, W) of at least 32 pixels, got {image_size}")
    model = model.cpu().eval()
    names = output_names(model, image_size)
    example = example if example is not None else torch.rand(3, *image_size, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "detections"} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected here
        torch.onnx.export(SingleImage(model, names).eval(), (example,), str(path), input_names=["image"],
                          output_names=names, dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    _add_metadata(path, model, image_size, names, metadata)
    return path


def describe_export(model: nn.Module, image_size: tuple[int, int], names: Sequence[str]) -> dict:
    """What a runtime needs to run an exported file as the checkpoint runs: traced size, outputs, class names."""
    return {"image_size": list(image_size), "outputs": list(names), "arch": getattr(model, "arch", None),
            "class_names": getattr(model, "class_names", None),
            "detections_per_img": getattr(getattr(model, "config", None), "detections_per_img", 100)}


def _add_metadata(path: Path, model: nn.Module, image_size: tuple[int, int], names: Sequence[str],
                  extra: dict | None) -> None:
    import onnx

    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = "objdet", json.dumps({**describe_export(model, image_size, names), **(extra or {})})
    onnx.save(graph, str(path))


def read_metadata(path: str | os.PathLike) -> dict:
    """The `objdet` metadata of an exported ONNX file ({} for a file objdet did not write)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props["objdet"]) if "objdet" in props else {}


def run_onnx(path: str | os.PathLike, image: torch.Tensor) -> dict[str, np.ndarray]:
    """Detections of the exported model for one image [3, H, W], by output name (onnxruntime, CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"image": image.detach().cpu().numpy().astype(np.float32)})
    return {o.name: value for o, value in zip(session.get_outputs(), outputs)}
