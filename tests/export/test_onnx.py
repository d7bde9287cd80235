"""ONNX export: onnxruntime's outputs equal PyTorch's to 1e-3 on batches and image sizes other than the traced one
(one image of 96 x 128), with an image-dependent number of detections."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

from engine_toys import ToyDetector

from objdet import cli, zoo
from objdet.engine import checkpoint
from objdet.errors import ConfigError
from objdet.export import export_onnx, output_names, run_onnx
from objdet.roi import MultiLevelRoIPooler

TRACED = (96, 128)


def _assert_same(model, path, images):
    """The file run on the batch `images` (one size) gives each image's detections of PyTorch run on it alone;
    returns the detection counts."""
    with torch.no_grad():
        expected = [model([image])[0] for image in images]
    got = run_onnx(path, torch.stack(images))
    assert len(got) == len(images)
    for one, want in zip(got, expected):
        assert sorted(one) == sorted(output_names(model, tuple(images[0].shape[-2:])))
        for name, value in one.items():
            assert value.shape == tuple(want[name].shape), name
            np.testing.assert_allclose(value, want[name].numpy(), atol=1e-3, rtol=0, err_msg=name)
    return [len(one["boxes"]) for one in got]


def _random(size, seed):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))


def test_a_model_that_cannot_take_any_image_size_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="any image size.*adaptive_avg_pool2d"):  # the toy pools to a fixed grid
        export_onnx(ToyDetector().eval(), tmp_path / "toy.onnx", (32, 32))


def _assert_counts_vary(model, path, sizes=((120, 88), (144, 160))):
    """Round trips at two image sizes other than the traced one, the second as a batch of two; the detection
    counts differ between images (neither the sizes nor the counts are baked into the graph)."""
    counts = _assert_same(model, path, [_random(sizes[0], 1)])
    counts += _assert_same(model, path, [_random(sizes[1], 2), _random(sizes[1], 3)])
    assert len(set(counts)) >= 2 and min(counts) > 0, counts


def _spread_scores(model, class_std=None, box_scale=1.0):
    """Random-weight dense heads score every anchor at the prior (~0.01); a zero class bias (and optionally
    wider class weights) spreads the scores so a threshold keeps an image-dependent number of them."""
    class_conv = getattr(model.class_head.predict, "pointwise", model.class_head.predict)
    box_conv = getattr(model.box_head.predict, "pointwise", model.box_head.predict)
    with torch.no_grad():
        class_conv.bias.zero_()
        if class_std is not None:
            class_conv.weight.normal_(0.0, class_std)
        box_conv.weight.mul_(box_scale)


def _measure_batchnorms(model, size, images=8):
    """Batch-norm statistics measured on random images: with the default ones (mean 0, variance 1) a
    random EfficientDet's features hardly depend on the image."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    target = {"boxes": torch.tensor([[8.0, 8.0, size / 2, size / 2]]), "labels": torch.tensor([1])}
    model.train()
    with torch.no_grad():
        model([torch.rand(3, size, size) for _ in range(images)], [target] * images)
    return model.eval()


def test_faster_rcnn_round_trip_with_a_varying_number_of_detections(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("faster_rcnn_r18_fpn", num_classes=3, min_size=96, max_size=160, score_thresh=0.3).eval()
    _assert_counts_vary(model, export_onnx(model, tmp_path / "frcnn.onnx", TRACED))


def test_retinanet_round_trip_with_a_varying_number_of_detections(tmp_path):
    torch.manual_seed(0)
    # 25 candidates per level: the P4 level has more than 25 scores above the threshold on some of these
    # images and fewer on others, so a top-k count frozen at export would break the graph
    model = zoo.build("retinanet_r18_fpn", num_classes=3, min_size=128, max_size=192, score_thresh=0.7,
                      candidates=25).eval()
    _spread_scores(model, class_std=1.0)
    path = export_onnx(model, tmp_path / "retinanet.onnx", TRACED)
    _assert_counts_vary(model, path)
    grey = torch.full((3, 128, 128), 0.5)
    assert _assert_same(model, path, [grey, _random((128, 128), 4)])[0] == 0  # an image without detections


def test_efficientdet_round_trip_with_a_varying_number_of_detections(tmp_path):
    """EfficientDet's network input is fixed by design (S x S); images of any size are letterboxed into it inside
    the graph, and the batch dimension is dynamic."""
    torch.manual_seed(0)
    model = _measure_batchnorms(zoo.build("efficientdet_d0", num_classes=3, image_size=128, score_thresh=0.65), 128)
    # effdet's anchors reach 5x the image: small box deltas keep float error in the boxes under 1e-3
    _spread_scores(model, box_scale=0.01)
    _assert_counts_vary(model, export_onnx(model, tmp_path / "effdet.onnx", TRACED))


def _spread_roi_levels(model, canonical_scale=32.0):
    """RoIs of a small test image all pool from P2 at the canonical 224 px; a smaller canonical size spreads
    them over the levels, so the export's per-level selection is exercised."""
    for module in model.modules():
        if isinstance(module, MultiLevelRoIPooler):
            module.canonical_scale = canonical_scale


@pytest.mark.parametrize("arch", ["mask_rcnn_r18_fpn", "keypoint_rcnn_r18_fpn"])
def test_mask_and_keypoint_rcnn_round_trip_with_a_varying_number_of_detections(tmp_path, arch):
    torch.manual_seed(0)
    model = zoo.build(arch, num_classes=3, min_size=96, max_size=160, score_thresh=0.4).eval()
    _spread_roi_levels(model)
    path = export_onnx(model, tmp_path / f"{arch}.onnx", TRACED)
    _assert_counts_vary(model, path)
    grey = torch.full((3, 96, 96), 0.5)
    assert _assert_same(model, path, [grey, _random((96, 96), 4)])[0] == 0  # an image without detections


def test_export_command_checks_its_file_at_two_sizes(tmp_path, capsys):
    torch.manual_seed(0)
    model = zoo.build("faster_rcnn_r18_fpn", num_classes=3, min_size=64, max_size=96, score_thresh=0.3)
    checkpoint.save(tmp_path / "m.pt", checkpoint.model_payload(model))
    assert cli.main(["export", "--model", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"),
                     "--image-size", "64", "80"]) == 0
    assert "random images of 64x80 and 48x100: max abs difference" in capsys.readouterr().out


def test_tiny_image_size_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 32"):
        export_onnx(ToyDetector(), tmp_path / "x.onnx", (8, 8))
