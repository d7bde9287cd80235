"""ONNX export of a detector in eval mode: a batch of images [B, 3, H, W] of any size in, their detections out.

The detector is traced on one example image; sizes stay graph values while tracing (`objdet.tracing`), so the
traced graph takes any image size, and the number of detections stays dynamic. An ONNX `Loop` running that
graph on each image makes the batch dimension dynamic too: the outputs `boxes`, `scores`, `labels` (+ `masks`,
`keypoints`, `keypoints_scores` when the model has them) hold every image's detections one after the other and
`batch_index` [N] says whose each row is. `batch=False` writes the single-image graph (input `image` [3, H, W],
no `batch_index`), which OpenVINO's converter takes (it does not convert the loop). EfficientDet's network input
is fixed by design (letterboxed to S x S inside the graph), so its file takes any image size as well.

The file's metadata (`objdet` key) holds the input name, the zoo name, the class names and the category map,
so `export.runtime` can run it as the checkpoint runs. `run_onnx` runs the file with onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from objdet.errors import ConfigError

_OPTIONAL = ("masks", "keypoints", "keypoints_scores")


class SingleImage(nn.Module):
    """Adapts the list-in, list-of-dicts-out detector to tensor in, tuple of tensors out."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        detections = self.model([image])[0]
        return tuple(detections[k] for k in self.names)


@torch.no_grad()
def output_names(model: nn.Module, image_size: tuple[int, int]) -> list[str]:
    """Names of the detection outputs the exported graph has (probed with one forward pass)."""
    model.eval()
    det = model([torch.zeros(3, *image_size)])[0]
    return ["boxes", "scores", "labels"] + [k for k in _OPTIONAL if k in det]


def trace_single(model: nn.Module, names: Sequence[str], example: Tensor) -> nn.Module:
    """The detector traced on `example` [3, H, W]: image in, tuple of outputs out, any image size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected here
        return torch.jit.trace(SingleImage(model, names).eval(), (example,), check_trace=False)


def export_onnx(model: nn.Module, path: str | os.PathLike, image_size: tuple[int, int] = (256, 256),
                opset: int = 17, example: Tensor | None = None, metadata: dict | None = None,
                batch: bool = True) -> Path:
    """Trace `model` (eval mode, CPU) on an example image of `image_size` and write an ONNX file to `path` that
    takes a batch of any size (`batch=False`: one image) of any image size; `metadata` (json-ready: the
    checkpoint's category map, skeleton) is stored with it."""
    path = Path(path)
    if len(image_size) != 2 or min(image_size) < 32:
        raise ConfigError(f"export image size must be (H, W) of at least 32 pixels, got {image_size}")
    model = model.cpu().eval()
    names = output_names(model, image_size)
    if example is None:
        example = torch.rand(3, *image_size, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _refusal(path):
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        torch.onnx.export(SingleImage(model, names).eval(), (example,), str(path), input_names=["image"],
                          output_names=names, dynamic_axes={"image": {1: "height", 2: "width"},
                                                            **{n: {0: "detections"} for n in names}},
                          opset_version=opset, dynamo=False)
    _finish(path, model, image_size, names + (["batch_index"] if batch else []), batch, metadata)
    return path


@contextlib.contextmanager
def _refusal(path: Path) -> Iterator[None]:
    """The exporter's refusal of an operation that needs a fixed input size, as an error naming the file."""
    from torch.onnx.errors import SymbolicValueError

    try:
        yield
    except SymbolicValueError as err:
        raise ConfigError(f"this model cannot be exported to take any image size: {str(err).split(' [Caused')[0]}",
                          path=path) from err


def describe_export(model: nn.Module, image_size: tuple[int, int], names: Sequence[str], batch: bool) -> dict:
    """What a runtime needs to run an exported file as the checkpoint runs: input, outputs, class names."""
    return {"input": "images" if batch else "image", "traced_size": list(image_size), "outputs": list(names),
            "arch": getattr(model, "arch", None), "class_names": getattr(model, "class_names", None),
            "detections_per_img": getattr(getattr(model, "config", None), "detections_per_img", 100)}


def _finish(path: Path, model: nn.Module, image_size: tuple[int, int], names: Sequence[str], batch: bool,
            extra: dict | None) -> None:
    """Wrap the single-image graph in the batch loop (`batch`) and store the metadata."""
    import onnx

    graph = onnx.load(str(path))
    if batch:
        graph = batch_loop(graph)
    entry = graph.metadata_props.add()
    entry.key, entry.value = "objdet", json.dumps({**describe_export(model, image_size, names, batch), **(extra or {})})
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def batch_loop(single):
    """The single-image model (input `image` [3, H, W]) run on each image of `images` [B, 3, H, W] by an ONNX
    `Loop`; each output's rows of all images concatenated, and `batch_index` [N]. Built on the ONNX graph:
    the exporter's own loop translation loses the shapes some operators' translations need."""
    from onnx import TensorProto, helper

    body_graph = single.graph
    names = [o.name for o in body_graph.output]
    types = {o.name: o.type.tensor_type.elem_type for o in body_graph.output}
    types["batch_index"] = TensorProto.INT64
    carried = [*names, "batch_index"]
    nodes = [helper.make_node("Gather", ["images", "iteration"], [body_graph.input[0].name], axis=0),
             *body_graph.node,
             helper.make_node("Shape", [names[0]], ["count"], end=1),
             helper.make_node("Expand", ["iteration", "count"], ["batch_index"]),
             helper.make_node("Identity", ["condition"], ["condition_out"]),
             *[helper.make_node("SequenceInsert", [f"{n}_in", n], [f"{n}_out"]) for n in carried]]
    body = helper.make_graph(
        nodes, "one_image",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
         *[helper.make_tensor_sequence_value_info(f"{n}_in", types[n], None) for n in carried]],
        [helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []),
         *[helper.make_tensor_sequence_value_info(f"{n}_out", types[n], None) for n in carried]],
        value_info=body_graph.value_info)
    outer = [helper.make_node("Shape", ["images"], ["images_shape"], end=1),
             helper.make_node("Squeeze", ["images_shape"], ["batch_size"]),
             *[helper.make_node("SequenceEmpty", [], [f"{n}_empty"], dtype=types[n]) for n in carried],
             helper.make_node("Loop", ["batch_size", "", *[f"{n}_empty" for n in carried]],
                              [f"{n}_all" for n in carried], body=body),
             *[helper.make_node("ConcatFromSequence", [f"{n}_all"], [n], axis=0) for n in carried]]
    image = body_graph.input[0].type.tensor_type
    graph = helper.make_graph(
        outer, "objdet_batch",
        [helper.make_tensor_value_info("images", image.elem_type, ["batch", 3, "height", "width"])],
        [*body_graph.output, helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["detections"])],
        initializer=body_graph.initializer)
    return helper.make_model(graph, opset_imports=single.opset_import, ir_version=single.ir_version)


def read_metadata(path: str | os.PathLike) -> dict:
    """The `objdet` metadata of an exported ONNX file ({} for a file objdet did not write)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props["objdet"]) if "objdet" in props else {}


def run_onnx(path: str | os.PathLike, images: Tensor) -> list[dict[str, np.ndarray]]:
    """Detections of the exported model for a batch [B, 3, H, W] (or one image [3, H, W]) per image, by output
    name (onnxruntime, CPU)."""
    from objdet.export.runtime import onnx_runner

    batch = images.detach().cpu().float().numpy()
    return onnx_runner(path)[0](batch if batch.ndim == 4 else batch[None])
