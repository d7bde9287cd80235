"""Reading speed: a generated 10,000-image YOLO set against the same set as COCO json.

Generates N small JPEGs (64 x 48, 1-6 boxes each, a third of the objects as segment polygons) once under
--root, with the labels written both as an Ultralytics YOLO set and as one COCO json. Then, each in a fresh
process (the files are in the page cache for both),
times what a training run pays before its first step and per epoch:

* open: `open_dataset(spec)` (the YOLO reader reads every label file and every image header, since YOLO
  stores no sizes; the COCO reader parses one json);
* targets: `dataset.target(i)` for every image (boxes, labels, masks of the polygon objects);
* load: `dataset.load(i)` for the first 1,000 images (image decode + target).

Torch runs one thread, as in a DataLoader worker (`--threads`).

    python bench/read_speed.py --images 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

TIMED = """
import sys, time, warnings
warnings.simplefilter("ignore")
kind, spec, threads = sys.argv[1:4]
import torch
torch.set_num_threads(int(threads))
from objdet.data import open_dataset, coco, yolo  # imports (torch, pycocotools, yaml) are not reading
t0 = time.perf_counter()
ds = open_dataset(spec)
t1 = time.perf_counter()
for i in range(len(ds)):
    ds.target(i)
t2 = time.perf_counter()
for i in range(min(1000, len(ds))):
    ds.load(i)
t3 = time.perf_counter()
print(f"{kind} {t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {len(ds)}")
"""


def generate(root: Path, n: int) -> None:
    """N images with YOLO labels (boxes and polygons) and the same objects as a COCO json."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    w, h = 64, 48
    images, anns = [], []
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        name = f"{i:06d}.jpg"
        pixels = np.roll(base, i % w, axis=1)
        Image.fromarray(pixels).save(root / "images" / "train" / name, quality=80)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        lines = []
        for _ in range(int(rng.integers(1, 7))):
            cls = int(rng.integers(0, 3))
            cx, cy = rng.uniform(0.2, 0.8, 2)
            bw, bh = rng.uniform(0.1, 0.35, 2)
            x1, y1, x2, y2 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1, "iscrowd": 0,
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            if rng.uniform() < 1 / 3:  # a diamond inside the box
                poly = [(x1 + x2) / 2, y1, x2, (y1 + y2) / 2, (x1 + x2) / 2, y2, x1, (y1 + y2) / 2]
                ann["segmentation"] = [poly]
                lines.append(f"{cls} " + " ".join(f"{v / (w if k % 2 == 0 else h):.6f}" for k, v in enumerate(poly)))
            else:
                lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            anns.append(ann)
        (root / "labels" / "train" / f"{i:06d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [a, b, c]\n")
    categories = [{"id": k + 1, "name": n} for k, n in enumerate("abc")]
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    (root / "done").write_text(str(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default="/tmp/objdet-read-speed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: as in a DataLoader worker, which is where a training run reads)")
    args = parser.parse_args()
    root = Path(args.root) / str(args.images)
    if not (root / "done").is_file():
        generate(root, args.images)
    specs = {"yolo": f"yolo:{root / 'data.yaml'}", "coco": f"coco:{root / 'coco.json'}:{root / 'images' / 'train'}"}
    times: dict[str, list[list[float]]] = {k: [] for k in specs}
    for _ in range(args.repeats):
        for kind, spec in specs.items():  # interleaved, so load from others hits every reader alike
            out = subprocess.run([sys.executable, "-c", TIMED, kind, spec, str(args.threads)], check=True,
                                 capture_output=True, text=True).stdout.split()
            times[kind].append([float(v) for v in out[1:4]])
    best = {k: np.min(np.array(v), axis=0) for k, v in times.items()}
    print(f"{args.images} images, best of {args.repeats} (seconds)")
    print("| reader | open | targets, all images | load, 1000 images |")
    print("|---|---|---|---|")
    for kind in ("coco", "yolo"):
        print(f"| {kind} | {best[kind][0]:.2f} | {best[kind][1]:.2f} | {best[kind][2]:.2f} |")
    print(f"yolo / coco: open {best['yolo'][0] / best['coco'][0]:.2f}x, targets {best['yolo'][1] / best['coco'][1]:.2f}x,"
          f" load {best['yolo'][2] / best['coco'][2]:.2f}x; open + targets "
          f"{(best['yolo'][0] + best['yolo'][1]) / (best['coco'][0] + best['coco'][1]):.2f}x")


if __name__ == "__main__":
    main()
