"""COCO reader and writers against pycocotools (masks, keypoints) and torchvision (box format)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision.ops import box_convert

from objdet.data.coco import CocoDataset, dataset_to_coco, to_coco_results
from objdet.io import save_json
from objdet.data.validate import DataWarning
from objdet.errors import AnnotationError, DataError, ImageError

H, W = 24, 32


def _coco_dict() -> dict:
    rle = mask_utils.encode(np.asfortranarray((np.arange(H * W).reshape(H, W) % 7 < 3)
                                              .astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    uncompressed = {"size": [H, W], "counts": [5, 10, 40, 30, H * W - 85]}
    kps = [4.0, 5.0, 2, 9.0, 6.0, 1, 0, 0, 0]
    return {
        "images": [{"id": 10, "file_name": "a.png", "width": W, "height": H},
                   {"id": 11, "file_name": "sub/b.png", "width": W, "height": H},
                   {"id": 12, "file_name": "c.png", "width": W, "height": H}],
        "categories": [{"id": 7, "name": "dog"},
                       {"id": 3, "name": "cat", "keypoints": ["nose", "left_ear", "right_ear"]},
                       {"id": 10, "name": "cow"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [2, 3, 10, 8], "iscrowd": 0,
             "area": 50.0, "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]], "keypoints": kps,
             "num_keypoints": 2},
            {"id": 2, "image_id": 10, "category_id": 10, "bbox": [0, 0, 31.5, 23], "iscrowd": 1,
             "area": 300.0, "segmentation": uncompressed},
            {"id": 3, "image_id": 11, "category_id": 7, "bbox": [5.5, 6.25, 7, 4], "iscrowd": 0,
             "area": 28.0, "segmentation": rle},
        ],
    }


def _write(tmp_path, coco: dict, name: str = "ann.json"):
    for img in coco["images"]:
        file = tmp_path / "img" / img["file_name"]
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            Image.new("RGB", (img["width"], img["height"]), (10, 20, 30)).save(file)
    (tmp_path / name).write_text(json.dumps(coco))
    return tmp_path / name, tmp_path / "img"


def test_targets_match_pycocotools(tmp_path):
    coco = _coco_dict()
    ann_file, img_dir = _write(tmp_path, coco)
    ds = CocoDataset(ann_file, img_dir)
    oracle = COCO(str(ann_file))
    assert ds.num_classes == 3 and ds.label_to_category_id == {1: 3, 2: 7, 3: 10}
    assert [c["name"] for c in ds.categories] == ["cat", "dog", "cow"]
    assert ds.keypoint_names == ["nose", "left_ear", "right_ear"]
    for i, info in enumerate(coco["images"]):
        image, target = ds[i]
        assert image.shape == (3, H, W) and target["image_id"] == info["id"]
        anns = oracle.loadAnns(oracle.getAnnIds(imgIds=info["id"]))
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        torch.testing.assert_close(target["boxes"], box_convert(xywh, "xywh", "xyxy"))
        labels = [ds.label_to_category_id[int(lab)] for lab in target["labels"]]
        assert labels == [a["category_id"] for a in anns]
        assert target["iscrowd"].tolist() == [a["iscrowd"] for a in anns]
        assert target["area"].tolist() == [a["area"] for a in anns]
        assert target["masks"].shape == (len(anns), H, W) and target["masks"].dtype == torch.uint8
        for k, a in enumerate(anns):
            assert np.array_equal(target["masks"][k].numpy(), oracle.annToMask(a))
            expected = np.asarray(a.get("keypoints", [0] * 9), np.float32).reshape(3, 3)
            assert np.array_equal(target["keypoints"][k].numpy(), expected)
    empty = ds[2][1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, H, W)
    assert empty["keypoints"].shape == (0, 3, 3)


def test_crowd_can_be_left_out(tmp_path):
    ds = CocoDataset(*_write(tmp_path, _coco_dict()), include_crowd=False)
    assert ds.target(0)["iscrowd"].tolist() == [0]


def test_dataset_to_coco_round_trip(tmp_path):
    ds = CocoDataset(*_write(tmp_path, _coco_dict()))
    out = dataset_to_coco(ds)
    again = CocoDataset(save_json(out, tmp_path / "again.json"), tmp_path / "img")
    oracle = COCO(str(tmp_path / "again.json"))
    for i in range(len(ds)):
        a, b = ds.target(i), again.target(i)
        for key in ("boxes", "labels", "masks", "keypoints", "iscrowd", "area"):
            assert torch.equal(a[key], b[key]), key
        for k, ann in enumerate(oracle.loadAnns(oracle.getAnnIds(imgIds=a["image_id"]))):
            assert np.array_equal(oracle.annToMask(ann), a["masks"][k].numpy())


def test_results_load_in_pycocotools(tmp_path):
    ds = CocoDataset(*_write(tmp_path, _coco_dict()))
    masks = torch.rand(2, 1, H, W)
    det = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 9.0], [0.5, 0.5, 30.0, 20.0]]),
           "scores": torch.tensor([0.9, 0.3]), "labels": torch.tensor([1, 3]),
           "masks": masks, "keypoints": torch.rand(2, 3, 3)}
    results = to_coco_results([det], [10], ds.label_to_category_id)
    assert [r["category_id"] for r in results] == [3, 10]
    assert results[0]["bbox"] == [1.0, 2.0, 4.0, 7.0]
    json.dumps(results)
    loaded = COCO(str(tmp_path / "ann.json")).loadRes(results)
    for k, r in enumerate(loaded.loadAnns(loaded.getAnnIds())):
        assert np.array_equal(mask_utils.decode(r["segmentation"]), (masks[k, 0] > 0.5).numpy())
        assert np.allclose(r["keypoints"], det["keypoints"][k].reshape(-1).numpy())


def _broken(change):
    coco = _coco_dict()
    change(coco)
    return coco


BAD = {
    "negative size": (lambda c: c["annotations"][0].update(bbox=[2, 3, -1, 5]), AnnotationError,
                      "annotation 1"),
    "outside image": (lambda c: c["annotations"][0].update(bbox=[40, 3, 5, 5]), AnnotationError,
                      "annotation 1"),
    "unknown category": (lambda c: c["annotations"][2].update(category_id=99), AnnotationError,
                         "annotation 3"),
    "unknown image": (lambda c: c["annotations"][2].update(image_id=99), AnnotationError,
                      "annotation 3"),
    "escaping file name": (lambda c: c["images"][1].update(file_name="../../x.png"), DataError,
                           "image 11"),
    "absolute file name": (lambda c: c["images"][1].update(file_name="/etc/passwd"), DataError,
                           "image 11"),
    "duplicated image id": (lambda c: c["images"][1].update(id=10), AnnotationError,
                            "image id 10"),
    "duplicated annotation id": (lambda c: c["annotations"][1].update(id=1), AnnotationError,
                                 "annotation id 1"),
    "duplicated category id": (lambda c: c["categories"][1].update(id=7), AnnotationError,
                               "category id 7"),
    "bad polygon": (lambda c: c["annotations"][0].update(segmentation=[[1, 2, 3]]),
                    AnnotationError, "annotation 1"),
    "bad keypoints": (lambda c: c["annotations"][0].update(keypoints=[1, 2, 2]), AnnotationError,
                      "annotation 1"),
    "image without size": (lambda c: c["images"][2].pop("width"), DataError, "image 12"),
    "no categories": (lambda c: c.pop("categories"), DataError, "categories"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_records_raise_naming_file_and_record(tmp_path, case):
    change, error, record = BAD[case]
    ann_file, img_dir = _write(tmp_path, _coco_dict())
    ann_file.write_text(json.dumps(_broken(change)))
    with pytest.raises(error, match=record) as err:
        CocoDataset(ann_file, img_dir)
    assert str(ann_file) in str(err.value)


def test_malformed_json_names_file_and_line(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match="line 2") as err:
        CocoDataset(tmp_path / "bad.json", tmp_path)
    assert "bad.json" in str(err.value)
    with pytest.raises(DataError, match="missing.json"):
        CocoDataset(tmp_path / "missing.json", tmp_path)


def test_zero_size_box_is_skipped_with_warning(tmp_path):
    ann_file, img_dir = _write(tmp_path, _broken(
        lambda c: c["annotations"][2].update(bbox=[5, 6, 0, 4])))
    with pytest.warns(DataWarning, match="annotation 3.*zero width"):
        ds = CocoDataset(ann_file, img_dir)
    assert len(ds.target(1)["boxes"]) == 0


def test_box_sticking_out_is_clipped_with_warning(tmp_path):
    ann_file, img_dir = _write(tmp_path, _broken(
        lambda c: c["annotations"][2].update(bbox=[20, 10, 30, 30])))
    with pytest.warns(DataWarning, match="annotation 3.*clipped"):
        ds = CocoDataset(ann_file, img_dir)
    assert ds.target(1)["boxes"].tolist() == [[20.0, 10.0, W, H]]


@pytest.mark.parametrize("damage", ["missing", "corrupt", "wrong size"])
def test_bad_image_files_raise_image_error_at_load(tmp_path, damage):
    ann_file, img_dir = _write(tmp_path, _coco_dict())
    file = img_dir / "sub" / "b.png"
    if damage == "missing":
        file.unlink()
    elif damage == "corrupt":
        file.write_bytes(file.read_bytes()[:30])
    else:
        Image.new("RGB", (W + 1, H)).save(file)
    ds = CocoDataset(ann_file, img_dir)
    ds[0]
    with pytest.raises(ImageError) as err:
        ds[1]
    assert str(file) in str(err.value)


def test_save_json_is_atomic_and_leaves_no_temp_file(tmp_path):
    obj = copy.deepcopy(_coco_dict())
    save_json(obj, tmp_path / "x" / "out.json")
    assert json.loads((tmp_path / "x" / "out.json").read_text()) == obj
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["out.json"]
