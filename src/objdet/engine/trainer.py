"""The training loop: optimiser and schedule, mixed precision, EMA, periodic evaluation, early stopping,
checkpoints and the end-of-training report.

One `Trainer` serves a single process and every rank of a `torchrun` job alike; only rank 0 logs
and writes. The constructor has no side effects on the process: the caller seeds (`seed_everything`
before building the model) and starts the process group (`distributed.init_from_env`, which the
command does). Batches, augmentation and the model's own sampling are seeded so that a run stopped
(Ctrl-C, or killed) and resumed from its checkpoint ends with the weights of a run never stopped.

The parts live in their own modules and are re-exported here, where users import them from.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objdet.data.loader import collate
from objdet.engine import checkpoint, distributed, inference
from objdet.engine.config import TrainConfig
from objdet.engine.ema import ModelEMA
from objdet.engine.runlog import RunLog
from objdet.engine.schedule import WarmupSchedule
from objdet.engine.seeding import SeededDataset, seed_everything
from objdet.engine.step import NonFiniteLoss, train_step
from objdet.engine.stopping import EarlyStopping
from objdet.engine.validation import validation_loss
from objdet.errors import ConfigError, TrainingError
from objdet.weights.transfer import freeze

__all__ = ["ModelEMA", "SeededDataset", "TrainConfig", "Trainer", "WarmupSchedule", "seed_everything"]


class Trainer:
    """Trains `model` on `train_set`, scoring it on `val_set`; writes `last.pt` and `best.pt` to `out`.

    `model` comes from `objdet.build`: checkpoints store its zoo name, full config and class names
    (`checkpoint.model_payload`) so `objdet.load` rebuilds it; `extra` entries (plain data such as the
    categories) are stored alongside. `step_hook(step, losses)` runs after each optimiser step.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None, config: TrainConfig,
                 step_hook: Callable[[int, dict[str, float]], None] | None = None,
                 extra: dict[str, Any] | None = None):
        if config.patience and (val_set is None or not config.eval_every):
            raise ConfigError("early stopping (patience) needs a validation set and evaluations (eval_every > 0)")
        if config.metric == "val_loss" and not config.val_loss:
            raise ConfigError("metric val_loss needs the validation loss (val_loss=True)")
        self.config = config
        self.device = distributed.local_device(config.device)
        self.model = model.to(self.device)
        freeze(self.model, config.freeze)  # before DDP and the optimiser see which parameters train
        # wrapping now copies rank 0's initial weights to every process before the EMA copies them
        self.ddp_model: nn.Module | None = distributed.wrap(self.model, self.device)
        self.train_set, self.val_set = train_set, val_set
        self.step_hook = step_hook
        self.extra = dict(extra or {})
        self.out = Path(config.out)
        self.optimizer = self._make_optimizer()
        self.steps_per_epoch = distributed.ShardedBatchSampler(len(train_set), config.batch_size, config.seed,
                                                               0).steps_per_epoch()
        self.schedule = WarmupSchedule(self.optimizer, config, self.steps_per_epoch * config.epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp and self.device.type == "cuda")
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema else None
        self.stopping = EarlyStopping(config.metric, config.patience)
        self.epoch, self.step = 0, 0
        self.history: list[dict[str, Any]] = []
        self._stop_requested = False
        self._last_predictions: tuple[int, list[dict[str, Any]]] | None = None  # (step, records) of the last evaluation

    @property
    def best(self) -> float | None:
        """The best value of `config.metric` so far."""
        return self.stopping.best

    # -- set-up -----------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for p in self.model.parameters():
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

    def _loader(self, epoch: int, start_step: int) -> DataLoader:
        c = self.config
        sampler = distributed.ShardedBatchSampler(len(self.train_set), c.batch_size, c.seed, epoch,
                                                  start_step=start_step)
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
            "best": self.best, "stopping": self.stopping.state_dict(), "history": self.history,
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
        self.history = list(state.get("history") or [])
        # checkpoints from before early stopping kept only the best value of the default metric
        self.stopping.load_state_dict(state.get("stopping") or {"metric": "AP", "best": state.get("best"),
                                                                 "best_epoch": None, "stale": 0})

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
        """Train to `config.epochs` or until early stopping; returns {"status": "finished"|"stopped"|"interrupted",
        "epoch", "step", "metrics", "reason"}."""
        c = self.config
        log = RunLog(self.out, distributed.is_main(), c.progress, self.steps_per_epoch * c.epochs, self.step)
        status, reason = "finished", ""
        if self.ddp_model is None:
            self.ddp_model = distributed.wrap(self.model, self.device)
        model = self.ddp_model
        try:
            with self._graceful_interrupt():
                while self.epoch < c.epochs and not self.stopping.should_stop():
                    if not self._train_epoch(model, log):
                        status = "interrupted"
                        break
                    self.epoch += 1
                    record = self._maybe_evaluate(log)
                    best = record is not None and self.stopping.update(record)
                    self._save("last.pt")
                    if best:
                        self._save("best.pt")
                if status == "interrupted":
                    self._save("last.pt")
                    log.message(f"interrupted at step {self.step}; saved {self.out / 'last.pt'} (resume with --resume)")
                elif self.stopping.should_stop():
                    status, reason = "stopped", f"early stop at epoch {self.epoch}: {self.stopping.reason()}"
                    log.message(reason)
                    log.record("stop", self.step, {"epoch": self.epoch, "reason": reason})
                if status != "interrupted":
                    self._write_report(log)
        finally:
            log.close()
            self.ddp_model = None  # DDP holds the process group: release it, so distributed.shutdown joins gloo
        return {"status": status, "epoch": self.epoch, "step": self.step, "reason": reason,
                "metrics": self.history[-1] if self.history else None}

    def _train_epoch(self, model: nn.Module, log: RunLog) -> bool:
        """Steps of `model` (the DDP wrapper under torchrun) in the current epoch from where the run stands;
        False if a stop was requested."""
        c = self.config
        start = self.step - self.epoch * self.steps_per_epoch
        model.train()
        for images, targets in self._loader(self.epoch, start):
            images = [im.to(self.device) for im in images]
            targets = [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            try:
                values = train_step(model, images, targets, self.optimizer, c.amp, self.scaler,
                                    c.clip_grad_norm)
            except NonFiniteLoss as err:
                kept = self.out / "last.pt"
                where = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
                raise TrainingError(f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}): {err}; "
                                    f"training stopped and {where}", path=self.out) from err
            self.schedule.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            values = distributed.all_reduce_mean(values)
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

    def _maybe_evaluate(self, log: RunLog) -> dict[str, Any] | None:
        """COCO stats (and the validation loss) of this epoch when it is an evaluation epoch; the history record."""
        c = self.config
        if self.val_set is None or not c.eval_every or (self.epoch % c.eval_every and self.epoch != c.epochs):
            return None
        model = self.evaluation_model()
        records = inference.predict(model, self.val_set, c.batch_size, self.device)
        self._last_predictions = (self.step, records)
        stats = inference.score(records, self.val_set)
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step,
                                  **{f"{kind}/{k}": v for kind, s in stats.items() for k, v in s.items()}}
        if c.val_loss:
            record.update(validation_loss(model, self.val_set, c.batch_size, self.device, c.seed, c.amp))
        self.history.append(record)
        log.scalars(self.step, {k: v for k, v in record.items() if k not in ("epoch", "step")}, "val")
        summary = ", ".join(f"{kind} AP {s['AP']:.3f} AP50 {s['AP50']:.3f}" for kind, s in stats.items())
        if "loss" in record:
            summary += f", val loss {record['loss']:.4f}"
        log.message(f"epoch {self.epoch}: {summary}")
        return record

    def _write_report(self, log: RunLog) -> None:
        """report.html of the final weights on the validation set (rank 0 writes; every rank predicts its share)."""
        if self.val_set is None or not self.config.report:
            return
        from objdet.engine.report import write_training_report

        if self._last_predictions is not None and self._last_predictions[0] == self.step:
            records = self._last_predictions[1]
        else:
            records = inference.predict(self.evaluation_model(), self.val_set, self.config.batch_size, self.device)
        if distributed.is_main():
            path = write_training_report(records, self.val_set, self.out / "report.html",
                                         title=f"objdet training report: {self.out}, epoch {self.epoch}")
            log.message(f"wrote the report on the validation set to {path}")
        distributed.barrier()
