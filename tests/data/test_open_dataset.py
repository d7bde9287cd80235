"""open_dataset: each spec form opens the right data set; bad specs raise ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet.data import open_dataset
from objdet.data.coco import CocoDataset, write_coco_dataset
from objdet.data.shapes import ShapesDataset
from objdet.data.voc import VOCDataset
from objdet.errors import ConfigError, DataError

RACCOON = Path("/work/shared/data/raccoon")


def test_shapes_specs():
    ds = open_dataset("shapes")
    assert isinstance(ds, ShapesDataset) and ds.split == "train"
    assert open_dataset("shapes:val", length=3).split == "val"
    assert open_dataset("shapes", split="test", length=2).split == "test"
    assert len(open_dataset("shapes:val", split="val", length=3)) == 3


def test_coco_spec(tmp_path):
    ann, images = write_coco_dataset(ShapesDataset("val", length=2, image_size=32), tmp_path)
    ds = open_dataset(f"coco:{ann}:{images}")
    assert isinstance(ds, CocoDataset) and len(ds) == 2 and ds.image_dir == images
    assert len(open_dataset(f"coco:{ann}:{images}", split="val")) == 2  # one split: ignored


@pytest.mark.skipif(not RACCOON.is_dir(), reason="raccoon data set not present")
def test_voc_specs():
    assert len(open_dataset(f"voc:{RACCOON}:test")) == 40
    ds = open_dataset(f"voc:{RACCOON}", split="train")
    assert isinstance(ds, VOCDataset) and len(ds) == 160


@pytest.mark.parametrize("spec, split", [
    ("", None), ("imagenet:/x", None), ("coco:ann.txt:imgs", None), ("coco:ann.json", None),
    ("voc:", None), ("shapes:a:b", None), ("shapes:bogus", None), ("shapes:val", "test"),
    (None, None),
])
def test_bad_specs_raise_config_error(spec, split):
    with pytest.raises(ConfigError):
        open_dataset(spec, split=split)


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="lenght"):
        open_dataset("shapes", lenght=3)


def test_missing_voc_root_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        open_dataset(f"voc:{tmp_path / 'nowhere'}:train")
