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
* boxes follow the policy of `objdet.validate` (segmentations too; errors for negative or outside boxes,
  clip for boxes sticking out, skip for zero-size boxes);
* repairs, counted in one DataWarning (`objdet.data.repair`; each an AnnotationError under `strict`):
  boxes clipped by more than a pixel, zero-size boxes dropped, an image width or height of 0 or
  missing read from the image header, an image file found under another extension or letter case;
* at load time: a missing or corrupt image, or one whose size differs from the record -> ImageError.
An annotation without a segmentation, in a file where others have one, gets its box as mask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping, Sequence

import torch
from pycocotools import mask as mask_utils

from objdet.data.base import DetectionDataset, Target, Transform
from objdet.data.image import MAX_PIXELS, image_size, read_image, to_pil
from objdet.data.masks import decode_segmentation, encode_mask, instance_masks, keypoint_array
from objdet.data.records import positive_size
from objdet.data.repair import FileFinder, Repairs
from objdet.validate import check_unique, inside_root, is_finite_number, segmentation_problem
from objdet.errors import AnnotationError, DataError, ImageError
from objdet.io import load_json, save_json



def _decodes(segm: list | dict, height: int, width: int) -> bool:
    try:
        decode_segmentation(segm, height, width)
    except ValueError:
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _known(value: Any, ids: Mapping) -> bool:
    """`value in ids` for json values, which may be unhashable lists or dicts."""
    return isinstance(value, Hashable) and value in ids


class CocoDataset(DetectionDataset):
    """A COCO-format data set: yields (image [3,H,W] in 0..1, target) in objdet's convention."""

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        transforms: Transform | None = None,
        include_crowd: bool = True,
        max_pixels: int = MAX_PIXELS,
        strict: bool = False,
        on_error: str = "raise",
    ):
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.max_pixels = max_pixels
        self.repairs = Repairs(self.ann_file, strict, on_error)
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
        self.keypoint_names: list[str] = list(next((c["keypoints"] for c in self.categories if c.get("keypoints")), []))
        self.has_masks = any(isinstance(a, dict) and a.get("segmentation") for a in anns)
        check_unique((a.get("id") for a in anns if isinstance(a, dict) and "id" in a),
                     "annotation", path=path)
        self._anns: list[list[dict]] = [[] for _ in self.images]
        for n, ann in enumerate(anns):
            with self.repairs.guard():
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
        self.repairs.report()

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
        finder, kept = FileFinder(), []
        for n, img in enumerate(images):
            with self.repairs.guard():
                kept.append(self._read_image(img, n, finder))
        check_unique((img["id"] for img in kept), "image", path=self.ann_file)
        return kept

    def _read_image(self, img: Any, n: int, finder: FileFinder) -> dict:
        """One image record, its file found under another extension or case and a zero or missing size read
        from the image header (both counted repairs)."""
        record = f"image {img.get('id', n) if isinstance(img, dict) else n}"
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise DataError("image needs an integer id", path=self.ann_file, record=record)
        sizes = [positive_size(img.get(k)) if img.get(k) in (None, 0) or _is_int(img.get(k)) else -1
                 for k in ("width", "height")]
        if -1 in sizes:
            raise DataError("image needs a positive integer width and height", path=self.ann_file, record=record)
        file = inside_root(self.image_dir, img.get("file_name"), path=self.ann_file, record=record)
        found = finder.find(file, self.repairs, path=self.ann_file, record=record)
        if found != file:
            img = {**img, "file_name": found.relative_to(self.image_dir).as_posix()}
        if None in sizes:
            width, height = image_size(found)
            self.repairs.note("size", f"image size {img.get('width')!r} x {img.get('height')!r} read from the "
                              f"image header: {width}x{height}", path=self.ann_file, record=record)
            img = {**img, "width": width, "height": height}
        if img["width"] * img["height"] > self.max_pixels:
            raise DataError(f"image size {img['width']}x{img['height']} is more than "
                            f"{self.max_pixels} pixels (decompression-bomb guard; raise "
                            "max_pixels)", path=self.ann_file, record=record)
        return img

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
        box = self.repairs.box((x, y, x + bw, y + bh), w, h, path=path, record=record)
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
            try:
                masks = instance_masks([a["segmentation"] for a in anns], [a["box"] for a in anns], h, w)
            except ValueError as err:  # a compressed RLE string that does not parse: name it
                bad = next(a for a in anns if a["segmentation"] is not None and not _decodes(a["segmentation"], h, w))
                raise AnnotationError(f"segmentation cannot be decoded: {err}", path=self.ann_file,
                                      record=bad["record"]) from err
            target["masks"] = torch.from_numpy(masks)
        if self.keypoint_names:
            kps = keypoint_array([a["keypoints"] for a in anns], len(self.keypoint_names))
            target["keypoints"] = torch.from_numpy(kps)
        return target

    def select(self, indices: Sequence[int]) -> None:
        """Keep only the images at `indices` (a seeded train/val split); image ids stay the file's."""
        self.images = [self.images[i] for i in indices]
        self._anns = [self._anns[i] for i in indices]

    def image_file(self, i: int) -> Path:
        """Path of image i's file."""
        info = self.images[i]
        return inside_root(self.image_dir, info["file_name"], path=self.ann_file, record=f"image {info['id']}")

    def annotations(self, i: int) -> list[dict]:
        """Image i's annotations as read (COCO form without ids; segmentations as in the file), the lossless
        form `data convert` writes."""
        out = []
        for a in self._anns[i]:
            x1, y1, x2, y2 = a["box"]
            ann = {"category_id": self.label_to_category_id[a["label"]], "bbox": [x1, y1, x2 - x1, y2 - y1],
                   "iscrowd": a["iscrowd"], "area": a["area"]}
            ann.update({k: a[k] for k in ("segmentation", "keypoints") if a[k] is not None})
            out.append(ann)
        return out

    def load(self, i: int) -> tuple[torch.Tensor, Target]:
        """Image i and its target, before transforms."""
        info = self.images[i]
        file = self.image_file(i)
        image = read_image(file, self.max_pixels)
        if tuple(image.shape[1:]) != (info["height"], info["width"]):
            raise ImageError(
                f"image is {image.shape[2]}x{image.shape[1]} but its record "
                f"(image {info['id']} of {self.ann_file}) says {info['width']}x{info['height']}",
                path=file,
            )
        return image, self.target(i)


def annotation_records(target: Mapping[str, Any], image_id: int, label_to_category_id:
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
    images: list[dict] = []
    anns: list[dict] = []
    for i in range(len(dataset)):
        info = dataset.image_info(i)
        images.append({k: info[k] for k in ("id", "file_name", "width", "height")})
        anns += annotation_records(dataset.target(i), info["id"], dataset.label_to_category_id,
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
