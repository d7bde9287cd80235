"""OpenVINO IR of a detector, converted from its single-image ONNX export (any image size; OpenVINO's converter does
not take the batch loop) by OpenVINO's own converter (the `openvino` extra)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from torch import nn

from objdet.errors import ConfigError
from objdet.export.onnx import export_onnx, read_metadata


def _openvino():
    try:
        import openvino
    except ImportError as err:
        raise ConfigError("OpenVINO export and runtime need the `openvino` extra: pip install 'objdet[openvino]'") from err
    return openvino


def export_openvino(model: nn.Module, path: str | os.PathLike, image_size: tuple[int, int] = (256, 256),
                    opset: int = 17, metadata: dict | None = None) -> Path:
    """Write `path` (.xml, with its .bin beside it): the ONNX trace converted by `openvino.convert_model`, the
    objdet metadata kept in the model's runtime info. Weights stay float32: `save_model` would otherwise store
    them as float16, which moved boxes by 6e-3 px (with float32 weights and the f32 hint: 1e-5 px)."""
    ov = _openvino()
    path = Path(path)
    if path.suffix != ".xml":
        raise ConfigError(f"an OpenVINO IR file ends in .xml, not {path.suffix!r}", path=path)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", image_size, opset, metadata=metadata, batch=False)
        converted = ov.convert_model(str(onnx_path))
        converted.set_rt_info(json.dumps(read_metadata(onnx_path)), ["objdet"])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return path


def load_openvino(path: str | os.PathLike) -> tuple[object, dict]:
    """(compiled model on the CPU in float32, objdet metadata) of an IR file. OpenVINO would otherwise run in
    bfloat16 on CPUs that have it (this one does), moving scores by ~1e-3."""
    ov = _openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    meta = json.loads(model.get_rt_info(["objdet"]).astype(str)) if model.has_rt_info(["objdet"]) else {}
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), meta
