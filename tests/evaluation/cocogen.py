"""Small random COCO data sets for the evaluation tests (boxes, polygons, crowd RLEs, score ties)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

W, H = 40, 30  # small images keep masks cheap


def random_case(seed: int, n_img: int, n_cat: int, crowd: float, grid: bool, kind: str = "bbox") -> tuple[dict, list]:
    """Small random COCO set; `grid` puts boxes on integer coordinates so IoUs hit thresholds exactly."""
    rng = np.random.default_rng(seed)
    images = [{"id": 3 * i + 2, "width": W, "height": H} for i in range(n_img)]
    cats = [{"id": 5 * c + 1, "name": f"c{c}"} for c in range(n_cat)]
    anns, dts = [], []

    def box() -> list[float]:
        if grid:
            x, y = rng.integers(0, 20, 2)
            w, h = rng.integers(1, 20, 2)
            return [float(x), float(y), float(w), float(h)]
        x, y = rng.uniform(0, 25, 2)
        w, h = rng.uniform(0.5, 15, 2)
        return [float(x), float(y), float(w), float(h)]

    def near(b: list[float]) -> list[float]:
        if grid:
            d = rng.integers(-2, 3, 4)
            return [b[0] + d[0], b[1] + d[1], max(b[2] + d[2], 1.0), max(b[3] + d[3], 1.0)]
        d = rng.normal(0, 1.5, 4)
        return [b[0] + d[0], b[1] + d[1], max(b[2] + d[2], 0.5), max(b[3] + d[3], 0.5)]

    def result(image_id: int, cat_id: int, b: list[float]) -> dict:
        score = float(rng.choice([0.1, 0.3, 0.5, 0.7, 0.9])) if rng.random() < 0.5 else float(rng.random())
        r = {"image_id": image_id, "category_id": cat_id, "bbox": b, "score": score}
        if kind == "segm":
            r.pop("bbox")
            rle = mask_utils.frPyObjects([polygon(b)], H, W)[0]
            r["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        return r

    for im in images:
        if rng.random() < 0.15:
            continue  # an image without objects or detections
        b = box()
        for _ in range(rng.integers(0, 6)):
            b = b if rng.random() < 0.2 else box()  # sometimes a duplicate box: equal IoUs for the tie rule
            cat = cats[rng.integers(n_cat)]["id"]
            ann = {"id": len(anns) + 1, "image_id": im["id"], "category_id": cat, "bbox": b,
                   "area": float(b[2] * b[3] * rng.choice([0.5, 1.0, 40.0])), "iscrowd": int(rng.random() < crowd)}
            if kind == "segm":
                ann["segmentation"] = [polygon(b)]
                if ann["iscrowd"]:  # crowd regions come as uncompressed RLE, here of the box's pixels
                    m = np.zeros((H, W), dtype=np.uint8)
                    m[int(b[1]):int(b[1] + b[3]) + 1, int(b[0]):int(b[0] + b[2]) + 1] = 1
                    ann["segmentation"] = {"size": [H, W], "counts": rle_counts(m)}
            anns.append(ann)
            for _ in range(rng.integers(0, 4)):
                same = rng.random() < 0.8
                dts.append(result(im["id"], cat if same else cats[rng.integers(n_cat)]["id"], near(b)))
        for _ in range(rng.integers(0, 3)):
            dts.append(result(im["id"], cats[rng.integers(n_cat)]["id"], box()))
    return {"images": images, "categories": cats, "annotations": anns}, dts


def polygon(b: list[float]) -> list[float]:
    x, y, w, h = b
    return [x, y, x + w, y, x + w * 0.6, y + h, x, y + h * 0.7]


def rle_counts(m: np.ndarray) -> list[int]:
    """Uncompressed (column-major) RLE counts of a binary mask, as crowd annotations store them."""
    flat = m.flatten(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    return np.diff(np.r_[0, change]).tolist()
