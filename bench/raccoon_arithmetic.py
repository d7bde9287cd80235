"""bench/raccoon.py with objdet's RetinaNet on contiguous convolutions, torchvision's default layout.

An experiment, not a configuration: objdet's RetinaNet trains channels-last. With the layout
patched to the default one, objdet's run trains bit for bit as torchvision's default run, as it
does against torchvision in channels-last (`bench/raccoon.py --channels-last`): the memory layout
is the only thing that sets objdet's runs apart from torchvision's default ones.

    python bench/raccoon_arithmetic.py --arch retinanet --impl objdet --init torchvision --no-amp --seed 0
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch

import objdet.detectors.dense as dense


def main() -> None:
    contiguous = torch.Tensor.contiguous
    # DenseDetector.forward asks for channels-last input; hand it the default layout instead
    torch.Tensor.contiguous = lambda self, memory_format=torch.contiguous_format: contiguous(self)
    build = dense.DenseDetector.__init__

    def contiguous_init(self, *a, **k):
        build(self, *a, **k)
        self.to(memory_format=torch.contiguous_format)

    dense.DenseDetector.__init__ = contiguous_init
    script = Path(__file__).with_name("raccoon.py")
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *sys.argv[1:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
