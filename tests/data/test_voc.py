"""VOC reader: the raccoon folder against its csv labels, a devkit-layout folder, hostile xml."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from objdet.data.validate import DataWarning
from objdet.data.voc import VOCDataset, parse_xml, voc_to_coco
from objdet.errors import AnnotationError, DataError, ImageError

RACCOON = Path("/work/shared/data/raccoon")


def _csv_boxes(split: str) -> dict[str, list[list[float]]]:
    """1-based VOC boxes per image stem, read straight from the split's csv."""
    boxes = defaultdict(list)
    with open(RACCOON / "data" / f"{split}_labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            boxes[Path(row["filename"]).stem].append(
                [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    return boxes


@pytest.mark.skipif(not RACCOON.is_dir(), reason="raccoon data set not present")
def test_raccoon_splits_follow_the_csv_files():
    train, test = VOCDataset(RACCOON, "train"), VOCDataset(RACCOON, "test")
    assert (len(train), len(test)) == (160, 40) and train.classes == ["raccoon"]
    for ds, split in ((train, "train"), (test, "test")):
        expected = _csv_boxes(split)
        assert {r["id"] for r in ds.records} == set(expected)
        for i, r in enumerate(ds.records):
            target = ds.target(i)
            one_based = target["boxes"] + torch.tensor([1.0, 1.0, 0.0, 0.0])
            assert sorted(one_based.tolist()) == sorted(expected[r["id"]])
            assert set(target["labels"].tolist()) == {1}
    image, target = test[0]
    assert image.shape[1:] == (test.records[0]["height"], test.records[0]["width"])
    assert len(VOCDataset(RACCOON)) == 200


def _voc(root: Path, objects: dict[str, list[tuple]], split_ids=None, size=(40, 30)) -> Path:
    """A small devkit-layout VOC folder: objects maps image id -> (name, box, difficult)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objs in objects.items():
        Image.new("RGB", size, (90, 90, 90)).save(root / "JPEGImages" / f"{image_id}.jpg")
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for n, b, d in objs)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{body}</annotation>")
    (root / "ImageSets" / "Main" / "train.txt").write_text(
        "\n".join(split_ids if split_ids is not None else objects) + "\n")
    return root


def test_devkit_layout_boxes_difficult_and_coco_conversion(tmp_path):
    root = _voc(tmp_path, {"000001": [("dog", (1, 1, 40, 30), 0), ("cat", (5, 6, 10, 20), 1)],
                           "000002": [("person", (3, 3, 3, 4), 0)], "000003": []},
                split_ids=["000001", "000003"])
    ds = VOCDataset(root, "train")
    assert ds.classes == ["cat", "dog", "person"] and len(ds) == 2
    target = ds.target(0)
    assert target["boxes"].tolist() == [[0.0, 0.0, 40.0, 30.0], [4.0, 5.0, 10.0, 20.0]]
    assert target["labels"].tolist() == [2, 1] and target["difficult"].tolist() == [False, True]
    assert len(ds.target(1)["boxes"]) == 0
    gt = voc_to_coco(root, "train")
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    anns = coco.loadAnns(coco.getAnnIds(imgIds=1))
    assert [a["bbox"] for a in anns] == [[0.0, 0.0, 40.0, 30.0], [4.0, 5.0, 6.0, 15.0]]
    assert [a["difficult"] for a in anns] == [0, 1]
    assert [a["area"] for a in anns] == [1200.0, 90.0]
    assert len(VOCDataset(root, "train", keep_difficult=False).target(0)["boxes"]) == 1


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<annotation><filename>&lol2;</filename></annotation>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL, "<annotation><size>",
                                  "<!DOCTYPE annotation><annotation/>"])
def test_hostile_or_malformed_xml_is_refused(tmp_path, text):
    (tmp_path / "x.xml").write_text(text)
    with pytest.raises(DataError) as err:
        parse_xml(tmp_path / "x.xml")
    assert "x.xml" in str(err.value)


def test_entity_file_in_a_data_set_is_refused(tmp_path):
    root = _voc(tmp_path, {"000001": [("dog", (1, 1, 4, 4), 0)]})
    (root / "Annotations" / "000001.xml").write_text(BILLION_LAUGHS)
    with pytest.raises(DataError, match="DOCTYPE or entity"):
        VOCDataset(root, "train")


@pytest.mark.parametrize("box, error, message", [
    ((10, 5, 4, 20), AnnotationError, "negative width"),
    ((50, 5, 60, 20), AnnotationError, "outside"),
])
def test_bad_boxes_name_file_and_object(tmp_path, box, error, message):
    _voc(tmp_path, {"000007": [("dog", (1, 1, 4, 4), 0), ("dog", box, 0)]})
    with pytest.raises(error, match=message) as err:
        VOCDataset(tmp_path, "train")
    assert "000007.xml" in str(err.value) and "000007 object 1" in str(err.value)


def test_bad_splits_and_file_names(tmp_path):
    root = _voc(tmp_path, {"000001": [("dog", (1, 1, 4, 4), 0)]}, split_ids=["000001", "000001"])
    with pytest.raises(AnnotationError, match="duplicated image id '000001'"):
        VOCDataset(root, "train")
    with pytest.raises(DataError, match="unknown split 'val'.*train"):
        VOCDataset(root, "val")
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    xml = root / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace("000001.jpg", "../../secret.jpg"))
    with pytest.raises(DataError, match="escapes"):
        VOCDataset(root, "train")
    with pytest.raises(DataError, match="not found"):
        VOCDataset(tmp_path / "nowhere")


def test_missing_image_raises_image_error_at_load(tmp_path):
    root = _voc(tmp_path, {"000001": [("dog", (1, 1, 4, 4), 0)]})
    (root / "JPEGImages" / "000001.jpg").unlink()
    ds = VOCDataset(root, "train")
    with pytest.raises(ImageError, match="000001.jpg"):
        ds[0]


def test_unknown_class_and_missing_size_name_the_record(tmp_path):
    root = _voc(tmp_path, {"000001": [("dog", (1, 1, 4, 4), 0), ("yeti", (1, 1, 4, 4), 0)]})
    with pytest.raises(AnnotationError, match="000001 object 1.*'yeti' is not in the class list"):
        VOCDataset(root, "train", classes=["cat", "dog"])
    xml = root / "Annotations" / "000001.xml"
    xml.write_text("<annotation><filename>000001.jpg</filename></annotation>")
    with pytest.warns(DataWarning, match=r"1 image size was zero or missing .*\(000001\.xml record 000001\)"):
        assert VOCDataset(root, "train").image_info(0)["width"] == 40  # the image is 40 x 30
    with pytest.raises(AnnotationError, match="read from the image header") as err:
        VOCDataset(root, "train", strict=True)
    assert "000001.xml" in str(err.value)
