"""The `objdet` command: one sub-command per job (demo, train, eval, predict, convert, export).

Each sub-command is a pair: `_add_<name>(subparsers)` declares its arguments and binds `_run_<name>`.
Heavy imports happen inside the `_run_*` functions so `objdet --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from objdet.errors import ConfigError, DataError, ObjdetError

if TYPE_CHECKING:  # torch is imported lazily, so `--help` stays fast
    from objdet.engine.trainer import TrainConfig


_DEMO_MODEL = "faster_rcnn_r18_fpn"


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the built-in `shapes` data set (no download)",
                       description="Train a small detector from scratch on generated shapes (CPU, minutes), "
                                   "evaluate it on a held-out split, print the COCO table and write "
                                   "pictures of its predictions and PR curves to a run folder.")
    p.add_argument("--model", default=_DEMO_MODEL, help=f"zoo model to train (default {_DEMO_MODEL})")
    p.add_argument("--out", help="run folder (default runs/demo-<model>-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data set and of training")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--train-images", type=int, default=2688, help="generated training images")
    p.add_argument("--val-images", type=int, default=64, help="held-out images (the `val` split) to score")
    p.add_argument("--image-size", type=int, default=128, help="side of the generated square images")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (cosine decay)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bfloat16 autocast (default on: about 1.5x faster on CPUs with AVX-512 BF16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_demo)


def _data_overrides(arch: str, dataset: Any) -> dict[str, Any]:
    """Config fields a data set fixes: the number of classes, and of keypoints for keypoint models."""
    fields = {"num_classes": dataset.num_classes}
    if arch.startswith("keypoint") and getattr(dataset, "keypoint_names", None):
        fields["num_keypoints"] = len(dataset.keypoint_names)
    return fields


def _demo_overrides(name: str, size: int) -> dict[str, Any]:
    """Config for training from scratch at the demo's image size: every layer trainable; for the R-CNN
    family a BatchNorm trunk (cheaper than GroupNorm on the CPU; batch 4 of 128 px images gives it enough
    statistics) and anchors scaled to the image (8..128 px at 128), as the recipe runs in BENCHMARKS.md."""
    if name.startswith("efficientdet"):
        return {"image_size": size}
    if name.startswith("retinanet"):
        return {"min_size": size, "max_size": size, "backbone_norm": "GN", "head_norm": "GN", "trainable_layers": 5}
    anchors = tuple(max(1, size // 16) * 2**i for i in range(5))
    return {"min_size": size, "max_size": size, "backbone_norm": "BN", "trainable_layers": 5, "anchor_sizes": anchors}


def demo_train_config(epochs: int, batch_size: int, lr: float, amp: bool, seed: int, out: Path,
                      progress: bool) -> TrainConfig:
    """The demo's training recipe: AdamW with 50 warm-up steps, cosine decay, weight decay 0.05, clipping at 10."""
    from objdet.engine.trainer import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adamw", lr=lr, weight_decay=0.05,
                       warmup_iters=50, schedule="cosine", clip_grad_norm=10.0, amp=amp, eval_every=0, seed=seed,
                       out=str(out), progress=progress)


def _run_demo(args: argparse.Namespace) -> int:
    import time

    import torch

    from objdet.data.augment import HorizontalFlip
    from objdet.data.coco import dataset_to_coco, save_json
    from objdet.data.shapes import SKELETON, ShapesDataset, draw_samples
    from objdet.engine import inference
    from objdet.engine.trainer import Trainer, seed_everything
    from objdet.evaluation.coco import evaluate
    from objdet.evaluation.plots import write_plots
    from objdet.visualize import save_detections
    from objdet.zoo import build

    out = Path(args.out or f"runs/demo-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"run folder: {out}")
    draw_samples(out / "samples", count=8, seed=args.seed)
    flip = HorizontalFlip(keypoint_names=ShapesDataset.keypoint_names)
    train = ShapesDataset("train", length=args.train_images, image_size=args.image_size, seed=args.seed, transforms=flip)
    val = ShapesDataset("val", length=args.val_images, image_size=args.image_size, seed=args.seed)
    overrides = {**_data_overrides(args.model, train), **_demo_overrides(args.model, args.image_size)}
    seed_everything(args.seed)
    model = build(args.model, **overrides)
    config = demo_train_config(args.epochs, args.batch_size, args.lr, args.amp, args.seed, out, not args.no_progress)
    print(f"training {args.model} from scratch on {len(train)} shapes images ({args.image_size} px), "
          f"{args.epochs} epochs")
    start = time.time()
    trainer = Trainer(model, train, None, config, arch=args.model, model_config=overrides,
                      extra={"categories": list(train.categories), "label_to_category_id": dict(train.label_to_category_id)})
    if trainer.fit()["status"] == "interrupted":
        return 130
    print(f"trained in {time.time() - start:.0f} s; evaluating on {len(val)} held-out images")

    records = inference.predict(trainer.model, val, args.batch_size)
    gt = dataset_to_coco(val)
    save_json(records, out / "detections.json")
    summary = {}
    for kind in inference.iou_types(records, gt):
        result = evaluate(gt, records, kind)
        print(f"\n{kind}:\n" + "\n".join(result.summary_lines()))
        write_plots(result, out / "plots" / kind)
        summary[kind] = dict(result.stats)
    save_json(summary, out / "metrics.json")
    names = {c["id"]: c["name"] for c in val.categories}
    trainer.model.eval()
    for i in range(min(8, len(val))):
        image, _ = val[i]
        with torch.no_grad():
            det = trainer.model([image])[0]
        save_detections(image, det, out / "predictions" / f"val_{i:03d}.png", label_names=names,
                        score_threshold=0.5, skeleton=SKELETON)
    print(f"\nbbox AP {summary['bbox']['AP']:.3f}; pictures, PR curves and checkpoints in {out}")
    return 0


# --- eval (the evaluation) ---------------------------------------------------------------------------
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score detections: COCO AP exactly as pycocotools, per-class table, plots",
                       description="Evaluate COCO results against COCO ground truth and print pycocotools' "
                                   "summary (same numbers, same format).")
    p.add_argument("--gt", metavar="GT.json", help="COCO ground truth")
    p.add_argument("--dt", metavar="DT.json", help="COCO results: a list of detections")
    p.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"], help="what to compare")
    p.add_argument("--per-class", action="store_true", help="also print AP per class and best-F1 score thresholds")
    p.add_argument("--plots", metavar="DIR", help="write PR curves and a confusion matrix (PNG) here")
    p.add_argument("--model", metavar="CKPT", help="instead of --gt/--dt: run this checkpoint over --data")
    p.add_argument("--data", metavar="SPEC", help="data set for --model (default split: val of shapes, test of voc)")
    p.add_argument("--save-dt", metavar="DT.json", help="with --model: also write its COCO results here")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    if args.model:
        gt, dt = _model_results(args)
    elif args.gt and args.dt:
        gt, dt = args.gt, args.dt
    else:
        raise ConfigError("eval needs --gt GT.json and --dt DT.json, or --model CKPT and --data SPEC")
    from objdet.evaluation.coco import evaluate

    result = evaluate(gt, dt, args.iou_type)
    print("\n".join(result.summary_lines()))
    if args.per_class:
        from objdet.evaluation.plots import best_f1

        print()
        print(result.per_class_table())
        print()
        print("best F1 at IoU 0.50 (keep scores >= threshold):")
        for name, row in best_f1(result).items():
            print(f"  {name}: threshold {row['score']:.4f}  F1 {row['f1']:.3f}  "
                  f"precision {row['precision']:.3f}  recall {row['recall']:.3f}")
    if args.plots:
        from objdet.evaluation.plots import write_plots

        paths = write_plots(result, args.plots)
        print(f"wrote {len(paths)} plots to {args.plots}")
    return 0


# --- train, predict, export (the engine) -------------------------------------------------------------
_TRAIN_FLAGS = {  # flag -> (TrainConfig field, type, help)
    "--epochs": ("epochs", int, "number of epochs"),
    "--batch-size": ("batch_size", int, "images per step (per process under torchrun)"),
    "--optimizer": ("optimizer", str, "sgd (momentum) or adamw"),
    "--lr": ("lr", float, "peak learning rate"),
    "--momentum": ("momentum", float, "SGD momentum"),
    "--weight-decay": ("weight_decay", float, "weight decay (not on norms and biases)"),
    "--warmup-iters": ("warmup_iters", int, "steps of linear warm-up"),
    "--schedule": ("schedule", str, "step or cosine decay after warm-up"),
    "--clip-grad": ("clip_grad_norm", float, "clip the gradient norm to this value"),
    "--ema-decay": ("ema_decay", float, "decay of the weight average (with --ema)"),
    "--eval-every": ("eval_every", int, "evaluate COCO AP every N epochs (0: never)"),
    "--checkpoint-every": ("checkpoint_every", int, "also write last.pt every N steps"),
    "--seed": ("seed", int, "seed of batches, augmentation and initialisation"),
    "--workers": ("num_workers", int, "data-loading processes"),
    "--device": ("device", str, "cpu or cuda"),
}


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` model config overrides; values are Python literals when they parse as one."""
    import ast

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _open_training_data(spec: str, split: str, augment: bool) -> Any:
    """A data set from SPEC; training sets get random horizontal flips (keypoints swap left/right)."""
    from objdet.data import open_dataset
    from objdet.data.augment import HorizontalFlip

    dataset = open_dataset(spec, split=split if ":" not in spec.partition(":")[2] else None)
    if augment:
        dataset.transforms = HorizontalFlip(keypoint_names=getattr(dataset, "keypoint_names", None) or None)
    return dataset


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a zoo model on a data set (Ctrl-C saves; --resume continues)",
                       description="Train a zoo model. Writes last.pt, best.pt, log.jsonl and TensorBoard "
                                   "scalars to --out. Under torchrun, trains on every process with DDP.")
    p.add_argument("--model", help="zoo model name (see objdet.list_models()); not needed with --resume")
    p.add_argument("--data", required=True, help="training data: shapes[:split] | voc:ROOT[:split] | coco:ANN.json:IMG_DIR")
    p.add_argument("--val-data", help="evaluation data SPEC (default: the `val` split of shapes, `test` of voc)")
    p.add_argument("--out", default="runs/train", help="run folder")
    p.add_argument("--resume", nargs="?", const="", metavar="CKPT",
                   help="continue the run (from CKPT, default OUT/last.pt) with its saved settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --set min_size=320 (repeatable)")
    for flag, (_, kind, text) in _TRAIN_FLAGS.items():
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    p.add_argument("--ema", action="store_true", default=None, help="keep and evaluate an average of the weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _default_val_spec(spec: str) -> str | None:
    """The held-out split next to a training spec: shapes -> shapes:val, voc:ROOT -> voc:ROOT:test."""
    kind, _, rest = spec.partition(":")
    if kind == "shapes":
        return "shapes:val"
    if kind == "voc":
        return f"voc:{rest.rsplit(':', 1)[0] if ':' in rest else rest}:test"
    return None


def _model_results(args: argparse.Namespace) -> tuple[dict, list]:
    """`eval --model CKPT --data SPEC`: the data set's COCO ground truth and the model's results on it."""
    if not args.data:
        raise ConfigError("eval --model needs --data SPEC")
    from objdet.data.coco import dataset_to_coco, save_json
    from objdet.engine import checkpoint, inference

    has_split = args.data.startswith("coco:") or ":" in args.data.partition(":")[2]
    dataset = _open_training_data(args.data if has_split else _default_val_spec(args.data) or args.data, "val", False)
    model, _ = checkpoint.load_model(args.model)
    records = inference.predict(model, dataset)
    if args.save_dt:
        save_json(records, args.save_dt)
    return dataset_to_coco(dataset), records


def _run_train(args: argparse.Namespace) -> int:
    from objdet.engine import checkpoint
    from objdet.engine.trainer import TrainConfig, Trainer, seed_everything
    from objdet.zoo import build

    saved: dict[str, Any] = {}
    resume_from = None
    if args.resume is not None:
        resume_from = Path(args.resume or Path(args.out) / "last.pt")
        saved = checkpoint.load(resume_from)
    settings = dict(saved.get("train_config") or {})
    settings.update({field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in _TRAIN_FLAGS.items()
                     if getattr(args, flag[2:].replace("-", "_")) is not None})
    settings.update({k: v for k, v in (("amp", args.amp), ("ema", args.ema)) if v is not None})
    settings.update(out=args.out, progress=not args.no_progress)
    config = TrainConfig(**settings)

    train_set = _open_training_data(args.data, "train", augment=True)
    val_spec = args.val_data or _default_val_spec(args.data)
    val_set = _open_training_data(val_spec, "val", augment=False) if val_spec else None
    arch = saved.get("arch") or args.model
    if not arch:
        raise ConfigError("--model is required (the zoo name of the detector to train)")
    overrides = dict(saved.get("config") or {**_data_overrides(arch, train_set), **_parse_overrides(args.set)})
    seed_everything(config.seed)
    trainer = Trainer(build(arch, **overrides), train_set, val_set, config, arch=arch, model_config=overrides,
                      extra={"categories": list(train_set.categories),
                             "label_to_category_id": dict(train_set.label_to_category_id)})
    if resume_from is not None:
        trainer.resume(resume_from)
    result = trainer.fit()
    print(f"{result['status']} at epoch {result['epoch']}, step {result['step']}; checkpoints in {args.out}")
    return 130 if result["status"] == "interrupted" else 0


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _image_files(paths: Sequence[str]) -> list[Path]:
    """The files named, and the images inside the folders named (sorted)."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("no such image file or folder", path=path)
    if not files:
        raise DataError("no images found", path=", ".join(paths))
    return files


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images; PNGs with boxes/masks/keypoints + COCO json",
                       description="Run a checkpoint over images (files or folders; RGBA, grayscale and "
                                   "EXIF-rotated images are read upright as RGB).")
    p.add_argument("--model", required=True, help="checkpoint (objdet train / objdet convert)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", default="runs/predict", help="folder for the drawn PNGs")
    p.add_argument("--json", help="write COCO results here (default OUT/results.json)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="draw detections at least this confident")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import torch

    from objdet.data.coco import save_json, to_coco_results
    from objdet.data.image import read_image
    from objdet.engine import checkpoint
    from objdet.visualize import save_detections

    model, payload = checkpoint.load_model(args.model, args.device)
    names = {i + 1: c["name"] for i, c in enumerate(payload.get("categories") or [])}
    skeleton = next((c.get("skeleton") for c in payload.get("categories") or [] if c.get("skeleton")), None)
    out = Path(args.out)
    results, images = [], []
    for image_id, file in enumerate(_image_files(args.images), start=1):
        image = read_image(file)
        with torch.no_grad():
            det = {k: v.cpu() for k, v in model([image.to(args.device)])[0].items()}
        save_detections(image, det, out / f"{file.stem}.png", label_names=names or None,
                        score_threshold=args.score_threshold, skeleton=skeleton)
        results += to_coco_results([det], [image_id], payload.get("label_to_category_id"))
        images.append({"id": image_id, "file_name": str(file), "height": image.shape[-2], "width": image.shape[-1]})
    json_path = save_json(results, args.json or out / "results.json")
    save_json(images, out / "images.json")
    print(f"{len(images)} images, {len(results)} detections: pictures in {out}, results in {json_path}")
    return 0



def _add_export(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from objdet.engine import checkpoint
    from objdet.export import export_onnx, run_onnx

    model, _ = checkpoint.load_model(args.model)
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


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="turn a torchvision or effdet checkpoint into an objdet checkpoint",
                       description="Convert a peer library's state dict (IN.pth) into an objdet checkpoint "
                                   "(OUT.pt) holding the weights, the zoo name and the config.")
    p.add_argument("--from", dest="source", required=True, choices=["torchvision", "effdet"], help="library")
    p.add_argument("--arch", required=True, help="the library's model name, e.g. fasterrcnn_resnet50_fpn")
    p.add_argument("input", help="the library's checkpoint (a state dict, or a dict holding one under 'model')")
    p.add_argument("output", help="objdet checkpoint to write")
    p.set_defaults(run=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    import dataclasses
    import pickle
    import re
    import zipfile

    import torch

    from objdet.engine import checkpoint
    from objdet.errors import CheckpointError

    try:
        state = torch.load(args.input, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"cannot read a weights-only state dict: {err}", path=args.input) from err
    if isinstance(state, dict):
        state = next((state[k] for k in ("model", "state_dict") if isinstance(state.get(k), dict)), state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a state dict of tensors", path=args.input)
    try:
        if args.source == "torchvision":
            from objdet.weights.torchvision import CONVERTERS, from_torchvision

            model = from_torchvision(args.arch, state)
            zoo_name = CONVERTERS[args.arch][0]
        else:
            from objdet.weights.effdet import from_effdet

            model = from_effdet(args.arch, state)
            zoo_name = re.sub(r"^tf_", "", args.arch)
    except CheckpointError as err:
        raise CheckpointError(str(err), path=args.input) from err
    config = dataclasses.asdict(model.config)
    checkpoint.save(args.output, {"model": model.state_dict(), "arch": zoo_name, "config": config})
    print(f"wrote {args.output} ({zoo_name}, from {args.source} {args.arch})")
    return 0


# --- ablate (the seed's ablation tables) ------------------------------------------------------------
def _add_ablate(sub: argparse._SubParsersAction) -> None:
    from objdet.ablation.studies import STUDIES

    p = sub.add_parser("ablate", help="rerun one of the seed's ablation tables (one training run per row)",
                       description="Train every row of a seed ablation table with the same seed, data and "
                                   "number of steps, score it on held-out data and print a Markdown table "
                                   "beside the seed's numbers. Finished runs are saved under --out and reused.")
    p.add_argument("study", choices=[*STUDIES, "all"], help="the table to reproduce")
    p.add_argument("--data", default="shapes", help="training data SPEC (default: the built-in shapes)")
    p.add_argument("--val-data", help="held-out data SPEC (default: the spec's `val` split)")
    p.add_argument("--budget", type=float, default=60.0, help="minutes for the whole study (sets the steps per run)")
    p.add_argument("--steps", type=int, help="training steps per run (overrides --budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds; each row runs once per seed")
    p.add_argument("--out", default="runs/ablate", help="folder for the runs and the tables")
    p.add_argument("--val-images", type=int, default=64, help="held-out shapes images each run is scored on")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a CPU shared with other jobs)")
    p.set_defaults(run=_run_ablate)


def _run_ablate(args: argparse.Namespace) -> int:
    from objdet.ablation.runner import run_study
    from objdet.ablation.studies import STUDIES
    from objdet.ablation.table import render_table

    if args.steps is not None and args.steps < 1 or args.budget <= 0:
        raise ConfigError("--steps and --budget must be positive")
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    names = list(STUDIES) if args.study == "all" else [args.study]
    for name in names:
        study = STUDIES[name]
        budget = args.budget / len(names)
        results = run_study(study, args.data, args.val_data, budget, args.seeds, args.steps, args.out,
                            args.val_images)
        steps = results[0].steps
        command = (f"objdet ablate {name} --data {args.data} --steps {steps} --seeds {' '.join(map(str, args.seeds))}"
                   + (f" --val-data {args.val_data}" if args.val_data else f" --val-images {args.val_images}")
                   + (f" --threads {args.threads}" if args.threads else ""))
        table = render_table(study, results, command)
        path = Path(args.out) / f"{name}.md"
        path.write_text(table + "\n", encoding="utf-8")
        print(table)
        print(f"\n(table written to {path})")
    return 0


# Sub-commands in the order `objdet --help` lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_train, _add_eval, _add_predict,
                                                             _add_export, _add_convert, _add_ablate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="objdet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ObjdetError as err:
        print(f"objdet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"objdet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
