"""Run an exported detector (ONNX through onnxruntime, OpenVINO IR through OpenVINO) as a checkpoint runs:
`model(images) -> [{boxes, scores, labels, ...}]` in input-image pixels, with the class names it was saved with.

An export is traced at one image size (`image_size` in its metadata). An image of that size runs as is, with
PyTorch's outputs to 1e-3; any other image is letterboxed into it (scaled to fit, zero padding at the bottom
and right) and its detections mapped back, so a file exported at a size near the model's own input size
serves every image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from objdet.errors import ConfigError

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


class ExportedModel:
    """An exported file as a callable detector (one runtime call per image)."""

    def __init__(self, run: Runner, meta: dict, runtime: str) -> None:
        self.run, self.meta, self.runtime = run, meta, runtime
        self.image_size = tuple(meta.get("image_size") or ())
        self.class_names = meta.get("class_names")

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [self._one(image.detach().cpu().float()) for image in images]

    def _one(self, image: Tensor) -> dict[str, Tensor]:
        h, w = image.shape[-2:]
        th, tw = self.image_size or (h, w)
        scale = min(th / h, tw / w)
        if (h, w) != (th, tw):
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            resized = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            image = F.pad(resized, (0, tw - nw, 0, th - nh))
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.run(image.numpy()).items()}
        real = out["labels"] >= 1  # OpenVINO returns one zero row for an empty output; objdet's labels are 1..K
        out = {k: v[real] for k, v in out.items()}
        if scale != 1.0 or (h, w) != (th, tw):
            out = _unletterbox(out, scale, (h, w))
        return out


def _unletterbox(det: dict[str, Tensor], scale: float, size: tuple[int, int]) -> dict[str, Tensor]:
    """Detections of a letterboxed image in the original image's pixels."""
    h, w = size
    det = dict(det)
    det["boxes"] = (det["boxes"] / scale).clamp(min=0)
    det["boxes"][:, 0::2] = det["boxes"][:, 0::2].clamp(max=w)
    det["boxes"][:, 1::2] = det["boxes"][:, 1::2].clamp(max=h)
    if "keypoints" in det:
        det["keypoints"] = det["keypoints"].clone()
        det["keypoints"][..., :2] /= scale
    if "masks" in det and len(det["masks"]):
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        det["masks"] = F.interpolate(det["masks"][:, :, :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
    elif "masks" in det:
        det["masks"] = det["masks"].new_zeros((0, 1, h, w))
    return det


def onnx_runner(path: str | os.PathLike) -> tuple[Runner, dict]:
    """(image -> outputs by name, metadata) of an ONNX file, run by onnxruntime on the CPU."""
    import onnxruntime as ort

    from objdet.export.onnx import read_metadata

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(image: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, {"image": image.astype(np.float32)})))

    return run, read_metadata(path)


def openvino_runner(path: str | os.PathLike) -> tuple[Runner, dict]:
    """(image -> outputs by name, metadata) of an OpenVINO IR file, run by OpenVINO on the CPU."""
    from objdet.export.openvino import load_openvino

    compiled, meta = load_openvino(path)
    names = meta.get("outputs") or [o.get_any_name() for o in compiled.outputs]

    def run(image: np.ndarray) -> dict[str, np.ndarray]:
        result = compiled([image.astype(np.float32)])
        return {name: np.asarray(result[output]) for name, output in zip(names, compiled.outputs)}

    return run, meta


def load_exported(path: str | os.PathLike, device: str = "cpu"):
    """A `LoadedModel` (engine.predict) of an exported `.onnx` or `.xml` file."""
    from objdet.engine.predict import LoadedModel

    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such exported model file", path=path)
    if device != "cpu":
        raise ConfigError(f"exported models run on the CPU here, not {device!r}", path=path)
    runner, meta = (openvino_runner if path.suffix.lower() == ".xml" else onnx_runner)(path)
    model = ExportedModel(runner, meta, "openvino" if path.suffix.lower() == ".xml" else "onnxruntime")
    to_cat = meta.get("label_to_category_id")
    return LoadedModel(model, model.class_names, {int(k): v for k, v in to_cat.items()} if to_cat else None,
                       meta.get("skeleton"), int(meta.get("detections_per_img") or 100), str(path))
