"""Weight sources, one notation everywhere (`weights=`, `--weights`):

* a path to an objdet checkpoint (`last.pt`, `best.pt`, a `convert` output);
* a path to a torchvision or effdet state dict, recognised by its keys (`torchvision:PATH`, `effdet:PATH` force
  the reading);
* `torchvision:WEIGHTS`: torchvision's published weights of the zoo model's torchvision architecture by their
  enum name (`COCO_V1`); `effdet:NAME`: effdet's published checkpoint of model NAME (`tf_efficientdet_d0`).

`read_source` turns any of them into a `Source`: the weights as stored, the zoo model and config fields they
imply, and their class count and names (known for published weights and objdet checkpoints).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from objdet.errors import CheckpointError, ConfigError
from objdet.hub import fetch


@dataclass
class Source:
    """Weights ready to load: as stored, with what they imply about the model they belong to."""

    kind: str                       # "objdet" | "torchvision" | "effdet"
    origin: str                     # the file or name, for messages
    zoo: str                        # the zoo model they were made for
    state: Mapping[str, Tensor]     # as stored (the peer library's names for torchvision and effdet)
    fields: dict[str, Any]          # config fields they imply (architecture, norms, keypoint count)
    num_classes: int
    class_names: list[str] | None
    renamed: Callable[[nn.Module], dict[str, Tensor]]  # the state under objdet's names for a built model


def coco_names() -> list[str]:
    """The 90 COCO category names by id 1..90 ("N/A" where COCO left an id unused), as torchvision lists them."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:])


def read_state(path: str | os.PathLike) -> Mapping[str, Any]:
    """A weights-only file's content; a missing, truncated, corrupt or pickled file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such weights file", path=path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"not a weights-only checkpoint (it holds pickled objects): {err}", path=path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read weights (truncated, corrupt or not weights-only): {err}", path=path) from None
    if not isinstance(content, Mapping):
        raise CheckpointError(f"expected a state dict or an objdet checkpoint, found {type(content).__name__}", path=path)
    return content


def _tensors(content: Mapping[str, Any], origin: str) -> Mapping[str, Tensor]:
    """The state dict inside a file's content (also one wrapped under 'model' or 'state_dict')."""
    for wrapper in ("model", "state_dict"):
        if isinstance(content.get(wrapper), Mapping):
            content = content[wrapper]
    if not content or not all(isinstance(v, Tensor) for v in content.values()):
        raise CheckpointError("not a state dict of tensors", path=origin)
    return content


def torchvision_source(state: Mapping[str, Tensor], origin: str, arch: str | None = None,
                       class_names: list[str] | None = None, frozen_bn_eps: float | None = None) -> Source:
    """A torchvision detection state dict as a Source (its architecture read from the keys unless given)."""
    from objdet.weights import torchvision as tv

    arch = arch or tv.detect_arch(state)
    spec = tv.ARCHS[arch]
    return Source("torchvision", origin, spec.zoo, state, tv.implied_fields(arch, state, frozen_bn_eps),
                  tv.num_classes_of(state, arch), class_names, lambda model: spec.rename(state))


def effdet_source(state: Mapping[str, Tensor], origin: str, name: str, class_names: list[str] | None = None) -> Source:
    """An effdet EfficientDet state dict of model `name` (tf_efficientdet_d0, ...) as a Source."""
    from objdet.weights import effdet as ed

    fields = ed.effdet_config(name)
    return Source("effdet", origin, ed.effdet_zoo_name(name), state, fields, ed.num_classes_of(state, fields),
                  class_names, lambda model: ed.convert_effdet_state_dict(state, model))


def objdet_source(payload: Mapping[str, Any], origin: str) -> Source:
    """An objdet checkpoint (upgraded to today's format) as a Source: the EMA weights when it kept an average."""
    from objdet.engine.checkpoint import upgrade

    payload = upgrade(dict(payload))
    config = dict(payload.get("config") or {})
    if not payload.get("arch"):
        raise CheckpointError("an objdet checkpoint without 'arch': cannot tell which model it is", path=origin)
    ema = payload.get("ema")
    state = ema["model"] if ema else payload["model"]
    from objdet import zoo

    num_classes = config.pop("num_classes", None) or zoo.config(payload["arch"]).num_classes
    return Source("objdet", origin, payload["arch"], state, config, num_classes, payload.get("class_names"),
                  lambda model: dict(state))


def _published_torchvision(zoo_name: str | None, weights: str) -> Source:
    from torchvision.models import get_model_weights

    from objdet.weights import torchvision as tv

    if zoo_name is None:
        raise ConfigError(f"torchvision:{weights} names published weights: say which model they are for "
                          "(objdet.build(NAME, weights=...), --model NAME)")
    arch = tv.arch_of_zoo_name(zoo_name)
    enum = get_model_weights(arch)
    if weights not in enum.__members__:
        raise ConfigError(f"torchvision has no weights {weights!r} for {arch}; it has {', '.join(enum.__members__)}")
    published = enum[weights]
    path = fetch(published.url, f"torchvision's {arch} {weights} weights")
    names = [c for c in published.meta["categories"][1:]]
    return torchvision_source(_tensors(read_state(path), str(path)), str(path), arch, names)


def _published_effdet(name: str) -> Source:
    try:
        from effdet import get_efficientdet_config
    except ImportError:
        raise ConfigError(f"effdet:{name} needs the effdet package for its published URLs (pip install effdet), "
                          "or give the downloaded file as effdet:PATH") from None
    config = get_efficientdet_config(name)
    if not config or not config.get("url"):
        raise ConfigError(f"effdet publishes no checkpoint for {name!r}")
    path = fetch(config.url, f"effdet's {name} checkpoint")
    return effdet_source(_tensors(read_state(path), str(path)), str(path), name, coco_names())


def _from_file(path: str, kind: str | None) -> Source:
    """A file: an objdet checkpoint, or a torchvision / effdet state dict (`kind` forces which)."""
    content = read_state(path)
    from objdet.engine.checkpoint import is_checkpoint

    if kind is None and is_checkpoint(content):
        return objdet_source(content, path)
    state = _tensors(content, path)
    if kind == "effdet" or (kind is None and any(k.split(".")[-3:-1] == ["predict", "conv_pw"] for k in state)):
        from objdet.weights.effdet import effdet_name_of

        name = effdet_name_of(state, path)
        return effdet_source(state, path, name, coco_names() if _is_published_effdet(path, name) else None)
    from objdet.weights import torchvision as tv

    arch = tv.detect_arch(state)
    return torchvision_source(state, path, arch, _published_torchvision_names(arch, path))


def _published_torchvision_names(arch: str, path: str) -> list[str] | None:
    """Class names of a torchvision file that carries a published weights file name (the hash makes it that file)."""
    from torchvision.models import get_model_weights

    for published in get_model_weights(arch):
        if os.path.basename(published.url) == os.path.basename(path):
            return list(published.meta["categories"][1:])
    return None


def _is_published_effdet(path: str, name: str) -> bool:
    try:
        from effdet import get_efficientdet_config
    except ImportError:
        return False
    url = (get_efficientdet_config(name) or {}).get("url") or ""
    return bool(url) and os.path.basename(url) == os.path.basename(path)


def read_source(weights: str | os.PathLike, zoo_name: str | None = None) -> Source:
    """Any weight source in objdet's notation as a Source; `zoo_name` is the model the user asked for (needed for
    `torchvision:WEIGHTS`)."""
    text = os.fspath(weights)
    kind, sep, rest = text.partition(":")
    if sep and kind in ("torchvision", "effdet") and not Path(text).exists():
        if Path(rest).is_file():
            return _from_file(rest, kind)
        return _published_torchvision(zoo_name, rest) if kind == "torchvision" else _published_effdet(rest)
    return _from_file(text, None)
