"""Under torchrun (two CPU processes, gloo) `predict` and `eval --model` shard their inputs and write one merged
result, the same files a single process writes."""

import subprocess
import sys
from pathlib import Path

import torch

from objdet import zoo
from objdet.data.coco import write_coco_dataset
from objdet.data.shapes import ShapesDataset
from objdet.engine import checkpoint

SRC = str(Path(__file__).parents[2] / "src")


def _run(args, tmp_path, nproc):
    env_path = {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "objdet.cli", *args] if nproc > 1 else [sys.executable, "-m", "objdet.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_two_processes_write_what_one_process_writes(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("faster_rcnn_r18_fpn", num_classes=5, min_size=64, max_size=64, score_thresh=0.0,
                      detections_per_img=5)
    checkpoint.save(tmp_path / "m.pt", checkpoint.model_payload(model))
    ann, images = write_coco_dataset(ShapesDataset("val", length=7, image_size=64), tmp_path / "coco")
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        _run(["predict", "--model", "m.pt", str(images), "--out", str(out), "--batch-size", "2", "--no-progress",
              "--no-draw"], tmp_path, n)
        printed = _run(["eval", "--model", "m.pt", "--data", f"coco:{ann}:{images}", "--save-dt",
                        str(tmp_path / f"dt{n}.json")], tmp_path, n)
        outputs[n] = ((out / "predictions.jsonl").read_bytes(), (out / "results.json").read_bytes(),
                      (tmp_path / f"dt{n}.json").read_bytes(), printed)
        assert not list(out.glob("predictions.rank*"))
    assert outputs[1][0].count(b"\n") == 7
    assert outputs[1] == outputs[2]
