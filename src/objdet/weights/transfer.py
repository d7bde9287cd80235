"""Loading weights into a model of another class set: every tensor whose shape fits is loaded; class-specific
tensors keep the architecture's fresh initialisation except the rows of classes whose names match a source
class (case-insensitive), which are copied. None of the anchor libraries does this: fine-tuning "person" keeps
COCO's person classifier. Also: freezing parts for fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch import Tensor, nn

from objdet.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from objdet.detectors.base import Detector

FREEZE_CHOICES = ("none", "backbone", "backbone+neck")


@dataclass
class TransferReport:
    """What loading did: tensors loaded whole, tensors left at their initialisation, class rows copied."""

    loaded: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    transferred: list[str] = field(default_factory=list)  # class names whose rows came from the source

    def summary(self, origin: str) -> str:
        """One paragraph for the user: counts, the initialised modules and the classes transferred."""
        modules = sorted({k.rsplit(".", 1)[0] for k in self.initialised})
        lines = [f"weights from {origin}: {len(self.loaded)} tensors loaded"]
        if modules:
            lines.append(f"initialised as new: {', '.join(modules)}")
        if self.transferred:
            lines.append(f"class rows copied from the source for: {', '.join(self.transferred)}")
        if self.unused:
            lines.append(f"{len(self.unused)} source tensors unused (e.g. {self.unused[0]})")
        return "; ".join(lines)


def _norm(name: str) -> str:
    return name.strip().casefold()


def same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two class lists name the same classes in the same order (case and surrounding spaces aside)."""
    return [_norm(c) for c in a] == [_norm(c) for c in b]


def class_mapping(source: Sequence[str] | None, target: Sequence[str] | None) -> dict[int, int]:
    """{target label: source label} (1-based) for target classes whose name matches a source class."""
    if not source or not target:
        return {}
    by_name: dict[str, int] = {}
    for label, name in enumerate(source, start=1):
        by_name.setdefault(_norm(name), label)
    return {t: by_name[_norm(name)] for t, name in enumerate(target, start=1) if _norm(name) in by_name}


def transfer(model: Detector, state: Mapping[str, Tensor], origin: str, source_num_classes: int | None,
             source_classes: Sequence[str] | None = None, strict: bool = False) -> TransferReport:
    """Load `state` (objdet names) into `model`. Tensors of both with different shapes are an error naming them,
    unless they are class-specific (`model.class_rows()`); class-specific tensors of another class set (another
    count, or other names where both sides name them) keep the model's initialisation, with the rows of classes
    whose names match copied. A state holding none of the backbone's tensors is
    refused; `strict` also refuses tensors missing on either side (a conversion that must give the source's
    outputs). Nothing is loaded unless everything fits."""
    own = model.state_dict()
    if strict:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            detail = "; ".join(f"{what}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
                               for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
            raise CheckpointError(f"weights do not fit {model.arch}: {detail}", path=origin)
    specific = model.class_rows()
    num_source = source_num_classes
    target_classes = model.class_names
    mapping = class_mapping(source_classes, target_classes)
    misfits = [k for k in own if k in state and own[k].shape != state[k].shape and k not in specific]
    if misfits:
        detail = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in misfits[:3])
        raise CheckpointError(f"weights of another architecture: {len(misfits)} tensors do not fit {model.arch}, "
                              f"first {detail}", path=origin)
    if not any(k.startswith("backbone.") and k in state for k in own):
        raise CheckpointError(f"none of {model.arch}'s backbone tensors are in these weights", path=origin)
    same_classes = (num_source == model.num_classes if not (source_classes and target_classes)
                    else same_names(source_classes, target_classes))
    report = TransferReport()
    merged: dict[str, Tensor] = {}
    for key, value in own.items():
        if key not in state:
            if not key.endswith("num_batches_tracked"):
                report.initialised.append(key)
            continue
        source = state[key]
        rows = specific.get(key)
        if source.shape == value.shape and (key not in specific or rows is None or same_classes):
            merged[key] = source
            report.loaded.append(key)
            continue
        fresh = value.clone()
        if rows is not None and num_source:
            with torch.no_grad():
                for target_label, source_label in mapping.items():
                    fresh[rows.rows(target_label, model.num_classes)] = source[rows.rows(source_label, num_source)]
            report.transferred = [target_classes[t - 1] for t in sorted(mapping)] if target_classes else []
        merged[key] = fresh
        report.initialised.append(key)
    report.unused = sorted(set(state) - set(own))
    model.load_state_dict(merged, strict=False)
    return report


def freeze(model: nn.Module, parts: str) -> list[str]:
    """Stop training `parts` ("backbone", "backbone+neck" or "none"); returns the frozen parameter names."""
    if parts not in FREEZE_CHOICES:
        raise ConfigError(f"--freeze must be one of {', '.join(FREEZE_CHOICES)}, not {parts!r}")
    prefixes = {"none": (), "backbone": ("backbone.",), "backbone+neck": ("backbone.", "neck.")}[parts]
    frozen = []
    for name, param in model.named_parameters():
        if name.startswith(prefixes) and param.requires_grad:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen
