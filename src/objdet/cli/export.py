"""`objdet export`: a checkpoint as an ONNX graph, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse

from objdet.errors import ObjdetError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked against PyTorch with onnxruntime)",
                       description="Export a checkpoint to ONNX: input `image` [3, H, W] in 0..1 at a fixed "
                                   "size, outputs boxes, scores, labels (+ masks, keypoints).")
    p.add_argument("--model", required=True, help="checkpoint (objdet train / objdet convert)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("output", help="file to write, e.g. model.onnx")
    p.add_argument("--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"),
                   help="input size the graph is traced at")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no-check", action="store_true", help="skip comparing onnxruntime's outputs with PyTorch's")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from objdet import zoo
    from objdet.export import export_onnx, run_onnx

    model = zoo.load(args.model)
    size = tuple(args.image_size)
    path = export_onnx(model, args.output, size, args.opset)
    print(f"wrote {path}")
    if not args.no_check:
        image = torch.rand(3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model([image])[0]
        got = run_onnx(path, image)
        worst = max((float(np.abs(got[k] - expected[k].numpy()).max()) if got[k].size else 0.0)
                    if got[k].shape == tuple(expected[k].shape) else float("inf") for k in got)
        print(f"onnxruntime vs PyTorch on a random image: max abs difference {worst:.2e}")
        if worst > 1e-3:
            raise ObjdetError(f"exported outputs differ from PyTorch's by {worst:.2e} (> 1e-3)", path=path)
    return 0
