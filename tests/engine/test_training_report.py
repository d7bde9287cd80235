"""At the end of `fit` the trainer writes report.html on its validation set: class names, pictures, the final AP."""

import re

import torch
from engine_toys import ToyBoxes, ToyDetector

from objdet.data.coco import dataset_to_coco
from objdet.engine import inference
from objdet.engine.trainer import TrainConfig, Trainer
from objdet.evaluation.coco import evaluate_coco


def _fit(out, **kw):
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=2, lr=0.01, optimizer="adamw", warmup_iters=1, progress=False,
                      out=str(out), **kw)
    trainer = Trainer(ToyDetector(dropout=0.0), ToyBoxes(8), ToyBoxes(6, flip=False), cfg)
    trainer.fit()
    return trainer


def test_fit_writes_the_report_of_the_final_weights(tmp_path):
    trainer = _fit(tmp_path, eval_every=0)  # no evaluation during training: the report predicts itself
    page = (tmp_path / "report.html").read_text()
    for name in ("red", "green", "blue"):
        assert f"<td>{name}</td>" in page  # the per-class table names the data set's classes
    assert "data:image/png;base64," in page  # PR curves and the like, embedded
    assert "data:image/jpeg;base64," in page  # galleries drawn on the validation images
    val = ToyBoxes(6, flip=False)
    ap = evaluate_coco(dataset_to_coco(val), inference.predict(trainer.model, val), iou_type="bbox")["AP"]
    shown = re.search(r"<td>AP</td><td data-value=\"[^\"]*\">([0-9.]+)</td>", page).group(1)
    assert shown == f"{ap:.3f}"


def test_no_report_when_turned_off(tmp_path):
    _fit(tmp_path, report=False)
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "last.pt").exists()
