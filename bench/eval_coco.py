"""COCO evaluation as a user runs it, a whole process each: `objdet eval --gt --dt` against hotcoco,
faster-coco-eval and pycocotools, on generated workloads.

    .venv/bin/python bench/eval_coco.py                     # bbox 2000 images, segm 300, bbox 5000 x ~100 dets
    .venv/bin/python bench/eval_coco.py --workloads bbox --repeats 1
    .venv/bin/python bench/eval_coco.py --stages bbox       # where objdet's time goes, step by step

Each run is one child process from start to exit (interpreter start, imports, json reading, the 12
stats, printing): wall time and peak resident memory (`wait4`'s ru_maxrss of that child). The tools
take turns; the fastest run and the median peak are reported. Before timing, every tool's 12 stats are
compared with pycocotools' (to 1e-12) in separate untimed children; the script stops on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {  # name: (iou type, images, background detections per image)
    "bbox": ("bbox", 2000, 17),
    "segm": ("segm", 300, 17),
    "bbox-val2017": ("bbox", 5000, 77),  # ~100 detections per image, as COCO val2017 results
}
TOOLS = ("objdet", "hotcoco", "faster-coco-eval", "pycocotools")
# the program each tool runs; it prints the stats as json on its last line (objdet: its own CLI, timed as is)
PROGRAMS = {
    "hotcoco": "import hotcoco as h\ng = h.COCO(GT); e = h.COCOeval(g, g.load_res(DT), IOU)\n",
    "faster-coco-eval": "from faster_coco_eval import COCO, COCOeval_faster as E\ng = COCO(GT); e = E(g, g.loadRes(DT), IOU)\n",
    "pycocotools": "from pycocotools.coco import COCO\nfrom pycocotools.cocoeval import COCOeval as E\n"
                   "g = COCO(GT); e = E(g, g.loadRes(DT), IOU)\n",
}
FINISH = "e.evaluate(); e.accumulate(); e.summarize()\nimport json; print(json.dumps([float(v) for v in e.stats]))\n"


def make_workload(n_images: int, n_cats: int = 80, seed: int = 0, segm: bool = False,
                  background: int = 17) -> tuple[dict, list]:
    """COCO-like ground truth (~7.5 objects per image, ~1% crowd), ~3 near detections per object and
    `background` random ones per image; scores rounded to 3 decimals (many ties)."""
    rng = np.random.default_rng(seed)
    from pycocotools import mask as mask_utils

    w_img, h_img = 640, 480
    images = [{"id": i + 1, "width": w_img, "height": h_img, "file_name": f"{i + 1}.jpg"} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(n_cats)]
    anns, dts = [], []

    def box() -> list[float]:
        size = np.exp(rng.uniform(np.log(6), np.log(350), 2))
        x, y = rng.uniform(0, w_img - size[0]), rng.uniform(0, h_img - size[1])
        return [float(x), float(y), float(size[0]), float(size[1])]

    def polygon(b: list[float]) -> list[list[float]]:
        x, y, w, h = b
        return [[x, y + h / 2, x + w / 2, y, x + w, y + h / 2, x + w / 2, y + h]]  # a diamond inside the box

    def result(image_id: int, cat: int, b: list[float]) -> dict:
        det = {"image_id": image_id, "category_id": cat, "bbox": [round(v, 2) for v in b],
               "score": round(float(rng.random()), 3)}
        if segm:
            rle = mask_utils.merge(mask_utils.frPyObjects(polygon(b), h_img, w_img))
            det = {k: v for k, v in det.items() if k != "bbox"}
            det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        return det

    for im in images:
        img_cats = rng.choice(n_cats, size=4, replace=False) + 1
        for _ in range(rng.poisson(7.5)):
            b = box()
            cat = int(rng.choice(img_cats))
            ann = {"id": len(anns) + 1, "image_id": im["id"], "category_id": cat, "bbox": b,
                   "area": b[2] * b[3] * 0.5, "iscrowd": int(rng.random() < 0.01)}
            if segm:
                ann["segmentation"] = polygon(b)
            anns.append(ann)
            for _ in range(rng.poisson(3.0)):
                jitter = np.array(b) + rng.normal(0, 0.08, 4) * np.array([b[2], b[3], b[2], b[3]])
                jitter[2:] = np.maximum(jitter[2:], 1.0)
                dts.append(result(im["id"], cat if rng.random() < 0.85 else int(rng.integers(1, n_cats + 1)), list(jitter)))
        for _ in range(rng.poisson(background)):
            dts.append(result(im["id"], int(rng.choice(img_cats)), box()))
    return {"images": images, "annotations": anns, "categories": cats}, dts


def _command(tool: str, gt: Path, dt: Path, iou: str) -> list[str]:
    if tool == "objdet":
        return [sys.executable, "-m", "objdet.cli", "eval", "--gt", str(gt), "--dt", str(dt), "--iou-type", iou]
    head = f"GT, DT, IOU = {str(gt)!r}, {str(dt)!r}, {iou!r}\n"
    return [sys.executable, "-c", head + PROGRAMS[tool] + FINISH]


def _exact_stats(tool: str, gt: Path, dt: Path, iou: str) -> list[float]:
    if tool == "objdet":  # the function the command calls, for all digits
        code = (f"from objdet.evaluation.coco import evaluate\nimport json\n"
                f"print(json.dumps(list(evaluate({str(gt)!r}, {str(dt)!r}, {iou!r}).stats.values())))")
        cmd = [sys.executable, "-c", code]
    else:
        cmd = _command(tool, gt, dt, iou)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one whole child process."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status:
        raise SystemExit(f"{cmd[:4]} failed: {child.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024


def run_workload(name: str, repeats: int, tools: list[str], workdir: Path) -> list[str]:
    iou, n_images, background = WORKLOADS[name]
    gt, dt = make_workload(n_images, segm=iou == "segm", background=background)
    gt_path, dt_path = workdir / f"gt_{name}.json", workdir / f"dt_{name}.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dt))
    size = (gt_path.stat().st_size + dt_path.stat().st_size) / 1e6
    print(f"{name}: {n_images} images, {len(gt['annotations'])} gt, {len(dt)} detections ({size:.0f} MB of json)")
    ref = np.array(_exact_stats("pycocotools", gt_path, dt_path, iou))
    for tool in tools:
        diff = np.abs(np.array(_exact_stats(tool, gt_path, dt_path, iou)) - ref).max() if tool != "pycocotools" else 0
        if diff > 1e-12:
            raise SystemExit(f"{tool} differs from pycocotools by {diff}")
    print(f"  every tool reports pycocotools' 12 stats (AP={ref[0]:.4f}, AR100={ref[8]:.4f})")
    runs: dict[str, list[tuple[float, float]]] = {tool: [] for tool in tools}
    for _ in range(repeats):  # round-robin, so a busy spell on the machine hits every tool alike
        for tool in tools:
            runs[tool].append(_timed(_command(tool, gt_path, dt_path, iou)))
    best = {tool: (min(s for s, _ in r), float(np.median([m for _, m in r]))) for tool, r in runs.items()}
    peer = best.get("hotcoco", best[tools[0]])
    rows = []
    for tool, (seconds, mb) in best.items():
        rows.append(f"| {name} | {tool} | {seconds:.2f} s | {mb:.0f} MB | {seconds / peer[0]:.2f} | {mb / peer[1]:.2f} |")
        print(rows[-1])
    return rows


def stages(name: str, workdir: Path) -> None:
    """objdet's evaluation of one workload in this process, timed step by step (after `import numpy`)."""
    iou, n_images, background = WORKLOADS[name]
    gt, dt = make_workload(n_images, segm=iou == "segm", background=background)
    (workdir / "gt.json").write_text(json.dumps(gt))
    (workdir / "dt.json").write_text(json.dumps(dt))
    del gt, dt
    sys.path.insert(0, str(ROOT / "src"))
    from objdet.evaluation import coco, records
    from objdet.io import load_json

    spent: dict[str, float] = {}

    def timed(label: str, fn):  # noqa: ANN001, ANN202
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start
            return out
        return run

    raw_gt = timed("json parsing (orjson)", load_json)(workdir / "gt.json")
    raw_dt = timed("json parsing (orjson)", load_json)(workdir / "dt.json")
    truth = timed("records: ground truth to columns", records.load_ground_truth)(raw_gt, iou)
    inside = ("records: detections to columns", "overlaps of same-(image, class) pairs", "greedy matching",
              "accumulation")
    for label, attr in zip(inside, ("load_detections", "_overlaps", "greedy_match", "accumulate")):
        setattr(coco, attr, timed(label, getattr(coco, attr)))
    start = time.perf_counter()
    coco.evaluate(truth, raw_dt, iou)
    spent["other steps of evaluate"] = time.perf_counter() - start - sum(spent[k] for k in inside)
    print(f"{name}, load average {os.getloadavg()[0]:.1f}:")
    for label, seconds in spent.items():
        print(f"  {label:<40} {seconds:6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool: the fastest time, the median peak")
    parser.add_argument("--stages", choices=list(WORKLOADS), help="only time objdet's steps on this workload")
    args = parser.parse_args()
    if args.stages:
        with tempfile.TemporaryDirectory() as tmp:
            stages(args.stages, Path(tmp))
        return
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| workload | tool | time | peak memory | time / hotcoco | memory / hotcoco |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads:
            run_workload(name, args.repeats, args.tools, Path(tmp))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
