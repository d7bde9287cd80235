"""`data convert`: round trips keep every box within rounding and every class, polygons stay polygons,
keypoints survive, image files are copied byte for byte; what a format cannot hold is counted; globox reads
what objdet writes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from globox import AnnotationSet

from objdet.cli import main
from objdet.data import open_dataset
from objdet.data.convert import convert
from objdet.data.validate import DataWarning

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"


def opened(spec: str, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return open_dataset(spec, **options)


def assert_same_objects(a, b, tol: float) -> None:
    """Same images in the same order, same class names, boxes within `tol` pixels."""
    assert len(a) == len(b) and [c["name"] for c in a.categories] == [c["name"] for c in b.categories]
    for i in range(len(a)):
        ta, tb = a.target(i), b.target(i)
        assert Path(a.image_info(i)["file_name"]).name == Path(b.image_info(i)["file_name"]).name
        assert ta["labels"].tolist() == tb["labels"].tolist()
        torch.testing.assert_close(ta["boxes"], tb["boxes"], atol=tol, rtol=0)


def test_coco_to_yolo_to_coco_keeps_boxes_classes_and_polygons(tmp_path):
    source = opened(f"labelme:{FIXTURES / 'labelme'}")
    coco = opened(convert(source, "coco", tmp_path / "coco")[0])
    spec, dropped = convert(coco, "yolo", tmp_path / "yolo")
    assert not dropped
    back = opened(convert(opened(spec), "coco", tmp_path / "back")[0])
    assert_same_objects(coco, back, tol=1e-3)
    for i in range(len(coco)):
        before, after = coco.annotations(i), back.annotations(i)
        for x, y in zip(before, after):
            assert ("segmentation" in x) == ("segmentation" in y)
            if "segmentation" in x and len(x["segmentation"]) == 1:  # one polygon: the same vertices
                assert y["segmentation"][0] == pytest.approx(x["segmentation"][0], abs=1e-3)
        masks_a, masks_b = coco.target(i)["masks"], back.target(i)["masks"]
        inter = (masks_a & masks_b).sum((1, 2)).float()
        union = (masks_a | masks_b).sum((1, 2)).float()
        assert (inter / union).min() > 0.98  # parts joined by zero-width bridges rasterise the same to a pixel or so


def test_voc_to_coco_to_voc_keeps_every_box_exactly(tmp_path):
    source = opened(f"voc:{FIXTURES / 'labelimg'}")
    coco = opened(convert(source, "coco", tmp_path / "coco")[0])
    back_spec, dropped = convert(coco, "voc", tmp_path / "voc")
    assert not dropped
    back = opened(back_spec)
    assert_same_objects(source, back, tol=0)
    for i in range(len(source)):  # the images are the same files, byte for byte (raccoon-7.JPG included)
        assert back.image_file(i).read_bytes() == source.image_file(i).read_bytes()
    # globox reads the written VOC folder with the source's boxes (its corners 1-based)
    boxes = {Path(a.image_id).name: sorted(b.ltrb for b in a.boxes)
             for a in AnnotationSet.from_pascal_voc(tmp_path / "voc" / "Annotations")}
    for i in range(len(source)):
        one_based = (source.target(i)["boxes"] + torch.tensor([1.0, 1.0, 0, 0])).tolist()
        assert sorted(tuple(b) for b in one_based) == boxes[source.image_info(i)["file_name"]]


def test_pose_keypoints_survive_coco_and_yolo(tmp_path):
    source = opened(f"yolo:{FIXTURES / 'yolo_pose' / 'data.yaml'}")
    coco = opened(convert(source, "coco", tmp_path / "coco")[0])
    back = opened(convert(coco, "yolo", tmp_path / "yolo")[0])
    assert coco.keypoint_names == back.keypoint_names == ["nose", "left_ear", "right_ear"]
    assert_same_objects(source, back, tol=1e-3)
    for i in range(len(source)):
        torch.testing.assert_close(source.target(i)["keypoints"], back.target(i)["keypoints"], atol=1e-3, rtol=0)


def test_what_a_format_cannot_hold_is_counted(tmp_path):
    cvat = opened(f"cvat:{FIXTURES / 'cvat' / 'annotations.xml'}:{FIXTURES / 'cvat' / 'images'}")
    _, dropped = convert(cvat, "voc", tmp_path / "voc")
    assert dropped == {"masks": 2, "keypoint sets": 2}  # two polygons, two skeletons
    _, dropped = convert(cvat, "yolo", tmp_path / "yolo")  # keypoints kept, so no masks beside them
    assert dropped == {"masks (YOLO holds polygons, and no masks beside keypoints)": 2}


def test_generated_data_sets_convert_too(tmp_path):
    shapes = open_dataset("shapes:val", length=3, image_size=48)
    coco = open_dataset(convert(shapes, "coco", tmp_path / "coco", split="val")[0])
    assert_same_objects(shapes, coco, tol=1e-4)
    torch.testing.assert_close(shapes[0][0], coco[0][0], atol=1 / 255, rtol=0)  # PNG of the 8-bit picture


def test_convert_command_writes_a_seeded_train_val_split(tmp_path, capsys):
    out = tmp_path / "yolo"
    assert main(["data", "convert", f"voc:{FIXTURES / 'labelimg'}", "--to", "yolo", str(out),
                 "--val-split", "0.25", "--seed", "1"]) == 0
    said = capsys.readouterr().out
    assert f"read it back with yolo:{out / 'data.yaml'}:val" in said
    train, val = opened(f"yolo:{out / 'data.yaml'}:train"), opened(f"yolo:{out / 'data.yaml'}:val")
    assert (len(train), len(val)) == (6, 2) and train.classes == val.classes == ["bin", "raccoon", "tomato"]
    names = {Path(ds.image_info(i)["file_name"]).name for ds in (train, val) for i in range(len(ds))}
    assert len(names) == 8
