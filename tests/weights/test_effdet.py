"""from_effdet: objdet's EfficientDet with effdet's weights gives effdet's DetBenchPredict detections."""

import pytest
import torch
from effdet import create_model

from detection_match import assert_same_detections

from objdet import from_effdet
from objdet.errors import CheckpointError, ConfigError
from objdet.weights.effdet import convert_effdet_state_dict, effdet_config
from objdet import zoo

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


def _images():
    """Two generated shapes images (structure, so the two give different detections)."""
    from objdet.data.shapes import ShapesDataset

    return [ShapesDataset("val", length=2, image_size=SIZE, seed=5)[i][0] for i in range(2)]


def _interior_detections(bench, x, info):
    """Make the detections test the box head: random weights put nearly every box on the image border (large
    anchors, wild deltas), where clipping hides a wrong box head (43% of tf_efficientdet_d0's coordinates were
    clipped). With unit-spread outputs, P4..P7's features pushed to SiLU's flat side (their own last class-head
    norm) and small box deltas, the detections are P3's anchors moved a little (21% clipped)."""
    _unit_output_scale(bench, x, info)
    net = bench.model
    with torch.no_grad():
        for level in range(1, 5):
            net.class_net.bn_rep[-1][level].bn.bias.fill_(-30.0)
        net.box_net.predict.conv_pw.weight.mul_(0.1)
        net.box_net.predict.conv_pw.bias.zero_()


def _inputs(images):
    x = torch.stack([(im - MEAN) / STD for im in images])
    info = {"img_scale": torch.ones(len(images)), "img_size": torch.tensor([[SIZE, SIZE]] * len(images),
                                                                           dtype=torch.float32)}
    return x, info


@pytest.fixture(scope="module", params=["tf_efficientdet_d0", "efficientdet_d0"])
def pair(request):
    torch.manual_seed(0)
    ref = create_model(request.param, bench_task="predict", pretrained=False, pretrained_backbone=False,
                       image_size=(SIZE, SIZE))
    _randomise(ref)
    ref.eval()
    _interior_detections(ref, *_inputs(_images()))
    ours = from_effdet(request.param, ref.model.state_dict(), image_size=SIZE).eval()
    return ref, ours


def _reference_detections(ref, images):
    with torch.no_grad():
        expected = ref(*_inputs(images))
    return [exp[exp[:, 4] > 0] for exp in expected]


def test_detections_equal_detbenchpredict(pair, one_thread):
    ref, ours = pair
    images = _images()
    with torch.no_grad():
        got = ours(images)
    for det, exp in zip(got, _reference_detections(ref, images)):
        assert len(exp) > 10
        boxes = exp[:, :4]
        clipped = (boxes <= 0.01) | (boxes >= SIZE - 0.01)
        assert clipped.float().mean() < 0.3  # most coordinates are the box head's, not the clipping's
        assert_same_detections(det, boxes, exp[:, 4], exp[:, 5].long())


def test_a_perturbed_box_head_fails_the_comparison(pair, one_thread):
    """The comparison above can fail: one box-head tensor moved by a little is caught."""
    ref, ours = pair
    images = _images()
    bias = ours.box_head.predict.pointwise.bias
    with torch.no_grad():
        bias[0::4] += 0.05  # every anchor's x offset: a shift of 0.05 of its width (1.6 px on P3)
        try:
            got = ours(images)
        finally:
            bias[0::4] -= 0.05
    with pytest.raises(AssertionError):
        for det, exp in zip(got, _reference_detections(ref, images)):
            assert_same_detections(det, exp[:, :4], exp[:, 4], exp[:, 5].long())


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
        ours = zoo.build("efficientdet_d0", **effdet_config(name))
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


def _unit_output_scale(bench, x, info):
    """Deep random nets saturate every score to 1.0; rescale the class and box output layers so their
    outputs have unit spread, which keeps the scores distinct and the boxes inside the image."""
    spreads = {}
    hooks = [net.predict.register_forward_hook(lambda m, i, out, key=key: spreads.setdefault(key, []).append(out))
             for key, net in (("class", bench.model.class_net), ("box", bench.model.box_net))]
    with torch.no_grad():
        bench(x, img_info=info)
        for h in hooks:
            h.remove()
        for key, net in (("class", bench.model.class_net), ("box", bench.model.box_net)):
            spread = torch.cat([o.flatten() for o in spreads[key]]).std()
            net.predict.conv_pw.weight.div_(spread)


@pytest.mark.parametrize("name", [f"tf_efficientdet_d{i}" for i in range(1, 8)] + ["efficientdet_d1"])
def test_larger_variants_equal_detbenchpredict(name, one_thread):
    # every published variant, full width and depth, at a small input so the test stays quick
    torch.manual_seed(0)
    ref = create_model(name, bench_task="predict", pretrained=False, pretrained_backbone=False,
                       image_size=(SIZE, SIZE))
    _randomise(ref)
    ref.eval()
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    info = {"img_scale": torch.ones(1), "img_size": torch.tensor([[SIZE, SIZE]], dtype=torch.float32)}
    _unit_output_scale(ref, ((image - MEAN) / STD)[None], info)
    ours = from_effdet(name, ref.model.state_dict(), image_size=SIZE).eval()
    with torch.no_grad():
        exp = ref(((image - MEAN) / STD)[None], img_info=info)[0]
        det = ours([image])[0]
    valid = exp[:, 4] > 0
    assert valid.sum() > 10 and exp[valid, 4].max() < 0.99  # not saturated: the scores order the boxes
    # random weights drive D6/D7's features to ~1e4, so float32 noise reaches ~1e-3 px: boxes are held to
    # 1e-4 of the image side, scores (in 0..1) to 1e-4
    assert_same_detections(det, exp[valid, :4], exp[valid, 4], exp[valid, 5].long(), atol=1e-4 * SIZE)
    assert (det["scores"].sort(descending=True).values - exp[valid, 4].sort(descending=True).values).abs().max() <= 1e-4
