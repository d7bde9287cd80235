"""Checkpoints written by earlier objdet (train: overrides only; convert: the whole config) still load."""

from pathlib import Path

import pytest
import torch

from objdet.engine import checkpoint

FIXTURES = Path(__file__).parents[1] / "fixtures" / "legacy_checkpoints"
FILES = sorted(FIXTURES.glob("*.pt"))


def test_fixtures_are_present():
    assert len(FILES) == 14


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_legacy_checkpoint_rebuilds_and_loads_every_weight(path):
    payload = checkpoint.load(path)
    model, _ = checkpoint.load_model(path)
    own = model.state_dict()
    weights = payload["ema"]["model"] if payload.get("ema") else payload["model"]
    # every saved tensor landed in the rebuilt model (under its name, or folded into a renamed one)
    assert sum(t.numel() for t in own.values()) == sum(t.numel() for t in weights.values())
    for name, value in weights.items():
        if name in own:
            assert torch.equal(own[name], value), name
    assert model.num_classes == (payload["config"].get("num_classes") or model.num_classes)
