"""Errors a user can cause: each names the file and the record so the message alone is actionable."""

from __future__ import annotations


class ObjdetError(Exception):
    """Base of every error objdet raises for bad input; catch this to handle them all."""

    def __init__(self, message: str, *, path: object | None = None, record: object | None = None):
        self.path = None if path is None else str(path)
        self.record = record
        where = []
        if self.path is not None:
            where.append(self.path)
        if record is not None:
            where.append(f"record {record}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class DataError(ObjdetError):
    """A data set file (annotations, image list, image) is missing, malformed or inconsistent."""


class ImageError(DataError):
    """An image file cannot be read, is corrupt, or is too large to decode safely."""


class AnnotationError(DataError):
    """An annotation record is invalid: bad box, unknown category, duplicated id, ..."""


class EvaluationError(ObjdetError):
    """Ground truth or detections given to an evaluator are malformed or inconsistent."""


class CheckpointError(ObjdetError):
    """A checkpoint cannot be read, is not weights-only, or does not fit the model."""


class ConfigError(ObjdetError):
    """An unknown model name, a bad data spec, or an invalid option."""


class TrainingError(ObjdetError):
    """Training cannot continue (a non-finite loss, for example); the last good checkpoint is kept."""
