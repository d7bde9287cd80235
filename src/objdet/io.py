"""JSON files for data sets, results and evaluation: one reader and atomic writers (json, text).

Reading uses orjson when it is installed (3-5x faster on large COCO files) and the standard library
otherwise; both give the same Python objects. A missing or malformed file raises the caller's error
class (DataError for data sets, EvaluationError for evaluation) naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from objdet.errors import DataError, ObjdetError

_orjson: ModuleType | None
try:  # optional accelerator: the same objects as the standard library's json
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _orjson = None


def _parse(raw: bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            pass  # the standard library's message names the line and column
    return json.loads(raw)


def load_json(path: str | os.PathLike, what: str = "json", error: type[ObjdetError] = DataError) -> Any:
    """Parse the json file `path`; failures raise `error` naming the file (and, if malformed, the line)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise error(f"cannot read the {what} file: {err.strerror or err}", path=path) from None
    except ValueError as err:  # a NUL or a lone surrogate in the path: quote it so the message prints
        raise error(f"cannot read the {what} file: {err}", path=repr(str(path))) from None
    try:
        return _parse(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f"line {err.lineno} column {err.colno}: " if isinstance(err, json.JSONDecodeError) else ""
        raise error(f"cannot read the {what} file: malformed json, {where}{err}", path=path) from None
    except RecursionError:
        raise error(f"cannot read the {what} file: malformed json, nested too deeply", path=path) from None


def save_text(text: str, path: str | os.PathLike) -> Path:
    """Write `text` (utf-8) atomically: a temp file in the same folder, then a rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` as json atomically (temp file in the same folder, then rename); returns the path."""
    return save_text(json.dumps(obj), path)
