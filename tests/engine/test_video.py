"""Video input of `objdet predict`: a small video written with PyAV in the test, one JSON line per frame with its
index and time, detections equal to the model's on the decoded frames, and an annotated video with every frame."""

import json
import sys

import numpy as np
import pytest
import torch

from objdet import cli, zoo
from objdet.engine import checkpoint
from objdet.engine.video import read_frames
from objdet.errors import ConfigError

av = pytest.importorskip("av")

FRAMES, RATE = 6, 5


def _write_video(path, frames=FRAMES, size=(96, 128)):
    """A moving bright square on noise, MPEG-4 at RATE frames per second."""
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=RATE)
        stream.height, stream.width, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            picture = rng.integers(0, 80, (*size, 3), dtype=np.uint8)
            picture[20:60, 10 + 10 * i:50 + 10 * i] = 230
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.build("faster_rcnn_r18_fpn", classes=["a", "b"], min_size=96, max_size=128, score_thresh=0.3)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    checkpoint.save(path, checkpoint.model_payload(model))
    return model.eval(), path


def test_every_frame_is_predicted_with_its_index_and_time(model_file, tmp_path):
    model, ckpt = model_file
    _write_video(tmp_path / "clip.mp4")
    assert cli.main(["predict", "--model", str(ckpt), str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "out"),
                     "--no-progress", "--batch-size", "4"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(FRAMES))
    assert [x["time"] for x in lines] == pytest.approx([i / RATE for i in range(FRAMES)])
    frames = [image for _, _, image in read_frames(tmp_path / "clip.mp4")]
    with torch.no_grad():
        expected = model(frames)  # the same batches of four the command runs: the same padding
        expected = expected[:4] + model(frames[4:])
    counts = []
    for line, want in zip(lines, expected, strict=True):
        assert (line["width"], line["height"]) == (128, 96)
        assert len(line["detections"]) == len(want["boxes"])
        counts.append(len(want["boxes"]))
        for got, box, score in zip(line["detections"], want["boxes"].tolist(), want["scores"].tolist()):
            x1, y1, x2, y2 = box
            assert got["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
            assert got["score"] == pytest.approx(score, abs=1e-5) and got["name"] in ("a", "b")
    assert max(counts) > 0
    with av.open(str(tmp_path / "out" / "clip_pred.mp4")) as annotated:
        decoded = list(annotated.decode(video=0))
    assert len(decoded) == FRAMES and (decoded[0].width, decoded[0].height) == (128, 96)


def test_an_unreadable_video_is_skipped_by_name(model_file, tmp_path, capsys):
    _, ckpt = model_file
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 10)
    _write_video(tmp_path / "good.mp4", frames=2)
    assert cli.main(["predict", "--model", str(ckpt), str(tmp_path / "broken.mp4"), str(tmp_path / "good.mp4"),
                     "--out", str(tmp_path / "out"), "--no-progress", "--no-draw"]) == 3
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "unreadable video" in err
    assert len((tmp_path / "out" / "good.jsonl").read_text().splitlines()) == 2


def test_missing_pyav_is_a_clear_error_naming_the_file(model_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(ConfigError, match=r"objdet\[video\]") as err:
        next(read_frames(tmp_path / "clip.mp4"))
    assert "clip.mp4" in str(err.value)
