"""ONNX export: onnxruntime's outputs equal PyTorch's to 1e-3 on an image other than the traced one."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "engine"))

from engine_toys import ToyDetector  # noqa: E402
from objdet import cli, zoo  # noqa: E402
from objdet.engine import checkpoint  # noqa: E402
from objdet.errors import ConfigError  # noqa: E402
from objdet.export import export_onnx, output_names, run_onnx  # noqa: E402


def _assert_same(model, path, image):
    with torch.no_grad():
        expected = model([image])[0]
    got = run_onnx(path, image)
    assert sorted(got) == sorted(output_names(model, tuple(image.shape[-2:])))
    for name, value in got.items():
        assert value.shape == tuple(expected[name].shape), name
        np.testing.assert_allclose(value, expected[name].numpy(), atol=1e-3, rtol=0, err_msg=name)


def test_toy_detector_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ToyDetector().eval()
    path = export_onnx(model, tmp_path / "toy.onnx", (32, 32))
    _assert_same(model, path, torch.rand(3, 32, 32))


def test_faster_rcnn_round_trip_with_a_varying_number_of_detections(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("faster_rcnn_r18_fpn", num_classes=3, min_size=96, max_size=96, score_thresh=0.3).eval()
    path = export_onnx(model, tmp_path / "frcnn.onnx", (96, 96))
    counts = set()
    for seed in (1, 2):  # neither is the image the graph was traced on
        image = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(seed))
        _assert_same(model, path, image)
        counts.add(len(run_onnx(path, image)["boxes"]))
    assert len(counts) == 2  # the detection count is not baked into the graph


def test_export_command_checks_its_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(zoo._BUILDERS, "toy", lambda num_classes=3: ToyDetector(num_classes=num_classes))
    checkpoint.save(tmp_path / "toy.pt", {"model": ToyDetector().state_dict(), "arch": "toy", "config": {}})
    assert cli.main(["export", "--model", str(tmp_path / "toy.pt"), str(tmp_path / "toy.onnx"), "--image-size", "48", "40"]) == 0
    assert "max abs difference" in capsys.readouterr().out
    assert (tmp_path / "toy.onnx").stat().st_size > 0


def test_tiny_image_size_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 32"):
        export_onnx(ToyDetector(), tmp_path / "x.onnx", (8, 8))
