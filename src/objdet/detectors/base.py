"""What every detector shares: the attributes a built model carries, its config's base (what the model has and
how a data set or a training recipe sets it), config construction that names unknown fields, and the checks on
training targets."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor, nn

from objdet.anchors import AnchorGenerator
from objdet.errors import AnnotationError, ConfigError
from objdet.transform import DetectionTransform

if TYPE_CHECKING:
    from objdet.weights.transfer import TransferReport


@dataclass(frozen=True)
class AnchorPlan:
    """How a detector assigns ground truth to anchors in training: its anchor generator, the stride of each
    level it lays anchors on, the IoU at which an anchor is foreground, and the transform that sizes the
    network input (anchors live in its pixels). `objdet data check --model` measures coverage with it."""

    generator: AnchorGenerator
    strides: tuple[int, ...]
    fg_iou: float
    transform: DetectionTransform


@dataclass
class DetectorConfig:
    """Fields every detector config has. The properties say what the model outputs and takes, so no code
    outside a detector's module needs to know which detector it holds."""

    num_classes: int = 90

    @property
    def has_masks(self) -> bool:
        """Whether the model predicts instance masks."""
        return False

    @property
    def keypoint_count(self) -> int:
        """Keypoints predicted per object (0: none)."""
        return 0

    @property
    def fixed_size(self) -> int | None:
        """Side of the square input every image is letterboxed to, or None when images keep their size."""
        return None

    def data_fields(self, num_classes: int, keypoint_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The fields a data set fixes: its class count and, for a keypoint model, its keypoint count."""
        fields: dict[str, Any] = {"num_classes": num_classes}
        if self.keypoint_count and keypoint_names:
            fields["num_keypoints"] = len(keypoint_names)
        return fields

    def scratch_fields(self, image_size: int) -> dict[str, Any]:
        """The fields that train this detector from random weights on `image_size`-pixel images (the demo's
        and the ablation studies' recipe): every layer trainable, norms that learn, sizes to the image."""
        raise NotImplementedError

    def input_transform(self) -> DetectionTransform:
        """The transform that normalises, resizes and batches this detector's input."""
        raise NotImplementedError

    def anchor_plan(self) -> AnchorPlan | None:
        """The anchors and the matcher's foreground IoU (None for a detector without anchors)."""
        return None

    def scaled_anchors(self, factor: float) -> dict[str, Any]:
        """The config fields that make every anchor `factor` times larger (empty without anchors)."""
        return {}


class Detector(nn.Module):
    """The base of objdet's detectors: besides its layers, a model built by `objdet.build` carries what a
    checkpoint stores to rebuild it (`objdet.zoo.describe`) and what loading weights into it did."""

    config: Any  # the full config dataclass it was built from
    arch: str  # its zoo name
    num_classes: int
    class_names: list[str] | None  # the names of labels 1..K, None when the classes were not named
    weights_report: TransferReport | str  # full-model weights: what was loaded; backbone weights: one line

    def class_rows(self) -> dict[str, ClassRows | None]:
        """The class-specific tensors (state-dict names) and how they hold their classes (fine-tuning keeps the
        rows of the classes it knows)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ClassRows:
    """How a class-specific tensor holds its classes along dim 0: `anchors` groups, each of `background` (a
    background channel first) + K class channels, each of `per_class` rows. A detector lists its class-specific
    tensors with their ClassRows (None: specific to the class or keypoint set but not row-wise, such as the
    keypoint head's deconv) so fine-tuning can keep the rows of classes it knows."""

    anchors: int = 1
    per_class: int = 1
    background: bool = False

    def rows(self, label: int, num_classes: int) -> list[int]:
        """Row indices of class `label` (1..K; 0 is the background channel) in a tensor for `num_classes` classes."""
        channels = num_classes + int(self.background)
        channel = label if self.background else label - 1
        block = channels * self.per_class
        return [a * block + channel * self.per_class + j for a in range(self.anchors) for j in range(self.per_class)]


def make_config(cls: type[DetectorConfig], fields: dict[str, Any]) -> Any:
    """`cls(**fields)`, naming unknown fields; lists become tuples where the field holds a tuple (configs read
    back from JSON or a checkpoint)."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {k: _as_tuples(v) if "tuple" in str(hints.get(k, "")) else v for k, v in fields.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad {cls.__name__} option: {err}") from None


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def check_targets(targets: Sequence[dict[str, Tensor]], num_classes: int, needs: Sequence[str] = ()) -> None:
    """Reject targets the losses cannot use (bad box shape, empty boxes, labels out of 1..num_classes,
    missing masks/keypoints) with an AnnotationError naming the image."""
    for i, t in enumerate(targets):
        record = f"image {int(t['image_id']) if 'image_id' in t else i}"
        for key in ("boxes", "labels", *needs):
            if key not in t:
                raise AnnotationError(f"target has no {key!r}", record=record)
        boxes, labels = t["boxes"], t["labels"]
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or len(labels) != len(boxes):
            raise AnnotationError(f"boxes of shape {tuple(boxes.shape)} for {len(labels)} labels", record=record)
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(1) | ~torch.isfinite(boxes).all(1)
        if bad.any():
            raise AnnotationError(f"box {boxes[bad][0].tolist()} has no positive width and height", record=record)
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise AnnotationError(f"labels must lie in 1..{num_classes}, got {labels.tolist()}", record=record)
        for key, dims in (("masks", 3), ("keypoints", 3)):
            if key in needs and (t[key].ndim != dims or len(t[key]) != len(boxes)):
                raise AnnotationError(f"{key} of shape {tuple(t[key].shape)} for {len(boxes)} boxes", record=record)
