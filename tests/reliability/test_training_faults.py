"""Training faults: a process killed while writing a checkpoint, a NaN in the loss, a full disk.
In each case the previous checkpoint stays loadable, and a resumed run ends with the weights of a
run that never failed."""

from __future__ import annotations

import errno
import hashlib
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from objdet.engine import checkpoint
from objdet.engine.trainer import TrainConfig, Trainer
from objdet.errors import CheckpointError, TrainingError

ENGINE_TESTS = Path(__file__).parents[1] / "engine"
sys.path.insert(0, str(ENGINE_TESTS))
from engine_toys import ToyBoxes, ToyDetector  # noqa: E402  (the engine tests' tiny detector and data)

SETTINGS = dict(epochs=1, batch_size=4, lr=0.05, warmup_iters=2, eval_every=0, progress=False, checkpoint_every=1)


def trainer(out, model=None, data=None) -> Trainer:
    torch.manual_seed(0)
    return Trainer(model or ToyDetector(), data or ToyBoxes(10), None, TrainConfig(out=str(out), **SETTINGS))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """Final weights of a run that nothing disturbed: the oracle for every resumed run."""
    out = tmp_path_factory.mktemp("full")
    trainer(out).fit()
    return checkpoint.load(out / "last.pt")["model"]


# The child trains and dies by SIGKILL inside its second checkpoint write: after half of the bytes
# ("partial") or after all of them, just before the rename ("before_rename").
KILLED_IN_SAVE = """
import io, os, signal, sys, torch
sys.path.insert(0, {engine!r})
from engine_toys import ToyBoxes, ToyDetector
from objdet.engine.trainer import TrainConfig, Trainer

real_save, real_replace, saves = torch.save, os.replace, []

def dying_save(obj, f, *args, **kwargs):
    saves.append(1)
    if len(saves) == 2 and {where!r} == "partial":
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)

def dying_replace(src, dst):
    if len(saves) == 2 and {where!r} == "before_rename":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

torch.save, os.replace = dying_save, dying_replace
torch.manual_seed(0)
Trainer(ToyDetector(), ToyBoxes(10), None, TrainConfig(out={out!r}, **{settings!r})).fit()
"""


@pytest.mark.parametrize("where", ["partial", "before_rename"])
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one_and_resume_finishes_the_run(
        tmp_path, uninterrupted, where):
    script = KILLED_IN_SAVE.format(engine=str(ENGINE_TESTS), out=str(tmp_path), settings=SETTINGS, where=where)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = list(tmp_path.glob(".last.pt.*.tmp"))
    assert len(leftovers) == 1  # the write really was cut: its temp file is there, never renamed
    if where == "partial":  # half a checkpoint is refused, never misread
        with pytest.raises(CheckpointError, match="cannot read checkpoint"):
            checkpoint.load(leftovers[0])
    assert checkpoint.load(tmp_path / "last.pt")["step"] == 1  # the first save, intact
    again = trainer(tmp_path)
    again.resume(tmp_path / "last.pt")
    assert again.fit()["status"] == "finished"
    assert_same_weights(checkpoint.load(tmp_path / "last.pt")["model"], uninterrupted)
    assert not list(tmp_path.glob(".last.pt.*.tmp"))  # the next good save removed the dead write's file


class NaNImage(torch.utils.data.Dataset):
    """ToyBoxes with one NaN pixel in image `bad`: a corrupt input that poisons the loss."""

    def __init__(self, bad: int):
        self.data, self.bad = ToyBoxes(10), bad
        self.categories, self.num_classes = self.data.categories, self.data.num_classes

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        image, target = self.data[i]
        if i == self.bad:
            image = image.clone()
            image[0, 3, 3] = float("nan")
        return image, target


@pytest.mark.parametrize("source", ["loss", "input"])
def test_nan_stops_training_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, source):
    if source == "loss":
        run = trainer(tmp_path, model=ToyDetector(nan_at_call=3))
    else:
        run = trainer(tmp_path, data=NaNImage(bad=0))  # image 0 is in one of the 3 batches
    written, save = [], run._save
    run._save = lambda name: (save(name), written.append(digest(tmp_path / name)))
    with pytest.raises(TrainingError, match=r"non-finite loss at step (\d+) .*the last good checkpoint is .*last\.pt"
                                            r"|no checkpoint was written yet") as err:
        run.fit()
    failed_at = int(re.search(r"step (\d+)", str(err.value)).group(1))
    assert failed_at == 3 if source == "loss" else 1 <= failed_at <= 3
    if written:  # the file on disk is the last one written before the NaN, byte for byte
        assert digest(tmp_path / "last.pt") == written[-1]
        saved = checkpoint.load(tmp_path / "last.pt")
        assert saved["step"] == failed_at - 1  # a checkpoint every step: the step before the NaN
        assert all(torch.isfinite(v).all() for v in saved["model"].values())
    else:
        assert not (tmp_path / "last.pt").exists()
    assert not list(tmp_path.glob(".last.pt.*.tmp"))


def test_full_disk_while_saving_gives_a_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    run = trainer(tmp_path)
    run.fit()
    before = digest(tmp_path / "last.pt")

    def no_space(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot write checkpoint \(.*No space left on device\); "
                                              r"\d+ bytes free on its disk; the previous file is kept"):
        run._save("last.pt")
    assert digest(tmp_path / "last.pt") == before
    assert not list(tmp_path.glob(".last.pt.*.tmp"))


FILE_SIZE_LIMIT = """
import resource, signal, torch
from objdet.engine import checkpoint
from objdet.errors import CheckpointError
checkpoint.save({path!r}, {{"model": {{"w": torch.zeros(4)}}}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # the kernel refuses writes past 20 kB
try:
    checkpoint.save({path!r}, {{"model": {{"w": torch.randn(100_000)}}}})
except CheckpointError as err:
    print(err)
"""


def test_kernel_refusing_the_write_gives_a_checkpoint_error_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "last.pt"
    proc = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT.format(path=str(path))], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cannot write checkpoint" in proc.stdout and "the previous file is kept" in proc.stdout
    assert checkpoint.load(path)["model"]["w"].shape == (4,)
    assert not list(tmp_path.glob(".last.pt.*.tmp"))
