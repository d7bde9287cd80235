"""The HTML report and the evaluation commands: content, images, bad pictures, and no torch on the path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from objdet import cli
from objdet.evaluation.calibration import calibration
from objdet.evaluation.coco import evaluate
from objdet.evaluation.errors import ERROR_KEYS, error_breakdown
from objdet.evaluation.report import write_report

from evaluation.realdata import draw_images, small_set

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def files(tmp_path):
    gt, dt_a, dt_b = small_set(seed=2)
    draw_images(gt, tmp_path / "images")
    for name, obj in (("gt", gt), ("a", dt_a), ("b", dt_b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(obj))
    return tmp_path, gt


def test_one_model_report_has_every_section(files):
    tmp, gt = files
    page = write_report(tmp / "gt.json", [tmp / "a.json"], tmp / "r.html", images=tmp / "images").read_text()
    for heading in ("COCO summary", "Per class", "Precision/recall", "Confusion matrix", "Error breakdown",
                    "Calibration", "Worst false positives", "Missed objects"):
        assert heading in page, heading
    assert "Comparison" not in page
    for cat in gt["categories"]:
        assert f"<td>{cat['name']}</td>" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing to fetch at view time
    assert page.count("data:image/jpeg") >= 4 and page.count("data:image/png") >= 4


def test_two_models_add_the_comparison_and_missing_pictures_are_counted(files):
    tmp, gt = files
    (tmp / "images" / gt["images"][0]["file_name"]).unlink()
    (tmp / "images" / gt["images"][1]["file_name"]).write_bytes(b"not a jpeg")
    page = write_report(str(tmp / "gt.json"), [str(tmp / "a.json"), str(tmp / "b.json")], tmp / "r.html",
                        images=str(tmp / "images"), n_boot=30).read_text()
    assert "Comparison: B - A" in page and page.count("<h2>A: ") == 1 and page.count("<h2>B: ") == 1
    assert "pictures could not be read" in page


def test_report_without_images(tmp_path):
    gt, dt, _ = small_set(seed=3)
    page = write_report(gt, [dt], tmp_path / "r.html").read_text()
    assert "galleries left out" in page and "Error breakdown" in page


def test_cli_eval_errors_calibration_and_comparison(files, capsys):
    tmp, gt = files
    gt_path, a, b = str(tmp / "gt.json"), str(tmp / "a.json"), str(tmp / "b.json")
    assert cli.main(["eval", "--gt", gt_path, "--dt", a, "--errors", "--calibration"]) == 0
    out = capsys.readouterr().out
    errors = error_breakdown(gt_path, a)
    line = out.splitlines()[out.splitlines().index(next(l for l in out.splitlines() if "Cls" in l and "FalseNeg" in l)) + 1]
    assert [float(v) for v in line.split()] == pytest.approx([errors[k] for k in ERROR_KEYS], abs=5e-5)
    assert f"expected calibration error (IoU 0.5): {calibration(evaluate(gt_path, a)).ece:.4f}" in out
    assert cli.main(["eval", "--gt", gt_path, "--dt", a, "--dt", b, "--boot", "40", "--report",
                     str(tmp / "cmp.html")]) == 0
    out = capsys.readouterr().out
    assert "paired bootstrap over images: 40 draws, seed 0" in out and "AP per class" in out
    assert (tmp / "cmp.html").exists()
    assert cli.main(["report", "--gt", gt_path, "--dt", a, "--out", str(tmp / "one.html"),
                     "--images", str(tmp / "images")]) == 0
    assert "wrote the report" in capsys.readouterr().out
    assert cli.main(["eval", "--gt", gt_path, "--dt", a, "--dt", b, "--dt", a]) == 2
    assert "at most two" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["eval", "--gt", "{gt}", "--dt", "{a}", "--errors", "--calibration", "--per-class"],
    ["eval", "--gt", "{gt}", "--dt", "{a}", "--dt", "{b}", "--boot", "20"],
    ["report", "--gt", "{gt}", "--dt", "{a}", "--out", "{out}", "--images", "{images}"],
])
def test_evaluation_commands_import_no_torch(files, command):
    """A whole process, as a user runs it: `import objdet.evaluation` and these commands never import torch."""
    tmp, _ = files
    args = [a.format(gt=tmp / "gt.json", a=tmp / "a.json", b=tmp / "b.json", out=tmp / "r.html", images=tmp / "images")
            for a in command]
    code = ("import sys, objdet.evaluation\nfrom objdet.cli import main\n"
            f"status = main({args!r})\n"
            "print('torch' in sys.modules, status)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False 0"


def test_keypoint_report_leaves_out_what_is_defined_for_boxes_only(tmp_path):
    from evaluation.test_coco import keypoint_case

    gt, dt = keypoint_case(2, 4, False)
    page = write_report(gt, [dt], tmp_path / "r.html", iou_type="keypoints").read_text()
    assert "not keypoints" in page and "Confusion matrix" not in page and "Calibration" in page


def test_eval_of_a_model_writes_the_report_with_the_data_sets_pictures(tmp_path, capsys):
    """`objdet eval --model CKPT --data SPEC --report OUT`: galleries drawn from the data set's own images."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
    import engine_toys  # noqa: F401  (registers the zoo model `toy`)
    from objdet.data.coco import write_coco_dataset
    from objdet.data.shapes import ShapesDataset

    ann, images = write_coco_dataset(ShapesDataset("train", length=4, image_size=64), tmp_path / "coco")
    spec = f"coco:{ann}:{images}"
    assert cli.main(["train", "--model", "toy", "--data", spec, "--out", str(tmp_path / "run"), "--batch-size", "2",
                     "--epochs", "1", "--eval-every", "0", "--no-progress"]) == 0
    assert cli.main(["eval", "--model", str(tmp_path / "run" / "last.pt"), "--data", spec,
                     "--report", str(tmp_path / "r.html")]) == 0
    assert "wrote the report" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text()
    assert "Worst false positives" in page and "data:image/jpeg" in page and "could not be read" not in page
