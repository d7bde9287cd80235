"""Real-world warts: each kind repaired and counted in one warning line at load, refused under strict=True
naming the file and the record; real errors stay errors; the seeded train/val split of a folder without
split lists."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from objdet.data import open_dataset
from objdet.data.validate import DataWarning
from objdet.errors import AnnotationError, ConfigError, DataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"
LABELIMG = FIXTURES / "labelimg"


def load_counting(spec: str, **options):
    """Open a data set and return it with its DataWarning messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(spec, **options)
    return ds, [str(c.message) for c in caught if issubclass(c.category, DataWarning)]


def test_labelimg_warts_are_repaired_and_counted_in_one_line():
    ds, messages = load_counting(f"voc:{LABELIMG}")
    assert len(messages) == 1
    line = messages[0]
    for said in ("1 image size was zero or missing and is read from the image header (raccoon-5.xml record raccoon-5)",
                 "1 image file found under another extension or letter case (raccoon-7.xml record raccoon-7)",
                 "1 box clipped to the image (raccoon-8.xml record raccoon-8 object 0)",
                 "1 class name merged with one differing only in case or spaces: 'Raccoon' -> 'raccoon'"):
        assert said in line
    info = {ds.image_info(i)["file_name"]: ds.image_info(i) for i in range(len(ds))}
    assert (info["raccoon-5.jpg"]["width"], info["raccoon-5.jpg"]["height"]) == (96, 66)  # the header's size
    assert "raccoon-7.JPG" in info
    assert ds.classes == ["bin", "raccoon", "tomato"]


STRICT = {  # the file kept beside a clean one -> what strict=True names
    "raccoon-5.": "raccoon-5.xml: record raccoon-5: image size '0' x '0'",
    "raccoon-7.": "raccoon-7.xml: record raccoon-7: image 'raccoon-7.jpg' not found",
    "raccoon-8.": r"raccoon-8.xml: record raccoon-8 object 0: box \[6.0, 4.0, 99.0, 65.0\] clipped",
    "raccoon-12.": "raccoon-12.xml: record raccoon-12 object 1: 'Raccoon' -> 'raccoon'",
}


def _only(root: Path, keep: str) -> None:
    """Leave only the xml files whose name contains `keep` (and one clean file)."""
    for xml in root.glob("*.xml"):
        if keep not in xml.name and xml.name != "raccoon-1.xml":
            xml.unlink()


@pytest.mark.parametrize("keep", sorted(STRICT))
def test_strict_refuses_each_wart_naming_file_and_record(tmp_path, keep):
    root = tmp_path / "labelimg"
    shutil.copytree(LABELIMG, root)
    _only(root, keep)
    _, messages = load_counting(f"voc:{root}")
    assert len(messages) == 1
    with pytest.raises(AnnotationError, match=STRICT[keep] + ".*refused under --strict"):
        open_dataset(f"voc:{root}", strict=True)


def test_dropped_boxes_and_skipped_shapes_are_counted_and_refused_under_strict(tmp_path):
    _, messages = load_counting(f"yolo:{FIXTURES / 'yolo' / 'data.yaml'}")
    assert messages == [f"{FIXTURES / 'yolo' / 'data.yaml'}: 1 box with zero width or height dropped "
                        "(raccoon-4.txt record line 5)"]
    with pytest.raises(AnnotationError, match=r"raccoon-4\.txt: record line 5: box .* zero width or height"):
        open_dataset(f"yolo:{FIXTURES / 'yolo' / 'data.yaml'}", strict=True)
    _, messages = load_counting(f"labelme:{FIXTURES / 'labelme'}")
    assert "2 shapes of a kind objdet does not read skipped" in messages[0]
    with pytest.raises(AnnotationError, match=r"raccoon-1\.json: record annotations/raccoon-1 shape 1: point shape"):
        open_dataset(f"labelme:{FIXTURES / 'labelme'}", strict=True)


def test_a_clean_data_set_loads_without_a_warning():
    _, messages = load_counting(f"yolo:{FIXTURES / 'yolo_pose' / 'data.yaml'}", strict=True)
    assert messages == []


def test_real_errors_stay_errors_naming_the_file_and_record(tmp_path):
    root = tmp_path / "yolo"
    shutil.copytree(FIXTURES / "yolo", root)
    (root / "train" / "labels" / "raccoon-1.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(AnnotationError, match=r"raccoon-1\.txt: record line 1: class id 7 is not one of the 3 names"):
        open_dataset(f"yolo:{root / 'data.yaml'}")
    labelme = tmp_path / "labelme"
    shutil.copytree(FIXTURES / "labelme", labelme)
    doc = json.loads((labelme / "annotations" / "raccoon-1.json").read_text())
    (labelme / "annotations" / "raccoon-1.json").write_text(json.dumps({**doc, "imagePath": "../../../etc/x.jpg"}))
    with pytest.raises(DataError, match=r"raccoon-1\.json: record annotations/raccoon-1: image file name .* escapes"):
        open_dataset(f"labelme:{labelme}")
    shape = {**doc["shapes"][0], "points": {"12": 0, "34": 0}}  # a dict, not [x, y] pairs (once read as its keys)
    (labelme / "annotations" / "raccoon-1.json").write_text(json.dumps({**doc, "shapes": [shape]}))
    with pytest.raises(AnnotationError, match=r"raccoon-1\.json: record .*points .* are not \[x, y\] pairs"):
        open_dataset(f"labelme:{labelme}")
    flat = tmp_path / "flat"
    shutil.copytree(LABELIMG, flat)
    (flat / "raccoon-2.xml").write_text("<annotation><filename>raccoon-2.jpg</filename>")
    with pytest.raises(DataError, match=r"raccoon-2\.xml: malformed xml"):
        open_dataset(f"voc:{flat}")
    with pytest.raises(AnnotationError, match=r"raccoon-1\.xml: record raccoon-1 object 0: class 'raccoon' is not "
                                              r"in the class list \['bin', 'tomato'\]"):
        open_dataset(f"voc:{LABELIMG}", classes=["bin", "tomato"], strict=False)


def test_val_split_is_seeded_disjoint_and_keeps_the_class_list():
    spec = f"voc:{LABELIMG}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        train = open_dataset(spec, split="train", val_split=0.25, seed=3)
        val = open_dataset(spec, split="val", val_split=0.25, seed=3)
        again = open_dataset(spec, split="val", val_split=0.25, seed=3)
        other = [open_dataset(spec, split="val", val_split=0.25, seed=s) for s in range(4, 8)]
        whole = open_dataset(spec)
    names = lambda ds: [ds.image_info(i)["file_name"] for i in range(len(ds))]  # noqa: E731
    assert (len(train), len(val)) == (6, 2)
    assert sorted(names(train) + names(val)) == sorted(names(whole))
    assert names(val) == names(again) and any(names(o) != names(val) for o in other)
    assert train.classes == val.classes == whole.classes
    assert [val.image_info(i)["id"] for i in range(len(val))] == [1, 2]


def test_a_folder_without_split_lists_says_how_to_get_a_held_out_split():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert len(open_dataset(f"voc:{LABELIMG}", split="train")) == 8  # one split: every image
        with pytest.raises(DataError, match="unknown split 'test'.*val_split fraction \\(--val-split\\)"):
            open_dataset(f"voc:{LABELIMG}:test")
    for fraction in (0, 1, 1.5, -0.2):
        with pytest.raises(ConfigError, match="val_split must be a fraction"):
            open_dataset(f"voc:{LABELIMG}", split="train", val_split=fraction)
    with pytest.raises(ConfigError, match="own val split"):
        open_dataset("shapes", split="train", val_split=0.2)


@pytest.mark.skipif(not Path("/work/shared/data/raccoon").is_dir(), reason="raccoon data set not present")
def test_val_split_of_a_folder_with_split_lists_is_carved_from_its_train_split():
    root = "/work/shared/data/raccoon"
    train = open_dataset(f"voc:{root}", split="train", val_split=0.2)
    val = open_dataset(f"voc:{root}", split="val", val_split=0.2)
    test = {Path(r["file_name"]).stem for r in open_dataset(f"voc:{root}:test").records}
    assert (len(train), len(val)) == (128, 32)
    assert not test & {Path(r["file_name"]).stem for r in train.records + val.records}
