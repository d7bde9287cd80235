"""What a prediction run reads: the files, folders and glob patterns a user names, sorted into images and videos.

A folder contributes the files with an image or video extension (the others are listed as ignored, not
read); a named file is always attempted, whatever its extension, so a bad one is reported, not dropped.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from objdet.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass
class Sources:
    """Images and videos to predict, in the order given (folders and globs sorted), each once."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # folder entries without an image or video extension

    def add(self, path: Path) -> None:
        if path in self.images or path in self.videos:
            return
        (self.videos if path.suffix.lower() in VIDEO_SUFFIXES else self.images).append(path)


def _has_magic(name: str) -> bool:
    return any(c in name for c in "*?[")


def find_sources(names: Sequence[str]) -> Sources:
    """Files, the images and videos inside folders (not recursive), and glob patterns (`**` recurses).

    A name that is neither an existing path nor a pattern matching something is a DataError naming it."""
    found = Sources()
    for name in names:
        path = Path(name)
        if path.is_dir():
            for entry in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
                if entry.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    found.add(entry)
                else:
                    found.ignored.append(entry)
        elif path.is_file():
            found.add(path)
        elif _has_magic(name):
            matches = sorted(Path(m) for m in glob.glob(name, recursive=True) if Path(m).is_file())
            if not matches:
                raise DataError("the pattern matches no file", path=name)
            for match in matches:
                found.add(match)
        else:
            raise DataError("no such image, video or folder", path=path)
    if not found.images and not found.videos:
        raise DataError("no images or videos found", path=", ".join(names))
    return found
