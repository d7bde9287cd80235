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
    """COCO result records for every image of `dataset`, in data set order. Under torchrun each process takes
    whole batches (batch b on rank b % world), so every image is computed in the same batch as in one process
    and all processes get the same records as one process would."""
    model.eval()
    to_cat = getattr(dataset, "label_to_category_id", None)
    batches = [list(range(s, min(s + batch_size, len(dataset)))) for s in range(0, len(dataset), batch_size)]
    mine = list(range(distributed.rank(), len(batches), distributed.world_size()))
    loader = DataLoader(Subset(dataset, [i for b in mine for i in batches[b]]), batch_sampler=_Batches(
        [len(batches[b]) for b in mine]), collate_fn=collate, num_workers=num_workers)
    parts: list[tuple[int, list[dict[str, Any]]]] = []
    for b, (images, targets) in zip(mine, loader):
        outputs = model([im.to(device) for im in images])
        parts.append((b, to_coco_results(outputs, [int(t["image_id"]) for t in targets], to_cat)))
    return [r for _, records in sorted(distributed.all_gather(parts)) for r in records]


class _Batches:
    """Consecutive batches of the given sizes over a subset's positions."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    def __iter__(self):
        start = 0
        for size in self.sizes:
            yield list(range(start, start + size))
            start += size

    def __len__(self) -> int:
        return len(self.sizes)


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
    return score(predict(model, dataset, batch_size, device), dataset, gt)


def score(records: list[dict[str, Any]], dataset: Dataset,
          gt: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """COCO stats per iou type of the results `records` on `dataset` (its ground truth `gt` when given):
    computed on rank 0, every process gets them."""
    from objdet.evaluation.coco import evaluate_coco

    stats: dict[str, dict[str, float]] = {}
    if distributed.is_main():
        gt = gt if gt is not None else dataset_to_coco(dataset)
        for kind in iou_types(records, gt):
            stats[kind] = evaluate_coco(gt, records, iou_type=kind) if records else dict.fromkeys(STAT_NAMES, 0.0)
    return distributed.broadcast(stats)
