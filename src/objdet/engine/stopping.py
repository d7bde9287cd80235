"""Which evaluation is the best so far and when to stop: one metric, its direction, and a patience counter."""

from __future__ import annotations

from typing import Any

from objdet.engine.inference import STAT_NAMES
from objdet.errors import ConfigError

IOU_TYPES = ("bbox", "segm", "keypoints")


def metric_key(metric: str) -> str:
    """The evaluation-record key of a metric name: "AP" -> "bbox/AP", "segm/AP50" as is, "val_loss" -> "loss"."""
    if metric == "val_loss":
        return "loss"
    kind, sep, stat = metric.rpartition("/")
    if stat not in STAT_NAMES or (sep and kind not in IOU_TYPES):
        raise ConfigError(f"unknown metric {metric!r}: use val_loss or a COCO stat ({', '.join(STAT_NAMES)}), "
                          f"optionally after an iou type (e.g. segm/AP)")
    return f"{kind or 'bbox'}/{stat}"


class EarlyStopping:
    """Tracks `metric` over evaluations: the best value (higher is better, lower for val_loss) and how many
    evaluations have passed without a strict improvement; `patience` of them (0: never) ends the run.

    A tie with the best is not an improvement for patience, but is still reported as `best` so best.pt keeps
    the later of equal checkpoints.
    """

    def __init__(self, metric: str, patience: int = 0):
        self.metric, self.key, self.patience = metric, metric_key(metric), patience
        self.lower_is_better = metric == "val_loss"
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stale = 0

    def update(self, record: dict[str, Any]) -> bool:
        """Take one evaluation record (with "epoch"); True when it is the best so far (ties included)."""
        if self.key not in record:
            raise ConfigError(f"metric {self.metric!r} is not computed by this evaluation "
                              f"(it gives {', '.join(k for k in record if '/' in k or k == 'loss')})")
        value = float(record[self.key])
        sign = -1.0 if self.lower_is_better else 1.0
        improved = self.best is None or sign * value > sign * self.best
        self.stale = 0 if improved else self.stale + 1
        if improved or value == self.best:
            self.best, self.best_epoch = value, int(record["epoch"])
            return True
        return False

    def should_stop(self) -> bool:
        """True when `patience` evaluations in a row brought no improvement."""
        return bool(self.patience) and self.stale >= self.patience

    def reason(self) -> str:
        """Why the run stopped, for the console and the log."""
        return (f"{self.metric} has not improved for {self.stale} evaluations (patience {self.patience}); "
                f"best {self.best:.4f} at epoch {self.best_epoch}")

    def state_dict(self) -> dict[str, Any]:
        """Best value, its epoch and the counter, for the checkpoint (resume keeps counting)."""
        return {"metric": self.metric, "best": self.best, "best_epoch": self.best_epoch, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict`; a checkpoint that tracked another metric starts this one afresh."""
        if state.get("metric") == self.metric:
            self.best, self.best_epoch, self.stale = state["best"], state["best_epoch"], int(state["stale"])
