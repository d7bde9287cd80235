"""Early stopping: stops after `patience` evaluations without improvement, counted by closed form; best.pt follows
the chosen metric; the stop is printed and logged; a resumed run keeps counting."""

import json

import pytest
import torch
from engine_toys import ToyBoxes, ToyDetector

from objdet.engine import checkpoint, inference
from objdet.engine.stopping import EarlyStopping
from objdet.engine.trainer import TrainConfig, Trainer
from objdet.errors import ConfigError


def _trainer(out, val=True, hook=None, **kw):
    torch.manual_seed(0)
    settings = dict(epochs=20, batch_size=4, lr=0.0, warmup_iters=0, eval_every=1, progress=False, out=str(out),
                    report=False)
    return Trainer(ToyDetector(dropout=0.0), ToyBoxes(8), ToyBoxes(4, flip=False) if val else None,
                   TrainConfig(**{**settings, **kw}), step_hook=hook)


@pytest.mark.parametrize("metric", ["AP", "val_loss"])
@pytest.mark.parametrize("patience, eval_every", [(1, 1), (3, 1), (2, 3)])
def test_a_stalled_metric_stops_after_patience_evaluations(tmp_path, capsys, metric, patience, eval_every):
    # lr 0: the weights never move, so every evaluation equals the first. The first sets the best, the next
    # `patience` bring nothing: the run stops at evaluation patience + 1, epoch eval_every * (patience + 1).
    trainer = _trainer(tmp_path, metric=metric, patience=patience, eval_every=eval_every)
    result = trainer.fit()
    stop_epoch = eval_every * (patience + 1)
    assert result["status"] == "stopped" and result["epoch"] == stop_epoch
    assert len(trainer.history) == patience + 1
    assert f"early stop at epoch {stop_epoch}" in capsys.readouterr().out
    stop = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()
            if '"stop"' in line]
    assert len(stop) == 1 and stop[0]["epoch"] == stop_epoch and metric in stop[0]["reason"]
    assert checkpoint.load(tmp_path / "best.pt")["epoch"] == stop_epoch  # ties keep the later checkpoint
    assert checkpoint.load(tmp_path / "last.pt")["stopping"]["stale"] == patience


def test_scripted_metric_stops_where_the_count_says_and_best_follows_it(tmp_path, monkeypatch):
    aps = [0.1, 0.3, 0.3, 0.2, 0.4, 0.35, 0.39, 0.1, 0.9, 0.9]
    # patience 3: improvements at evaluations 1, 2, 5; 3 (a tie), 4 are stale, then 6, 7, 8 -> stop after the 8th
    calls = iter(aps)
    monkeypatch.setattr(inference, "score", lambda records, dataset, gt=None: {
        "bbox": {**dict.fromkeys(inference.STAT_NAMES, 0.0), "AP": next(calls)}})
    trainer = _trainer(tmp_path, patience=3, val_loss=False)
    result = trainer.fit()
    assert result["status"] == "stopped" and result["epoch"] == 8
    assert trainer.best == 0.4 and trainer.stopping.best_epoch == 5
    assert checkpoint.load(tmp_path / "best.pt")["epoch"] == 5


def test_lower_is_better_for_the_validation_loss():
    stop = EarlyStopping("val_loss", patience=2)
    assert [stop.update({"epoch": e, "loss": v}) for e, v in enumerate([3.0, 2.0, 2.5, 1.0, 1.5, 1.2], 1)] == \
        [True, True, False, True, False, False]
    assert stop.should_stop() and stop.best == 1.0 and stop.best_epoch == 4


def test_other_coco_stats_and_iou_types_are_metrics():
    stop = EarlyStopping("segm/AP50")
    assert stop.key == "segm/AP50" and EarlyStopping("APs").key == "bbox/APs"
    with pytest.raises(ConfigError, match="unknown metric"):
        TrainConfig(metric="mAP")
    with pytest.raises(ConfigError, match="is not computed"):
        stop.update({"epoch": 1, "bbox/AP50": 0.5})


def test_resume_keeps_the_patience_counter(tmp_path):
    full = _trainer(tmp_path / "full", patience=3).fit()
    assert full["epoch"] == 4  # closed form: evaluation 1 is the best, 2..4 stale

    def stop_in_epoch_3(step, values):
        if step == 5:  # two steps per epoch: the first step of epoch 3, after evaluations 1 and 2
            cut.request_stop()

    cut = _trainer(tmp_path / "cut", hook=stop_in_epoch_3, patience=3)
    assert cut.fit()["status"] == "interrupted"
    again = _trainer(tmp_path / "cut", patience=3)
    again.resume(tmp_path / "cut" / "last.pt")
    assert again.stopping.stale == 1
    result = again.fit()
    assert result["status"] == "stopped" and result["epoch"] == 4  # a lost counter would stop at epoch 6


def test_patience_without_evaluations_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs a validation set"):
        _trainer(tmp_path, val=False, patience=2)
    with pytest.raises(ConfigError, match="needs a validation set"):
        _trainer(tmp_path, patience=2, eval_every=0)
    with pytest.raises(ConfigError, match="val_loss"):
        _trainer(tmp_path, metric="val_loss", val_loss=False)
