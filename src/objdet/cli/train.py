"""`objdet train`: train a zoo model on a data set; Ctrl-C saves, `--resume` continues the run exactly."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from objdet.cli.data import SPEC_HELP
from objdet.errors import ConfigError
from objdet.weights.finetune import SMALL_BATCH, TRUNK_STATS

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
    "--seed": ("seed", int, "seed of batches, augmentation, initialisation and --val-split"),
    "--aug": ("aug", str, "training augmentation: none, flip (default), standard or strong (README)"),
    "--workers": ("num_workers", int, "data-loading processes"),
    "--device": ("device", str, "cpu or cuda"),
    "--freeze": ("freeze", str, "parts that do not train: none, backbone or backbone+neck"),
    "--metric": ("metric", str, ("what picks best.pt and --patience watches: a COCO stat (AP, AP50, "
                                 "segm/AP...) or val_loss (lower is better); default bbox AP")),
    "--patience": ("patience", int, "stop when --metric has not improved for N evaluations (0: never)"),
}


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a zoo model on a data set (Ctrl-C saves; --resume continues)",
                       description="Train a zoo model. Writes last.pt, best.pt, log.jsonl and TensorBoard "
                                   "scalars to --out. Under torchrun, trains on every process with DDP.")
    p.add_argument("--model", help="zoo model name (see objdet.list_models()); not needed with --resume")
    p.add_argument("--data", required=True, help=f"training {SPEC_HELP}")
    p.add_argument("--val-data", metavar="SPEC", help="evaluation data (default: the `val` split of shapes and yolo, "
                                                      "`test` of voc; with --val-split, the held-out part)")
    p.add_argument("--val-split", type=float, metavar="FRACTION", help="hold out this fraction of --data (seeded "
                   "by --seed) as the validation set and train on the rest")
    p.add_argument("--strict", action="store_true", help="refuse the data at the first wart instead of repairing it")
    p.add_argument("--weights", metavar="SRC", help="start from these weights: a checkpoint, a torchvision or effdet "
                   "state dict, torchvision:WEIGHTS (e.g. COCO_V1) or effdet:NAME; classes of the same name keep "
                   "their rows. Sets the fine-tuning recipe's defaults (README, 'Fine-tune on your own classes')")
    p.add_argument("--backbone-weights", metavar="imagenet|PATH", help="start the trunk only from ImageNet weights "
                                                                       "(torchvision's or timm's) or a file")
    p.add_argument("--trunk-stats", choices=TRUNK_STATS, default="auto",
                   help="BatchNorm statistics of a pretrained trunk: frozen, or batch (updated every step); auto "
                        f"freezes them below {SMALL_BATCH} images per process")
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
    p.add_argument("--no-report", action="store_true", default=None,
                   help="do not write OUT/report.html (the evaluation report on the validation set) at the end")
    p.set_defaults(run=run)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
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


def open_data(spec: str, split: str, aug: str = "none", strict: bool = False, val_split: float | None = None,
              seed: int = 0) -> Any:
    """A data set from SPEC (`split` when the spec names none, the seeded part of `val_split` when given) with
    the augmentation preset `aug` (objdet.data.augment.PRESETS; keypoints swap left/right under flips)."""
    from objdet.data import open_dataset, parse_spec
    from objdet.data.augment import presets

    named = parse_spec(spec).split
    if named and val_split is not None:
        raise ConfigError(f"--val-split carves train and val parts out of the data set: give {spec!r} without "
                          f"its split {named!r}")
    dataset = open_dataset(spec, split=None if named else split, strict=strict, val_split=val_split, seed=seed)
    dataset.transforms = presets(aug, getattr(dataset, "keypoint_names", None))
    return dataset


def run(args: argparse.Namespace) -> int:
    from objdet import zoo
    from objdet.data import held_out_spec
    from objdet.engine import checkpoint, distributed
    from objdet.engine.trainer import TrainConfig, Trainer, seed_everything
    from objdet.weights.finetune import RECIPE, build_for_training

    saved: dict[str, Any] = {}
    resume_from = None
    if args.resume is not None:
        resume_from = Path(args.resume or Path(args.out) / "last.pt")
        saved = checkpoint.load(resume_from)
    settings = dict(saved.get("train_config") or (RECIPE if args.weights else {}))
    settings.update({field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in _TRAIN_FLAGS.items()
                     if getattr(args, flag[2:].replace("-", "_")) is not None})
    settings.update({k: v for k, v in (("amp", args.amp), ("ema", args.ema)) if v is not None})
    if args.no_report:
        settings["report"] = False
    settings.update(out=args.out, progress=not args.no_progress)
    config = TrainConfig(**settings)
    distributed.init_from_env(config.device)  # under torchrun: join the process group before any model exists

    val_split = args.val_split if args.val_split is not None else saved.get("val_split")
    if val_split is not None and args.val_data:
        raise ConfigError("--val-split makes the validation set from --data: give it or --val-data, not both")
    train_set = open_data(args.data, "train", config.aug, args.strict, val_split, config.seed)
    val_spec = args.data if val_split is not None else args.val_data or held_out_spec(args.data)
    val_set = open_data(val_spec, "val", "none", args.strict, val_split, config.seed) if val_spec else None
    arch = saved.get("arch") or args.model
    classes = [c["name"] for c in train_set.categories]
    seed_everything(config.seed)
    if saved:
        model = zoo.build(arch, classes=classes, **{k: v for k, v in saved["config"].items() if k != "num_classes"})
    else:
        model, summary = build_for_training(arch, classes, parse_overrides(args.set), batch_size=config.batch_size,
                                            keypoint_names=getattr(train_set, "keypoint_names", None),
                                            weights=args.weights, backbone_weights=args.backbone_weights,
                                            trunk_stats=args.trunk_stats)
        if summary and distributed.is_main():
            print(summary)
    seed_everything(config.seed)  # the training stream starts from the seed as well (as it always has)
    trainer = Trainer(model, train_set, val_set, config,
                      extra={"categories": list(train_set.categories), "val_split": val_split,
                             "label_to_category_id": dict(train_set.label_to_category_id)})
    if resume_from is not None:
        trainer.resume(resume_from)
    result = trainer.fit()
    if distributed.is_main():
        print(f"{result['status']} at epoch {result['epoch']}, step {result['step']}; checkpoints in {args.out}")
    return 130 if result["status"] == "interrupted" else 0
