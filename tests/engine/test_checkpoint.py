"""Checkpoints: atomic writes, weights-only loading, RNG round trips."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from objdet.engine import checkpoint
from objdet.errors import CheckpointError


class _Pickled:
    """Any class instance: torch.save pickles it, weights-only loading must refuse it."""

    def __init__(self):
        self.value = 3


def test_round_trip_keeps_tensors_and_containers(tmp_path):
    payload = {"format": checkpoint.FORMAT, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "arch": "x",
               "config": {"num_classes": 3},
               "epoch": 2, "step": 17, "history": [{"bbox/AP": 0.5}], "ema": None}
    path = checkpoint.save(tmp_path / "sub" / "ck.pt", payload)
    back = checkpoint.load(path)
    assert torch.equal(back["model"]["w"], payload["model"]["w"])
    assert {k: v for k, v in back.items() if k != "model"} == {k: v for k, v in payload.items() if k != "model"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]  # no temp file left behind


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(2)}})
    with pytest.raises(Exception):
        checkpoint.save(path, {"model": {"w": torch.zeros(2)}, "bad": lambda: None})  # unpicklable
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "obj": _Pickled()}, path)
    with pytest.raises(CheckpointError, match="evil.pt.*weights-only"):
        checkpoint.load(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_and_missing_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.pt"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="missing.pt"):
        checkpoint.load(tmp_path / "missing.pt")


def test_non_checkpoint_payload_is_refused(tmp_path):
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        checkpoint.load(tmp_path / "list.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        checkpoint.load(tmp_path / "nomodel.pt")


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    checkpoint.save(tmp_path / "rng.pt", {"model": {}, "rng": checkpoint.rng_state()})
    first = (torch.rand(4), random.random(), np.random.randn(3))
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "rng.pt")["rng"])
    second = (torch.rand(4), random.random(), np.random.randn(3))
    assert torch.equal(first[0], second[0]) and first[1] == second[1]
    np.testing.assert_array_equal(first[2], second[2])


def test_load_model_rebuilds_the_named_zoo_model(tmp_path, monkeypatch):
    from dataclasses import dataclass

    from objdet import zoo
    from objdet.detectors.base import DetectorConfig

    @dataclass
    class LinConfig(DetectorConfig):
        num_classes: int = 2

    zoo.list_models()
    monkeypatch.setitem(zoo._ENTRIES, "lin", zoo.Entry("lin", LinConfig, lambda cfg: torch.nn.Linear(3, cfg.num_classes), {}))
    model = torch.nn.Linear(3, 4)
    ema = {"model": {k: v + 1 for k, v in model.state_dict().items()}, "updates": 3}
    checkpoint.save(tmp_path / "m.pt", {"model": model.state_dict(), "arch": "lin", "config": {"num_classes": 4}, "ema": ema})
    plain, _ = checkpoint.load_model(tmp_path / "m.pt", prefer_ema=False)
    averaged, payload = checkpoint.load_model(tmp_path / "m.pt")
    assert payload["arch"] == "lin" and not plain.training
    assert torch.equal(plain.weight, model.weight) and torch.equal(averaged.weight, model.weight + 1)
    checkpoint.save(tmp_path / "wrong.pt", {"model": model.state_dict(), "arch": "lin", "config": {"num_classes": 5}})
    with pytest.raises(CheckpointError, match="wrong.pt.*do not fit"):
        checkpoint.load_model(tmp_path / "wrong.pt")
    checkpoint.save(tmp_path / "noarch.pt", {"model": model.state_dict()})
    with pytest.raises(CheckpointError, match="no 'arch'"):
        checkpoint.load_model(tmp_path / "noarch.pt")
