"""Is model B really better than model A? Paired bootstrap over images of every COCO stat and per-class AP.

Both result files are scored on the same ground truth; each replicate draws the images with
replacement (a fixed seed, so a rerun gives the same intervals) and scores both models on that same
draw (`resample`), so the interval is for the difference on data like this, not for either model
alone. A difference "stands clear of the noise" when its percentile interval excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from objdet.errors import EvaluationError
from objdet.evaluation.coco import CocoEvaluation, evaluate
from objdet.evaluation.records import load_ground_truth
from objdet.evaluation.resample import draw_weights, resampled_stats


@dataclass
class Delta:
    """One metric of A and B: values, B - A, its bootstrap interval, and whether it excludes zero."""

    a: float
    b: float
    delta: float
    low: float
    high: float

    @property
    def clear(self) -> bool:
        """The interval excludes zero: the difference stands clear of the resampling noise."""
        return self.low > 0 or self.high < 0


@dataclass
class Comparison:
    """Deltas per summary stat and per class (AP), with the bootstrap's settings."""

    names: tuple[str, str]
    stats: dict[str, Delta]
    per_class: dict[str, Delta]
    n_boot: int
    seed: int
    level: float

    def lines(self) -> list[str]:
        """A text table: A, B, B - A, the interval and a mark where it excludes zero."""
        a, b = self.names
        pct = f"{self.level:.0%}"
        width = max([10] + [len(n) for n in self.per_class])
        head = f"{'metric':<{width}}  {'A':>6}  {'B':>6}  {'B - A':>7}  {pct + ' interval':>18}"
        out = [f"A = {a}", f"B = {b}", f"paired bootstrap over images: {self.n_boot} draws, seed {self.seed}; "
               "* = interval excludes 0", "", head]
        for title, rows in (("", self.stats), ("AP per class", self.per_class)):
            if title:
                out += ["", title]
            for name, d in rows.items():
                out.append(f"{name:<{width}}  {d.a:6.3f}  {d.b:6.3f}  {d.delta:+7.3f}  "
                           f"[{d.low:+7.3f}, {d.high:+7.3f}]{' *' if d.clear else ''}")
        return out


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def compare_evaluations(ev_a: CocoEvaluation, ev_b: CocoEvaluation, names: tuple[str, str] = ("A", "B"),
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Comparison:
    """Paired bootstrap of two evaluations of the same ground truth (same images, same categories)."""
    weights = draw_weights(len(ev_a.gt.img_ids), n_boot, seed)
    stats_a, class_a = resampled_stats(ev_a, weights)
    stats_b, class_b = resampled_stats(ev_b, weights)
    stats = {}
    for name, value_a in ev_a.stats.items():
        value_b = ev_b.stats[name]
        if value_a < 0 or value_b < 0:
            continue  # undefined (no ground truth in that range)
        both = (stats_a[name] >= 0) & (stats_b[name] >= 0)
        stats[name] = Delta(value_a, value_b, value_b - value_a, *_interval((stats_b[name] - stats_a[name])[both], level))
    per_a, per_b = ev_a.per_class(), ev_b.per_class()
    per_class = {}
    for k, name in enumerate(ev_a.gt.cat_names):
        if per_a[name]["AP"] < 0:
            continue
        diff = class_b[:, k] - class_a[:, k]
        diff = diff[~np.isnan(diff)]
        per_class[name] = Delta(per_a[name]["AP"], per_b[name]["AP"], per_b[name]["AP"] - per_a[name]["AP"],
                                *_interval(diff, level))
    return Comparison(names, stats, per_class, n_boot, seed, level)


def compare(gt: Any, dts: Sequence[Any], iou_type: str = "bbox", n_boot: int = 1000, seed: int = 0,
            level: float = 0.95) -> Comparison:
    """Compare two result files (paths or lists) on one ground truth (COCO dict or path)."""
    if len(dts) != 2:
        raise EvaluationError(f"compare takes two detection files, got {len(dts)}")
    truth = load_ground_truth(gt, iou_type)
    ev_a, ev_b = (evaluate(truth, dt, iou_type) for dt in dts)
    name_a, name_b = (str(dt) if isinstance(dt, (str, bytes)) or hasattr(dt, "__fspath__") else f"results {i + 1}"
                      for i, dt in enumerate(dts))
    return compare_evaluations(ev_a, ev_b, (name_a, name_b), n_boot, seed, level)
