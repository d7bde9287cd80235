"""The weights flags of the commands end to end, offline (a stand-in torch.hub cache): `train --weights` prints the
transfer and writes checkpoints `objdet.load` rebuilds; predict, eval and export take `--model NAME --weights SRC`;
a pretrained trunk keeps its statistics at small batch; `--freeze`, `--backbone-weights`, `--val-split`, `--strict`."""

import json
import sys
from pathlib import Path

import pytest
import torch
from released import released_faster_rcnn_state
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import objdet
from objdet import cli
from objdet.cli.export import verify_one
from objdet.cli.train import open_data
from objdet.data.coco import write_coco_dataset
from objdet.data.shapes import ShapesDataset
from objdet.engine import checkpoint
from objdet.export.onnx import read_metadata
from objdet.io import load_json
from objdet.weights.finetune import RECIPE, SMALL_BATCH, trunk_norm

COCO_FILE = "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
TINY = ["--set", "min_size=64", "--set", "max_size=64"]


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Six shapes images as COCO, the ellipses renamed " Person" (COCO's "person", another case and a space),
    with category ids 11.. so no label equals its id."""
    folder = tmp_path_factory.mktemp("people")
    ann, images = write_coco_dataset(ShapesDataset("train", length=6, image_size=64), folder)
    data = load_json(ann)
    for c in data["categories"]:
        c["name"] = " Person" if c["name"] == "ellipse" else c["name"]
        c["id"] += 10
    for a in data["annotations"]:
        a["category_id"] += 10
    ann.write_text(json.dumps(data))
    return f"coco:{ann}:{images}", images


@pytest.fixture
def coco_weights(hub):
    """torchvision's COCO Faster R-CNN file in the hub cache, its classifier leaning to "person" (label 1)."""
    state = released_faster_rcnn_state()
    state["roi_heads.box_predictor.cls_score.bias"][1] = 8.0
    torch.save(state, hub / COCO_FILE)
    return state


def _source(path, norm="BN"):
    """An objdet R-18 checkpoint with a trunk of `norm` whose statistics are not the initial ones."""
    torch.manual_seed(0)
    model = objdet.build("faster_rcnn_r18_fpn", classes=["rectangle", "ellipse"], backbone_norm=norm,
                         trainable_layers=5, min_size=64, max_size=64)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-0.1, 0.1)
    return checkpoint.save(path, checkpoint.model_payload(model))


def _train(spec, out, *extra):
    return cli.main(["train", "--data", spec, "--out", str(out), "--epochs", "1", "--batch-size", "2", "--eval-every",
                     "0", "--no-progress", *extra])


def test_fine_tune_published_weights_then_predict_and_eval_by_name(hub, coco_weights, people, tmp_path, capsys,
                                                                   one_thread):
    spec, images = people
    assert _train(spec, tmp_path / "run", "--model", "faster_rcnn_r50_fpn", "--weights", "torchvision:COCO_V1",
                  "--lr", "1e-5", *TINY) == 0
    out = capsys.readouterr().out
    assert "weights from" in out and "class rows copied from the source for:  Person" in out
    saved = checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved["train_config"]["lr"] == 1e-5  # a flag wins over the recipe
    assert all(saved["train_config"][k] == v for k, v in RECIPE.items() if k != "lr")
    tuned = objdet.load(tmp_path / "run" / "last.pt")
    assert tuned.class_names == [c["name"] for c in load_json(spec.split(":")[1])["categories"]]
    for k, v in tuned.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k

    # predict names the classes from torchvision's own table of its published weights
    coco = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    image = sorted(images.iterdir())[0]
    assert cli.main(["predict", "--model", "faster_rcnn_r50_fpn", "--weights", "torchvision:COCO_V1", str(image),
                     "--out", str(tmp_path / "pred"), "--no-progress"]) == 0
    line = json.loads((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()[0])
    assert line["detections"] and all(d["name"] == coco[d["category_id"]] for d in line["detections"])
    assert {d["name"] for d in line["detections"]} == {"person"}
    assert (tmp_path / "pred" / f"{image.stem}.png").is_file()

    # eval maps the model's "person" (label 1) to the data set's " Person" (id 12) and drops the rest
    assert cli.main(["eval", "--model", "faster_rcnn_r50_fpn", "--weights", "torchvision:COCO_V1", "--data", spec,
                     "--val-split", "0.34", "--save-dt", str(tmp_path / "dt.json")]) == 0
    assert "Average Precision" in capsys.readouterr().out
    person = next(c["id"] for c in load_json(spec.split(":")[1])["categories"] if c["name"] == " Person")
    assert person == 12 and {d["category_id"] for d in load_json(tmp_path / "dt.json")} == {person}


def test_model_names_and_weights_are_checked(hub, tmp_path, capsys):
    assert cli.main(["predict", "--model", "faster_rcnn_r50_fpn", str(tmp_path)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(tmp_path / "x.pt"), "--weights", "torchvision:COCO_V1",
                     str(tmp_path)]) == 2
    assert "zoo model name" in capsys.readouterr().err
    assert cli.main(["predict", "--model", "faster_rcnn_r50_fpn", "--weights", "torchvision:COCO_V1",
                     str(tmp_path)]) == 2
    assert f"place that file at {hub / COCO_FILE}" in capsys.readouterr().err


def test_export_takes_weights_alone_or_with_a_zoo_name(tmp_path, one_thread):
    source = _source(tmp_path / "source.pt")
    for args in (["--weights", str(source)], ["--model", "faster_rcnn_r18_fpn", "--weights", str(source)]):
        out = tmp_path / "model.onnx"
        assert cli.main(["export", *args, str(out), "--image-size", "64", "64", "--no-check"]) == 0
        assert read_metadata(out)["class_names"] == ["rectangle", "ellipse"]
        image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
        assert verify_one(objdet.load(source), out, "onnx", (64, 64), [image]) < 1e-3  # the export is the model
        out.unlink()


def test_a_pretrained_trunk_keeps_its_statistics_at_small_batch(people, tmp_path, capsys, one_thread):
    spec, _ = people
    source = _source(tmp_path / "source.pt")
    before = checkpoint.load(source)["model"]

    def trained(name, *extra):
        assert _train(spec, tmp_path / name, "--weights", str(source), *TINY, *extra) == 0
        payload = checkpoint.load(tmp_path / name / "last.pt")
        return payload["config"]["backbone_norm"], payload["model"]

    def same(state, prefix, key="running_mean"):
        keys = [k for k in state if k.startswith(prefix) and k.endswith(key)]
        return bool(keys) and all(torch.equal(state[k], before[k]) for k in keys)

    norm, state = trained("auto")  # 2 images per step
    assert norm == "FrozenBN" and same(state, "backbone.") and not same(state, "backbone.", "conv1.weight")
    norm, state = trained("batch", "--trunk-stats", "batch")
    assert norm == "BN" and not same(state, "backbone.body.layer1.")
    norm, state = trained("set", "--set", "backbone_norm=BN")  # an explicit config wins
    assert norm == "BN"
    norm, state = trained("frozen", "--freeze", "backbone")
    assert same(state, "backbone.", "weight") and not same(state, "neck.", "weight")
    assert checkpoint.load(tmp_path / "frozen" / "last.pt")["train_config"]["freeze"] == "backbone"


def test_trunk_norm_rule():
    assert trunk_norm("BN", "auto", SMALL_BATCH - 1) == "FrozenBN"
    assert trunk_norm("BN", "auto", SMALL_BATCH) == "BN"
    assert trunk_norm("FrozenBN", "batch", 2) == "BN" and trunk_norm("BN", "frozen", 64) == "FrozenBN"
    assert trunk_norm("GN", "frozen", 2) == "GN"


def test_imagenet_trunk_from_the_hub_cache(hub, people, tmp_path, capsys, one_thread):
    spec, _ = people
    torch.manual_seed(3)
    imagenet = resnet18().state_dict()
    torch.save(imagenet, hub / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1])
    assert _train(spec, tmp_path / "run", "--model", "faster_rcnn_r18_fpn", "--backbone-weights", "imagenet",
                  "--freeze", "backbone", *TINY) == 0
    assert "backbone weights from imagenet" in capsys.readouterr().out
    model = objdet.load(tmp_path / "run" / "last.pt")
    trunk = model.backbone.body.state_dict()
    assert model.config.backbone_norm == "FrozenBN"
    for k in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(trunk[k], imagenet[k]), k


def test_val_split_trains_on_one_part_and_validates_on_the_other(people, tmp_path, monkeypatch):
    import engine_toys  # noqa: F401  (registers the zoo model `toy`; tests/engine is on the path)

    from objdet.engine import trainer

    spec, _ = people
    seen = {}

    class Recording(trainer.Trainer):
        def __init__(self, model, train_set, val_set, *args, **kwargs):
            seen["train"] = [train_set.image_info(i)["id"] for i in range(len(train_set))]
            seen["val"] = [val_set.image_info(i)["id"] for i in range(len(val_set))]
            super().__init__(model, train_set, val_set, *args, **kwargs)

    monkeypatch.setattr(trainer, "Trainer", Recording)
    assert _train(spec, tmp_path / "run", "--model", "toy", "--val-split", "0.5", "--seed", "5") == 0
    assert len(seen["train"]) == len(seen["val"]) == 3 and not set(seen["train"]) & set(seen["val"])
    again = [open_data(spec, part, val_split=0.5, seed=5) for part in ("train", "val")]
    assert [[d.image_info(i)["id"] for i in range(len(d))] for d in again] == [seen["train"], seen["val"]]
    other = open_data(spec, "val", val_split=0.5, seed=6)
    assert [other.image_info(i)["id"] for i in range(3)] != seen["val"]
    assert checkpoint.load(tmp_path / "run" / "last.pt")["val_split"] == 0.5  # --resume keeps the parts

    # eval scores the same held-out part
    assert cli.main(["eval", "--model", str(tmp_path / "run" / "last.pt"), "--data", spec, "--val-split", "0.5",
                     "--seed", "5", "--save-dt", str(tmp_path / "dt.json")]) == 0
    assert sorted({d["image_id"] for d in load_json(tmp_path / "dt.json")}) == sorted(seen["val"])
    assert cli.main(["train", "--model", "toy", "--data", spec, "--val-split", "0.5", "--val-data", spec,
                     "--out", str(tmp_path / "x")]) == 2


def test_strict_refuses_a_wart_that_is_otherwise_repaired(people, tmp_path, capsys):
    spec, images = people
    ann = load_json(spec.split(":")[1])
    ann["annotations"][0]["bbox"][0] = -1.5  # a little outside the image: clipped, unless --strict
    path = tmp_path / "warty.json"
    path.write_text(json.dumps(ann))
    warty = f"coco:{path}:{images}"
    assert open_data(warty, "train") is not None
    assert _train(warty, tmp_path / "run", "--model", "faster_rcnn_r18_fpn", "--strict") == 2
    err = capsys.readouterr().err
    assert "warty.json" in err
    assert cli.main(["eval", "--model", "x.pt", "--data", warty, "--strict"]) == 2
    assert "warty.json" in capsys.readouterr().err
