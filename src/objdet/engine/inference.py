"""Run a detector over a data set: COCO ground truth and results, and COCO AP (gathered over processes)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn
from torch.utils.data import DataLoader, Dataset

from objdet.engine import distributed


def collate(batch: list[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """(images, targets) lists from a list of samples."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def _category_ids(dataset: Dataset) -> dict[int, int]:
    mapping = getattr(dataset, "label_to_category_id", None)
    if mapping is None:
        return {c["id"]: c["id"] for c in dataset.categories}
    return {int(k): int(v) for k, v in dict(mapping).items()}


def _encode_mask(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detections_to_coco(output: dict[str, torch.Tensor], image_id: int,
                       label_to_category_id: dict[int, int] | None = None,
                       mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """One image's detections as COCO result records (xywh boxes, RLE masks, flat keypoints)."""
    boxes = output["boxes"].detach().float().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = output["scores"].detach().float().cpu().tolist()
    labels = output["labels"].detach().cpu().tolist()
    masks = output.get("masks")
    keypoints = output.get("keypoints")
    records = []
    for i, (box, score, label) in enumerate(zip(xywh, scores, labels)):
        cat = label_to_category_id.get(int(label), int(label)) if label_to_category_id else int(label)
        rec: dict[str, Any] = {"image_id": int(image_id), "category_id": cat,
                               "bbox": [round(v, 3) for v in box], "score": float(score)}
        if masks is not None:
            rec["segmentation"] = _encode_mask((masks[i, 0] >= mask_threshold).cpu().numpy())
        if keypoints is not None:
            rec["keypoints"] = [round(float(v), 3) for v in keypoints[i].reshape(-1).tolist()]
        records.append(rec)
    return records


def dataset_to_coco(dataset: Dataset) -> dict[str, Any]:
    """The ground truth of a data set as a COCO dict (reads every sample once)."""
    to_cat = _category_ids(dataset)
    images, annotations = [], []
    for idx in range(len(dataset)):
        image, target = dataset[idx]
        image_id = int(target["image_id"])
        height, width = int(image.shape[-2]), int(image.shape[-1])
        images.append({"id": image_id, "height": height, "width": width})
        boxes = target["boxes"].float()
        crowd = target.get("iscrowd", torch.zeros(len(boxes), dtype=torch.int64))
        for j in range(len(boxes)):
            x1, y1, x2, y2 = boxes[j].tolist()
            ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": image_id,
                                   "category_id": to_cat.get(int(target["labels"][j]), int(target["labels"][j])),
                                   "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": int(crowd[j])}
            if "masks" in target:
                ann["segmentation"] = _encode_mask(target["masks"][j].cpu().numpy())
                ann["area"] = float(target["masks"][j].sum())
            else:
                ann["area"] = float(target["area"][j]) if "area" in target else (x2 - x1) * (y2 - y1)
            if "keypoints" in target:
                kps = target["keypoints"][j].float()
                ann["keypoints"] = kps.reshape(-1).tolist()
                ann["num_keypoints"] = int((kps[:, 2] > 0).sum())
            annotations.append(ann)
    categories = [dict(c) for c in dataset.categories]
    return {"images": images, "annotations": annotations, "categories": categories}


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 2, device: str | torch.device = "cpu",
            num_workers: int = 0) -> list[dict[str, Any]]:
    """COCO result records for every image of `dataset`; each process takes its shard, all get the union."""
    model.eval()
    to_cat = _category_ids(dataset)
    indices = list(range(distributed.rank(), len(dataset), distributed.world_size()))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                        collate_fn=collate, num_workers=num_workers)
    records: list[dict[str, Any]] = []
    for images, targets in loader:
        outputs = model([im.to(device) for im in images])
        for out, tgt in zip(outputs, targets):
            records.extend(detections_to_coco(out, int(tgt["image_id"]), to_cat))
    return distributed.all_gather(records)


def iou_types(records: Iterable[dict[str, Any]], gt: dict[str, Any]) -> list[str]:
    """The COCO iou types both the results and the ground truth carry."""
    records = list(records)
    types = ["bbox"]
    anns = gt["annotations"]
    if records and "segmentation" in records[0] and anns and "segmentation" in anns[0]:
        types.append("segm")
    if records and "keypoints" in records[0] and anns and "keypoints" in anns[0]:
        types.append("keypoints")
    return types


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 2, device: str | torch.device = "cpu",
             gt: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """COCO stats per iou type ({"bbox": {"AP": ...}, "segm": ...}) of `model` on `dataset`."""
    from objdet.evaluation.coco import evaluate_coco

    records = predict(model, dataset, batch_size, device)
    stats: dict[str, dict[str, float]] = {}
    if distributed.is_main():
        gt = gt if gt is not None else dataset_to_coco(dataset)
        for kind in iou_types(records, gt):
            stats[kind] = evaluate_coco(gt, records, iou_type=kind) if records else _zero_stats()
    return distributed.broadcast(stats)


def _zero_stats() -> dict[str, float]:
    return {k: 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")}
