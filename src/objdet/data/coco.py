"""COCO json files: a data set reader, the ground-truth builder any data set can use, results writer.

Reading (`CocoDataset`): boxes are xywh in the file and xyxy inside; polygon and RLE (compressed or
not) segmentations are decoded with pycocotools into N x H x W uint8 masks; keypoints become
N x K x 3; category ids map to contiguous labels 1..K in increasing id order (`label_to_category_id`
maps back). Images without annotations give empty targets.

Bad input, checked when the file is opened so a long run never dies half way:
* unreadable or malformed json, missing `images`/`categories`, an image without id, file_name,
  width or height -> DataError; duplicated image, annotation or category ids, an annotation for an
  unknown image or category, a malformed segmentation or keypoint list -> AnnotationError;
* an image file_name that escapes the image folder (`../x`, absolute) -> DataError;
* boxes and segmentations follow the policy of `objdet.validate` (errors for negative or outside boxes,
  clip-with-warning for boxes sticking out, skip-with-warning for zero-size boxes);
* at load time: a missing or corrupt image, or one whose size differs from the record -> ImageError.
An annotation without a segmentation, in a file where others have one, gets its box as mask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils

from objdet.data.base import DetectionDataset, Target, Transform
from objdet.data.image import MAX_PIXELS, read_image, to_pil
from objdet.validate import check_box, check_unique, inside_root, is_finite_number, segmentation_problem
from objdet.errors import AnnotationError, DataError, ImageError
from objdet.io import load_json, save_json



def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _known(value: Any, ids: Mapping) -> bool:
    """`value in ids` for json values, which may be unhashable lists or dicts."""
    return isinstance(value, Hashable) and value in ids


def decode_segmentation(segm: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) as an H x W uint8 mask."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mask_utils.decode(rle)


def encode_mask(mask: np.ndarray) -> dict:
    """An H x W binary mask as a json-ready compressed RLE."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


class CocoDataset(DetectionDataset):
    """A COCO-format data set: yields (image [3,H,W] in 0..1, target) in objdet's convention."""

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        transforms: Transform | None = None,
        include_crowd: bool = True,
        max_pixels: int = MAX_PIXELS,
    ):
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.max_pixels = max_pixels
        self.coco = load_json(self.ann_file, "annotation")
        path = self.ann_file
        if not isinstance(self.coco, dict) or not isinstance(self.coco.get("images"), list) \
                or not isinstance(self.coco.get("categories"), list):
            raise DataError("a COCO file needs 'images' and 'categories' lists", path=path)
        anns = self.coco.get("annotations", [])
        if not isinstance(anns, list):
            raise DataError("'annotations' must be a list", path=path)

        self.categories = self._read_categories(self.coco["categories"])
        self.label_to_category_id = {i + 1: c["id"] for i, c in enumerate(self.categories)}
        cat_to_label = {c: lab for lab, c in self.label_to_category_id.items()}
        self.images = self._read_images(self.coco["images"])
        index = {img["id"]: i for i, img in enumerate(self.images)}
        names = next((c["keypoints"] for c in self.categories if c.get("keypoints")), [])
        self.keypoint_names: list[str] = list(names)
        self.has_masks = any(isinstance(a, dict) and a.get("segmentation") for a in anns)
        check_unique((a.get("id") for a in anns if isinstance(a, dict) and "id" in a),
                     "annotation", path=path)
        self._anns: list[list[dict]] = [[] for _ in self.images]
        for n, ann in enumerate(anns):
            record = f"annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
            if not isinstance(ann, dict):
                raise AnnotationError("annotation is not an object", path=path, record=record)
            if not _known(ann.get("image_id"), index):
                raise AnnotationError(f"unknown image_id {ann.get('image_id')!r}", path=path,
                                      record=record)
            if not _known(ann.get("category_id"), cat_to_label):
                raise AnnotationError(f"category_id {ann.get('category_id')!r} is not in the "
                                      "category list", path=path, record=record)
            if ann.get("iscrowd", 0) and not include_crowd:
                continue
            img = self.images[index[ann["image_id"]]]
            clean = self._read_annotation(ann, img, record)
            if clean is not None:
                clean["label"] = cat_to_label[ann["category_id"]]
                self._anns[index[ann["image_id"]]].append(clean)

    @property
    def num_classes(self) -> int:
        """Number of object classes (labels run 1..num_classes)."""
        return len(self.categories)

    def _read_categories(self, cats: list) -> list[dict]:
        for n, c in enumerate(cats):
            if not isinstance(c, dict) or not _is_int(c.get("id")) or "name" not in c:
                raise DataError("category needs an integer id and a name", path=self.ann_file,
                                record=f"category {n}")
            names = c.get("keypoints")
            if names is not None and not (isinstance(names, list)
                                          and all(isinstance(k, str) for k in names)):
                raise DataError("category keypoints must be a list of names", path=self.ann_file,
                                record=f"category {c['id']}")
        check_unique((c["id"] for c in cats), "category", path=self.ann_file)
        return sorted(cats, key=lambda c: c["id"])

    def _read_images(self, images: list) -> list[dict]:
        for n, img in enumerate(images):
            record = f"image {img.get('id', n) if isinstance(img, dict) else n}"
            if not isinstance(img, dict) or not _is_int(img.get("id")):
                raise DataError("image needs an integer id", path=self.ann_file, record=record)
            for key in ("width", "height"):
                if not _is_int(img.get(key)) or img[key] <= 0:
                    raise DataError(f"image needs a positive integer {key}", path=self.ann_file,
                                    record=record)
            if img["width"] * img["height"] > self.max_pixels:
                raise DataError(f"image size {img['width']}x{img['height']} is more than "
                                f"{self.max_pixels} pixels (decompression-bomb guard; raise "
                                "max_pixels)", path=self.ann_file, record=record)
            inside_root(self.image_dir, img.get("file_name"), path=self.ann_file, record=record)
        check_unique((img["id"] for img in images), "image", path=self.ann_file)
        return images

    def _read_annotation(self, ann: dict, img: dict, record: str) -> dict | None:
        path, w, h = self.ann_file, img["width"], img["height"]
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f"bbox {bbox!r} is not [x, y, w, h]", path=path, record=record)
        try:
            x, y, bw, bh = (float(v) for v in bbox)
        except (TypeError, ValueError, OverflowError) as err:
            raise AnnotationError(f"bbox {bbox!r} is not numeric", path=path,
                                  record=record) from err
        box = check_box((x, y, x + bw, y + bh), w, h, path=path, record=record)
        if box is None:
            return None
        segm = ann.get("segmentation")
        if segm:
            problem = segmentation_problem(segm, h, w)
            if problem:
                raise AnnotationError(problem, path=path, record=record)
        kps = ann.get("keypoints")
        if kps is not None and (not isinstance(kps, list) or len(kps) % 3
                                or (self.keypoint_names and len(kps) != 3 * len(self.keypoint_names))
                                or not all(is_finite_number(v) for v in kps)):
            raise AnnotationError(f"keypoints must be {3 * len(self.keypoint_names) or '3K'} "
                                  "finite numbers", path=path, record=record)
        if kps and not self.keypoint_names:
            self.keypoint_names = [f"kp{i}" for i in range(len(kps) // 3)]
        area = ann.get("area", (box[2] - box[0]) * (box[3] - box[1]))
        if not is_finite_number(area) or area < 0:
            raise AnnotationError(f"area {area!r} is not a finite non-negative number", path=path,
                                  record=record)
        if ann.get("iscrowd", 0) not in (0, 1):
            raise AnnotationError(f"iscrowd {ann['iscrowd']!r} is not 0 or 1", path=path,
                                  record=record)
        return {"box": box, "iscrowd": int(ann.get("iscrowd", 0)), "area": float(area),
                "segmentation": segm or None, "keypoints": kps or None, "record": record}

    def __len__(self) -> int:
        return len(self.images)

    def image_info(self, i: int) -> dict:
        """The image record: id, file_name, width, height."""
        return self.images[i]

    def target(self, i: int) -> Target:
        """Target of image i without reading the image (boxes, labels, masks, keypoints, ...)."""
        img, anns = self.images[i], self._anns[i]
        h, w = img["height"], img["width"]
        target: Target = {
            "boxes": torch.tensor([a["box"] for a in anns], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([a["label"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "image_id": img["id"],
        }
        if self.has_masks:
            masks = np.zeros((len(anns), h, w), dtype=np.uint8)
            for k, a in enumerate(anns):
                if a["segmentation"] is not None:
                    try:
                        masks[k] = decode_segmentation(a["segmentation"], h, w)
                    except ValueError as err:  # a compressed RLE string that does not parse
                        raise AnnotationError(f"segmentation cannot be decoded: {err}",
                                              path=self.ann_file, record=a["record"]) from err
                else:
                    x1, y1, x2, y2 = a["box"]
                    masks[k, int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1
            target["masks"] = torch.from_numpy(masks)
        if self.keypoint_names:
            kps = np.zeros((len(anns), len(self.keypoint_names), 3), dtype=np.float32)
            for k, a in enumerate(anns):
                if a["keypoints"] is not None:
                    kps[k] = np.asarray(a["keypoints"], dtype=np.float32).reshape(-1, 3)
            target["keypoints"] = torch.from_numpy(kps)
        return target

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        """Image i and its target, before transforms."""
        info = self.images[i]
        file = inside_root(self.image_dir, info["file_name"], path=self.ann_file,
                           record=f"image {info['id']}")
        image = read_image(file, self.max_pixels)
        if tuple(image.shape[1:]) != (info["height"], info["width"]):
            raise ImageError(
                f"image is {image.shape[2]}x{image.shape[1]} but its record "
                f"(image {info['id']} of {self.ann_file}) says {info['width']}x{info['height']}",
                path=file,
            )
        return image, self.target(i)


def _annotation_records(target: Mapping[str, Any], image_id: int, label_to_category_id:
                        Mapping[int, int], first_id: int) -> list[dict]:
    """COCO ground-truth annotations for one image's target."""
    boxes = torch.as_tensor(target["boxes"], dtype=torch.float64).reshape(-1, 4)
    n = len(boxes)
    crowd = target.get("iscrowd", torch.zeros(n, dtype=torch.int64))
    masks = target.get("masks")
    kps = target.get("keypoints")
    out = []
    for k in range(n):
        x1, y1, x2, y2 = boxes[k].tolist()
        ann = {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": label_to_category_id[int(target["labels"][k])],
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "iscrowd": int(crowd[k]),
        }
        if masks is not None:
            ann["segmentation"] = encode_mask(masks[k].numpy())
        if "area" in target:
            ann["area"] = float(target["area"][k])
        elif masks is not None:
            ann["area"] = float(mask_utils.area(ann["segmentation"]))
        else:
            ann["area"] = (x2 - x1) * (y2 - y1)
        if kps is not None:
            ann["keypoints"] = [float(v) for v in kps[k].reshape(-1).tolist()]
            ann["num_keypoints"] = int((kps[k][:, 2] > 0).sum())
        if "difficult" in target:
            ann["difficult"] = int(target["difficult"][k])
        out.append(ann)
    return out


def dataset_to_coco(dataset: Any) -> dict:
    """The COCO ground-truth dict of an objdet data set (CocoDataset, VOCDataset, ShapesDataset).

    Masks become compressed RLE, keypoints flat [x, y, v] * K, VOC's difficult flag is kept as
    `difficult` on each annotation.
    """
    images, anns = [], []
    for i in range(len(dataset)):
        info = dataset.image_info(i)
        images.append({k: info[k] for k in ("id", "file_name", "width", "height")})
        anns += _annotation_records(dataset.target(i), info["id"], dataset.label_to_category_id,
                                    len(anns) + 1)
    return {"images": images, "annotations": anns, "categories": list(dataset.categories)}


def write_coco_dataset(dataset: Any, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Export a data set as `out_dir/annotations.json` + `out_dir/images/`; returns both paths."""
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    for i in range(len(dataset)):
        image, _ = dataset.load(i)
        file = image_dir / dataset.image_info(i)["file_name"]
        file.parent.mkdir(parents=True, exist_ok=True)
        to_pil(image).save(file)
    ann_file = save_json(dataset_to_coco(dataset), out_dir / "annotations.json")
    return ann_file, image_dir


def to_coco_results(
    detections: Sequence[Mapping[str, torch.Tensor]],
    image_ids: Iterable[int],
    label_to_category_id: Mapping[int, int] | None = None,
    mask_threshold: float = 0.5,
) -> list[dict]:
    """Model outputs (one dict per image) as a COCO results list (bbox xywh, segm RLE, keypoints)."""
    results = []
    for det, image_id in zip(detections, image_ids, strict=True):
        boxes = det["boxes"].detach().to(torch.float64).cpu().reshape(-1, 4)
        scores = det["scores"].detach().cpu().tolist()
        labels = det["labels"].detach().cpu().tolist()
        masks = det.get("masks")
        kps = det.get("keypoints")
        for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            label = int(labels[k])
            res = {
                "image_id": int(image_id),
                "category_id": label_to_category_id[label] if label_to_category_id else label,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(scores[k]),
            }
            if masks is not None:
                m = masks[k].detach().cpu().reshape(masks.shape[-2:]) > mask_threshold
                res["segmentation"] = encode_mask(m.numpy())
            if kps is not None:
                res["keypoints"] = [float(v) for v in kps[k].detach().cpu().reshape(-1).tolist()]
            results.append(res)
    return results
