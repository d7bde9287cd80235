"""`objdet predict` at scale: bad inputs skipped and named, results streamed, a killed run resumed to the same files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from objdet import cli, zoo
from objdet.data.image import read_image
from objdet.engine import checkpoint
from objdet.engine.sources import find_sources
from objdet.errors import DataError

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small Faster R-CNN with a low threshold, so every picture gets a few detections."""
    torch.manual_seed(0)
    model = zoo.build("faster_rcnn_r18_fpn", classes=["cat", "dog"], min_size=64, max_size=96, score_thresh=0.0,
                      detections_per_img=5)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    checkpoint.save(path, checkpoint.model_payload(model))
    return path


def _photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Real-format pictures written by Pillow: JPEG and PNG, smooth colour fields with a rectangle."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.full((64, 80, 3), rng.integers(0, 255, 3), np.uint8)
        y, x = rng.integers(0, 40, 2)
        pixels[y:y + 20, x:x + 30] = rng.integers(0, 255, 3)
        path = folder / f"photo{i:02d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_bad_files_are_skipped_named_and_counted(model_file, tmp_path, capsys):
    folder = tmp_path / "in"
    good = _photos(folder, 3)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good[1].read_bytes()[:200])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "readme.txt").write_text("ignored: no image extension")
    out = tmp_path / "out"
    status = cli.main(["predict", "--model", str(model_file), str(folder), "--out", str(out), "--batch-size", "2",
                       "--no-progress"])
    printed = capsys.readouterr()
    assert status == 3
    for bad in ("truncated.jpg", "empty.png", "notes.jpg"):
        assert bad in printed.err and bad in printed.out
    assert "skipped 3 of 6 images" in printed.out and "readme.txt" in printed.err
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    files = sorted(p for p in folder.iterdir() if p.suffix != ".txt")
    assert [r["file"] for r in lines] == [str(p) for p in files if p in good]
    assert [r["image_id"] for r in lines] == [files.index(p) + 1 for p in good]
    model = checkpoint.load_model(model_file)[0]
    for r, path in zip(lines, good):  # the same detections as a call of the model on that image alone
        with torch.no_grad():
            expected = model([read_image(path)])[0]
        assert len(r["detections"]) == len(expected["boxes"]) > 0
        for d, box, label in zip(r["detections"], expected["boxes"], expected["labels"]):
            x, y, w, h = d["bbox"]
            assert np.allclose([x, y, x + w, y + h], box.tolist(), atol=1e-3)
            assert d["name"] == ["cat", "dog"][int(label) - 1]
    results = json.loads((out / "results.json").read_text())
    assert len(results) == sum(len(r["detections"]) for r in lines) and "name" not in results[0]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.stem + ".png" for p in good)


def test_sources_folders_globs_and_errors(tmp_path):
    photos = _photos(tmp_path / "a" / "b", 3)
    (tmp_path / "a" / "clip.mp4").write_bytes(b"")
    found = find_sources([str(tmp_path / "a" / "**" / "*.png"), str(photos[1]), str(tmp_path / "a")])
    assert found.images == [photos[0], photos[2], photos[1]] and found.videos == [tmp_path / "a" / "clip.mp4"]
    with pytest.raises(DataError, match="matches no file"):
        find_sources([str(tmp_path / "*.gif")])
    with pytest.raises(DataError, match="nope.jpg"):
        find_sources([str(tmp_path / "nope.jpg")])


def _command(model_file: Path, folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "objdet.cli", "predict", "--model", str(model_file), str(folder), "--out", str(out),
            "--batch-size", "2", "--no-progress", "--no-draw", *extra]


def test_a_killed_run_resumed_writes_what_an_uninterrupted_run_writes(model_file, tmp_path):
    folder = tmp_path / "in"
    _photos(folder, 24, seed=1)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_command(model_file, folder, whole), env=env, check=True, capture_output=True, timeout=600)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_command(model_file, folder, cut), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    lines = cut / "predictions.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if lines.exists() and len(lines.read_text().splitlines()) >= 5:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    written = len(lines.read_text().splitlines())
    assert 5 <= written < 24 and not (cut / "results.json").exists()
    subprocess.run(_command(model_file, folder, cut, "--resume"), env=env, check=True, capture_output=True,
                   timeout=600)
    assert (cut / "predictions.jsonl").read_bytes() == (whole / "predictions.jsonl").read_bytes()
    assert (cut / "results.json").read_bytes() == (whole / "results.json").read_bytes()
    assert len((whole / "predictions.jsonl").read_text().splitlines()) == 24
