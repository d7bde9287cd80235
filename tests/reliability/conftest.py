"""Shared fixtures of the reliability suite: small valid data sets to corrupt, and a hang guard."""

from __future__ import annotations

import faulthandler
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from objdet import build

HANG_SECONDS = 600  # a test still running after this is hung (pycocotools once spun forever on NaN)


@pytest.fixture(autouse=True)
def hang_guard():
    """Dump every thread's stack and exit if a test hangs, instead of blocking the suite."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


IMAGE_SIZES = {1: (40, 30), 2: (20, 16)}  # id -> (width, height)


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    mask = np.zeros((height, width), np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def run_lengths(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major runs, zeros first), written out independently."""
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return ([0] + runs) if flat[0] else runs


def valid_coco() -> dict:
    """A small COCO file using every feature the reader supports: polygons, RLE, crowd, keypoints."""
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((4, 5), np.uint8), ((2, 10), (3, 12)))))
    return {
        "images": [{"id": i, "file_name": f"im{i}.png", "width": w, "height": h}
                   for i, (w, h) in IMAGE_SIZES.items()],
        "categories": [{"id": 3, "name": "person", "keypoints": ["head", "foot"], "skeleton": [[1, 2]]},
                       {"id": 7, "name": "box"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [2.0, 3.0, 10.0, 12.0], "area": 90.0,
             "iscrowd": 0, "segmentation": [[2, 3, 12, 3, 12, 15, 2, 15]],
             "keypoints": [5, 4, 2, 6, 14, 1], "num_keypoints": 2},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [20, 5, 8, 6], "area": 48, "iscrowd": 1,
             "keypoints": [0] * 6, "num_keypoints": 0,
              "segmentation": {"counts": run_lengths(box_mask(30, 40, (20, 5, 28, 11))), "size": [30, 40]}},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [3, 2, 5, 4], "area": 20, "iscrowd": 0,
             "keypoints": [0] * 6, "num_keypoints": 0,
             "segmentation": {"counts": rle["counts"].decode("ascii"), "size": [16, 20]}},
        ],
    }


@pytest.fixture(scope="module")
def coco_images(tmp_path_factory) -> Path:
    """Image folder holding the pictures `valid_coco` names."""
    folder = tmp_path_factory.mktemp("coco_images")
    rng = np.random.default_rng(0)
    for i, (w, h) in IMAGE_SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_detectors() -> dict:
    """The two smallest zoo detectors (random weights, 64 px input), built once for the whole suite."""
    torch.manual_seed(0)
    return {name: build(name, num_classes=2, min_size=64, max_size=96)
            for name in ("faster_rcnn_r18_fpn", "retinanet_r18_fpn")}
