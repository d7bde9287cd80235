"""Checkpoints: written atomically (temp file + rename), read back with `torch.load(weights_only=True)`.

A checkpoint is a dict of plain tensors and containers, never pickled objects. Every one holds
`model_payload(model)`: {"format", "model" (the state dict), "arch" (zoo name), "config" (the full config),
"class_names"}; a training checkpoint adds "optimizer", "scheduler", "scaler", "ema", "rng", "epoch",
"step", ... Files written before format 2 (whose "config" may hold only overrides, and whose conv heads
were numbered flat) are upgraded as they are read.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from objdet.errors import CheckpointError, ObjdetError


def save(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` so a reader sees either the old file or the whole new one, never half."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by an earlier write that was killed
            stale.unlink(missing_ok=True)
    except (OSError, RuntimeError) as err:  # a full disk surfaces as either, depending on where it hits
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
        kept = "the previous file is kept" if path.exists() else "no file was written"
        raise CheckpointError(f"cannot write checkpoint ({err}); {free} bytes free on its disk; {kept}",
                              path=path) from err
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


FORMAT = 2  # 2: conv heads built of ConvNormAct blocks, full config and class names stored


def model_payload(model: torch.nn.Module) -> dict[str, Any]:
    """The entries that let `load_model` rebuild `model` alone: weights, zoo name, full config, class names."""
    from objdet.zoo import describe

    return {"format": FORMAT, "model": model.state_dict(), **describe(model)}


# Conv towers that were flat nn.Sequential (conv, [norm], relu, ...) before format 2 and are now
# ConvNormAct blocks: `convs.{flat}.x` becomes `convs.{block}.{0 conv | 1 norm}.x`.
_FLAT_TOWERS = ("rpn.head.convs.", "box_stage.head.convs.", "mask_stage.head.convs.", "keypoint_stage.head.convs.")


def _blocked_keys(state: dict[str, Any]) -> dict[str, Any]:
    """A format-1 state dict with its flat conv towers renamed to blocks (a 4-d weight opens a new block)."""
    out = dict(state)
    for prefix in _FLAT_TOWERS:
        flat = sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})
        block, position = -1, 0
        for index in flat:
            weight = state.get(f"{prefix}{index}.weight")
            if weight is not None and weight.ndim == 4:
                block, position = block + 1, 0
            else:
                position += 1
            for key in [k for k in state if k.startswith(f"{prefix}{index}.")]:
                out.pop(key)
                out[f"{prefix}{block}.{position}.{key[len(f'{prefix}{index}.'):]}"] = state[key]
    return out


# Config fields of format 1 that asked the constructor to load trunk weights; now a build-time argument
# (`backbone_weights=`), since the checkpoint's own weights replace them anyway.
_BUILD_TIME_FIELDS = ("backbone_weights", "pretrained_backbone")


def upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint payload in today's format: format-1 conv towers renamed, trunk-weight fields dropped from the
    config, class names from the categories."""
    if payload.get("format", 1) >= FORMAT:
        return payload
    payload = dict(payload)
    if payload.get("config"):
        payload["config"] = {k: v for k, v in payload["config"].items() if k not in _BUILD_TIME_FIELDS}
    payload["model"] = _blocked_keys(payload["model"])
    if payload.get("ema"):
        payload["ema"] = {**payload["ema"], "model": _blocked_keys(payload["ema"]["model"])}
    if "class_names" not in payload and payload.get("categories"):
        payload["class_names"] = [c["name"] for c in payload["categories"]]
    payload["format"] = FORMAT
    return payload


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save` (or `objdet convert`), upgraded to today's format; refuses pickled
    payloads."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such checkpoint file", path=path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"not a weights-only checkpoint (it holds pickled objects): {err}", path=path) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint: {err}", path=path) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"expected a dict, found {type(payload).__name__}", path=path)
    if "model" not in payload:
        raise CheckpointError("no 'model' entry (not an objdet checkpoint)", path=path)
    return upgrade(payload)


def rng_state() -> dict[str, Any]:
    """Every random generator training touches, as plain tensors (torch CPU/CUDA, Python, NumPy)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by `rng_state`."""
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto a GPU moves these too
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu",
               prefer_ema: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the zoo model a checkpoint names (`arch` + `config`) and load its weights.

    With `prefer_ema`, a training checkpoint's EMA weights are used (they are what was evaluated).
    Returns the model in eval mode, with `class_names` from the checkpoint, and the checkpoint payload.
    """
    payload = load(path, map_location)
    return model_from_payload(payload, path, map_location, prefer_ema), payload


def is_checkpoint(content: Any) -> bool:
    """Whether a loaded file's content is an objdet checkpoint (rather than a bare state dict)."""
    return isinstance(content, dict) and "model" in content and "arch" in content


def model_from_payload(payload: dict[str, Any], path: str | os.PathLike, map_location: str | torch.device = "cpu",
                       prefer_ema: bool = True) -> torch.nn.Module:
    """The model of a checkpoint payload already read from `path` (see `load_model`)."""
    from objdet.zoo import build

    payload = upgrade(payload)
    arch = payload.get("arch")
    if not arch:
        raise CheckpointError("no 'arch' entry: cannot tell which model to build", path=path)
    try:
        model = build(arch, **dict(payload.get("config") or {}))
    except ObjdetError as err:
        raise CheckpointError(f"cannot rebuild model {arch!r}: {err}", path=path) from err
    ema = payload.get("ema")
    weights = ema["model"] if prefer_ema and ema else payload["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not fit model {arch!r}: {err}", path=path) from err
    model.class_names = payload.get("class_names")
    return model.to(map_location).eval()
