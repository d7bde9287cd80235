"""`objdet export --verify SPEC`: the exported file and the PyTorch model over a data set, side by side: COCO AP of
each, the largest output difference and the latency ratio. Both get the same images, one per call, so every
difference is the runtime's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from objdet.export.runtime import ExportedModel, Runner, onnx_runner, openvino_runner


def torch_runner(model: nn.Module, names: list[str]) -> Runner:
    """The PyTorch model as a runtime: images [B, 3, H, W] in, each one's outputs by name."""

    def run(images: np.ndarray) -> list[dict[str, np.ndarray]]:
        with torch.no_grad():
            dets = model(list(torch.from_numpy(images)))
        return [{k: det[k].numpy() for k in names} for det in dets]

    return run


def torchscript_runner(path: str | os.PathLike, names: list[str]) -> Runner:
    traced = torch.jit.load(str(path))

    def run(images: np.ndarray) -> list[dict[str, np.ndarray]]:
        with torch.no_grad():
            return [{k: v.numpy() for k, v in zip(names, traced(torch.from_numpy(image)))} for image in images]

    return run


def _timed(run: Runner) -> tuple[Runner, list[float]]:
    times: list[float] = []

    def timed(images: np.ndarray) -> list[dict[str, np.ndarray]]:
        start = time.perf_counter()
        out = run(images)
        times.append(time.perf_counter() - start)
        return out

    return timed, times


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over the outputs (inf when shapes differ, e.g. detection counts)."""
    worst = 0.0
    for key, value in a.items():
        if value.shape != b[key].shape:
            return float("inf")
        if value.numel():
            worst = max(worst, float((value.float() - b[key].float()).abs().max()))
    return worst


def verify(model: nn.Module, path: str | os.PathLike, fmt: str, spec: str, image_size: tuple[int, int],
           images: int = 50, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run both over the first `images` of data set `spec` (its held-out split when it names none); return and log
    {"ap": {"pytorch", "export"}, "max_difference", "latency_ratio"}."""
    from objdet.data import open_dataset, parse_spec
    from objdet.data.coco import dataset_to_coco, to_coco_results
    from objdet.data.spec import HELD_OUT_SPLIT
    from objdet.evaluation.coco import evaluate_coco
    from objdet.export.onnx import output_names

    parsed = parse_spec(spec)
    dataset = open_dataset(spec, split=None if parsed.split else HELD_OUT_SPLIT.get(parsed.kind))
    count = min(images, len(dataset))
    if fmt == "torchscript":
        meta = {"outputs": output_names(model, tuple(image_size))}
        runner = torchscript_runner(path, meta["outputs"])
    else:
        runner, meta = (onnx_runner if fmt == "onnx" else openvino_runner)(path)
    names = [n for n in meta["outputs"] if n != "batch_index"]
    ours, ours_times = _timed(torch_runner(model.eval(), names))
    theirs, their_times = _timed(runner)
    reference, exported = ExportedModel(ours, meta, "pytorch"), ExportedModel(theirs, meta, fmt)
    to_cat = getattr(dataset, "label_to_category_id", None)
    records: dict[str, list] = {"pytorch": [], "export": []}
    worst = 0.0
    ids = []
    for i in range(count):
        image, target = dataset[i]
        a, b = reference([image])[0], exported([image])[0]
        worst = max(worst, max_difference(a, b))
        ids.append(int(target["image_id"]))
        records["pytorch"] += to_coco_results([a], [ids[-1]], to_cat)
        records["export"] += to_coco_results([b], [ids[-1]], to_cat)
    gt = dataset_to_coco(dataset)
    gt = {**gt, "images": [im for im in gt["images"] if im["id"] in set(ids)],
          "annotations": [a for a in gt["annotations"] if a["image_id"] in set(ids)]}
    ap = {k: evaluate_coco(gt, v)["AP"] if v else 0.0 for k, v in records.items()}
    ratio = float(np.median(their_times) / np.median(ours_times))
    log(f"{count} images of {spec}, {Path(path).name} ({fmt}) vs PyTorch:")
    log(f"  bbox AP      PyTorch {ap['pytorch']:.4f}   {fmt} {ap['export']:.4f}")
    log(f"  max |output difference| {worst:.2e}")
    log(f"  latency ({fmt} / PyTorch, median per image) {ratio:.2f}")
    return {"ap": ap, "max_difference": worst, "latency_ratio": ratio, "images": count}
