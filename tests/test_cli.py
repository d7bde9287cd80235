"""The `objdet` command: help on every sub-command, train -> resume -> predict end to end on a toy model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent / "engine"))

import engine_toys  # noqa: E402,F401  (registers the zoo model `toy`)
from objdet import cli  # noqa: E402
from objdet.data.coco import write_coco_dataset  # noqa: E402
from objdet.io import load_json  # noqa: E402
from objdet.data.shapes import ShapesDataset  # noqa: E402
from objdet.engine import checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    ann, images = write_coco_dataset(ShapesDataset("train", length=6, image_size=64), tmp_path_factory.mktemp("coco"))
    return f"coco:{ann}:{images}", images


@pytest.mark.parametrize("command", [name for name in ("demo", "train", "eval", "predict", "convert", "export")
                                     if name in cli.build_parser()._subparsers._group_actions[0].choices])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"objdet {command}" in capsys.readouterr().out


def _train(spec, out, *extra):
    return cli.main(["train", "--model", "toy", "--data", spec, "--out", str(out), "--batch-size", "2", "--lr", "0.05",
                     "--warmup-iters", "1", "--eval-every", "0", "--no-progress", *extra])


def test_train_resume_matches_one_run_and_predict_draws(tiny_coco, tmp_path):
    spec, image_dir = tiny_coco
    assert _train(spec, tmp_path / "full", "--epochs", "2") == 0
    # the toy sends SIGINT (a Ctrl-C) to this process during its 4th step: the run saves and stops
    assert _train(spec, tmp_path / "cut", "--epochs", "2", "--set", "interrupt_at_call=4") == 130
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 4
    assert cli.main(["train", "--data", spec, "--out", str(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    full, cut = checkpoint.load(tmp_path / "full" / "last.pt"), checkpoint.load(tmp_path / "cut" / "last.pt")
    assert cut["step"] == full["step"] == 6 and cut["arch"] == "toy"
    for k in full["model"]:
        assert torch.equal(full["model"][k], cut["model"][k]), k
    assert [c["name"] for c in cut["categories"]] == [c["name"] for c in ShapesDataset.categories]

    # odd inputs: RGBA, grayscale, and a JPEG whose EXIF says "rotate 90" (stored 64 wide, 48 high)
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.new("RGBA", (64, 64), (10, 200, 30, 128)).save(odd / "rgba.png")
    Image.new("L", (64, 64), 90).save(odd / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(odd / "rotated.jpg", exif=exif)
    out = tmp_path / "pred"
    first = sorted(image_dir.iterdir())[0]
    assert cli.main(["predict", "--model", str(tmp_path / "full" / "last.pt"), str(first), str(odd),  # the toy
                     "--out", str(out), "--score-threshold", "0", "--batch-size", "1"]) == 0  # stacks its batch
    assert sorted(p.name for p in out.glob("*.png")) == sorted([first.stem + ".png", "gray.png", "rgba.png", "rotated.png"])
    assert Image.open(out / "rotated.png").size == (48, 64)  # drawn upright, as a viewer shows it
    results = load_json(out / "results.json")
    assert sorted(r["image_id"] for r in results) == [1, 2, 3, 4]  # the toy model finds one object per image
    model, _ = checkpoint.load_model(tmp_path / "full" / "last.pt")
    from objdet.data.image import read_image
    expected = model([read_image(first)])[0]["boxes"][0]
    x, y, w, h = results[0]["bbox"]
    assert torch.allclose(torch.tensor([x, y, x + w, y + h]), expected, atol=1e-3)


def test_train_aug_preset_is_saved_and_resume_reuses_it(tiny_coco, tmp_path, capsys):
    spec, _ = tiny_coco
    assert _train(spec, tmp_path / "full", "--epochs", "2", "--aug", "strong") == 0
    assert _train(spec, tmp_path / "cut", "--epochs", "2", "--aug", "strong", "--set", "interrupt_at_call=4") == 130
    assert cli.main(["train", "--data", spec, "--out", str(tmp_path / "cut"), "--resume", "--no-progress"]) == 0
    assert _train(spec, tmp_path / "flip", "--epochs", "2") == 0
    full, cut = checkpoint.load(tmp_path / "full" / "last.pt"), checkpoint.load(tmp_path / "cut" / "last.pt")
    flip = checkpoint.load(tmp_path / "flip" / "last.pt")
    assert full["train_config"]["aug"] == cut["train_config"]["aug"] == "strong"
    assert flip["train_config"]["aug"] == "flip"
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    assert not all(torch.equal(full["model"][k], flip["model"][k]) for k in full["model"])
    capsys.readouterr()
    assert _train(spec, tmp_path / "bad", "--aug", "mosaic") == 2
    assert "unknown augmentation preset 'mosaic'" in capsys.readouterr().err


def test_eval_of_a_model_equals_eval_of_its_saved_results(tiny_coco, tmp_path, capsys):
    spec, _ = tiny_coco
    assert _train(spec, tmp_path / "run", "--epochs", "1") == 0
    capsys.readouterr()
    ckpt = str(tmp_path / "run" / "last.pt")
    assert cli.main(["eval", "--model", ckpt, "--data", spec, "--save-dt", str(tmp_path / "dt.json")]) == 0
    by_model = capsys.readouterr().out
    assert "Average Precision" in by_model
    ann_file = spec.split(":")[1]
    assert cli.main(["eval", "--gt", ann_file, "--dt", str(tmp_path / "dt.json")]) == 0
    assert capsys.readouterr().out == by_model
    assert len(load_json(tmp_path / "dt.json")) == 6  # one detection per image from the toy


def test_train_stops_early_prints_why_and_writes_the_report(tiny_coco, tmp_path, capsys):
    spec, _ = tiny_coco
    # lr 0: AP never moves, so with --patience 2 the third evaluation ends the run (exit status 0)
    assert _train(spec, tmp_path / "run", "--val-data", spec, "--eval-every", "1", "--epochs", "10", "--lr", "0",
                  "--patience", "2", "--metric", "AP50") == 0
    out = capsys.readouterr().out
    assert "early stop at epoch 3: AP50 has not improved for 2 evaluations" in out
    assert "stopped at epoch 3" in out
    page = (tmp_path / "run" / "report.html").read_text()
    assert all(f"<td>{c['name']}</td>" in page for c in ShapesDataset.categories)
    assert _train(spec, tmp_path / "quiet", "--val-data", spec, "--eval-every", "1", "--epochs", "1",
                  "--no-report") == 0
    assert not (tmp_path / "quiet" / "report.html").exists()


def test_user_errors_exit_with_a_message(tmp_path, capsys):
    assert cli.main(["predict", "--model", str(tmp_path / "missing.pt"), str(tmp_path)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert cli.main(["train", "--model", "no_such_model", "--data", "shapes", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert cli.main(["train", "--model", "toy", "--data", "nowhere:x", "--out", str(tmp_path)]) == 2
    assert "nowhere:x" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(tmp_path / "x.pt")]) == 2
    assert "--data" in capsys.readouterr().err


def _demo_ap_by_pycocotools(out: Path, val: ShapesDataset) -> float | None:
    """bbox AP of the demo's detections.json on its val split, scored by pycocotools (None: no detections)."""
    from evaluation.pycoco import pycocotools_eval
    from objdet.data.coco import dataset_to_coco

    detections = load_json(out / "detections.json")
    return pycocotools_eval(dataset_to_coco(val), detections).stats[0] if detections else None


def test_demo_trains_scores_and_draws(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--epochs", "1", "--train-images", "4", "--val-images", "3",
                     "--image-size", "64", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"run folder: {out}" in printed and "Average Precision" in printed
    assert len(list((out / "samples").glob("*.png"))) == 8
    assert len(list((out / "predictions").glob("*.png"))) == 3
    assert (out / "plots" / "bbox" / "pr_all.png").exists()
    assert checkpoint.load(out / "last.pt")["arch"] == "faster_rcnn_r18_fpn"
    reference = _demo_ap_by_pycocotools(out, ShapesDataset("val", length=3, image_size=64))
    printed_ap = load_json(out / "metrics.json")["bbox"]["AP"]
    assert printed_ap == pytest.approx(0.0 if reference is None else reference, abs=1e-9)


@pytest.mark.slow  # about 10 minutes; BENCHMARKS.md ("objdet demo") records the same run
def test_demo_default_recipe_reaches_the_target(tmp_path):
    """`objdet demo` with its defaults: bbox AP >= 0.5 on held-out shapes, scored again by pycocotools."""
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--no-progress"]) == 0
    reference = _demo_ap_by_pycocotools(out, ShapesDataset("val", length=64, image_size=128))
    assert reference is not None and reference >= 0.5
