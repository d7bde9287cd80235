"""Prediction at scale: images (and videos) through a checkpoint or an exported model, in batches, results
streamed as JSON lines, the COCO results file and pictures at the end.

A bad image (corrupt, empty, not an image) is skipped with a warning naming it and counted; everything else
is predicted. Batches are fixed slices of the sorted input list, so a resumed run (`resume=True` skips the
images already in the lines file) and a run sharded over torchrun's processes (batch b on rank b % world)
compute every image in the same batch as one uninterrupted process does, and end with the same files.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from objdet.data.coco import to_coco_results
from objdet.data.image import read_image
from objdet.engine import distributed
from objdet.engine.results_log import ResultsLog
from objdet.errors import ConfigError, ImageError

Model = Callable[[list[Tensor]], list[dict[str, Tensor]]]
EXPORTED_SUFFIXES = (".onnx", ".xml")


@dataclass
class LoadedModel:
    """A model ready to predict (eval mode, or an exported runtime) and what the outputs mean."""

    model: Model
    class_names: list[str] | None = None
    label_to_category_id: dict[int, int] | None = None
    skeleton: list[list[int]] | None = None
    detections_per_img: int = 100
    source: str = ""

    def names(self) -> dict[int, str]:
        """Label -> class name (empty when the model has no names)."""
        return {i + 1: n for i, n in enumerate(self.class_names or [])}


def load_model(source: str | os.PathLike | None, device: str = "cpu", weights: str | os.PathLike | None = None
               ) -> LoadedModel:
    """The model `--model` and `--weights` name: an objdet checkpoint, an exported `.onnx` (run with onnxruntime)
    or OpenVINO `.xml` file, a zoo name with a weight source (`--model faster_rcnn_r50_fpn --weights
    torchvision:COCO_V1`), or a self-describing weight source alone (`objdet.load`'s rules). The one place model
    sources are resolved; extend it here."""
    from objdet import zoo
    from objdet.weights.sources import read_state

    if source is None and weights is None:
        raise ConfigError("name the model: --model CKPT|MODEL.onnx|MODEL.xml, or --model NAME --weights SRC")
    if source is not None and weights is not None:
        if str(source) not in zoo.list_models():
            raise ConfigError(f"--weights goes with a zoo model name as --model (objdet.list_models()), "
                              f"not {str(source)!r}")
        return _loaded(zoo.build(str(source), weights=weights).to(device).eval(), {}, str(weights))
    path = Path(str(source if source is not None else weights))
    if source is not None and str(source) in zoo.list_models() and not path.exists():
        raise ConfigError(f"--model {source} names a zoo model: give its weights with --weights SRC")
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        from objdet.export.runtime import load_exported

        return load_exported(path, device)
    from objdet.engine import checkpoint

    content = read_state(path)  # read once: an objdet checkpoint, or a torchvision / effdet state dict
    if not checkpoint.is_checkpoint(content):
        return _loaded(zoo.load(path, device), {}, str(path))
    payload = checkpoint.upgrade(dict(content))
    return _loaded(checkpoint.model_from_payload(payload, path, device), payload, str(path))


def torch_model(loaded: LoadedModel) -> nn.Module:
    """The PyTorch model of a LoadedModel; an exported one is a ConfigError (a command that needs weights)."""
    if not isinstance(loaded.model, nn.Module):
        raise ConfigError(f"{loaded.source} is an exported model: give a checkpoint, or a zoo name and --weights")
    return loaded.model


def _loaded(model: nn.Module, payload: dict[str, Any], origin: str) -> LoadedModel:
    """A built model as a LoadedModel, with the label map and skeleton its checkpoint payload holds."""
    skeleton = next((c.get("skeleton") for c in payload.get("categories") or [] if c.get("skeleton")), None)
    return LoadedModel(model, getattr(model, "class_names", None), payload.get("label_to_category_id"), skeleton,
                       getattr(model.config, "detections_per_img", 100), origin)


@dataclass
class PredictOptions:
    """How a run predicts and what it writes (`objdet predict`'s flags)."""

    out: Path = Path("runs/predict")
    results: Path | None = None        # the COCO results file (default out/results.json)
    batch_size: int = 4
    score_threshold: float = 0.3       # for the pictures; every detection is written to the results
    draw: bool = True
    resume: bool = False
    slice: int | None = None           # tile size of sliced inference, None for whole images
    overlap: float = 0.2
    progress: bool = True
    device: str = "cpu"


@dataclass
class Summary:
    """What a run did: images predicted, detections, what it skipped (file, reason) and ignored, its outputs."""

    images: int = 0
    detections: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)
    results: Path | None = None
    lines: Path | None = None


def warn(message: str) -> None:
    """Print a warning for the user (standard error, one line)."""
    print(f"objdet predict: warning: {message}", file=sys.stderr, flush=True)


def _read(path: Path) -> Tensor | ImageError:
    try:
        return read_image(path)
    except ImageError as err:
        return err


def picture_names(files: Sequence[Path]) -> list[str]:
    """A PNG name per input: its stem, prefixed by its position where two inputs share a stem."""
    stems = [f.stem for f in files]
    return [f"{s}.png" if stems.count(s) == 1 else f"{i + 1:06d}_{s}.png" for i, s in enumerate(stems)]


def run_model(loaded: LoadedModel, images: list[Tensor], options: PredictOptions) -> list[dict[str, Tensor]]:
    """Detections of a batch on the CPU: whole images, or tiles and whole images merged (`options.slice`)."""
    device_images = [im.to(options.device) for im in images]
    with torch.no_grad():
        if options.slice:
            from objdet.engine.slicing import sliced_predict

            return sliced_predict(loaded.model, device_images, options.slice, options.overlap, options.batch_size,
                                  limit=loaded.detections_per_img)
        return [{k: v.cpu() for k, v in d.items()} for d in loaded.model(device_images)]


def record(loaded: LoadedModel, image_id: int, file: str, image: Tensor, det: dict[str, Tensor]) -> dict[str, Any]:
    """The lines-file record of one image: its COCO result records, each with the class name."""
    names = loaded.names()
    detections = to_coco_results([det], [image_id], loaded.label_to_category_id)
    for d, label in zip(detections, det["labels"].tolist()):
        d["name"] = names.get(int(label), str(int(label)))
    return {"image_id": image_id, "file": file, "height": int(image.shape[-2]), "width": int(image.shape[-1]),
            "detections": detections}


def predict_images(loaded: LoadedModel, files: Sequence[Path], options: PredictOptions,
                   on_skip: Callable[[str], None] = warn) -> Summary:
    """Predict `files` (image ids 1..N in this order), streaming lines, and write the COCO results at the end."""
    out, rank, world = Path(options.out), distributed.rank(), distributed.world_size()
    names = [str(f) for f in files]
    if rank == 0 and not options.resume:
        ResultsLog.clear(out)
    distributed.barrier()
    log = ResultsLog(out, names, rank, world, options.resume)
    pictures = picture_names(files)
    batches = [list(range(s, min(s + options.batch_size, len(files))))
               for s in range(0, len(files), options.batch_size)][rank::world]
    todo = [b for b in batches if any(i + 1 not in log.done for i in b)]
    skipped: list[tuple[str, str]] = []
    bar = _progress(options, sum(len(b) for b in batches), sum(len(b) for b in batches) - sum(len(b) for b in todo))
    with ThreadPoolExecutor(1) as reader:  # the next batch is decoded while this one runs
        pending = reader.submit(lambda b: [_read(files[i]) for i in b], todo[0]) if todo else None
        for n, batch in enumerate(todo):
            images = pending.result()
            if n + 1 < len(todo):
                pending = reader.submit(lambda b: [_read(files[i]) for i in b], todo[n + 1])
            good = [(i, im) for i, im in zip(batch, images) if isinstance(im, Tensor)]
            for i, im in zip(batch, images):
                if isinstance(im, ImageError):
                    skipped.append((names[i], str(im)))
                    on_skip(f"skipped {im}")
            outputs = run_model(loaded, [im for _, im in good], options) if good else []
            for (i, image), det in zip(good, outputs):
                if i + 1 in log.done:
                    continue
                log.write(record(loaded, i + 1, names[i], image, det))
                if options.draw:
                    _draw(loaded, image, det, out / pictures[i], options.score_threshold)
            if bar is not None:
                bar.update(len(batch))
    log.close()
    if bar is not None:
        bar.close()
    skipped = distributed.all_gather(skipped)
    distributed.barrier()
    order = {name: i for i, name in enumerate(names)}
    summary = Summary(skipped=sorted(skipped, key=lambda s: order[s[0]]), lines=out / "predictions.jsonl")
    if distributed.is_main():
        summary.results = Path(options.results or out / "results.json")
        summary.images, summary.detections = log.finish(summary.results)
    return distributed.broadcast(summary)


def _progress(options: PredictOptions, total: int, done: int) -> Any:
    if not options.progress or not distributed.is_main():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="predict", unit="img", dynamic_ncols=True)


def _draw(loaded: LoadedModel, image: Tensor, det: dict[str, Tensor], path: Path, threshold: float) -> None:
    from objdet.visualize import save_detections

    save_detections(image, det, path, label_names=loaded.names() or None, score_threshold=threshold,
                    skeleton=loaded.skeleton)
