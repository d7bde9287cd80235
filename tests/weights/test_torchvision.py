"""torchvision R-CNN checkpoints: with the same weights objdet's eval outputs equal torchvision's."""

import pytest
import torch
from torchvision.models import detection as tvd
from torchvision.ops.misc import FrozenBatchNorm2d

from detection_match import freeze_batchnorms

from objdet import cli, fused
from objdet.engine import checkpoint
from objdet.errors import CheckpointError
from objdet.norm import FrozenBatchNorm2d as OurFrozenBN
from objdet.weights.torchvision import from_torchvision

SIZE = dict(min_size=224, max_size=320)
# fewer proposals and detections than the defaults keep the R-50 heads cheap on a CPU
TV_LIMITS = dict(rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, box_detections_per_img=30)
OUR_LIMITS = dict(rpn_pre_nms_top_n=(2000, 300), rpn_post_nms_top_n=(2000, 100), detections_per_img=30)


def _torchvision_model(arch: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(tvd, arch)(weights=None, weights_backbone=None, **SIZE, **TV_LIMITS, **kw)
    if not arch.endswith("_v2"):
        freeze_batchnorms(model.backbone.body)
    with torch.no_grad():  # non-trivial norm statistics so that a wrongly mapped buffer shows
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images():
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 200, 260, generator=g), torch.rand(3, 310, 240, generator=g)]


CASES = [
    ("fasterrcnn_resnet50_fpn", dict(num_classes=7)),
    ("fasterrcnn_resnet50_fpn_v2", dict(num_classes=7)),
    ("maskrcnn_resnet50_fpn", dict(num_classes=5)),
    ("maskrcnn_resnet50_fpn_v2", dict(num_classes=5)),
    ("keypointrcnn_resnet50_fpn", dict(num_classes=2, num_keypoints=6)),
]


@pytest.mark.parametrize("arch,kw", CASES, ids=[c[0] for c in CASES])
def test_same_outputs_as_torchvision(arch, kw):
    tv = _torchvision_model(arch, **kw)
    ours = from_torchvision(arch, tv.state_dict(), frozen_bn_eps=1e-5, **SIZE, **OUR_LIMITS).eval()
    images = _images()
    with torch.no_grad(), fused.disabled():  # the plain path, exactly torchvision's arithmetic (the default
        expected = tv(images)                # fused path is compared in tests/detectors/test_fast_path.py)
        got = ours(images)
    for e, g in zip(expected, got):
        assert set(g) == set(e)
        assert len(g["boxes"]) == len(e["boxes"]) > 0
        assert torch.equal(g["labels"], e["labels"])
        for key in e:
            torch.testing.assert_close(g[key].float(), e[key].float(), atol=1e-4, rtol=0, msg=f"{arch} {key}")


def test_fused_inference_keeps_the_outputs():
    """Frozen norms folded into the convs and channels-last: the same features and detections up to float
    rounding (relative 1e-5 on features of magnitude ~1e3 with random weights)."""

    tv = _torchvision_model("fasterrcnn_resnet50_fpn", num_classes=5)
    ours = from_torchvision("fasterrcnn_resnet50_fpn", tv.state_dict(), frozen_bn_eps=1e-5, **SIZE, **OUR_LIMITS).eval()
    images = _images()[:1]
    with torch.no_grad():
        batch, _ = ours.transform(images)
        with fused.disabled():
            before = ours.features(batch.tensors)
            expected = ours(images)[0]
        ours.fuse_for_inference()
        after = ours.features(batch.tensors)
        got = ours(images)[0]
    assert not any(isinstance(m, OurFrozenBN) for m in ours.modules())
    assert after["P2"].is_contiguous(memory_format=torch.channels_last)
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=1e-5 * before[key].abs().max().item(), rtol=0)
    # Random weights saturate many scores at 1.0; among such ties, rounding decides which box NMS keeps,
    # so one saturated detection may differ. Every other detection must have its twin on the other side.
    assert _unmatched(got, expected) <= 1 and _unmatched(expected, got) <= 1


def _unmatched(a: dict, b: dict) -> int:
    """Detections of `a` without a twin in `b` (same label, box within 0.1, score within 1e-3); fails on
    an unmatched one that is not a saturated tie."""
    missing = 0
    for box, score, label in zip(a["boxes"], a["scores"], a["labels"]):
        twin = ((b["labels"] == label) & ((b["boxes"] - box).abs().amax(1) <= 0.1)
                & ((b["scores"] - score).abs() <= 1e-3))
        if not twin.any():
            assert score > 1 - 1e-4, f"detection {box.tolist()} (score {score:.4f}) lost by fusion"
            missing += 1
    return missing


def test_convert_command_writes_a_rebuildable_checkpoint(tmp_path):
    tv = _torchvision_model("fasterrcnn_resnet50_fpn", num_classes=4)
    src, out = tmp_path / "tv.pth", tmp_path / "objdet.pt"
    torch.save(tv.state_dict(), src)
    assert cli.main(["convert", "--from", "torchvision", "--arch", "fasterrcnn_resnet50_fpn", str(src), str(out)]) == 0
    model, payload = checkpoint.load_model(out)
    assert payload["arch"] == "faster_rcnn_r50_fpn" and payload["config"]["num_classes"] == 3
    reference = from_torchvision("fasterrcnn_resnet50_fpn", tv.state_dict()).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    # the v1 default eps (0, as torchvision runs its released weights) survives the round trip
    frozen = [m for m in model.modules() if isinstance(m, OurFrozenBN)]
    assert frozen and all(m.eps == 0.0 for m in frozen)


def test_bad_checkpoints_raise_checkpoint_errors(tmp_path, capsys):
    sd = _torchvision_model("fasterrcnn_resnet50_fpn", num_classes=3).state_dict()
    with pytest.raises(CheckpointError, match="no converter"):
        from_torchvision("fasterrcnn_mobilenet_v3_large_fpn", sd)
    del sd["rpn.head.cls_logits.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        from_torchvision("fasterrcnn_resnet50_fpn", sd)
    with pytest.raises(CheckpointError, match="box_predictor"):
        from_torchvision("maskrcnn_resnet50_fpn", {"x": torch.zeros(1)})
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert cli.main(["convert", "--from", "torchvision", "--arch", "fasterrcnn_resnet50_fpn", str(junk),
                     str(tmp_path / "o.pt")]) == 2
    assert "junk.pth" in capsys.readouterr().err
