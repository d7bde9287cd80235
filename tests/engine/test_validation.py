"""The validation loss: the loss path with frozen batch-norm statistics, leaving model, buffers and RNG untouched."""

import json

import torch
from engine_toys import ToyBoxes, ToyDetector
from torch import nn

from objdet.data.loader import collate
from objdet.engine.trainer import TrainConfig, Trainer
from objdet.engine.validation import validation_loss


class NormedToy(ToyDetector):
    """The toy detector with a batch norm in its features (statistics that train mode would update)."""

    def __init__(self):
        super().__init__(dropout=0.0)
        self.features.insert(1, nn.BatchNorm2d(8))


def _per_image_oracle(model, data):
    """Mean over images of each loss, one image at a time (the toy's losses are per-image means)."""
    rows = []
    with torch.no_grad():
        for i in range(len(data)):
            images, targets = collate([data[i]])
            losses = model(images, targets)
            rows.append({**{k: float(v) for k, v in losses.items()}, "loss": float(sum(losses.values()))})
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def test_validation_loss_is_the_mean_over_images_with_running_statistics():
    torch.manual_seed(0)
    model = NormedToy()
    data = ToyBoxes(7, flip=False)
    model.train()
    for i in range(3):  # give the batch norm running statistics that differ from any batch's own
        model(*collate([data[i], data[i + 1]]))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    got = validation_loss(model, data, batch_size=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the training stream is not consumed

    reference = NormedToy()
    reference.load_state_dict(before)
    reference.train()
    reference.features[1].eval()  # the definition: loss path, batch norm on its running statistics
    expected = _per_image_oracle(reference, data)
    assert got.keys() == expected.keys() == {"loss", "loss_box", "loss_cls"}
    for k in expected:
        assert abs(got[k] - expected[k]) < 1e-5, k
    reference.features[1].train()  # with batch statistics the number differs: the test can tell them apart
    assert abs(_per_image_oracle(reference, data)["loss"] - got["loss"]) > 1e-3

    for k, v in model.state_dict().items():  # weights and BN statistics (and their counter) untouched
        assert torch.equal(v, before[k]), k
    assert not any(m.training for m in model.modules())  # every module back in the mode it was in


def test_each_evaluation_logs_the_validation_loss_beside_ap(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    val = ToyBoxes(6, flip=False)
    cfg = TrainConfig(epochs=2, batch_size=2, lr=0.01, optimizer="adamw", warmup_iters=1, eval_every=1,
                      progress=False, out=str(tmp_path), report=False)
    trainer = Trainer(ToyDetector(dropout=0.0), ToyBoxes(8), val, cfg)
    trainer.fit()
    expected = validation_loss(trainer.model, val, batch_size=2)
    assert trainer.history[-1]["loss"] == expected["loss"]
    assert trainer.history[0]["loss"] != trainer.history[1]["loss"]  # the weights moved between evaluations
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    val_lines = [line for line in lines if line["kind"] == "val"]
    assert [line["loss"] for line in val_lines] == [h["loss"] for h in trainer.history]
    assert {"bbox/AP", "loss_box", "loss_cls"} <= set(val_lines[0])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/loss", "val/loss_box", "val/loss_cls", "val/bbox/AP"} <= tags
    assert [e.value for e in events.Scalars("val/loss")] == [
        torch.tensor(h["loss"], dtype=torch.float32).item() for h in trainer.history]
