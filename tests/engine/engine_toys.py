"""A tiny detector-shaped model and a tiny generated data set, so engine tests need no real detector."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from objdet import zoo
from objdet.detectors.base import DetectorConfig

COLOURS = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0]])


class ToyBoxes(Dataset):
    """Images with one coloured rectangle; the colour is the class. A random flip exercises seeding."""

    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 3, "name": "blue"}]
    num_classes = 3
    label_to_category_id = {1: 1, 2: 2, 3: 3}

    def __init__(self, size: int = 12, image_size: int = 32, seed: int = 0, flip: bool = True):
        gen = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(size):
            x1, y1 = torch.randint(0, image_size // 2, (2,), generator=gen).tolist()
            w, h = torch.randint(6, image_size // 2, (2,), generator=gen).tolist()
            label = int(torch.randint(1, 4, (1,), generator=gen))
            self.items.append(((x1, y1, x1 + w, y1 + h), label))
        self.image_size, self.flip = image_size, flip

    def __len__(self) -> int:
        return len(self.items)

    def image_info(self, i: int) -> dict:
        return {"id": i + 1, "file_name": f"{i}.png", "width": self.image_size, "height": self.image_size}

    def target(self, i: int) -> dict:
        return self[i][1]

    def load(self, i: int):
        """Image i and its target without the random flip (what the training report draws)."""
        (x1, y1, x2, y2), label = self.items[i]
        s = self.image_size
        image = torch.full((3, s, s), 0.5)
        image[:, y1:y2, x1:x2] = COLOURS[label - 1, :, None, None]
        box = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)
        target = {"boxes": box, "labels": torch.tensor([label]), "image_id": i + 1,
                  "area": (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]), "iscrowd": torch.zeros(1, dtype=torch.int64)}
        return image, target

    def __getitem__(self, i: int):
        image, target = self.load(i)
        if self.flip and torch.rand(()) < 0.5:
            s, box = self.image_size, target["boxes"]
            image = image.flip(-1)
            target["boxes"] = torch.stack([s - box[:, 2], box[:, 1], s - box[:, 0], box[:, 3]], dim=1)
        return image, target


@dataclass
class ToyConfig(DetectorConfig):
    """The toy's fields, so checkpoints of it rebuild through the zoo like a real detector's."""

    num_classes: int = 3
    dropout: float = 0.1
    nan_at_call: int | None = None
    interrupt_at_call: int | None = None


class ToyDetector(nn.Module):
    """Predicts one box and one class per image; losses are per-image means (so DDP averages exactly).

    `dropout` draws from the global torch generator in training, like an RPN sampler does.
    `nan_at_call` / `interrupt_at_call` make the k-th training call return NaN / send this process SIGINT.
    """

    def __init__(self, num_classes: int = 3, dropout: float = 0.1, nan_at_call: int | None = None,
                 interrupt_at_call: int | None = None):
        super().__init__()
        self.config = ToyConfig(num_classes, dropout, nan_at_call, interrupt_at_call)
        self.arch, self.class_names = "toy", None
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.box = nn.Linear(8 * 4 + 8, 4)
        self.cls = nn.Linear(8 * 4 + 8, num_classes)
        self.dropout, self.nan_at_call, self.interrupt_at_call, self.calls = dropout, nan_at_call, interrupt_at_call, 0
        self.last_dtype = None

    def _embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        x = self.features(torch.stack(images))
        self.last_dtype = x.dtype
        emb = torch.cat([F.adaptive_avg_pool2d(x, 2).flatten(1), F.adaptive_max_pool2d(x, 1).flatten(1)], dim=1)
        return F.dropout(emb, self.dropout, self.training)

    def forward(self, images, targets=None):
        size = images[0].shape[-1]
        emb = self._embed(images)
        p = torch.sigmoid(self.box(emb).float())  # centre and size, relative to the image
        boxes = torch.cat([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], dim=1)
        logits = self.cls(emb).float()
        if self.training:
            self.calls += 1
            if self.calls == self.interrupt_at_call:
                os.kill(os.getpid(), signal.SIGINT)
            gt = torch.stack([t["boxes"][0] for t in targets]) / size
            labels = torch.stack([t["labels"][0] for t in targets]) - 1
            losses = {"loss_box": F.l1_loss(boxes, gt), "loss_cls": F.cross_entropy(logits, labels)}
            if self.nan_at_call is not None and self.calls >= self.nan_at_call:
                losses["loss_box"] = losses["loss_box"] * float("nan")
            return losses
        scores, labels = logits.softmax(-1).max(-1)
        return [{"boxes": (b * size)[None], "scores": s[None], "labels": (l + 1)[None]}
                for b, s, l in zip(boxes, scores, labels)]


def build_toy(cfg: ToyConfig) -> ToyDetector:
    return ToyDetector(cfg.num_classes, cfg.dropout, cfg.nan_at_call, cfg.interrupt_at_call)


zoo.register("toy", ToyConfig, build_toy)
