"""Run a detector over a data set: COCO results and COCO AP, each process taking its shard."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from objdet.data.coco import dataset_to_coco, to_coco_results
from objdet.data.loader import collate
from objdet.engine import distributed
from objdet.errors import ConfigError

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def category_map(model: nn.Module, dataset: Dataset) -> dict[int, int] | None:
    """{model label: category id of `dataset`} for a model whose classes are not the data set's (say COCO weights
    scored on a data set of a few COCO classes): classes matched by name, case-insensitive; None when the labels
    are the data set's own (same names in the same order, or a model without names). A model sharing no class
    name with the data set is a ConfigError."""
    from objdet.weights.transfer import class_mapping, same_names

    names = getattr(model, "class_names", None)
    own = [c["name"] for c in getattr(dataset, "categories", [])]
    if not names or not own or same_names(names, own):
        return None
    mapping = class_mapping(own, names)
    if not mapping:
        raise ConfigError(f"the model's classes ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}) share no "
                          f"name with the data set's ({', '.join(own[:5])}{' ...' if len(own) > 5 else ''})")
    to_cat = getattr(dataset, "label_to_category_id", None) or {}
    return {label: to_cat[own_label] for label, own_label in mapping.items()}


def _only(detections: dict[str, Tensor], labels: dict[int, int]) -> dict[str, Tensor]:
    keep = torch.tensor([int(label) in labels for label in detections["labels"].tolist()], dtype=torch.bool)
    return {k: v[keep] for k, v in detections.items()}


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 2, device: str | torch.device = "cpu",
            num_workers: int = 0, label_to_category_id: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """COCO result records for every image of `dataset`, in data set order. Under torchrun each process takes
    whole batches (batch b on rank b % world), so every image is computed in the same batch as in one process
    and all processes get the same records as one process would. `label_to_category_id` (`category_map`)
    replaces the data set's label map; detections of labels outside it are left out."""
    model.eval()
    to_cat = label_to_category_id or getattr(dataset, "label_to_category_id", None)
    batches = [list(range(s, min(s + batch_size, len(dataset)))) for s in range(0, len(dataset), batch_size)]
    mine = list(range(distributed.rank(), len(batches), distributed.world_size()))
    loader = DataLoader(Subset(dataset, [i for b in mine for i in batches[b]]), batch_sampler=_Batches(
        [len(batches[b]) for b in mine]), collate_fn=collate, num_workers=num_workers)
    parts: list[tuple[int, list[dict[str, Any]]]] = []
    for b, (images, targets) in zip(mine, loader):
        outputs = model([im.to(device) for im in images])
        if label_to_category_id:
            outputs = [_only(o, label_to_category_id) for o in outputs]
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
