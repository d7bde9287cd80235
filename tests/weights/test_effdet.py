"""from_effdet: objdet's EfficientDet with effdet's weights gives effdet's DetBenchPredict detections."""

import pytest
import torch
from effdet import create_model

from detection_match import assert_same_detections

from objdet import from_effdet
from objdet.errors import CheckpointError, ConfigError
from objdet.weights.effdet import convert_effdet_state_dict, effdet_config
from objdet.detectors.efficientdet import efficientdet

SIZE = 128
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _randomise(model):
    """Random BN statistics and affine terms and fusion weights, so every layer matters."""
    g = torch.Generator().manual_seed(1)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.6)
    for name, p in model.named_parameters():
        if name.endswith("edge_weights"):
            p.data.copy_(torch.rand(p.shape, generator=g) * 2.5 - 0.5)


@pytest.fixture(scope="module", params=["tf_efficientdet_d0", "efficientdet_d0"])
def pair(request):
    torch.manual_seed(0)
    ref = create_model(request.param, bench_task="predict", pretrained=False, pretrained_backbone=False,
                       image_size=(SIZE, SIZE))
    _randomise(ref)
    ref.eval()
    ours = from_effdet(request.param, ref.model.state_dict(), image_size=SIZE).eval()
    return ref, ours


def test_detections_equal_detbenchpredict(pair, one_thread):
    ref, ours = pair
    torch.manual_seed(2)
    images = [torch.rand(3, SIZE, SIZE) for _ in range(2)]
    x = torch.stack([(im - MEAN) / STD for im in images])
    info = {"img_scale": torch.ones(2), "img_size": torch.tensor([[SIZE, SIZE]] * 2, dtype=torch.float32)}
    with torch.no_grad():
        expected = ref(x, img_info=info)
        got = ours(images)
    for det, exp in zip(got, expected):
        valid = exp[:, 4] > 0
        assert valid.sum() > 10
        assert_same_detections(det, exp[valid, :4], exp[valid, 4], exp[valid, 5].long())


def test_letterboxed_image_maps_back_to_input_pixels(pair, one_thread):
    # a 64 x 48 image is resized by 2 and padded to 128 x 128; effdet's img_scale undoes it
    ref, ours = pair
    torch.manual_seed(3)
    image = torch.rand(3, 48, 64)
    big = torch.nn.functional.interpolate(image[None], size=(96, 128), mode="bilinear", align_corners=False)[0]
    x = torch.zeros(1, 3, SIZE, SIZE)
    x[0, :, :96] = (big - MEAN) / STD
    info = {"img_scale": torch.tensor([0.5]), "img_size": torch.tensor([[64.0, 48.0]])}
    with torch.no_grad():
        exp = ref(x, img_info=info)[0]
        det = ours([image])[0]
    valid = exp[:, 4] > 0
    assert_same_detections(det, exp[valid, :4], exp[valid, 4], exp[valid, 5].long())
    assert (det["boxes"][:, 2] <= 64).all() and (det["boxes"][:, 3] <= 48).all()


@pytest.mark.parametrize("name", [f"tf_efficientdet_d{i}" for i in range(1, 8)] + ["efficientdet_d1"])
def test_larger_variants_map_every_key(name):
    # shapes only (meta tensors): the converted state dict has exactly objdet's keys and shapes
    with torch.device("meta"):
        ref = create_model(name, pretrained=False, pretrained_backbone=False)
        ours = efficientdet(**effdet_config(name))
    converted = convert_effdet_state_dict(ref.state_dict(), ours)
    own = ours.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


def test_bad_inputs_raise_objdet_errors():
    with pytest.raises(ConfigError, match="unsupported effdet model"):
        from_effdet("efficientdet_d5", {})
    with pytest.raises(CheckpointError):
        from_effdet("tf_efficientdet_d0", {"something": torch.zeros(1)})


def test_cli_convert_writes_a_loadable_checkpoint(tmp_path, one_thread):
    from objdet.cli import main
    from objdet.engine.checkpoint import load_model

    torch.manual_seed(0)
    ref = create_model("efficientdet_d0", pretrained=False, pretrained_backbone=False)
    _randomise(ref)
    torch.save(ref.state_dict(), tmp_path / "effdet.pth")
    assert main(["convert", "--from", "effdet", "--arch", "efficientdet_d0",
                 str(tmp_path / "effdet.pth"), str(tmp_path / "objdet.pt")]) == 0
    model, _ = load_model(tmp_path / "objdet.pt")
    expected = from_effdet("efficientdet_d0", ref.state_dict())
    assert model.config == expected.config and not model.config.same_padding
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in expected.state_dict().items())
