"""Real-world warts of users' annotations, repaired the way a user expects and counted in one warning.

A reader hands every record it fixes to a `Repairs` collector: a zero or missing image size read from
the image header, an image found under another extension or letter case, a box clipped to its image, an
empty box dropped, class names merged that differ only in case or surrounding spaces, a shape kind the
format allows but objdet cannot use. At the end of loading, `report()` issues one `DataWarning` line with
a count per kind and the first records of each. With `strict=True` the first repair raises an
AnnotationError naming the file and the record instead. With `on_error="skip"` (what `objdet data
check` uses) a refused record is listed in `refused` and skipped rather than raised.

Boxes follow `objdet.data.validate.check_box`'s policy; this module only counts what it did.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from objdet.data.validate import CLIP_TOLERANCE, DataWarning, check_box
from objdet.errors import AnnotationError, ObjdetError

# kind -> how one warning line says it: (one, several)
KINDS = {
    "size": ("image size was zero or missing and is read from the image header",
             "image sizes were zero or missing and are read from the image headers"),
    "file": ("image file found under another extension or letter case",
             "image files found under another extension or letter case"),
    "clipped": ("box clipped to the image", "boxes clipped to the image"),
    "empty": ("box with zero width or height dropped", "boxes with zero width or height dropped"),
    "class": ("class name merged with one differing only in case or spaces",
              "class names merged with ones differing only in case or spaces"),
    "shape": ("shape of a kind objdet does not read skipped", "shapes of a kind objdet does not read skipped"),
}
EXAMPLES = 3  # records named per kind in the warning line
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif", ".jpe", ".ppm",
                    ".pgm", ".pbm", ".mpo", ".dng")


@dataclass(frozen=True)
class Note:
    """One repaired or refused record: its kind, the file, the record and what was done."""

    kind: str
    path: str
    record: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: record {self.record}: {self.detail}"


class Repairs:
    """Collects the repairs (and, with `on_error="skip"`, the refusals) of one data set's loading."""

    def __init__(self, source: object, strict: bool = False, on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.source, self.strict, self.on_error = str(source), strict, on_error
        self.notes: list[Note] = []
        self.refused: list[ObjdetError] = []

    def note(self, kind: str, detail: str, *, path: object, record: object) -> None:
        """Record a repair of `kind`; under `strict` it is an AnnotationError instead."""
        if self.strict:
            raise AnnotationError(f"{detail} (refused under --strict)", path=path, record=record)
        self.notes.append(Note(kind, str(path), str(record), detail))

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the reading of one record: with on_error="skip" an objdet error is listed and swallowed."""
        try:
            yield
        except ObjdetError as err:
            if self.on_error == "raise":
                raise
            self.refused.append(err)

    def box(self, box: Sequence[float], width: int, height: int, *, path: object,
            record: object) -> tuple[float, float, float, float] | None:
        """`check_box`, with its clip and skip counted here rather than warned one by one."""
        x1, y1, x2, y2 = box
        inside = isinstance(x1, (int, float)) and 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        if inside:  # the common case, where check_box has nothing to warn about: no warning filters to set up
            return check_box(box, width, height, path=path, record=record)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            clean = check_box(box, width, height, path=path, record=record)
        if clean is None:
            self.note("empty", f"box {list(box)!r} has zero width or height; dropped", path=path, record=record)
        elif max(abs(float(a) - b) for a, b in zip(box, clean)) > CLIP_TOLERANCE:
            self.note("clipped", f"box {list(box)!r} clipped to the {width}x{height} image", path=path,
                      record=record)
        return clean

    def counts(self) -> Counter:
        """Number of repairs of each kind."""
        return Counter(n.kind for n in self.notes)

    def report(self) -> None:
        """One DataWarning line naming the data set, each kind's count and its first records."""
        if not self.notes:
            return
        by_kind: dict[str, list[Note]] = defaultdict(list)
        for n in self.notes:
            by_kind[n.kind].append(n)
        parts = []
        for kind, notes in by_kind.items():
            said = KINDS[kind][len(notes) > 1]
            if kind == "class":
                parts.append(f"{len(notes)} {said}: " + ", ".join(n.detail for n in notes))
                continue
            where = ", ".join(("" if n.path == self.source else f"{Path(n.path).name} ") + f"record {n.record}"
                              for n in notes[:EXAMPLES])
            parts.append(f"{len(notes)} {said} ({where}{', ...' if len(notes) > EXAMPLES else ''})")
        warnings.warn(f"{self.source}: {'; '.join(parts)}", DataWarning, stacklevel=3)


def class_key(name: str) -> str:
    """The spelling-blind form of a class name: case folded, surrounding spaces removed."""
    return name.strip().casefold()


def merge_class_names(found: Iterable[str], given: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The class list and a map from each spelling found to its class.

    Without `given`, spellings equal up to case and surrounding spaces are one class, named by the most
    frequent spelling (ties: the first in sorted order, stripped); classes come out sorted. With `given`,
    each spelling maps to the given name it matches the same way; an unmatched one maps to itself (the
    caller refuses it).
    """
    counts = Counter(found)
    if given is not None:
        index = {class_key(n): n for n in given}
        return list(given), {s: index.get(class_key(s), s) for s in counts}
    groups: dict[str, list[str]] = defaultdict(list)
    for spelling in sorted(counts):
        groups[class_key(spelling)].append(spelling)
    mapping = {}
    for spellings in groups.values():
        name = max(spellings, key=lambda s: (counts[s], -spellings.index(s))).strip()
        mapping.update({s: name for s in spellings})
    return sorted(set(mapping.values())), mapping


def note_merges(repairs: Repairs, mapping: dict[str, str], first_seen: dict[str, tuple[object, object]]) -> None:
    """One 'class' repair per spelling that was changed, at the record where it first appears."""
    for spelling, name in sorted(mapping.items()):
        if spelling != name:
            path, record = first_seen[spelling]
            repairs.note("class", f"{spelling!r} -> {name!r}", path=path, record=record)


class FileFinder:
    """Finds an image a record names when the name on disk differs in extension or letter case.

    Folder listings are read once and cached, so a data set of many images costs one listing per folder.
    """

    def __init__(self) -> None:
        self._listings: dict[Path, tuple[set[str], dict[str, list[str]]]] = {}

    def _listing(self, folder: Path) -> tuple[set[str], dict[str, list[str]]]:
        """The names in `folder`, and its image files by case-folded stem."""
        if folder not in self._listings:
            try:
                entries = sorted(os.listdir(folder))
            except OSError:
                entries = []
            images: dict[str, list[str]] = defaultdict(list)
            for name in entries:
                stem, ext = os.path.splitext(name)
                if ext.lower() in IMAGE_EXTENSIONS:
                    images[stem.casefold()].append(name)
            self._listings[folder] = (set(entries), images)
        return self._listings[folder]

    def find(self, file: Path, repairs: Repairs, *, path: object, record: object) -> Path:
        """`file` if it exists, else the one image in its folder with the same name up to case and
        extension (a counted repair); else `file` unchanged (reading it then fails naming it)."""
        names, images = self._listing(file.parent)
        if file.name in names:
            return file
        stem = os.path.splitext(file.name)[0] if file.suffix.lower() in IMAGE_EXTENSIONS else file.name
        candidates = images.get(stem.casefold(), [])
        if len(candidates) != 1:
            return file
        repairs.note("file", f"image {file.name!r} not found; read {candidates[0]!r}", path=path, record=record)
        return file.parent / candidates[0]
