"""Video input for `objdet predict` through PyAV (the `video` extra): every frame predicted, one JSON line per
frame (`frame` index, `time` in seconds, the detections as COCO result records with the class name) in
`OUT/<stem>.jsonl`, and the frames with their detections drawn in `OUT/<stem>_pred.mp4`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from objdet.engine.predict import LoadedModel, PredictOptions, record, run_model
from objdet.errors import ConfigError, DataError


def _av(path: Path) -> Any:
    try:
        import av
    except ImportError as err:
        raise ConfigError("video input needs PyAV: pip install 'objdet[video]'", path=path) from err
    return av


def read_frames(path: Path) -> Iterator[tuple[int, float, Tensor]]:
    """(frame index, time in seconds, RGB frame [3, H, W] in 0..1) of each frame of the video's first stream."""
    av = _av(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError("the file has no video stream", path=path)
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                seconds = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 1)
                pixels = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                yield index, seconds, pixels.float() / 255.0
    except av.FFmpegError as err:
        raise DataError(f"unreadable video: {err}", path=path) from err


class _Writer:
    """The annotated video: MPEG-4 at the input's frame rate, opened on the first frame (it fixes the size)."""

    def __init__(self, path: Path, rate: float) -> None:
        self.path, self.rate, self.container, self.stream = path, rate, None, None

    def write(self, picture: np.ndarray) -> None:
        av = _av(self.path)
        if self.container is None:
            self.container = av.open(str(self.path), mode="w")
            self.stream = self.container.add_stream("mpeg4", rate=round(self.rate) or 25)
            self.stream.height, self.stream.width = picture.shape[0] // 2 * 2, picture.shape[1] // 2 * 2
            self.stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(picture[: self.stream.height, : self.stream.width], format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        if self.container is not None:
            self.container.mux(self.stream.encode())
            self.container.close()


def _rate(path: Path) -> float:
    av = _av(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            return float(stream.average_rate) if stream is not None and stream.average_rate else 25.0
    except av.FFmpegError as err:
        raise DataError(f"unreadable video: {err}", path=path) from err


def predict_video(loaded: LoadedModel, path: Path, options: PredictOptions) -> dict[str, Any]:
    """Predict every frame of `path` in batches of `options.batch_size`; returns {"video", "frames",
    "detections", "lines", "annotated"} (annotated is None with `options.draw` off)."""
    from objdet.visualize import draw_detections

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    lines_path, video_path = out / f"{path.stem}.jsonl", out / f"{path.stem}_pred.mp4"
    writer = _Writer(video_path, _rate(path)) if options.draw else None
    frames = detections = 0
    batch: list[tuple[int, float, Tensor]] = []
    with open(lines_path, "w") as lines:

        def flush() -> None:
            nonlocal frames, detections
            outputs = run_model(loaded, [image for _, _, image in batch], options)
            for (index, seconds, image), det in zip(batch, outputs):
                line = record(loaded, index + 1, str(path), image, det)
                del line["image_id"], line["file"]
                lines.write(json.dumps({"frame": index, "time": round(seconds, 6), **line}) + "\n")
                frames, detections = frames + 1, detections + len(line["detections"])
                if writer is not None:
                    picture = draw_detections(image, det, label_names=loaded.names() or None,
                                              score_threshold=options.score_threshold, skeleton=loaded.skeleton)
                    writer.write(np.asarray(picture.convert("RGB")))
            lines.flush()
            batch.clear()

        try:
            for item in read_frames(path):
                batch.append(item)
                if len(batch) == options.batch_size:
                    flush()
            if batch:
                flush()
        finally:
            if writer is not None:
                writer.close()
    return {"video": str(path), "frames": frames, "detections": detections, "lines": lines_path,
            "annotated": video_path if writer is not None and frames else None}
