"""Real-format inputs objdet did not write: the raccoon set's VOC xml read by hand into COCO form, and
detections made from it (near boxes, wrong boxes, duplicates), plus a COCO file shaped as the real one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

RACCOON = Path("/work/shared/data/raccoon")


def raccoon_coco(n_images: int = 40) -> dict:
    """COCO ground truth of the first `n_images` raccoon xml files (1-based VOC corners -> xywh)."""
    images, anns = [], []
    for i, xml in enumerate(sorted((RACCOON / "annotations").glob("*.xml"))[:n_images]):
        root = ET.parse(xml).getroot()
        images.append({"id": i + 1, "file_name": root.findtext("filename"),
                       "width": int(root.findtext("size/width")), "height": int(root.findtext("size/height"))})
        for obj in root.iter("object"):
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            box = [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0,
                         "segmentation": [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2], box[1] + box[3],
                                           box[0], box[1] + box[3]]]})
    return {"info": {"description": "raccoon"}, "licenses": [], "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "raccoon", "supercategory": "animal"}]}


def detections_for(gt: dict, seed: int = 0, extra_classes: tuple[int, ...] = ()) -> list[dict]:
    """Plausible detector output for `gt`: jittered hits, duplicates, wrong classes, background boxes."""
    rng = np.random.default_rng(seed)
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    cats = [c["id"] for c in gt["categories"]] + list(extra_classes)
    dts = []
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        for _ in range(rng.integers(0, 4)):
            j = rng.normal(0, rng.choice([0.03, 0.15, 0.4]), 4) * [w, h, w, h]
            cat = ann["category_id"] if rng.random() < 0.8 else int(rng.choice(cats))
            dts.append({"image_id": ann["image_id"], "category_id": cat,
                        "bbox": [round(float(v), 2) for v in (x + j[0], y + j[1], max(w + j[2], 2), max(h + j[3], 2))],
                        "score": round(float(rng.beta(4, 2)), 3)})
    for im in gt["images"]:
        w, h = size[im["id"]]
        for _ in range(rng.integers(0, 4)):
            bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
            dts.append({"image_id": im["id"], "category_id": int(rng.choice(cats)),
                        "bbox": [round(float(v), 2) for v in (rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh)],
                        "score": round(float(rng.beta(2, 4)), 3)})
    return dts


def draw_images(gt: dict, folder) -> None:
    """Write a JPEG for every image record of `gt` (its file_name under `folder`): noise with each object
    drawn as a filled rectangle, so galleries have something to show."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    folder = Path(folder)
    for im in gt["images"]:
        pixels = rng.integers(90, 160, (im["height"], im["width"], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for ann in gt["annotations"]:
            if ann["image_id"] == im["id"]:
                x, y, w, h = ann["bbox"]
                draw.rectangle([x, y, x + w, y + h], fill=(40 * ann["category_id"] % 255, 80, 200))
        path = folder / im["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)


def small_set(seed: int = 0, n_images: int = 12) -> tuple[dict, list, list]:
    """A COCO set of 3 named classes on 160x120 images (with file names) and two result lists."""
    rng = np.random.default_rng(seed)
    names = ["cat", "dog", "traffic light"]
    images = [{"id": i + 1, "file_name": f"img_{i + 1:03d}.jpg", "width": 160, "height": 120} for i in range(n_images)]
    anns = []
    for im in images:
        for _ in range(rng.integers(1, 4)):
            w, h = rng.uniform(15, 60, 2)
            x, y = rng.uniform(0, 160 - w), rng.uniform(0, 120 - h)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    return gt, detections_for(gt, seed + 1), detections_for(gt, seed + 2)
