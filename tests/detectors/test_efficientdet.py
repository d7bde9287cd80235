"""EfficientDet: training losses equal effdet's DetBenchTrain; a tiny one overfits a shapes image."""

import pytest
import torch
from effdet import create_model_from_config, get_efficientdet_config

from one_stage_helpers import assert_finds_every_object, two_object_shapes_image

import objdet
from objdet import from_effdet
from objdet.errors import ConfigError

SIZE = 128


def test_training_losses_equal_effdet(one_thread):
    torch.manual_seed(0)
    config = get_efficientdet_config("efficientdet_d0")
    config.image_size, config.num_classes = (SIZE, SIZE), 4
    config.backbone_args = {"drop_path_rate": 0.0}  # stochastic depth would make the two runs differ
    ref = create_model_from_config(config, bench_task="train", pretrained_backbone=False, bench_labeler=True)
    ours = from_effdet("efficientdet_d0", ref.model.state_dict(), image_size=SIZE, drop_path_rate=0.0)
    ref.train(), ours.train()
    # off-lattice coordinates: effdet drops box-target entries that are exactly 0 (its positives mask)
    boxes = [torch.tensor([[10.3, 20.7, 70.9, 90.2], [60.2, 5.1, 110.7, 40.3]]),
             torch.tensor([[30.4, 30.9, 62.3, 70.6], [0.0, 0.0, 0.0, 0.0]])]
    labels = [torch.tensor([1, 4]), torch.tensor([2, -1])]  # effdet pads with label -1
    torch.manual_seed(1)
    images = [torch.rand(3, SIZE, SIZE) for _ in range(2)]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = torch.stack([(im - mean) / std for im in images])
    expected = ref(x, {"bbox": torch.stack(boxes)[..., [1, 0, 3, 2]], "cls": torch.stack(labels).float()})
    targets = [{"boxes": b[lab > 0], "labels": lab[lab > 0]} for b, lab in zip(boxes, labels)]
    got = ours(images, targets)
    torch.testing.assert_close(got["classification"], expected["class_loss"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["bbox_regression"], 50.0 * expected["box_loss"], rtol=1e-4, atol=1e-5)


def test_fusion_and_graph_are_options():
    sum_fused = objdet.build("efficientdet_d0", backbone="efficientnet_b0", image_size=SIZE, fusion="sum")
    assert all(cell.fuse.weight is None for layer in sum_fused.neck.layers for cell in layer.cells)
    panet = objdet.build("efficientdet_d0", backbone="efficientnet_b0", image_size=SIZE, graph="panet", fpn_layers=1)
    assert len(panet.neck.layers[0].cells) == 10
    with pytest.raises(ConfigError):
        objdet.build("efficientdet_d0", graph="nas")
    with pytest.raises(ConfigError):
        objdet.build("efficientdet_d0", unknown_option=1)


def test_tiny_efficientdet_overfits_one_shapes_image(one_thread):
    torch.manual_seed(0)
    image, target = two_object_shapes_image(160)  # P7 is 2 x 2: BatchNorm needs more than one value
    model = objdet.build("efficientdet_d0", num_classes=5, image_size=160, backbone="efficientnet_b0",
                         same_padding=False, drop_path_rate=0.0, fpn_layers=1, head_depth=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    first = None
    for _ in range(90):  # 60 steps was borderline: float-rounding changes in the loss flipped it
        losses = model([image], [target])
        first = first or {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert losses["classification"] < 0.1 * first["classification"]
    assert losses["bbox_regression"] < 0.2 * first["bbox_regression"]
    # BatchNorm's running statistics move by 1% a step (TF's decay), far behind the weights: let eval mode
    # normalise with the image's own statistics, as training did (running averages would also use the
    # unbiased variance, 4/3 of training's on P7's four values)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    model.eval()
    with torch.no_grad():
        out = model([image])[0]
    assert_finds_every_object(out, target)
