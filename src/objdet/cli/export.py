"""`objdet export`: a checkpoint as ONNX, TorchScript or OpenVINO IR, checked against PyTorch, and with `--verify
SPEC` run over a data set beside PyTorch (AP of each, largest output difference, latency ratio)."""

from __future__ import annotations

import argparse

from objdet.errors import ObjdetError

FORMATS = ("onnx", "torchscript", "openvino")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX, TorchScript or OpenVINO (checked against PyTorch)",
                       description="Export a checkpoint. ONNX: input `images` [B, 3, H, W] in 0..1, any batch and "
                                   "image size; outputs boxes, scores, labels (+ masks, keypoints) of all images and "
                                   "batch_index (whose row each is). OpenVINO and TorchScript: one image [3, H, W] of "
                                   "any size. `objdet predict --model FILE` runs .onnx and .xml files.")
    p.add_argument("--model", help="checkpoint (objdet train / objdet convert), or a zoo name with --weights")
    p.add_argument("--weights", metavar="SRC", help="weights of the zoo model --model names: torchvision:WEIGHTS, "
                                                    "effdet:NAME or a state-dict file; alone, any checkpoint or "
                                                    "state-dict file")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="onnx, torchscript (traced) or openvino (IR .xml)")
    p.add_argument("output", help="file to write: model.onnx, model.torchscript.pt, model.xml")
    p.add_argument("--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"),
                   help="size of the example image the graph is traced with (the graph takes any size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no-check", action="store_true", help="skip comparing the export's outputs with PyTorch's")
    p.add_argument("--verify", metavar="SPEC", help="run the export and PyTorch over this data set: AP of each, "
                                                     "largest output difference, latency ratio")
    p.add_argument("--verify-images", type=int, default=50, help="images of --verify's data set to use")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from objdet.engine.predict import load_model, torch_model
    from objdet.export.verify import verify

    loaded = load_model(args.model, "cpu", args.weights)
    model, to_cat, skeleton = torch_model(loaded), loaded.label_to_category_id, loaded.skeleton
    size = tuple(args.image_size)
    meta = {"label_to_category_id": {str(k): v for k, v in to_cat.items()} if to_cat else None, "skeleton": skeleton}
    if args.format == "onnx":
        from objdet.export.onnx import export_onnx

        path = export_onnx(model, args.output, size, args.opset, metadata=meta)
    elif args.format == "openvino":
        from objdet.export.openvino import export_openvino

        path = export_openvino(model, args.output, size, args.opset, metadata=meta)
    else:
        from objdet.export.torchscript import export_torchscript

        path = export_torchscript(model, args.output, size)
    print(f"wrote {path}")
    if not args.no_check:
        other = (size[0] * 3 // 4, size[1] * 5 // 4)  # the graph takes any size: check one it was not traced at
        images = [torch.rand(3, *s, generator=torch.Generator().manual_seed(1)) for s in (size, other)]
        result = verify_one(model, path, args.format, size, images)
        print(f"{args.format} vs PyTorch on random images of {size[0]}x{size[1]} and {other[0]}x{other[1]}: "
              f"max abs difference {result:.2e}")
        if result > 1e-3:
            raise ObjdetError(f"exported outputs differ from PyTorch's by {result:.2e} (> 1e-3)", path=path)
    if args.verify:
        verify(model, path, args.format, args.verify, size, args.verify_images)
    return 0


def verify_one(model, path, fmt: str, size: tuple[int, int], images) -> float:
    """Largest output difference between the export and PyTorch on `images`, each run alone."""
    import torch

    from objdet.export import runtime, verify as checks
    from objdet.export.onnx import output_names

    names = output_names(model, size)
    if fmt == "torchscript":
        run = checks.torchscript_runner(path, names)
    else:
        run = (runtime.onnx_runner if fmt == "onnx" else runtime.openvino_runner)(path)[0]
    worst = 0.0
    for image in images:
        expected = checks.torch_runner(model, names)(image[None].numpy())[0]
        got = run(image[None].numpy())[0]
        worst = max(worst, checks.max_difference({k: torch.from_numpy(v) for k, v in expected.items()},
                                                 {k: torch.from_numpy(got[k]) for k in expected}))
    return worst
