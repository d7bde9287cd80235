"""Under bfloat16 autocast the heads run in bfloat16 but the box arithmetic stays in float32.

bfloat16 rounds a coordinate between 128 and 256 px to a whole pixel; the oracle here decodes the heads'
own (bfloat16) outputs in float64, and every box the detector returns must lie within 1e-3 px of one
of those decodes. Boxes decoded in bfloat16 miss by up to half a pixel and fail.
"""

import pytest
import torch

from objdet import build
from objdet.boxes import clip_boxes, full_precision
from objdet.detectors.dense import flatten_levels

SIZE = 256


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(2)]


def _capture(module: torch.nn.Module, store: list) -> None:
    module.register_forward_hook(lambda _m, _i, out: store.append(out))


def _assert_near_some(boxes: torch.Tensor, exact: torch.Tensor) -> None:
    """Every row of `boxes` within 1e-3 px (each coordinate) of a row of `exact`."""
    assert boxes.dtype == torch.float32 and len(boxes) > 0
    gap = (boxes.double()[:, None] - exact[None]).abs().amax(-1).amin(1)
    assert gap.max() < 1e-3, f"boxes off their float64 decode by up to {gap.max():.4f} px"


def test_full_precision_upcasts_only_reduced_precision():
    half, bf16 = torch.ones(2, dtype=torch.float16), torch.ones(2, dtype=torch.bfloat16)
    single, double = torch.ones(2), torch.ones(2, dtype=torch.float64)
    out = full_precision(half, bf16, single, double)
    assert [t.dtype for t in out] == [torch.float32, torch.float32, torch.float32, torch.float64]
    assert out[2] is single and out[3] is double


def test_rpn_proposals_are_decoded_in_float32_under_autocast(one_thread):
    torch.manual_seed(0)
    model = build("faster_rcnn_r18_fpn", num_classes=2, min_size=SIZE, max_size=SIZE).eval()
    heads: list = []
    calls: list = []
    _capture(model.rpn.head, heads)
    model.rpn.register_forward_hook(lambda _m, inputs, out: calls.append((inputs, out)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(_images())
    _, deltas = heads[0]
    assert deltas.dtype == torch.bfloat16  # the head itself did run in reduced precision
    (images, _, features, *_), (proposals, _) = calls[0]
    shapes = [tuple(f.shape[-2:]) for f in features]
    anchors = model.rpn.anchor_generator(tuple(images.shape[-2:]), shapes, device=torch.device("cpu")).double()
    for boxes, per_image in zip(proposals, deltas.double()):
        exact = clip_boxes(model.rpn.box_coder.decode(per_image, anchors), (SIZE, SIZE))
        _assert_near_some(boxes, exact)


def test_retinanet_detections_are_decoded_in_float32_under_autocast(one_thread):
    torch.manual_seed(0)
    model = build("retinanet_r18_fpn", num_classes=2, min_size=SIZE, max_size=SIZE, score_thresh=0.0).eval()
    box_maps: list = []
    _capture(model.box_head, box_maps)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        detections = model(_images())
    assert box_maps[0][0].dtype == torch.bfloat16
    anchors = model._anchors[1].double()
    deltas = flatten_levels(box_maps[0], 4).double()
    for i, det in enumerate(detections):
        exact = clip_boxes(model.postprocess.box_coder.decode(deltas[i], anchors), (SIZE, SIZE))
        _assert_near_some(det["boxes"], exact)


@pytest.mark.parametrize("name", ["faster_rcnn_r18_fpn", "keypoint_rcnn_r18_fpn"])
def test_two_stage_outputs_are_float32_under_autocast(name, one_thread):
    torch.manual_seed(0)
    model = build(name, num_classes=2, min_size=SIZE, max_size=SIZE, score_thresh=0.0).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_images())[0]
    assert len(out["boxes"]) > 0
    assert all(v.dtype == torch.float32 for k, v in out.items() if k != "labels")
    grid = out["boxes"].bfloat16().float()
    assert (out["boxes"] != grid).any(), "every box lies on the bfloat16 grid: decoded in reduced precision"


@pytest.mark.parametrize("name", ["faster_rcnn_r18_fpn", "mask_rcnn_r18_fpn", "retinanet_r18_fpn"])
def test_a_model_cast_to_bfloat16_predicts(name, one_thread):
    """model.bfloat16() (no autocast): RoIAlign meets bfloat16 features and float32 boxes, and pools in float32."""
    torch.manual_seed(0)
    model = build(name, num_classes=2, min_size=128, max_size=128, score_thresh=0.0).eval().bfloat16()
    with torch.no_grad():
        out = model([torch.rand(3, 128, 128).bfloat16()])[0]
    assert len(out["boxes"]) > 0 and out["boxes"].dtype == torch.float32
