"""Faster R-CNN: a tiny model overfits one `shapes` image (AP50 = 1.0); the C4 variant trains and predicts."""

import pytest
import torch

from objdet import build
from objdet.data.coco import dataset_to_coco, to_coco_results
from objdet.data.shapes import ShapesDataset
from objdet.evaluation.coco import evaluate_coco

TINY = dict(backbone_norm="GN", trainable_layers=0, fpn_channels=64, min_size=128, max_size=128)


def overfit(name: str, iou_types: tuple[str, ...], max_steps: int, **overrides) -> dict[str, float]:
    """Train `name` on one shapes image with AdamW until every AP50 is 1.0 or `max_steps`; the AP50s."""
    torch.manual_seed(0)
    ds = ShapesDataset("train", length=1, image_size=128)
    image, target = ds[0]
    gt = dataset_to_coco(ds)
    model = build(name, num_classes=ds.num_classes, **TINY, **overrides)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    ap50 = dict.fromkeys(iou_types, 0.0)
    for step in range(1, max_steps + 1):
        model.train()
        loss = sum(model([image], [target]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                results = to_coco_results(model([image]), [target["image_id"]])
            ap50 = {k: evaluate_coco(gt, results, iou_type=k)["AP50"] if results else 0.0 for k in iou_types}
            if min(ap50.values()) > 1 - 1e-9:
                break
    return ap50


def test_tiny_faster_rcnn_overfits_one_image():
    assert overfit("faster_rcnn_r18_fpn", ("bbox",), max_steps=60)["bbox"] == pytest.approx(1.0)


def test_c4_variant_runs_res5_on_the_rois():
    torch.manual_seed(0)
    model = build("faster_rcnn_r50_c4", depth=18, num_classes=3, min_size=128, max_size=128,
                  rpn_pre_nms_top_n=(300, 200), rpn_post_nms_top_n=(100, 50))
    assert not hasattr(model.backbone.body, "layer4") and list(model.backbone.out_channels) == ["C2", "C3", "C4"]
    assert model.rpn.head.objectness.out_channels == 15  # 5 sizes x 3 ratios on the one C4 map
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([2])}
    images = [torch.rand(3, 100, 120)]
    losses = model.train()(images, [target])
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) == 4
    sum(losses.values()).backward()
    assert model.box_stage.head.res5[0].conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        out = model.eval()(images)[0]
    assert out["boxes"].shape[1] == 4 and len(out["boxes"]) <= 100
    assert (out["boxes"][:, 2] <= 120).all() and (out["boxes"][:, 3] <= 100).all()


@pytest.mark.parametrize("head", ["2fc", "4conv1fc"])
def test_box_head_dim_sets_the_fully_connected_width(head):
    model = build("faster_rcnn_r18_fpn", num_classes=3, box_head=head, box_head_dim=96)
    linears = [m for m in model.box_stage.head.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.out_features == 96 for m in linears)
    assert model.box_stage.predictor.cls_score.in_features == 96
