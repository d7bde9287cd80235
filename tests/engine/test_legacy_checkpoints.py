"""Checkpoints written by objdet before format 2 (train: config overrides only; convert: the whole config;
conv heads numbered flat) load with today's code: every saved tensor lands in the rebuilt model."""

from pathlib import Path

import pytest
import torch

import objdet
from objdet.engine import checkpoint

FIXTURES = Path(__file__).parents[1] / "fixtures" / "legacy_checkpoints"
FILES = sorted(FIXTURES.glob("*.pt"))


def test_fixtures_are_present():
    assert len(FILES) == 14


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_legacy_checkpoint_rebuilds_and_loads_every_weight(path):
    raw = torch.load(path, weights_only=True)
    assert "format" not in raw  # written before format 2
    model = objdet.load(path)
    saved = raw["ema"]["model"] if raw.get("ema") else raw["model"]
    own = model.state_dict()
    assert len(own) == len(saved)
    # tensors of more than 16 elements were stored as one value repeated: match each by (shape, value)
    renamed = checkpoint.upgrade(raw)
    upgraded = renamed["ema"]["model"] if raw.get("ema") else renamed["model"]
    assert set(upgraded) == set(own)
    for name, value in upgraded.items():
        assert torch.equal(own[name], value), name
    flat = [k for k in saved if ".head.convs." in k]
    assert all(k in own for k in saved if k not in flat)  # only the conv towers were renamed
    if raw.get("categories"):
        assert model.class_names == [c["name"] for c in raw["categories"]]
    assert model.config.num_classes == model.num_classes
    assert not model.training
