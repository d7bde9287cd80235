"""objdet: object detection from the box arithmetic up.

The public surface is small and stable; names are imported lazily so `import objdet` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "list_models": "objdet.zoo",
    "build": "objdet.zoo",
    "load": "objdet.zoo",
    "from_torchvision": "objdet.weights.torchvision",
    "from_effdet": "objdet.weights.effdet",
    "evaluate_coco": "objdet.evaluation.coco",
    "evaluate_voc": "objdet.evaluation.voc",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'objdet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
