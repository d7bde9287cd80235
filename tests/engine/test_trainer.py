"""The training loop on a toy detector: schedule, EMA, clipping, AMP, logs, NaN stop, resume == uninterrupted."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine_toys import ToyBoxes, ToyDetector
from objdet.engine import checkpoint
from objdet.engine.trainer import ModelEMA, TrainConfig, Trainer, WarmupSchedule
from objdet.errors import ConfigError, TrainingError

HERE = Path(__file__).parent


def _config(tmp_path, **kw):
    base = dict(epochs=2, batch_size=4, lr=0.05, warmup_iters=2, eval_every=0, progress=False, out=str(tmp_path))
    return TrainConfig(**{**base, **kw})


def _trainer(tmp_path, hook=None, model=None, **kw):
    torch.manual_seed(0)
    model = model or ToyDetector()
    return Trainer(model, ToyBoxes(10), None, _config(tmp_path, **kw), step_hook=hook)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_schedule_matches_closed_form(schedule):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    cfg = TrainConfig(schedule=schedule, warmup_iters=5, warmup_factor=0.01, milestones=(0.5, 0.75), gamma=0.1)
    sched = WarmupSchedule(opt, cfg, total_steps=20)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    for s, lr in enumerate(seen):
        warm = 0.01 + (1 - 0.01) * s / 5 if s < 5 else 1.0
        decay = 0.1 ** ((s >= 10) + (s >= 15)) if schedule == "step" else 0.5 * (1 + math.cos(math.pi * s / 20))
        assert lr == pytest.approx(0.1 * warm * decay)


def test_ema_is_the_decayed_average():
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9)
    expected = model.weight.detach().clone()
    for n in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach()
    assert torch.allclose(ema.module.weight, expected)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")


def test_fit_writes_checkpoints_and_logs_and_lowers_the_loss(tmp_path):
    losses = []
    trainer = _trainer(tmp_path, hook=lambda step, v: losses.append(v["loss"]), epochs=6, ema=True, ema_decay=0.9)
    result = trainer.fit()
    assert result["status"] == "finished" and result["step"] == 6 * 3  # ceil(10 / 4) steps per epoch
    assert sum(losses[-3:]) < sum(losses[:3])
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["arch"] == "toy" and state["epoch"] == 6 and state["step"] == 18
    assert state["ema"]["updates"] == 18
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(state["model"][k], v)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 19))
    assert {"loss", "loss_box", "loss_cls", "lr"} <= set(lines[0])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_progress_bar_shows_loss_and_learning_rate(tmp_path, capsys):
    _trainer(tmp_path, epochs=1, progress=True).fit()
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "lr=" in err


def test_sgd_with_clipping_bounds_the_first_update(tmp_path):
    trainer = _trainer(tmp_path, epochs=1, momentum=0.0, weight_decay=0.0, warmup_iters=0, lr=0.5, clip_grad_norm=1e-3)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.step_hook = lambda step, v: trainer.request_stop()
    trainer.fit()
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)])
    assert 0 < moved.norm() <= 0.5 * 1e-3 * (1 + 1e-4)


def test_adamw_and_bfloat16_autocast_on_cpu(tmp_path):
    trainer = _trainer(tmp_path, epochs=1, optimizer="adamw", lr=1e-3, amp=True)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    result = trainer.fit()
    assert result["status"] == "finished"
    assert trainer.model.last_dtype == torch.bfloat16  # the convolutions ran under autocast


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, model=ToyDetector(nan_at_call=5), epochs=3, checkpoint_every=2)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 5 .*last good checkpoint"):
        trainer.fit()
    assert checkpoint.load(tmp_path / "last.pt")["step"] == 4


def _final_weights(path):
    return checkpoint.load(path)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigint_saves_and_resume_matches_an_uninterrupted_run(tmp_path):
    _trainer(tmp_path / "full", epochs=3).fit()

    def interrupt(step, values):
        if step == 4:  # mid-epoch 2; a real Ctrl-C, delivered to this process
            os.kill(os.getpid(), signal.SIGINT)

    first = _trainer(tmp_path / "cut", hook=interrupt, epochs=3)
    assert first.fit()["status"] == "interrupted"
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 4
    again = _trainer(tmp_path / "cut", epochs=3)
    again.resume(tmp_path / "cut" / "last.pt")
    assert again.fit()["status"] == "finished"
    _assert_same_weights(_final_weights(tmp_path / "full" / "last.pt"), _final_weights(tmp_path / "cut" / "last.pt"))


KILLED_RUN = """
import os, signal, sys, torch
sys.path.insert(0, {here!r})
from engine_toys import ToyBoxes, ToyDetector
from objdet.engine.trainer import TrainConfig, Trainer

def hook(step, values):
    if step == 5:
        os.kill(os.getpid(), signal.SIGKILL)

torch.manual_seed(0)
cfg = TrainConfig(epochs=3, batch_size=4, lr=0.05, warmup_iters=2, eval_every=0, progress=False,
                  out={out!r}, checkpoint_every=2, ema=True)
Trainer(ToyDetector(), ToyBoxes(10), None, cfg, step_hook=hook).fit()
"""


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    _trainer(tmp_path / "full", epochs=3, checkpoint_every=2, ema=True).fit()
    script = KILLED_RUN.format(here=str(HERE), out=str(tmp_path / "cut"))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 4
    again = _trainer(tmp_path / "cut", epochs=3, checkpoint_every=2, ema=True)
    again.resume(tmp_path / "cut" / "last.pt")
    again.fit()
    full, cut = checkpoint.load(tmp_path / "full" / "last.pt"), checkpoint.load(tmp_path / "cut" / "last.pt")
    _assert_same_weights(full["model"], cut["model"])
    _assert_same_weights(full["ema"]["model"], cut["ema"]["model"])


def test_evaluation_every_epoch_matches_pycocotools_and_keeps_the_best(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from objdet.data.coco import dataset_to_coco
    from objdet.engine import inference

    val = ToyBoxes(8, flip=False)  # the first training images: enough to see AP move in a few epochs
    torch.manual_seed(0)
    cfg = _config(tmp_path, epochs=5, eval_every=2, optimizer="adamw", lr=0.01, weight_decay=0.0, batch_size=2)
    trainer = Trainer(ToyDetector(dropout=0.0), ToyBoxes(8, flip=False), val, cfg)
    trainer.fit()
    assert [h["epoch"] for h in trainer.history] == [2, 4, 5]  # every 2nd epoch and the last
    assert max(h["bbox/AP"] for h in trainer.history) > 0
    gt = COCO()
    gt.dataset = dataset_to_coco(val)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(inference.predict(trainer.model, val)), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert trainer.history[-1]["bbox/AP"] == pytest.approx(ev.stats[0], abs=1e-9)
    best = checkpoint.load(tmp_path / "best.pt")
    assert best["best"] == max(h["bbox/AP"] for h in trainer.history)
    assert best["epoch"] == max(reversed(trainer.history), key=lambda h: h["bbox/AP"])["epoch"]  # ties: the later
    val_lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert [line["bbox/AP"] for line in val_lines] == [h["bbox/AP"] for h in trainer.history]
