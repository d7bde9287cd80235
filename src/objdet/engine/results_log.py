"""The JSON-lines stream of a prediction run: one line per image, written and flushed as it comes, so a killed run
keeps every finished image and `--resume` skips them.

Line: {"image_id", "file", "width", "height", "detections": [COCO result records + "name"]}. Under torchrun each
process writes its own part (`predictions.rank{R}.jsonl`); `finish` merges them and the earlier lines into one
file sorted by image id and derives the COCO results file from it, so a resumed or sharded run ends with the
same bytes as one uninterrupted process.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from objdet.io import save_json

LINES = "predictions.jsonl"


def part_name(rank: int, world: int) -> str:
    """This process's lines file: the merged name in a single process, a part under torchrun."""
    return LINES if world == 1 else f"predictions.rank{rank}.jsonl"


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete records of a lines file; a line cut short by a kill (the last one) is left out."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "image_id" in record and "file" in record:
            records.append(record)
    return records


def _write_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace `path` atomically with one json line per record."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _all_records(out: Path) -> list[dict[str, Any]]:
    return [r for p in [out / LINES, *sorted(out.glob("predictions.rank*.jsonl"))] for r in read_lines(p)]


class ResultsLog:
    """Appends one line per predicted image to this process's lines file, flushed at once."""

    def __init__(self, out: Path, files: list[str], rank: int = 0, world: int = 1, resume: bool = False) -> None:
        self.out, self.files = out, files
        self.path = out / part_name(rank, world)
        out.mkdir(parents=True, exist_ok=True)
        self.done: set[int] = set()
        if resume:
            valid = [r for r in read_lines(self.path) if self._current(r)]
            self.done = {r["image_id"] for r in _all_records(out) if self._current(r)}
            _write_lines(self.path, valid)  # drops a line cut short by the kill before appending
        self._file = open(self.path, "a", encoding="utf-8")

    @staticmethod
    def clear(out: Path) -> None:
        """Remove the lines of an earlier run (a run without --resume starts afresh); rank 0, before the others
        open their parts."""
        for stale in [out / LINES, *out.glob("predictions.rank*.jsonl")]:
            stale.unlink(missing_ok=True)

    def _current(self, record: dict[str, Any]) -> bool:
        """A line of this input list (same id, same file): lines of another list are not reused."""
        index = record["image_id"] - 1
        return 0 <= index < len(self.files) and self.files[index] == record["file"]

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.done.add(record["image_id"])

    def close(self) -> None:
        self._file.close()

    def finish(self, results_path: Path) -> tuple[int, int]:
        """(Rank 0, after every process closed its part.) Merge all lines into `predictions.jsonl` sorted by image
        id, write the COCO results file and `images.json`; returns (images, detections)."""
        by_id = {r["image_id"]: r for r in _all_records(self.out) if self._current(r)}
        records = [by_id[i] for i in sorted(by_id)]
        _write_lines(self.out / LINES, records)
        for part in self.out.glob("predictions.rank*.jsonl"):
            part.unlink()
        results = [{k: v for k, v in d.items() if k != "name"} for r in records for d in r["detections"]]
        save_json(results, results_path)
        save_json([{"id": r["image_id"], "file_name": r["file"], "height": r["height"], "width": r["width"]}
                   for r in records], self.out / "images.json")
        return len(records), len(results)
