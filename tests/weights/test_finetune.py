"""Fine-tuning from published weights onto a new class set: the peers' own recipes are the oracle."""

import pytest
import torch
from torchvision.models import detection as tvd
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetClassificationHead

from detection_match import assert_same_detections, freeze_batchnorms

import objdet
from objdet import fused
from objdet.errors import CheckpointError
from objdet.weights.torchvision import ARCHS

SIZE = dict(min_size=160, max_size=200)
TV_LIMITS = dict(rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, box_detections_per_img=30)
OUR_LIMITS = dict(rpn_pre_nms_top_n=(2000, 300), rpn_post_nms_top_n=(2000, 100), detections_per_img=30)
NEW_CLASSES = ["raccoon", "Person ", "teddy bear"]  # "person" and "teddy bear" are COCO's; "raccoon" is not


def _coco_like(arch: str) -> torch.nn.Module:
    """torchvision's `arch` with 91 classes as its COCO weights have, frozen trunk norms (as released), random
    but non-trivial statistics."""
    torch.manual_seed(0)
    model = getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=91, **SIZE,
                               **({} if arch.startswith("retinanet") else TV_LIMITS))
    freeze_batchnorms(model.backbone.body)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, m in model.named_modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                m.running_mean.copy_((torch.rand(m.running_mean.shape, generator=g) - 0.5) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def _fresh_head(module: torch.nn.Module, seed: int) -> None:
    """Give a replaced head distinct, non-saturating weights (the same ones go into both libraries)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.002)


def _images():
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 150, 190, generator=g), torch.rand(3, 180, 160, generator=g)]


def _compare(tv, ours, copied_prefixes):
    """Same class-agnostic tensors (everything the recipe did not replace), then the same detections once our
    replaced head holds the peer's new weights."""
    renamed = ARCHS[next(a for a, s in ARCHS.items() if s.zoo == ours.arch)].rename(tv.state_dict())
    own = ours.state_dict()
    specific = set(ours.class_rows())
    for key, value in renamed.items():
        if key in own and not key.startswith(copied_prefixes) and key not in specific:
            assert torch.equal(own[key], value), key
    ours.load_state_dict({k: v for k, v in renamed.items() if k.startswith(copied_prefixes)}, strict=False)
    tv.eval()
    ours.eval()
    with torch.no_grad(), fused.disabled():  # the plain path: torchvision's arithmetic, op for op
        expected, got = tv(_images()), ours(_images())
    for e, d in zip(expected, got):
        keep = e["labels"] > 0
        assert keep.sum() > 3
        assert_same_detections(d, e["boxes"][keep], e["scores"][keep], e["labels"][keep])


@pytest.mark.parametrize("arch", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"])
def test_rcnn_recipe_of_torchvision(arch, tmp_path, one_thread):
    tv = _coco_like(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(tv.state_dict(), path)
    k = len(NEW_CLASSES) + 1
    tv.roi_heads.box_predictor = FastRCNNPredictor(1024, k)  # torchvision's fine-tuning tutorial
    _fresh_head(tv.roi_heads.box_predictor, 4)
    copied = ("box_stage.predictor.",)
    if arch.startswith("mask"):
        tv.roi_heads.mask_predictor = MaskRCNNPredictor(256, 256, k)
        _fresh_head(tv.roi_heads.mask_predictor, 5)
        copied += ("mask_stage.head.deconv.", "mask_stage.head.logits.")
    ours = objdet.build(ARCHS[arch].zoo, weights=f"torchvision:{path}", classes=NEW_CLASSES, frozen_bn_eps=1e-5,
                        **SIZE, **OUR_LIMITS)
    assert ours.class_names == NEW_CLASSES and ours.num_classes == 3
    _compare(tv, ours, copied)


def test_retinanet_recipe_of_torchvision(tmp_path, one_thread):
    tv = _coco_like("retinanet_resnet50_fpn")
    torch.save(tv.state_dict(), tmp_path / "r.pth")
    k = len(NEW_CLASSES) + 1
    tv.head.classification_head = RetinaNetClassificationHead(256, 9, k)  # its own initialisation, then
    logits = tv.head.classification_head.cls_logits  # class weights that spread the scores
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        logits.weight.normal_(std=0.05, generator=g)
        logits.bias.copy_(torch.randn(logits.bias.shape, generator=g) * 0.3 - 2.0)
        logits.bias[::k] = -8.0  # the background channel, which objdet never outputs, stays out of the top
    ours = objdet.build("retinanet_r50_fpn", weights=tmp_path / "r.pth", classes=NEW_CLASSES, frozen_bn_eps=1e-5,
                        **SIZE)
    _compare(tv, ours, ("class_head.",))


def test_effdet_recipe(tmp_path, one_thread):
    from effdet import create_model

    from objdet.weights.effdet import convert_effdet_state_dict

    torch.manual_seed(0)
    net = create_model("tf_efficientdet_d0", pretrained=False, pretrained_backbone=False, image_size=(128, 128))
    path = tmp_path / "d0.pth"
    torch.save(net.state_dict(), path)
    net.reset_head(num_classes=len(NEW_CLASSES))  # effdet's recipe: a new class head
    ours = objdet.build("efficientdet_d0", weights=f"effdet:{path}", classes=NEW_CLASSES, image_size=128)
    renamed = convert_effdet_state_dict(net.state_dict(), ours)
    own = ours.state_dict()
    assert set(renamed) == set(own)
    for key, value in renamed.items():
        if not key.startswith("class_head."):
            assert torch.equal(own[key], value), key
    assert ours.state_dict()["class_head.predict.pointwise.weight"].shape[0] == 9 * len(NEW_CLASSES)


def test_name_matched_rows_are_copied_and_the_rest_fresh(tmp_path, one_thread):
    source = objdet.build("faster_rcnn_r18_fpn", classes=["cat", "person", "dog"], min_size=96, max_size=96)
    with torch.no_grad():
        for p in source.box_stage.predictor.parameters():
            p.normal_()
    from objdet.engine import checkpoint

    checkpoint.save(tmp_path / "src.pt", checkpoint.model_payload(source))
    torch.manual_seed(7)
    tuned = objdet.build("faster_rcnn_r18_fpn", weights=tmp_path / "src.pt", classes=NEW_CLASSES)
    torch.manual_seed(7)
    fresh = objdet.build("faster_rcnn_r18_fpn", classes=NEW_CLASSES, min_size=96, max_size=96)
    src, got, new = source.state_dict(), tuned.state_dict(), fresh.state_dict()
    assert tuned.weights_report.transferred == ["Person "]
    for key, per in (("box_stage.predictor.cls_score.weight", 1), ("box_stage.predictor.bbox_pred.bias", 4)):
        rows = lambda label: slice(label * per, (label + 1) * per)  # noqa: E731 (background channel 0)
        assert torch.equal(got[key][rows(2)], src[key][rows(2)])  # Person <- person, bit for bit
        for label in (0, 1, 3):  # background, raccoon, teddy bear: as the architecture initialises them
            assert torch.equal(got[key][rows(label)], new[key][rows(label)])
    assert torch.equal(got["neck.output.0.0.weight"], src["neck.output.0.0.weight"])
    assert tuned.config.min_size == 96  # the checkpoint's own config is carried


def test_another_architecture_is_refused_naming_the_tensors(tmp_path):
    from objdet.engine import checkpoint

    checkpoint.save(tmp_path / "r18.pt", checkpoint.model_payload(objdet.build("retinanet_r18_fpn", num_classes=3)))
    with pytest.raises(CheckpointError, match=r"r18.pt: weights of another architecture.*backbone.body"):
        objdet.build("faster_rcnn_r50_fpn", weights=tmp_path / "r18.pt", num_classes=3)
    with pytest.raises(CheckpointError, match="r18.pt: weights of another architecture.*neck.lateral"):
        objdet.build("faster_rcnn_r18_fpn", weights=tmp_path / "r18.pt", num_classes=3)
