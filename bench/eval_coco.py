"""COCO evaluation speed and memory: objdet vs pycocotools vs faster-coco-eval on one generated workload.

    .venv/bin/python bench/eval_coco.py                 # bbox (2000 images) and segm (300 images)
    .venv/bin/python bench/eval_coco.py --kinds bbox --images 500

Each evaluator runs in its own child process, from the json files to the 12 stats, so its time and
peak memory (peak resident set minus the resident set after imports) are its own. The script fails if
the three do not report the same 12 numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_workload(n_images: int, n_cats: int = 80, seed: int = 0, segm: bool = False) -> tuple[dict, list]:
    """COCO-like ground truth (~7.5 objects per image, ~1% crowd) and ~40 detections per image."""
    rng = np.random.default_rng(seed)
    from pycocotools import mask as mask_utils

    w_img, h_img = 640, 480
    images = [{"id": i + 1, "width": w_img, "height": h_img, "file_name": f"{i + 1}.jpg"} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(n_cats)]
    anns, dts = [], []

    def box(rng: np.random.Generator) -> list[float]:
        size = np.exp(rng.uniform(np.log(6), np.log(350), 2))
        x, y = rng.uniform(0, w_img - size[0]), rng.uniform(0, h_img - size[1])
        return [float(x), float(y), float(size[0]), float(size[1])]

    def polygon(b: list[float]) -> list[list[float]]:
        x, y, w, h = b
        return [[x, y + h / 2, x + w / 2, y, x + w, y + h / 2, x + w / 2, y + h]]  # a diamond inside the box

    def result(image_id: int, cat: int, b: list[float]) -> dict:
        det = {"image_id": image_id, "category_id": cat, "bbox": [round(v, 2) for v in b],
               "score": round(float(rng.random()), 3)}  # rounded: plenty of score ties
        if segm:
            rle = mask_utils.merge(mask_utils.frPyObjects(polygon(b), h_img, w_img))
            det = {k: v for k, v in det.items() if k != "bbox"}
            det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        return det

    for im in images:
        img_cats = rng.choice(n_cats, size=4, replace=False) + 1
        for _ in range(rng.poisson(7.5)):
            b = box(rng)
            cat = int(rng.choice(img_cats))
            crowd = int(rng.random() < 0.01)
            ann = {"id": len(anns) + 1, "image_id": im["id"], "category_id": cat, "bbox": b,
                   "area": b[2] * b[3] * 0.5, "iscrowd": crowd}
            if segm:
                ann["segmentation"] = polygon(b)
            anns.append(ann)
            for _ in range(rng.poisson(3.0)):
                jitter = np.array(b) + rng.normal(0, 0.08, 4) * np.array([b[2], b[3], b[2], b[3]])
                jitter[2:] = np.maximum(jitter[2:], 1.0)
                dts.append(result(im["id"], cat if rng.random() < 0.85 else int(rng.integers(1, n_cats + 1)), list(jitter)))
        for _ in range(rng.poisson(17)):
            dts.append(result(im["id"], int(rng.choice(img_cats)), box(rng)))
    return {"images": images, "annotations": anns, "categories": cats}, dts


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS: now; VmHWM: peak since exec, unlike
    ru_maxrss, which Linux carries over from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status: this benchmark measures memory on Linux only")


def _run_one(tool: str, gt_path: str, dt_path: str, iou_type: str) -> dict:
    """Evaluate in this process and report stats, seconds and peak memory growth (MB)."""
    if tool == "objdet":
        from objdet.evaluation.coco import evaluate
    elif tool == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval  # noqa: N813
    base = _status_kb("VmRSS")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if tool == "objdet":
            stats = list(evaluate(gt_path, dt_path, iou_type).stats.values())
        else:
            gt = COCO(gt_path)
            ev = COCOeval(gt, gt.loadRes(dt_path), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = [float(v) for v in ev.stats]
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    return {"stats": stats, "seconds": seconds, "peak_mb": max(peak - base, 0) / 1024}


def _child(tool: str, gt_path: str, dt_path: str, iou_type: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", tool, gt_path, dt_path, iou_type],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compare(kind: str, n_images: int, repeats: int, workdir: Path) -> list[str]:
    gt, dt = make_workload(n_images, segm=kind == "segm")
    gt_path, dt_path = workdir / f"gt_{kind}.json", workdir / f"dt_{kind}.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dt))
    crowd = sum(a["iscrowd"] for a in gt["annotations"])
    print(f"{kind}: {n_images} images, {len(gt['categories'])} classes, {len(gt['annotations'])} gt ({crowd} crowd), "
          f"{len(dt)} detections")
    tools = ("objdet", "pycocotools", "faster-coco-eval")
    runs: dict[str, list[dict]] = {tool: [] for tool in tools}
    for _ in range(repeats):  # round-robin, so a busy spell on the machine hits every tool alike
        for tool in tools:
            runs[tool].append(_child(tool, str(gt_path), str(dt_path), kind))
    results = {}
    for tool, tool_runs in runs.items():
        results[tool] = min(tool_runs, key=lambda r: r["seconds"])
        results[tool]["peak_mb"] = float(np.median([r["peak_mb"] for r in tool_runs]))
    ref = np.array(results["pycocotools"]["stats"])
    for tool, r in results.items():
        diff = np.abs(np.array(r["stats"]) - ref).max()
        if diff > 1e-12:
            raise SystemExit(f"{tool} stats differ from pycocotools by {diff}: {r['stats']} vs {ref.tolist()}")
    print(f"  all three report the same 12 stats (AP={ref[0]:.4f}, AP50={ref[1]:.4f}, AR100={ref[8]:.4f})")
    fast = results["faster-coco-eval"]
    rows = []
    for tool, r in results.items():
        row = (f"| {kind} | {tool} | {r['seconds']:.2f} s | {r['peak_mb']:.0f} MB | "
               f"{r['seconds'] / fast['seconds']:.2f} | {r['peak_mb'] / max(results['pycocotools']['peak_mb'], 1e-9):.2f} |")
        print(row)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--images", type=int, default=2000, help="images of the bbox workload")
    parser.add_argument("--segm-images", type=int, default=300, help="images of the segm workload")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per tool; the fastest time and the median peak memory are reported")
    parser.add_argument("--child", nargs=4, metavar=("TOOL", "GT", "DT", "IOU_TYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, gt_path, dt_path, iou_type = args.child
        print(json.dumps(_run_one(tool, gt_path, dt_path, iou_type)))
        return
    print("| workload | tool | time | peak memory | time / faster-coco-eval | memory / pycocotools |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            _compare(kind, args.images if kind == "bbox" else args.segm_images, args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
