"""Soak: `engine.inference.predict` over many generated images of random sizes, then COCO evaluation.

    .venv/bin/python bench/soak.py                  # 10,000 images (several minutes on a laptop CPU)
    .venv/bin/python bench/soak.py --images 300     # the shortened run reported in BENCHMARKS.md

Checks, and exits 1 if either fails: memory stays flat and nothing is dropped (every image id
appears in the COCO results: the detector runs with score threshold 0, so each image has
detections). "Flat" is judged on the slope of the resident set size over the run after warm-up, in
MB per 1000 images, less the memory the returned results themselves hold (they grow by design; their
size is measured, not assumed): that leak rate must stay below --max-slope. The model is a zoo detector with random weights at a small input size: the soak tests
the pipeline's reliability, not accuracy (the AP it prints is that of random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from objdet import build
from objdet.data.coco import dataset_to_coco
from objdet.engine.inference import predict
from objdet.evaluation.coco import evaluate_coco

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Current resident set size of this process in MB (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class SoakImages(Dataset):
    """Image i: a random size in [min_side, max_side]^2, noise and 1-3 coloured rectangles (its boxes).

    Generated from the index alone, so nothing accumulates; every `every` reads it samples the RSS.
    """

    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 3, "name": "blue"}]
    num_classes = 3
    label_to_category_id = {1: 1, 2: 2, 3: 3}

    def __init__(self, n: int, min_side: int, max_side: int, seed: int, every: int):
        rng = np.random.default_rng(seed)
        self.sizes = rng.integers(min_side, max_side + 1, (n, 2))  # (h, w)
        self.seed, self.every = seed, every
        self.samples: list[tuple[int, float]] = []
        self.reads = 0

    def __len__(self) -> int:
        return len(self.sizes)

    def image_info(self, i: int) -> dict:
        h, w = self.sizes[i].tolist()
        return {"id": i + 1, "file_name": f"{i + 1}.png", "width": w, "height": h}

    def target(self, i: int) -> dict:
        h, w = self.sizes[i].tolist()
        rng = np.random.default_rng([self.seed, i])
        k = int(rng.integers(1, 4))
        x1, y1 = rng.uniform(0, w * 0.6, k), rng.uniform(0, h * 0.6, k)
        bw, bh = rng.uniform(0.2, 0.4, k) * w, rng.uniform(0.2, 0.4, k) * h
        boxes = torch.tensor(np.stack([x1, y1, x1 + bw, y1 + bh], 1), dtype=torch.float32)
        labels = torch.from_numpy(rng.integers(1, 4, k)).long()
        return {"boxes": boxes, "labels": labels, "iscrowd": torch.zeros(k, dtype=torch.int64),
                "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), "image_id": i + 1}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        self.reads += 1
        if self.reads % self.every == 0:
            self.samples.append((self.reads, rss_mb()))
        h, w = self.sizes[i].tolist()
        target = self.target(i)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + i)
        image = torch.rand(3, h, w, generator=gen) * 0.3
        for (x1, y1, x2, y2), label in zip(target["boxes"].round().int().tolist(), target["labels"].tolist()):
            image[label - 1, y1:y2, x1:x2] = 1.0
        return image, target


def deep_size(obj: object) -> int:
    """Bytes held by a tree of dicts, lists and scalars (the COCO results), as sys.getsizeof counts them."""
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(v) for v in obj.values())  # keys are shared interned strings
    elif isinstance(obj, list):
        size += sum(deep_size(v) for v in obj)
    return size


def slope_mb_per_1000(samples: list[tuple[int, float]], warmup: float) -> float:
    """Least-squares slope of RSS against images read, after the first `warmup` fraction."""
    kept = samples[int(len(samples) * warmup):]
    if len(kept) < 2:
        return float("nan")
    x, y = np.array(kept, dtype=np.float64).T
    return float(np.polyfit(x, y, 1)[0] * 1000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--model", default="retinanet_r18_fpn")
    p.add_argument("--min-size", type=int, default=128, help="the detector's resize target")
    p.add_argument("--max-size", type=int, default=192)
    p.add_argument("--sides", type=int, nargs=2, default=[32, 320], help="range of image heights and widths")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-slope", type=float, default=5.0, help="MB per 1000 images allowed after warm-up")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = build(args.model, num_classes=3, min_size=args.min_size, max_size=args.max_size, score_thresh=0.0,
                  detections_per_img=5).eval()
    data = SoakImages(args.images, *args.sides, seed=args.seed, every=max(1, args.images // 200))
    start_rss, start = rss_mb(), time.perf_counter()
    records = predict(model, data, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    seen = {r["image_id"] for r in records}
    missing = sorted(set(range(1, args.images + 1)) - seen)
    stats = evaluate_coco(dataset_to_coco(data), records) if records else {}
    slope = slope_mb_per_1000(data.samples, warmup=0.2)
    held = deep_size(records) / 2**20 * 1000 / args.images  # MB per 1000 images kept on purpose
    result = {
        "images": args.images, "model": args.model, "seconds": round(seconds, 1),
        "ms_per_image": round(1000 * seconds / args.images, 1), "detections": len(records),
        "missing_images": len(missing), "rss_start_mb": round(start_rss, 1),
        "rss_end_mb": round(data.samples[-1][1] if data.samples else rss_mb(), 1),
        "rss_mb_at_quarters": [round(data.samples[min(len(data.samples) - 1, len(data.samples) * q // 4)][1], 1)
                               for q in range(4)] if data.samples else [],
        "rss_slope_mb_per_1000_images": round(slope, 2),
        "results_mb_per_1000_images": round(held, 2),
        "leak_mb_per_1000_images": round(slope - held, 2),
        "AP_random_weights": round(stats.get("AP", float("nan")), 4),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    ok = not missing and not result["leak_mb_per_1000_images"] > args.max_slope
    if missing:
        print(f"dropped images: {missing[:20]}{' ...' if len(missing) > 20 else ''}", file=sys.stderr)
    if not ok and not missing:
        print(f"memory grows {result['leak_mb_per_1000_images']} MB per 1000 images beyond the results",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
