"""A stand-in torch.hub cache for the weights tests: no network, files under the published names."""

import urllib.error

import pytest
import torch


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch.hub cache; downloads fail as they do offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder
