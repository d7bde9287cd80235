"""Data specs: the one string that names a data set on the command line and in the API.

`coco:ANNOTATIONS.json:IMAGE_DIR`, `voc:ROOT[:split]` and `shapes[:split]`. A split written in the
spec wins over the `split` argument of `open_dataset`, which is the default when the spec has none;
two different splits are a ConfigError. A COCO file is one split, so the argument does not apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from objdet.errors import ConfigError

_COCO = re.compile(r"^coco:(?P<ann>.+?\.json):(?P<images>.+)$")
FORMS = "coco:ANN.json:IMG_DIR, voc:ROOT[:split] or shapes[:split]"
# the split a command scores on when a spec names none: held-out data of each kind
HELD_OUT_SPLIT = {"shapes": "val", "voc": "test"}


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: its kind, its paths (in the order the spec gives them) and the split it names."""

    kind: str
    paths: tuple[str, ...]
    split: str | None

    def with_split(self, split: str | None) -> str:
        """The spec string naming `split` (for kinds that have splits; COCO specs come back unchanged)."""
        if self.kind == "coco":
            return f"coco:{self.paths[0]}:{self.paths[1]}"
        parts = [self.kind, *self.paths, *([split] if split else [])]
        return ":".join(parts)


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
    if kind == "coco":
        match = _COCO.match(spec)
        if match is None:
            raise ConfigError(f"bad data spec {spec!r}: expected coco:ANNOTATIONS.json:IMAGE_DIR")
        return DataSpec("coco", (match["ann"], match["images"]), None)
    raise ConfigError(f"unknown data spec {spec!r}: use {FORMS}")


def pick_split(spec: DataSpec, argument: str | None, text: str) -> str | None:
    """The split to open: the spec's own, else `argument`; both given and different is a ConfigError."""
    if spec.split and argument and spec.split != argument:
        raise ConfigError(f"data spec {text!r} names split {spec.split!r} but split={argument!r} was also given")
    return spec.split or argument


def held_out_spec(spec: str) -> str | None:
    """The held-out data next to a training spec (shapes -> shapes:val, voc:ROOT -> voc:ROOT:test), or None
    when the kind has no conventional held-out split (a COCO file is one split)."""
    parsed = parse_spec(spec)
    split = HELD_OUT_SPLIT.get(parsed.kind)
    return parsed.with_split(split) if split else None
