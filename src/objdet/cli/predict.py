"""`objdet predict`: run a checkpoint over images; draws them and writes COCO results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from objdet.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_files(paths: Sequence[str]) -> list[Path]:
    """The files named, and the images inside the folders named (sorted)."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("no such image file or folder", path=path)
    if not files:
        raise DataError("no images found", path=", ".join(paths))
    return files


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images; PNGs with boxes/masks/keypoints + COCO json",
                       description="Run a checkpoint over images (files or folders; RGBA, grayscale and "
                                   "EXIF-rotated images are read upright as RGB).")
    p.add_argument("--model", required=True, help="checkpoint (objdet train / objdet convert)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", default="runs/predict", help="folder for the drawn PNGs")
    p.add_argument("--json", help="write COCO results here (default OUT/results.json)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="draw detections at least this confident")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from objdet.data.coco import to_coco_results
    from objdet.data.image import read_image
    from objdet.engine import checkpoint
    from objdet.io import save_json
    from objdet.visualize import save_detections

    model, payload = checkpoint.load_model(args.model, args.device)
    names = {i + 1: name for i, name in enumerate(model.class_names or [])}
    skeleton = next((c.get("skeleton") for c in payload.get("categories") or [] if c.get("skeleton")), None)
    out = Path(args.out)
    results, images = [], []
    for image_id, file in enumerate(image_files(args.images), start=1):
        image = read_image(file)
        with torch.no_grad():
            det = {k: v.cpu() for k, v in model([image.to(args.device)])[0].items()}
        save_detections(image, det, out / f"{file.stem}.png", label_names=names or None,
                        score_threshold=args.score_threshold, skeleton=skeleton)
        results += to_coco_results([det], [image_id], payload.get("label_to_category_id"))
        images.append({"id": image_id, "file_name": str(file), "height": image.shape[-2], "width": image.shape[-1]})
    json_path = save_json(results, args.json or out / "results.json")
    save_json(images, out / "images.json")
    print(f"{len(images)} images, {len(results)} detections: pictures in {out}, results in {json_path}")
    return 0
