"""`objdet eval --gt --dt`: pycocotools' printed summary, per-class table, plots, clear errors."""

from __future__ import annotations

import contextlib
import io
import json

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from objdet import cli

from evaluation.cocogen import random_case


def _write(tmp_path, gt, dt):
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return str(tmp_path / "gt.json"), str(tmp_path / "dt.json")


def test_prints_the_pycocotools_summary(tmp_path, capsys):
    gt, dt = random_case(12, 5, 3, 0.1, False)
    gt_path, dt_path = _write(tmp_path, gt, dt)
    out = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        ev = COCOeval(coco_gt, coco_gt.loadRes(dt_path), "bbox")
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    assert cli.main(["eval", "--gt", gt_path, "--dt", dt_path]) == 0
    assert capsys.readouterr().out.splitlines() == out.getvalue().splitlines()


def test_per_class_and_plots(tmp_path, capsys):
    gt, dt = random_case(13, 4, 2, 0.0, False)
    gt_path, dt_path = _write(tmp_path, gt, dt)
    assert cli.main(["eval", "--gt", gt_path, "--dt", dt_path, "--per-class", "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    for cat in gt["categories"]:
        assert any(line.startswith(cat["name"] + " ") for line in text.splitlines())
    assert "best F1" in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "confusion_matrix.png", "pr_001_c0.png", "pr_002_c1.png", "pr_all.png", "reliability.png"]


def test_bad_detection_file_is_a_clear_error(tmp_path, capsys):
    gt, dt = random_case(14, 3, 2, 0.0, False)
    dt[0]["image_id"] = 12345
    gt_path, dt_path = _write(tmp_path, gt, dt)
    assert cli.main(["eval", "--gt", gt_path, "--dt", dt_path]) == 2
    err = capsys.readouterr().err
    assert "dt.json" in err and "detection 0" in err and "12345" in err
    assert cli.main(["eval", "--gt", gt_path]) == 2
    assert "--dt" in capsys.readouterr().err
