"""`objdet predict`: a checkpoint or an exported model over files, folders and globs, in batches; JSON lines as
they come, COCO results and pictures. Exit status 3 when some input was skipped."""

from __future__ import annotations

import argparse
from pathlib import Path

SKIPPED_STATUS = 3  # every good image predicted, but something was skipped (named on standard error)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images at scale: JSON lines, COCO results, pictures",
                       description="Run a checkpoint (or an exported .onnx / OpenVINO .xml model) over image files, "
                                   "folders and glob patterns. RGBA, grayscale and EXIF-rotated images are read "
                                   "upright as RGB. A bad image is skipped with a warning naming it; the run ends "
                                   "with exit status 3 when something was skipped.")
    p.add_argument("--model", help="checkpoint (objdet train / convert), model.onnx / model.xml, or a zoo name "
                                    "with --weights")
    p.add_argument("--weights", metavar="SRC", help="weights of the zoo model --model names: torchvision:WEIGHTS "
                                                    "(e.g. COCO_V1), effdet:NAME or a state-dict file; alone, any "
                                                    "checkpoint or state-dict file")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns ('**' recurses)")
    p.add_argument("--out", default="runs/predict", help="folder for predictions.jsonl, results.json and pictures")
    p.add_argument("--json", help="write the COCO results here (default OUT/results.json)")
    p.add_argument("--batch-size", type=int, default=4, help="images per model call")
    p.add_argument("--score-threshold", type=float, default=0.3, help="draw detections at least this confident")
    p.add_argument("--no-draw", action="store_true", help="write results only, no pictures")
    p.add_argument("--resume", action="store_true", help="skip the images already in OUT/predictions.jsonl")
    p.add_argument("--slice", type=int, metavar="SIZE", help="sliced inference: SIZE x SIZE tiles plus the whole "
                                                             "image, merged by class-wise NMS")
    p.add_argument("--overlap", type=float, default=0.2, help="overlap of neighbouring tiles (fraction)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.engine import distributed
    from objdet.engine.predict import PredictOptions, Summary, load_model, predict_images, warn
    from objdet.engine.sources import find_sources
    from objdet.engine.video import predict_video
    from objdet.errors import ConfigError, DataError

    if args.batch_size < 1 or not 0 <= args.overlap < 1 or (args.slice is not None and args.slice < 32):
        raise ConfigError("--batch-size must be >= 1, --overlap in [0, 1) and --slice at least 32 pixels")
    device = str(distributed.init_from_env(args.device))
    loaded = load_model(args.model, device, args.weights)
    sources = find_sources(args.images)
    if sources.ignored and distributed.is_main():
        names = ", ".join(p.name for p in sources.ignored[:5]) + (" ..." if len(sources.ignored) > 5 else "")
        warn(f"ignored {len(sources.ignored)} files in the folders without an image or video extension: {names}")
    options = PredictOptions(out=Path(args.out), results=Path(args.json) if args.json else None,
                             batch_size=args.batch_size, score_threshold=args.score_threshold, draw=not args.no_draw,
                             resume=args.resume, slice=args.slice, overlap=args.overlap,
                             progress=not args.no_progress, device=device)
    if sources.videos and distributed.world_size() > 1:
        raise ConfigError("videos are predicted by one process: run without torchrun")
    summary = predict_images(loaded, sources.images, options, on_skip=warn) if sources.images else Summary()
    for video in sources.videos:
        try:
            summary.videos.append(predict_video(loaded, video, options))
        except DataError as err:
            summary.skipped.append((str(video), str(err)))
            warn(f"skipped {err}")
    for done in summary.videos:
        print(f"{done['video']}: {done['frames']} frames, {done['detections']} detections: lines in {done['lines']}"
              + (f", annotated video {done['annotated']}" if done["annotated"] else ""))
    if distributed.is_main() and sources.images:
        print(f"{summary.images} images, {summary.detections} detections: lines in {summary.lines}, "
              f"results in {summary.results}" + (f", pictures in {options.out}" if options.draw else ""))
    if distributed.is_main() and summary.skipped:
        what = "inputs" if sources.videos else "images"
        print(f"skipped {len(summary.skipped)} of {len(sources.images) + len(sources.videos)} {what}:")
        for _, reason in summary.skipped:
            print(f"  {reason}")
    return SKIPPED_STATUS if summary.skipped else 0
