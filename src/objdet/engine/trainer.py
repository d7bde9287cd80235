"""The training loop: optimiser and schedule, mixed precision, EMA, periodic COCO evaluation, checkpoints.

One `Trainer` serves a single process and every rank of a `torchrun` job alike; only rank 0 logs
and writes checkpoints. Batches, augmentation and the model's own sampling are seeded so that a
run stopped (Ctrl-C, or killed) and resumed from its checkpoint ends with the weights of a run
never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objdet.data.loader import collate
from objdet.engine import checkpoint, distributed, inference
from objdet.errors import ConfigError, TrainingError
from objdet.weights.transfer import FREEZE_CHOICES, freeze


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
    metric: str = "AP"  # the bbox statistic that picks the best checkpoint
    freeze: str = "none"  # "none" | "backbone" | "backbone+neck": parts that do not train (fine-tuning)
    aug: str = "flip"  # augmentation preset of the training set (objdet.data.augment.PRESETS), set by its caller

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', not {self.optimizer!r}")
        if self.schedule not in ("step", "cosine"):
            raise ConfigError(f"schedule must be 'step' or 'cosine', not {self.schedule!r}")
        if self.freeze not in FREEZE_CHOICES:
            raise ConfigError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, not {self.freeze!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch size must be positive (got {self.epochs}, {self.batch_size})")
        self.milestones = tuple(float(m) for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the checkpoint stays weights-only loadable."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy generators (call before building the model for repeatable init)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


class WarmupSchedule:
    """Learning-rate factor per step: linear warm-up from `warmup_factor`, then step or cosine decay."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
        self.optimizer, self.config, self.total_steps = optimizer, config, max(1, total_steps)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rate at global step `step`."""
        c = self.config
        warm = 1.0
        if step < c.warmup_iters:
            alpha = step / c.warmup_iters
            warm = c.warmup_factor * (1 - alpha) + alpha
        if c.schedule == "cosine":
            decay = 0.5 * (1 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        else:
            decay = c.gamma ** sum(step >= round(m * self.total_steps) for m in c.milestones)
        return warm * decay

    def step(self) -> None:
        """Advance one optimiser step."""
        self.last_step += 1
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step, self.base_lrs = int(state["last_step"]), list(state["base_lrs"])
        self._apply()


class ModelEMA:
    """Exponential moving average of a model's weights (EfficientDet evaluates the average).

    The decay ramps as min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the
    random initialisation; buffers (BatchNorm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0
        self._averaged = {name for name, p in self.module.named_parameters() if p.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = current[name].detach()
            if name in self._averaged:
                avg.mul_(d).add_(value, alpha=1 - d)
            else:
                avg.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])


class SeededDataset(Dataset):
    """Wraps a data set so sample i of epoch e sees the same random augmentation every time.

    The global generators are saved and restored around each read, so loading data does not
    disturb the random stream the model itself uses (RPN sampling, dropout).
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample_seed = (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**31)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class _RunLog:
    """Rank-0 outputs of a run: tqdm bar, TensorBoard scalars and `log.jsonl` in the run folder."""

    def __init__(self, out: Path, enabled: bool, progress: bool, total_steps: int, start_step: int):
        self.enabled = enabled
        self.bar = None
        self.writer = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out / "log.jsonl", "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step or None)
        except ImportError:
            self.writer = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.jsonl.write(json.dumps({"kind": prefix, "step": step, "time": time.time(), **values}) + "\n")
        self.jsonl.flush()

    def progress(self, epoch: int, loss: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            self.bar.update(1)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.jsonl.close()


class Trainer:
    """Trains `model` on `train_set`, scoring COCO AP on `val_set`; writes `last.pt` and `best.pt` to `out`.

    `model` comes from `objdet.build`: checkpoints store its zoo name, full config and class names
    (`checkpoint.model_payload`) so `objdet.load` rebuilds it; `extra` entries (plain data such as the
    categories) are stored alongside. `step_hook(step, losses)` runs after each optimiser step.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None, config: TrainConfig,
                 step_hook: Callable[[int, dict[str, float]], None] | None = None,
                 extra: dict[str, Any] | None = None):
        self.config = config
        self.device = distributed.init_from_env(config.device)
        seed_everything(config.seed)
        self.model = model.to(self.device)
        freeze(self.model, config.freeze)  # before DDP and the optimiser see which parameters train
        # wrapping now copies rank 0's initial weights to every process before the EMA copies them
        self.ddp_model: nn.Module | None = distributed.wrap(self.model, self.device)
        self.train_set, self.val_set = train_set, val_set
        self.step_hook = step_hook
        self.extra = dict(extra or {})
        self.out = Path(config.out)
        self.optimizer = self._make_optimizer()
        self.steps_per_epoch = distributed.ShardedBatchSampler(len(train_set), config.batch_size, config.seed, 0).steps_per_epoch()
        self.schedule = WarmupSchedule(self.optimizer, config, self.steps_per_epoch * config.epochs)
        cuda_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda_amp)
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema else None
        self.epoch, self.step = 0, 0
        self.best: float | None = None
        self.history: list[dict[str, Any]] = []
        self._stop_requested = False

    # -- set-up -----------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        # fused kernels update every tensor in one pass: on this CPU 3-6x faster than the per-parameter
        # loop, which took a sixth of the demo's step (BENCHMARKS.md, `objdet demo`)
        fused = self.device.type in ("cpu", "cuda")
        if self.config.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=self.config.lr, fused=fused)
        return torch.optim.SGD(groups, lr=self.config.lr, momentum=self.config.momentum, fused=fused)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _loader(self, epoch: int, start_step: int) -> DataLoader:
        c = self.config
        sampler = distributed.ShardedBatchSampler(len(self.train_set), c.batch_size, c.seed, epoch, start_step=start_step)
        return DataLoader(SeededDataset(self.train_set, c.seed, epoch), batch_sampler=sampler, collate_fn=collate,
                          num_workers=c.num_workers, generator=torch.Generator().manual_seed(c.seed + epoch))

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole training state as a weights-only checkpoint payload."""
        return {
            **self.extra, **checkpoint.model_payload(self.model),
            "train_config": self.config.to_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": checkpoint.rng_state(), "epoch": self.epoch, "step": self.step,
            "best": self.best, "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `state_dict` (model, optimiser, schedule, RNG, counters)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        checkpoint.set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best, self.history = state.get("best"), list(state.get("history") or [])

    def resume(self, path: str | Path) -> None:
        """Load `path` (usually `out/last.pt`) to continue its run."""
        self.load_state_dict(checkpoint.load(path, map_location=self.device))

    def _save(self, name: str) -> None:
        if distributed.is_main():
            checkpoint.save(self.out / name, self.state_dict())
        distributed.barrier()

    # -- the loop ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _graceful_interrupt(self) -> Iterator[None]:
        """First Ctrl-C asks the loop to save and stop after the current step; a second one aborts."""
        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def request_stop(self) -> None:
        """Ask the loop to save and stop after the current step (what Ctrl-C does)."""
        self._stop_requested = True

    def fit(self) -> dict[str, Any]:
        """Train to `config.epochs`; returns {"status": "finished"|"interrupted", "epoch", "step", "metrics"}."""
        c = self.config
        total = self.steps_per_epoch * c.epochs
        log = _RunLog(self.out, distributed.is_main(), c.progress, total, self.step)
        status = "finished"
        if self.ddp_model is None:
            self.ddp_model = distributed.wrap(self.model, self.device)
        try:
            with self._graceful_interrupt():
                while self.epoch < c.epochs:
                    if not self._train_epoch(log):
                        status = "interrupted"
                        break
                    self.epoch += 1
                    metrics = self._maybe_evaluate(log)
                    self._save("last.pt")
                    if metrics is not None and (self.best is None or metrics >= self.best):
                        self.best = metrics
                        self._save("best.pt")
                if status == "interrupted":
                    self._save("last.pt")
                    log.message(f"interrupted at step {self.step}; saved {self.out / 'last.pt'} (resume with --resume)")
        finally:
            log.close()
            self.ddp_model = None  # DDP holds the process group: release it so distributed.shutdown joins gloo's threads
        return {"status": status, "epoch": self.epoch, "step": self.step,
                "metrics": self.history[-1] if self.history else None}

    def _train_epoch(self, log: _RunLog) -> bool:
        """Steps of the current epoch from where the run stands; False if a stop was requested."""
        c = self.config
        start = self.step - self.epoch * self.steps_per_epoch
        self.ddp_model.train()
        for images, targets in self._loader(self.epoch, start):
            images = [im.to(self.device) for im in images]
            targets = [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with self._autocast():
                losses = self.ddp_model(images, targets)
            loss = sum(losses.values())
            values = {k: float(v.detach()) for k, v in losses.items()}
            if not torch.isfinite(loss.detach()):
                kept = self.out / "last.pt"
                where = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
                bad = ", ".join(f"{k}={v}" for k, v in values.items())
                raise TrainingError(f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}): {bad}; "
                                    f"training stopped and {where}", path=self.out)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if c.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad_norm, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            values = distributed.all_reduce_mean({**values, "loss": float(loss.detach())})
            lr = self.optimizer.param_groups[0]["lr"]
            log.scalars(self.step, {**values, "lr": lr}, "train")
            log.progress(self.epoch + 1, values["loss"], lr)
            if self.step_hook is not None:
                self.step_hook(self.step, values)
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self._save("last.pt")
            if distributed.broadcast(self._stop_requested):
                return False
        return True

    def evaluation_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA average when enabled, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def _maybe_evaluate(self, log: _RunLog) -> float | None:
        c = self.config
        if self.val_set is None or not c.eval_every or (self.epoch % c.eval_every and self.epoch != c.epochs):
            return None
        stats = inference.evaluate(self.evaluation_model(), self.val_set, c.batch_size, self.device)
        record = {"epoch": self.epoch, "step": self.step, **{f"{kind}/{k}": v for kind, s in stats.items() for k, v in s.items()}}
        self.history.append(record)
        log.scalars(self.step, {k: v for k, v in record.items() if "/" in k}, "val")
        summary = ", ".join(f"{kind} AP {s['AP']:.3f} AP50 {s['AP50']:.3f}" for kind, s in stats.items())
        log.message(f"epoch {self.epoch}: {summary}")
        return stats["bbox"][c.metric]
