"""Untrusted files: checkpoints carrying pickled code, xml with entities, image paths escaping their
root. Each is refused with an objdet error before anything in it runs or is read."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from objdet.cli import main
from objdet.data.coco import CocoDataset
from objdet.data.voc import VOCDataset, parse_xml
from objdet.engine import checkpoint
from objdet.errors import CheckpointError, DataError, EvaluationError
from objdet.evaluation.coco import evaluate_coco

from .conftest import valid_coco, write_json


class Payload:
    """Unpickling this writes a marker file: proof that the checkpoint's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled_checkpoints(tmp_path, marker):
    evil = Payload(marker)
    files = {}
    files["zip_top"] = tmp_path / "top.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": evil}, files["zip_top"])
    files["zip_nested"] = tmp_path / "nested.pt"
    torch.save({"model": {"w": torch.zeros(2), "hook": [evil]}}, files["zip_nested"])
    files["legacy"] = tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "x": evil}, files["legacy"], _use_new_zipfile_serialization=False)
    files["plain_pickle"] = tmp_path / "plain.pkl"
    files["plain_pickle"].write_bytes(pickle.dumps({"model": evil}))
    return files


@pytest.mark.parametrize("kind", ["zip_top", "zip_nested", "legacy", "plain_pickle"])
def test_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path, kind):
    marker = tmp_path / "code_ran"
    path = _pickled_checkpoints(tmp_path, marker)[kind]
    with pytest.raises(CheckpointError, match="weights-only|cannot read") as err:
        checkpoint.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError):
        checkpoint.load_model(path)
    assert not marker.exists()


def test_objdet_predict_refuses_a_pickled_checkpoint(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    path = _pickled_checkpoints(tmp_path, marker)["zip_top"]
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["predict", "--model", str(path), str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 2
    assert "not a weights-only checkpoint" in capsys.readouterr().err
    assert not marker.exists()


SECRET = "TOP-SECRET-CONTENT"
HOSTILE_XML = {
    "external_entity": '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
                       "<annotation><filename>&x;</filename></annotation>",
    "parameter_entity": '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'
                        "<annotation/>",
    "billion_laughs": '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "lol">'
                      + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
                      + "]><annotation><filename>&l9;</filename></annotation>",
    "quadratic_blowup": '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "' + "B" * 50000 + '">]>'
                        "<annotation><filename>" + "&b;" * 5000 + "</filename></annotation>",
    "external_dtd": '<?xml version="1.0"?><!DOCTYPE annotation SYSTEM "file://{secret}"><annotation/>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_XML))
def test_xml_with_entities_or_dtd_is_refused(tmp_path, name):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    xml = root / "Annotations" / "a.xml"
    xml.write_text(HOSTILE_XML[name].replace("{secret}", str(secret)))
    with pytest.raises(DataError, match="DOCTYPE or entity declaration is refused") as err:
        parse_xml(xml)
    assert SECRET not in str(err.value) and str(xml) in str(err.value)
    with pytest.raises(DataError, match="refused"):
        VOCDataset(root)


ESCAPING_NAMES = ["../outside.png", "../../etc/passwd", "/etc/passwd", "sub/../../outside.png", "./../outside.png",
                  "..", "sub/../.."]


@pytest.mark.parametrize("file_name", ESCAPING_NAMES)
def test_coco_image_path_escaping_the_image_root_is_refused(tmp_path, coco_images, file_name):
    doc = valid_coco()
    doc["images"][1]["file_name"] = file_name
    with pytest.raises(DataError, match=r"record image 2: image file name .* escapes the image folder"):
        CocoDataset(write_json(tmp_path / "a.json", doc), coco_images)


def test_paths_that_stay_inside_the_root_are_accepted(tmp_path, coco_images):
    doc = valid_coco()
    doc["images"][1]["file_name"] = "sub/../im2.png"
    ds = CocoDataset(write_json(tmp_path / "a.json", doc), coco_images)
    assert ds.load(1)[0].shape == (3, 16, 20)


@pytest.mark.parametrize("file_name", ESCAPING_NAMES)
def test_voc_image_path_escaping_the_image_root_is_refused(tmp_path, file_name):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>{file_name}</filename><size><width>8</width><height>8</height></size>"
        "</annotation>")
    with pytest.raises(DataError, match=r"record a: image file name .* escapes the image folder"):
        VOCDataset(root)


@pytest.mark.parametrize("name", ["nul\x00.json", "\ud800.json", "deep.json"])
def test_hostile_json_paths_and_nesting_are_refused(tmp_path, name):
    """A NUL or lone surrogate in a path given to objdet, or json nested 200000 deep."""
    path = tmp_path / "deep.json" if name == "deep.json" else str(tmp_path / name)
    if name == "deep.json":
        path.write_text("[" * 200_000)
    with pytest.raises(DataError, match="cannot read the annotation file"):
        CocoDataset(path, tmp_path)
    with pytest.raises(EvaluationError, match="cannot read the ground truth file"):
        evaluate_coco(path, [])
