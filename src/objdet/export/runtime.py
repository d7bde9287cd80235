"""Run an exported detector (ONNX through onnxruntime, OpenVINO IR through OpenVINO) as a checkpoint runs:
`model(images) -> [{boxes, scores, labels, ...}]` in input-image pixels, with the class names it was saved with.

Exported graphs take any image size (`export.onnx`); images of one size go to the runtime as one batch (an ONNX
file's batch dimension is dynamic; OpenVINO's graph takes one image, so its runner loops).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from objdet.errors import ConfigError

Runner = Callable[[np.ndarray], list[dict[str, np.ndarray]]]  # images [B, 3, H, W] of one size -> per image


class ExportedModel:
    """An exported file as a callable detector (one runtime call per group of same-sized images)."""

    def __init__(self, run: Runner, meta: dict, runtime: str) -> None:
        self.run, self.meta, self.runtime = run, meta, runtime
        self.class_names = meta.get("class_names")

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        results: list[dict[str, Tensor]] = [{} for _ in images]
        for members in groups.values():
            batch = torch.stack([images[i].detach().cpu().float() for i in members]).numpy()
            for i, out in zip(members, self.run(batch)):
                results[i] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
        return results


def split_batch(outputs: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    """Per-image outputs of a batched graph, from its `batch_index` column."""
    index = outputs.pop("batch_index")
    return [{k: v[index == i] for k, v in outputs.items()} for i in range(size)]


def onnx_runner(path: str | os.PathLike) -> tuple[Runner, dict]:
    """(images -> outputs per image, metadata) of an ONNX file, run by onnxruntime on the CPU."""
    import onnxruntime as ort

    from objdet.export.onnx import read_metadata

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name

    def run(images: np.ndarray) -> list[dict[str, np.ndarray]]:
        images = images.astype(np.float32)
        if input_name == "images":
            return split_batch(dict(zip(names, session.run(None, {"images": images}))), len(images))
        return [dict(zip(names, session.run(None, {input_name: image}))) for image in images]

    return run, read_metadata(path)


def openvino_runner(path: str | os.PathLike) -> tuple[Runner, dict]:
    """(images -> outputs per image, metadata) of an OpenVINO IR file, run by OpenVINO on the CPU, image by image."""
    from objdet.export.openvino import load_openvino

    compiled, meta = load_openvino(path)
    names = meta.get("outputs") or [o.get_any_name() for o in compiled.outputs]

    def run(images: np.ndarray) -> list[dict[str, np.ndarray]]:
        results = [compiled([image.astype(np.float32)]) for image in images]
        return [{name: np.asarray(r[output]) for name, output in zip(names, compiled.outputs)} for r in results]

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
