"""The end-of-training report: the self-contained HTML evaluation page of the trained model on its validation set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from objdet.data.coco import dataset_to_coco


def write_training_report(records: list[dict[str, Any]], dataset: Dataset, out: str | Path, title: str) -> Path:
    """`out` (report.html): COCO table, per-class tables with the data set's class names, PR curves, errors,
    calibration and galleries drawn on the data set's own images, for the COCO results `records`."""
    from objdet.evaluation.gallery import dataset_images
    from objdet.evaluation.report import write_report

    images = dataset_images(dataset) if hasattr(dataset, "load") else None
    return write_report(dataset_to_coco(dataset), [records], out, images=images, names=["trained model"],
                        title=title)
