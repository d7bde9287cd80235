"""Run a detector over a data set: COCO results and COCO AP, each process taking its shard."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from objdet.data.coco import dataset_to_coco, to_coco_results
from objdet.data.loader import collate
from objdet.engine import distributed

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 2, device: str | torch.device = "cpu",
            num_workers: int = 0) -> list[dict[str, Any]]:
    """COCO result records for every image of `dataset`; each process takes its shard, all get the union."""
    model.eval()
    to_cat = getattr(dataset, "label_to_category_id", None)
    indices = list(range(distributed.rank(), len(dataset), distributed.world_size()))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    records: list[dict[str, Any]] = []
    for images, targets in loader:
        outputs = model([im.to(device) for im in images])
        records += to_coco_results(outputs, [int(t["image_id"]) for t in targets], to_cat)
    return distributed.all_gather(records)


def iou_types(records: list[dict[str, Any]], gt: dict[str, Any]) -> list[str]:
    """The COCO iou types both the results and the ground truth carry ("bbox" always)."""
    anns = gt["annotations"]
    types = ["bbox"]
    for kind, key in (("segm", "segmentation"), ("keypoints", "keypoints")):
        if records and key in records[0] and anns and key in anns[0]:
            types.append(kind)
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
            stats[kind] = evaluate_coco(gt, records, iou_type=kind) if records else dict.fromkeys(STAT_NAMES, 0.0)
    return distributed.broadcast(stats)
