"""DDP on two CPU processes (gloo, started by torchrun) sees the same losses as one process.

The model is the toy detector: its losses are per-image means, so the mean over two processes of
half a batch equals the loss of the whole batch exactly (a real detector normalises by the number
of sampled anchors or RoIs in its batch, which differs between the two set-ups by design).
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from engine_toys import ToyDetector
from objdet.data.shapes import ShapesDataset
from objdet.engine import distributed, inference
from objdet.engine.trainer import TrainConfig, Trainer
from objdet.engine.validation import validation_loss

HERE = Path(__file__).parent

WORKER = """
import atexit, json, os, sys, torch

def gloo_threads_left():  # registered first, so it runs after objdet's own exit hook
    tasks = "/proc/self/task"
    names = [open(f"{{tasks}}/{{t}}/comm").read().strip() for t in os.listdir(tasks)] if os.path.isdir(tasks) else None
    with open({threads!r}.format(os.environ["RANK"]), "w") as f:
        json.dump(names, f)

atexit.register(gloo_threads_left)
sys.path.insert(0, {here!r})
from engine_toys import ToyDetector
from objdet.data.shapes import ShapesDataset
from objdet.engine import distributed, inference
from objdet.engine.trainer import TrainConfig, Trainer

losses = []
distributed.init_from_env()  # the launcher's step: the Trainer starts no process group itself
torch.manual_seed(0)
cfg = TrainConfig(epochs=2, batch_size=2, lr=0.05, warmup_iters=2, eval_every=2, progress=False, out={out!r})
trainer = Trainer(ToyDetector(5, dropout=0.0), ShapesDataset("train", 10, 64), ShapesDataset("val", 7, 64), cfg,
                  step_hook=lambda s, v: losses.append(v["loss"]))
trainer.fit()
records = inference.predict(trainer.model, ShapesDataset("val", 7, 64), batch_size=2)
if distributed.is_main():
    with open({result!r}, "w") as f:
        json.dump({{"world": distributed.world_size(), "losses": losses, "records": records,
                    "history": trainer.history}}, f)
"""


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(here=str(HERE), out=str(tmp_path / "ddp"), result=str(tmp_path / "ddp.json"),
                                    threads=str(tmp_path / "threads-{}.json")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in range(2):  # the process group was destroyed at exit, joining gloo's threads (issue #6)
        names = json.loads((tmp_path / f"threads-{r}.json").read_text())
        assert names is None or not [n for n in names if "gloo" in n], names
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert ddp["world"] == 2
    logged = [(line["kind"], line["step"]) for line in map(json.loads, (tmp_path / "ddp" / "log.jsonl").open())]
    assert logged == [("train", s) for s in range(1, 7)] + [("val", 6)]  # rank 0 alone writes the log
    assert proc.stdout.count("wrote the report") == 1 and (tmp_path / "ddp" / "report.html").exists()

    losses = []
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.05, warmup_iters=2, eval_every=2, progress=False,
                      out=str(tmp_path / "one"), report=False)
    trainer = Trainer(ToyDetector(5, dropout=0.0), ShapesDataset("train", 10, 64), ShapesDataset("val", 7, 64), cfg,
                      step_hook=lambda s, v: losses.append(v["loss"]))
    trainer.fit()
    assert len(ddp["losses"]) == len(losses) == 6
    assert torch.allclose(torch.tensor(ddp["losses"]), torch.tensor(losses), atol=1e-5)
    # the validation loss: each process takes whole batches of 2 (its own batch size), gathered into one mean
    # over the 7 images; one process with batches of 4 averages the same per-image losses
    single = validation_loss(trainer.model, ShapesDataset("val", 7, 64), batch_size=2)
    assert abs(ddp["history"][-1]["loss"] - single["loss"]) < 1e-4
    assert abs(ddp["history"][-1]["loss"] - trainer.history[-1]["loss"]) < 1e-4

    single = inference.predict(trainer.model, ShapesDataset("val", 7, 64), batch_size=2)
    assert sorted(r["image_id"] for r in ddp["records"]) == list(range(1, 8))  # every image once, none twice
    by_id = {r["image_id"]: r for r in single}
    for r in ddp["records"]:
        assert r["category_id"] == by_id[r["image_id"]]["category_id"]
        assert torch.allclose(torch.tensor(r["bbox"]), torch.tensor(by_id[r["image_id"]]["bbox"]), atol=1e-2)


def test_shards_partition_each_global_batch():
    one = list(distributed.ShardedBatchSampler(11, 4, seed=3, epoch=1, rank_=0, world=1))
    two = [list(distributed.ShardedBatchSampler(11, 2, seed=3, epoch=1, rank_=r, world=2)) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) == 3
    for step, batch in enumerate(one):
        assert sorted(batch) == sorted(two[0][step] + two[1][step])
    assert set(i for b in one for i in b) == set(range(11))  # every sample, the last batch padded by wrap-around
    resumed = list(distributed.ShardedBatchSampler(11, 4, seed=3, epoch=1, start_step=2, rank_=0, world=1))
    assert resumed == one[2:]


def test_exit_hook_destroys_the_group_unless_an_uncaught_exception_is_ending_the_process(monkeypatch):
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        monkeypatch.setattr(sys, "last_value", RuntimeError("crashed"), raising=False)
        distributed._shutdown_at_exit()
        assert dist.is_initialized()  # a crashing process must not wait on a peer stuck in a collective
        monkeypatch.setattr(sys, "last_value", None)
        distributed._shutdown_at_exit()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
