"""Fuzzing the VOC reader: any corruption of a valid xml file (deleted, duplicated or retyped
elements, truncation, stray bytes) is refused with an objdet error or read into valid targets."""

from __future__ import annotations

import copy
import warnings
import xml.etree.ElementTree as ET

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from objdet.data.voc import VOCDataset
from objdet.errors import ObjdetError

from .corrupt import HOSTILE, TRUNCATION

VALID_XML = """<annotation>
  <folder>VOC2007</folder><filename>{name}.jpg</filename>
  <size><width>48</width><height>32</height><depth>3</depth></size>
  <object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>3</xmin><ymin>4</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
  <object><name>cat</name><difficult>1</difficult>
    <bndbox><xmin>25</xmin><ymin>2</ymin><xmax>48</xmax><ymax>17</ymax></bndbox></object>
</annotation>"""
EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["text", "delete", "duplicate"]), HOSTILE),
                 min_size=1, max_size=3)
SPLICE = st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    for sub in ("Annotations", "JPEGImages"):
        (root / sub).mkdir()
    for name in ("a", "b"):
        (root / "Annotations" / f"{name}.xml").write_text(VALID_XML.format(name=name))
        Image.new("RGB", (48, 32), (90, 120, 30)).save(root / "JPEGImages" / f"{name}.jpg")
    return root


def edit_xml(text: str, edits: list) -> bytes:
    """Apply element-level edits: set an element's text to a hostile value, delete or duplicate it."""
    tree = ET.fromstring(text)
    for position, operation, value in edits:
        parents = {child: parent for parent in tree.iter() for child in parent}
        nodes = list(tree.iter())
        node = nodes[position % len(nodes)]
        if operation == "text" or node is tree:
            node.text = "" if value is None else str(value)
        elif operation == "delete":
            parents[node].remove(node)
        else:
            parents[node].append(copy.deepcopy(node))
    return ET.tostring(tree, encoding="utf-8")


def read_everything(root) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = VOCDataset(root)
        for i in range(len(ds)):
            image, target = ds.load(i)
            h, w = image.shape[1:]
            boxes = target["boxes"]
            assert torch.isfinite(boxes).all() and (boxes[:, 2:] > boxes[:, :2]).all()
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert ((target["labels"] >= 1) & (target["labels"] <= ds.num_classes)).all()
        ds.to_coco()


def test_the_uncorrupted_folder_reads(voc_root):
    read_everything(voc_root)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS, truncate=TRUNCATION, splice=SPLICE)
def test_corrupted_voc_xml_gives_an_objdet_error_or_valid_targets(voc_root, edits, truncate, splice):
    data = edit_xml(VALID_XML.format(name="b"), edits)
    if truncate is not None:
        data = data[: int(len(data) * truncate)]
    if splice is not None:
        at = int(len(data) * splice[0])
        data = data[:at] + splice[1] + data[at:]
    xml_file = voc_root / "Annotations" / "b.xml"
    xml_file.write_bytes(data)
    try:
        read_everything(voc_root)
    except ObjdetError as err:
        assert str(voc_root) in str(err), f"error does not name the file: {err}"
    finally:
        xml_file.write_text(VALID_XML.format(name="b"))
