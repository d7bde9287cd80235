"""`data check`: counts against the fixtures' text, duplicates, exit status 1 naming a broken file, PNG
plots, and anchor coverage against torchvision's own transform, anchor generator and box IoU."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
import torch
from PIL import Image
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_iou as tv_box_iou

from objdet import zoo
from objdet.cli import main
from objdet.data.check import anchor_coverage, best_anchor_ious

from .test_formats import FIXTURES, quiet

LABELIMG = FIXTURES / "labelimg"


def test_counts_bands_and_repairs_match_the_xml_text(capsys):
    assert main(["data", "check", f"voc:{LABELIMG}"]) == 0
    out = capsys.readouterr().out
    names, bands = Counter(), Counter()
    for xml in LABELIMG.glob("*.xml"):
        tree = ET.parse(xml)
        width = int(tree.findtext("size/width")) or 96
        for obj in tree.iter("object"):
            names[obj.findtext("name").strip().lower()] += 1
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            area = (min(x2, width) - x1 + 1) * (y2 - y1 + 1)
            bands["small" if area < 32**2 else "medium" if area < 96**2 else "large"] += 1
    assert f"8 images, {sum(names.values())} objects in 3 classes, 0 images without objects" in out
    for name, n in names.items():
        assert f"{name:<7}  {n:>7} objects" in out
    total = sum(bands.values())
    assert "box sizes (COCO bands, box area): " + ", ".join(
        f"{b} {bands[b]} ({100 * bands[b] / total:.0f}%)" for b in ("small", "medium", "large")) in out
    assert "4 records repaired, 0 errors" in out and "repaired: " in out and "raccoon-5.xml: record raccoon-5" in out


def test_broken_files_give_exit_status_1_and_are_named(tmp_path, capsys):
    root = tmp_path / "labelimg"
    shutil.copytree(LABELIMG, root)
    (root / "raccoon-4.jpg").write_bytes((root / "raccoon-4.jpg").read_bytes()[:200])  # truncated
    (root / "raccoon-2.xml").write_text("<annotation><filename>raccoon-2.jpg</filename>")  # malformed
    shutil.copy(root / "raccoon-1.jpg", root / "copy-of-1.jpg")
    (root / "copy-of-1.xml").write_text((root / "raccoon-1.xml").read_text().replace("raccoon-1.jpg", "copy-of-1.jpg"))
    assert main(["data", "check", f"voc:{root}"]) == 1
    out = capsys.readouterr().out
    assert f"error: {root / 'raccoon-4.jpg'}: corrupt or truncated image" in out
    assert f"error: {root / 'raccoon-2.xml'}: malformed xml" in out
    assert "duplicate images (same bytes): copy-of-1.jpg, raccoon-1.jpg" in out
    assert "8 images" in out and "2 errors" in out  # the rest is still checked


def test_a_data_set_that_cannot_be_opened_exits_1(tmp_path, capsys):
    (tmp_path / "data.yaml").write_text("names: [a, b\n")
    assert main(["data", "check", f"yolo:{tmp_path / 'data.yaml'}"]) == 1
    assert "malformed yaml" in capsys.readouterr().err


def test_plots_are_written(tmp_path):
    assert main(["data", "check", f"yolo:{FIXTURES / 'yolo' / 'data.yaml'}", "--plots", str(tmp_path),
                 "--model", "retinanet_r18_fpn", "--set", "min_size=128", "--set", "max_size=128"]) == 0
    for name in ("classes", "box_sizes", "aspect_ratios", "box_centres", "anchor_coverage"):
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.size[0] > 300 and sum(n > 0 for n in im.convert("L").histogram()) > 10


def _torchvision_best_ious(ds, sizes, min_size, max_size):
    """Best anchor IoU per box the way torchvision's Faster R-CNN sees them: its transform, its anchors."""
    transform = GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3).eval()
    generator = TVAnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
    best = []
    for i in range(len(ds)):
        info, target = ds.image_info(i), ds.target(i)
        images, targets = transform([torch.zeros(3, info["height"], info["width"])], [dict(target)])
        feats = [torch.zeros(1, 1, -(-images.tensors.shape[-2] // s), -(-images.tensors.shape[-1] // s))
                 for s in (4, 8, 16, 32, 64)]
        anchors = generator(ImageList(images.tensors, images.image_sizes), feats)[0]
        if len(targets[0]["boxes"]):
            best.append(tv_box_iou(targets[0]["boxes"], anchors).max(1).values)
    return torch.cat(best)


@pytest.mark.parametrize("min_size, max_size", [(128, 200), (320, 400)])
def test_anchor_coverage_equals_torchvision_anchors_on_its_transform(one_thread, min_size, max_size):
    ds = quiet(f"voc:{LABELIMG}")
    cfg = zoo.config("faster_rcnn_r18_fpn", min_size=min_size, max_size=max_size)
    plan = cfg.anchor_plan()
    ious, labels = best_anchor_ious(ds, plan.generator, plan.strides, plan.transform.input_size)
    oracle = _torchvision_best_ious(ds, cfg.anchor_sizes, min_size, max_size)
    torch.testing.assert_close(ious, oracle, atol=1e-5, rtol=0)
    coverage = anchor_coverage(ious, labels, ds.classes, plan.fg_iou)
    assert coverage["uncovered"] == pytest.approx(float((oracle < 0.7).float().mean()))
    assert coverage["per_class"]["raccoon"]["boxes"] == 9
