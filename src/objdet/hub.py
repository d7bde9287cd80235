"""Published weights through torch.hub's cache: a file already in the cache is used as it is (a machine
without network can be given the file there); otherwise it is downloaded with torchvision's hash check (the
hex digits after the last '-' of the published file name start the file's SHA-256), into a temporary file
that is renamed only when complete."""

from __future__ import annotations

import os
import re
import socket
import urllib.error
from pathlib import Path

import torch

from objdet.errors import CheckpointError

HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
TIMEOUT = 30.0  # seconds without an answer before a download counts as offline


def cached_path(url: str) -> Path:
    """Where torch.hub keeps the file of `url`: <TORCH_HOME>/hub/checkpoints/<published file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fetch(url: str, what: str) -> Path:
    """The local file of the published weights at `url` (`what` names them in messages)."""
    path = cached_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    match = HASH_IN_NAME.search(path.name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)
    try:
        torch.hub.download_url_to_file(url, str(path), match.group(1) if match else None, progress=True)
    except (urllib.error.URLError, OSError, socket.timeout) as err:
        raise CheckpointError(f"cannot download {what} from {url} ({err}); on a machine without network, "
                              f"place that file at {path}", path=path) from None
    except RuntimeError as err:  # torch.hub's "invalid hash value"
        raise CheckpointError(f"the download of {what} from {url} is corrupt ({err}); nothing was kept",
                              path=path) from None
    finally:
        socket.setdefaulttimeout(previous)
    return path
