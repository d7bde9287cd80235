"""Run a study: every row trains the same model, on the same data, for the same number of steps with the same
seed; only the row's config fields differ. Each finished run is saved as JSON, so a stopped study resumes."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from objdet.ablation.cost import count_flops, count_parameters
from objdet.ablation.studies import Study, Variant
from objdet.data import open_dataset
from objdet.data.loader import collate
from objdet.engine import inference
from objdet.engine.step import train_step
from objdet.engine.trainer import TrainConfig, Trainer, seed_everything
from objdet.errors import ConfigError, DataError
from objdet.io import save_json
from objdet.zoo import build

# Training settings every study shares unless it says otherwise (`Study.train`), those of `objdet demo`:
# AdamW learns from random weights within a few hundred steps, which plain SGD does not.
DEFAULT_TRAIN: dict[str, Any] = dict(batch_size=4, optimizer="adamw", lr=5e-4, weight_decay=0.05,
                                     schedule="cosine", clip_grad_norm=10.0)
SHAPES_OPTIONS: dict[str, Any] = dict(image_size=128)  # the built-in data at a CPU-friendly size
VAL_IMAGES = 64  # held-out shapes images each run is scored on


@dataclass
class RunResult:
    """One training run of one row: its seed, length, wall time, COCO stats (in %) and model cost."""

    study: str
    variant: str
    seed: int
    steps: int
    batch_size: int
    seconds: float
    stats: dict[str, float]
    parameters: int
    flops: int | None
    config: dict[str, Any]
    data: str = ""  # the training and held-out data the run used

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Cycled(Dataset):
    """`length` items taken from `dataset` in order, wrapping around (a fixed number of steps on any data)."""

    def __init__(self, dataset: Dataset, length: int):
        if len(dataset) == 0:
            raise DataError("the training data set is empty")
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index % len(self.dataset)]


def _names_split(spec: str) -> bool:
    kind, _, rest = spec.partition(":")
    return (kind == "shapes" and bool(rest)) or (kind == "voc" and ":" in rest)


def open_data(spec: str, val_spec: str | None, train_images: int,
              val_images: int = VAL_IMAGES) -> tuple[Dataset, Dataset]:
    """(train, held-out) data sets: shapes generates `train_images` training items (other data sets are used
    whole, cycled by `run_variant`); held out is `val_spec`, else the spec's `val` split (`val_images` of
    it for shapes)."""
    shapes = spec.partition(":")[0] == "shapes"
    if val_spec is None:
        if spec.partition(":")[0] == "coco":
            raise ConfigError("a coco: training spec needs --val-data naming the held-out annotations")
        val_spec = "shapes:val" if shapes else spec.rsplit(":", 1)[0] if _names_split(spec) else spec
    if shapes:
        train = open_dataset(spec, None if _names_split(spec) else "train", length=train_images, **SHAPES_OPTIONS)
    else:
        train = open_dataset(spec, None if _names_split(spec) else "train")
    if val_spec.partition(":")[0] == "shapes":
        val = open_dataset(val_spec, None if _names_split(val_spec) else "val", length=val_images, **SHAPES_OPTIONS)
    else:
        val = open_dataset(val_spec, None if _names_split(val_spec) else "val")
    return train, val


def train_config(study: Study, seed: int, steps: int, out: Path) -> TrainConfig:
    """The TrainConfig of one run: shared defaults, the study's own fields, one epoch of `steps` steps."""
    settings = {**DEFAULT_TRAIN, **study.train}
    return TrainConfig(epochs=1, seed=seed, warmup_iters=min(100, max(1, steps // 5)), eval_every=0,
                       out=str(out), progress=False, **settings)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_variant(study: Study, variant: Variant, seed: int, steps: int, train: Dataset, val: Dataset,
                out: str | Path, data: str = "") -> RunResult:
    """Train one row for `steps` steps from seed `seed`, then score it on `val` (box, and mask where predicted)."""
    out = Path(out)
    config = {**study.config(variant), "num_classes": train.num_classes}
    train_cfg = train_config(study, seed, steps, out)
    seed_everything(seed)
    model = build(study.model, **config)
    seed_everything(seed)  # the training stream starts from the seed too, as the recorded tables did
    start = time.perf_counter()
    Trainer(model, Cycled(train, steps * train_cfg.batch_size), None, train_cfg).fit()
    seconds = time.perf_counter() - start
    raw = inference.evaluate(model, val, train_cfg.batch_size)
    stats = {f"{kind}/{k}": 100.0 * v for kind, values in raw.items() for k, v in values.items()}
    flops = count_flops(model, [val[0][0]]) if study.cost else None
    return RunResult(study.name, variant.name, seed, steps, train_cfg.batch_size, seconds, stats,
                     count_parameters(model), flops, _plain(config), data)


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly copy of a config (tuples as lists)."""
    return json.loads(json.dumps(config))


def _time_row(study: Study, variant: Variant, train: Dataset, val: Dataset, timing_steps: int) -> tuple[float, float]:
    """(seconds per training step, seconds to score `val`) of one row, timed on a few steps and one
    evaluation batch extrapolated to the held-out set."""
    settings = {**DEFAULT_TRAIN, **study.train}
    batch_size, amp = settings["batch_size"], bool(settings.get("amp"))
    seed_everything(0)
    model = build(study.model, **{**study.config(variant), "num_classes": train.num_classes})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    images, targets = collate([train[i % len(train)] for i in range(batch_size)])
    model.train()
    timings = []
    for _ in range(timing_steps + 1):  # the first step warms up allocators and is not counted
        start = time.perf_counter()
        train_step(model, images, targets, optimizer, amp=amp)  # the Trainer's step, as the study trains
        timings.append(time.perf_counter() - start)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        model(collate([val[i % len(val)] for i in range(batch_size)])[0])
    eval_seconds = (time.perf_counter() - start) * math.ceil(len(val) / batch_size)
    return sum(timings[1:]) / timing_steps, eval_seconds


def plan_steps(study: Study, budget_minutes: float, seeds: int, train: Dataset, val: Dataset,
               timing_steps: int = 2) -> int:
    """Training steps per run that fit every row, `seeds` times, in `budget_minutes`: each row is timed, as
    rows can differ several-fold in cost (the C4 head of `features`)."""
    costs = [_time_row(study, v, train, val, timing_steps) for v in study.variants]
    step_seconds = sum(step for step, _ in costs)
    eval_seconds = sum(ev for _, ev in costs)
    return max(1, int((budget_minutes * 60.0 / seeds - eval_seconds) / step_seconds))


def run_study(study: Study, data: str = "shapes", val_data: str | None = None, budget: float = 60.0,
              seeds: Sequence[int] = (0,), steps: int | None = None, out: str | Path = "runs/ablate",
              val_images: int = VAL_IMAGES, log: Callable[[str], None] = print) -> list[RunResult]:
    """Run every row of `study` for every seed (steps planned from `budget` minutes unless given) and return
    the results; runs already saved under `out` with the same settings are loaded instead of retrained."""
    out = Path(out) / study.name
    runs = len(study.variants) * len(seeds)
    batch_size = {**DEFAULT_TRAIN, **study.train}["batch_size"]
    if steps is None:
        train, val = open_data(data, val_data, 8 * batch_size, val_images)
        steps = plan_steps(study, budget, len(seeds), train, val)
        log(f"{study.name}: {budget:g} min for {runs} runs -> {steps} steps of {batch_size} images each")
    train, val = open_data(data, val_data, steps * batch_size, val_images)
    data_key = f"train {data}, held out {val_data or 'val split'} ({len(val)} images)"
    results = []
    for variant in study.variants:
        for seed in seeds:
            path = out / f"{_slug(variant.name)}-seed{seed}.json"
            config = _plain({**study.config(variant), "num_classes": train.num_classes})
            if path.exists():
                saved = json.loads(path.read_text())
                if (saved.get("steps"), saved.get("config"), saved.get("data")) == (steps, config, data_key):
                    log(f"{study.name} / {variant.name} / seed {seed}: reusing {path}")
                    results.append(RunResult(**saved))
                    continue
            log(f"{study.name} / {variant.name} / seed {seed}: training {steps} steps")
            result = run_variant(study, variant, seed, steps, train, val, path.with_suffix(""), data_key)
            save_json(result.to_dict(), path)
            summary = ", ".join(f"{k} {result.stats[k]:.1f}" for k in study.metrics if k in result.stats)
            log(f"{study.name} / {variant.name} / seed {seed}: {summary} ({result.seconds / 60:.1f} min)")
            results.append(result)
    return results
