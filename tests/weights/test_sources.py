"""Weight sources without network: a stand-in torch.hub cache (TORCH_HOME in a temporary folder holding files
under the published names), truncated and missing files, ImageNet trunks, and a training step from every kind
of source whose checkpoint `objdet.load` rebuilds."""

import pytest
import torch
from torchvision.models import detection as tvd
from torchvision.models import resnet18

from released import released_faster_rcnn_state as _released_faster_rcnn_state

import objdet
from objdet.engine import checkpoint
from objdet.errors import CheckpointError, ConfigError
from objdet.weights.sources import coco_names

SMALL = dict(min_size=96, max_size=128)


def _one_step_then_reload(model, tmp_path):
    """A training step changes the weights; the checkpoint written after it rebuilds them exactly."""
    model.train()
    image = torch.rand(3, 96, 112, generator=torch.Generator().manual_seed(0))
    target = {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])}
    if model.config.has_masks:
        target["masks"] = torch.zeros(1, 96, 112, dtype=torch.uint8)
        target["masks"][0, 12:70, 10:60] = 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    loss = sum(model([image, image.flip(-1)], [target, target]).values())  # two: BatchNorm on EfficientDet's P7
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    path = checkpoint.save(tmp_path / "tuned.pt", checkpoint.model_payload(model))
    again = objdet.load(path)
    assert again.class_names == model.class_names and again.arch == model.arch
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_published_torchvision_weights_from_the_hub_cache(hub, tmp_path, one_thread):
    with pytest.raises(CheckpointError, match=r"download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6"
                                              r".pth.*place that file at .*checkpoints/fasterrcnn_resnet50_fpn_coco"):
        objdet.build("faster_rcnn_r50_fpn", weights="torchvision:COCO_V1")
    state = _released_faster_rcnn_state()
    torch.save(state, hub / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    model = objdet.build("faster_rcnn_r50_fpn", weights="torchvision:COCO_V1", **SMALL)
    assert model.class_names == coco_names() and model.class_names[0] == "person" and model.num_classes == 90
    assert model.config.frozen_bn_eps == 0.0  # as torchvision runs its released v1 weights
    assert not model.weights_report.initialised
    tuned = objdet.build("faster_rcnn_r50_fpn", weights="torchvision:COCO_V1", classes=["dog", "raccoon"], **SMALL)
    assert tuned.weights_report.transferred == ["dog"]
    _one_step_then_reload(tuned, tmp_path)
    with pytest.raises(ConfigError, match="COCO_V2.*COCO_V1"):
        objdet.build("faster_rcnn_r50_fpn", weights="torchvision:COCO_V2")
    with pytest.raises(ConfigError, match="no weights for 'faster_rcnn_r18_fpn'"):
        objdet.build("faster_rcnn_r18_fpn", weights="torchvision:COCO_V1")


def test_a_truncated_cached_file_is_refused(hub):
    torch.save(_released_faster_rcnn_state(), hub / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    path = hub / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"fasterrcnn_resnet50_fpn_coco-258fb6c6.pth: cannot read weights"):
        objdet.build("faster_rcnn_r50_fpn", weights="torchvision:COCO_V1")


def test_published_effdet_weights_and_an_effdet_file(hub, tmp_path, one_thread):
    from effdet import create_model

    torch.manual_seed(0)
    net = create_model("tf_efficientdet_d0", pretrained=False, pretrained_backbone=False)
    torch.save(net.state_dict(), hub / "tf_efficientdet_d0_34-f153e0cf.pth")
    model = objdet.build("efficientdet_d0", weights="effdet:tf_efficientdet_d0", image_size=128)
    assert model.class_names == coco_names() and not model.weights_report.initialised
    torch.save(net.state_dict(), tmp_path / "mine.pth")  # recognised by its keys, names unknown
    tuned = objdet.build("efficientdet_d0", weights=tmp_path / "mine.pth", classes=["a", "b"], image_size=128)
    assert tuned.weights_report.transferred == []
    _one_step_then_reload(tuned, tmp_path)


def test_torchvision_and_objdet_files(tmp_path, one_thread):
    torch.manual_seed(0)
    tv = tvd.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model = objdet.build("mask_rcnn_r50_fpn", weights=tmp_path / "tv.pth", **SMALL)  # its own class set
    assert model.num_classes == 3 and model.class_names is None and not model.weights_report.initialised
    faster = objdet.build("faster_rcnn_r50_fpn", weights=tmp_path / "tv.pth", num_classes=2, **SMALL)
    assert any(k.startswith("mask_stage") for k in faster.weights_report.unused)
    _one_step_then_reload(faster, tmp_path)
    demo = objdet.build("mask_rcnn_r18_fpn", classes=["x", "y"], backbone_norm="BN", **SMALL)
    checkpoint.save(tmp_path / "demo.pt", checkpoint.model_payload(demo))
    tuned = objdet.build("mask_rcnn_r18_fpn", weights=tmp_path / "demo.pt", classes=["y", "z"])
    assert tuned.config.backbone_norm == "BN" and tuned.weights_report.transferred == ["y"]
    _one_step_then_reload(tuned, tmp_path)


def test_imagenet_trunks_from_the_hub_cache(hub, tmp_path):
    torch.manual_seed(0)
    trunk = resnet18().state_dict()
    with pytest.raises(CheckpointError, match="resnet18-f37072fd.pth"):
        objdet.build("faster_rcnn_r18_fpn", backbone_weights="imagenet")
    torch.save(trunk, hub / "resnet18-f37072fd.pth")
    model = objdet.build("faster_rcnn_r50_c4", depth=18, num_classes=3, backbone_weights="imagenet")
    own = model.state_dict()
    for key, value in trunk.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith("layer4."):
            assert torch.equal(own[f"box_stage.head.res5.{key[7:]}"], value), key  # C4's res5 head
        else:
            assert torch.equal(own[f"backbone.body.{key}"], value), key
    torch.save(trunk, tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"r18.pth: record layer1.0.conv1.weight"):
        objdet.build("retinanet_r50_fpn", backbone_weights=tmp_path / "r18.pth")


def test_load_takes_any_self_describing_source(tmp_path, one_thread):
    torch.manual_seed(0)
    tv = tvd.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=96, max_size=96)
    torch.save(tv.state_dict(), tmp_path / "retina.pth")
    model = objdet.load(tmp_path / "retina.pth")
    assert model.arch == "retinanet_r50_fpn" and model.num_classes == 3 and not model.training
    assert model.config.extra == "p6p7_p5" and model.config.background_channel
    with pytest.raises(ConfigError, match="say which model"):
        objdet.load("torchvision:COCO_V1")
