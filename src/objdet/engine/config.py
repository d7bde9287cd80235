"""Every knob of a training run, as one dataclass saved in the checkpoint (so `--resume` needs no flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from objdet.errors import ConfigError
from objdet.weights.transfer import FREEZE_CHOICES


@dataclass
class TrainConfig:
    """Every knob of a training run; saved in the checkpoint so `--resume` needs no flags."""

    epochs: int = 12
    batch_size: int = 2
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    schedule: str = "step"  # "step" | "cosine"
    milestones: tuple[float, ...] = (2 / 3, 8 / 9)  # fractions of all steps where "step" decays
    gamma: float = 0.1
    clip_grad_norm: float | None = None
    amp: bool = False  # bfloat16 autocast on CPU, float16 with a scaler on CUDA
    ema: bool = False
    ema_decay: float = 0.9998
    eval_every: int = 1  # epochs; 0 never evaluates
    checkpoint_every: int = 0  # steps; 0 writes at epoch ends only
    seed: int = 0
    num_workers: int = 0
    device: str = "cpu"
    out: str = "runs/train"
    progress: bool = True
    metric: str = "AP"  # what picks best.pt and drives --patience: a COCO stat ("AP", "segm/AP50") or "val_loss"
    freeze: str = "none"  # "none" | "backbone" | "backbone+neck": parts that do not train (fine-tuning)
    aug: str = "flip"  # augmentation preset of the training set (objdet.data.augment.PRESETS), set by its caller
    val_loss: bool = True  # each evaluation also computes the mean loss on the validation set
    patience: int = 0  # stop after this many evaluations without improvement of `metric`; 0 never stops early
    report: bool = True  # write report.html on the validation set when training ends

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', not {self.optimizer!r}")
        if self.schedule not in ("step", "cosine"):
            raise ConfigError(f"schedule must be 'step' or 'cosine', not {self.schedule!r}")
        if self.freeze not in FREEZE_CHOICES:
            raise ConfigError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, not {self.freeze!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch size must be positive (got {self.epochs}, {self.batch_size})")
        if self.patience < 0:
            raise ConfigError(f"patience must be 0 (never stop early) or positive, not {self.patience}")
        from objdet.engine.stopping import metric_key

        metric_key(self.metric)  # an unknown metric is refused now, not after the first epoch
        self.milestones = tuple(float(m) for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the checkpoint stays weights-only loadable."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
