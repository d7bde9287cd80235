"""bench/raccoon.py with objdet's RetinaNet on torchvision's arithmetic: contiguous convolutions and
(unless --keep-focal) the focal loss through plain autograd instead of objdet's recomputing backward.

An experiment, not a configuration: it patches two numerical choices that change rounding only, to
show that objdet's RetinaNet then trains bit for bit as torchvision's (compare the run logs).

    python bench/raccoon_arithmetic.py --arch retinanet --impl objdet --init torchvision --no-amp --seed 0
    python bench/raccoon_arithmetic.py --keep-focal --arch retinanet --impl objdet --init torchvision --no-amp
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import objdet.detectors.dense as dense


def autograd_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                        reduction: str = "sum") -> torch.Tensor:
    """The focal loss written out for autograd, in torchvision's order of operations (sum only)."""
    if reduction != "sum":
        raise ValueError("this experiment only needs reduction='sum'")
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    return ((alpha * targets + (1 - alpha) * (1 - targets)) * loss).sum()


def main() -> None:
    keep_focal = "--keep-focal" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--keep-focal"]
    contiguous = torch.Tensor.contiguous
    # DenseDetector.forward asks for channels-last input; hand it the default layout instead
    torch.Tensor.contiguous = lambda self, memory_format=torch.contiguous_format: contiguous(self)
    build = dense.DenseDetector.__init__

    def contiguous_init(self, *a, **k):
        build(self, *a, **k)
        self.to(memory_format=torch.contiguous_format)

    dense.DenseDetector.__init__ = contiguous_init
    if not keep_focal:
        dense.sigmoid_focal_loss = autograd_focal_loss
    script = Path(__file__).with_name("raccoon.py")
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
