"""Exported detectors: ONNX (`onnx.py`), OpenVINO IR converted from it (`openvino.py`), TorchScript by tracing
(`torchscript.py`), and `runtime.py`, which runs an exported file as a checkpoint runs (`objdet predict --model
model.onnx`)."""

from objdet.export.onnx import export_onnx, output_names, read_metadata, run_onnx

__all__ = ["export_onnx", "output_names", "read_metadata", "run_onnx"]
