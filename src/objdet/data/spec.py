"""Data specs: the one string that names a data set on the command line and in the API.

`coco:ANNOTATIONS.json:IMAGE_DIR`, `voc:ROOT[:split]` (VOC's layout or a flat LabelImg folder),
`yolo:DATA.yaml[:split]`, `labelme:DIR`, `cvat:ANNOTATIONS.xml:IMAGE_DIR` and `shapes[:split]`. A split
written in the spec wins over the `split` argument of `open_dataset`, which is the default when the spec
has none; two different splits are a ConfigError. A COCO, LabelMe or CVAT file set is one split, so the
argument does not apply to them (`val_split` carves a seeded validation part out of any kind).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from objdet.errors import ConfigError

_FORMS = {  # kind -> (pattern of the whole spec, what to write)
    "coco": (re.compile(r"^coco:(?P<a>.+?\.json):(?P<b>.+)$"), "coco:ANNOTATIONS.json:IMAGE_DIR"),
    "cvat": (re.compile(r"^cvat:(?P<a>.+?\.xml):(?P<b>.+)$"), "cvat:ANNOTATIONS.xml:IMAGE_DIR"),
    "yolo": (re.compile(r"^yolo:(?P<a>.+?\.ya?ml)(?::(?P<split>[^:/\\]+))?$"), "yolo:DATA.yaml[:split]"),
    "labelme": (re.compile(r"^labelme:(?P<a>.+)$"), "labelme:DIR"),
}
FORMS = ("coco:ANN.json:IMG_DIR, voc:ROOT[:split], yolo:DATA.yaml[:split], labelme:DIR, "
         "cvat:ANN.xml:IMG_DIR or shapes[:split]")
SPLIT_KINDS = ("shapes", "voc", "yolo")  # kinds whose spec may name a split
# the split a command scores on when a spec names none: held-out data of each kind
HELD_OUT_SPLIT = {"shapes": "val", "voc": "test", "yolo": "val"}


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: its kind, its paths (in the order the spec gives them) and the split it names."""

    kind: str
    paths: tuple[str, ...]
    split: str | None

    def with_split(self, split: str | None) -> str:
        """The spec string naming `split` (for kinds that have splits; others come back unchanged)."""
        extra = [split] if split and self.kind in SPLIT_KINDS else []
        return ":".join([self.kind, *self.paths, *extra])


def parse_spec(spec: str) -> DataSpec:
    """Split a spec into kind, paths and split; a malformed spec is a ConfigError naming the forms."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"data spec must be a non-empty string, got {spec!r}")
    kind, _, rest = spec.partition(":")
    if kind == "shapes":
        if ":" in rest:
            raise ConfigError(f"bad data spec {spec!r}: expected shapes[:split]")
        return DataSpec("shapes", (), rest or None)
    if kind == "voc":
        if not rest:
            raise ConfigError(f"bad data spec {spec!r}: expected voc:ROOT[:split]")
        root, _, split = rest.rpartition(":") if ":" in rest else (rest, "", "")
        return DataSpec("voc", (root,), split or None)
    if kind in _FORMS:
        pattern, form = _FORMS[kind]
        match = pattern.match(spec)
        if match is None:
            raise ConfigError(f"bad data spec {spec!r}: expected {form}")
        groups = match.groupdict()
        return DataSpec(kind, tuple(groups[k] for k in ("a", "b") if groups.get(k)), groups.get("split"))
    raise ConfigError(f"unknown data spec {spec!r}: use {FORMS}")


def pick_split(spec: DataSpec, argument: str | None, text: str) -> str | None:
    """The split to open: the spec's own, else `argument`; both given and different is a ConfigError."""
    if spec.split and argument and spec.split != argument:
        raise ConfigError(f"data spec {text!r} names split {spec.split!r} but split={argument!r} was also given")
    return spec.split or argument


def held_out_spec(spec: str) -> str | None:
    """The held-out data next to a training spec (shapes -> shapes:val, voc:ROOT -> voc:ROOT:test,
    yolo:D.yaml -> yolo:D.yaml:val), or None when the kind has no conventional held-out split."""
    parsed = parse_spec(spec)
    split = HELD_OUT_SPLIT.get(parsed.kind)
    return parsed.with_split(split) if split else None


def seeded_split(n: int, fraction: float, seed: int = 0) -> dict[str, list[int]]:
    """Indices of a seeded train/val split of n images: round(n * fraction) of them (at least one while the
    train part keeps one) to `val`, the rest to `train`, each in their original order."""
    if not 0 < fraction < 1:
        raise ConfigError(f"val_split must be a fraction between 0 and 1, got {fraction!r}")
    count = min(max(1, round(n * fraction)), n - 1) if n > 1 else 0
    order = np.random.default_rng(seed).permutation(n)
    return {"train": sorted(int(i) for i in order[count:]), "val": sorted(int(i) for i in order[:count])}
