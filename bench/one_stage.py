"""One-stage detectors against their peers, same weights, one process, 2 threads: inference time,
training step time and peak memory of RetinaNet-R50-FPN (objdet vs torchvision) and EfficientDet-D0
(objdet vs effdet).

    .venv/bin/python bench/one_stage.py                      # both pairs, default sizes
    .venv/bin/python bench/one_stage.py --only effdet --repeats 5
    .venv/bin/python bench/one_stage.py --train-only --repeats 3   # training-step rows only

Times are medians over `--repeats` runs, objdet and peer interleaved so machine load hits both alike.
Peak memory is the resident memory one call adds at its high-water mark (sampled).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # large tensors mmap'd and returned on free (see peak_memory)
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak resident memory above the level before `fn()`, sampled every 0.2 ms while it runs.

    The script re-executes itself with a fixed glibc mmap threshold so that freed tensors go back
    to the system at once and every call starts from the same level.
    """
    base, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss()) - base


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name: str, ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> dict:
    """Median seconds and peak memory of two callables, run alternately after one warm-up each."""
    ours(), peer()
    t_ours, t_peer = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours))
        t_peer.append(timed(peer))
    row = {"what": name, "objdet_s": statistics.median(t_ours), "peer_s": statistics.median(t_peer),
           "objdet_mb": peak_memory(ours) / 2**20, "peer_mb": peak_memory(peer) / 2**20}
    print(f"{name:38s} objdet {row['objdet_s']:.3f} s  peer {row['peer_s']:.3f} s  "
          f"ratio {row['objdet_s'] / row['peer_s']:.2f} | memory objdet {row['objdet_mb']:.0f} MB  "
          f"peer {row['peer_mb']:.0f} MB  ratio {row['objdet_mb'] / row['peer_mb']:.2f}", flush=True)
    return row


def _sgd_step(loss_fn: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()

    return step


def retinanet_pair(args: argparse.Namespace) -> list[dict]:
    from torchvision.models.detection import retinanet_resnet50_fpn

    import objdet

    torch.manual_seed(0)
    peer = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                  min_size=args.retina_size, max_size=args.retina_max)
    # torchvision's untrained RetinaNet trains every layer with BatchNorm: objdet does the same here
    ours = objdet.from_torchvision("retinanet_resnet50_fpn", peer.state_dict(), min_size=args.retina_size,
                                   max_size=args.retina_max, backbone_norm="BN", trainable_layers=5)
    fused = objdet.from_torchvision("retinanet_resnet50_fpn", peer.state_dict(), min_size=args.retina_size,
                                    max_size=args.retina_max).fuse_for_inference()
    images = [torch.rand(3, args.retina_size, args.retina_max) for _ in range(args.batch)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 200.0, 220.0], [300.0, 100.0, 420.0, 300.0]]),
                "labels": torch.tensor([3, 17])} for _ in images]
    rows = []
    peer.eval(), ours.eval()
    with torch.no_grad():
        if not args.train_only:
            rows.append(compare(f"RetinaNet-R50-FPN inference (x{args.batch})", lambda: ours(images),
                                lambda: peer(images), args.repeats))
            rows.append(compare("  same, objdet fuse_for_inference()", lambda: fused(images),
                                lambda: peer(images), args.repeats))
    peer.train(), ours.train()
    step_ours = _sgd_step(lambda: sum(ours(images, targets).values()), torch.optim.SGD(ours.parameters(), lr=1e-4))
    step_peer = _sgd_step(lambda: sum(peer(images, targets).values()), torch.optim.SGD(peer.parameters(), lr=1e-4))
    rows.append(compare(f"RetinaNet-R50-FPN train step (x{args.batch})", step_ours, step_peer, args.repeats))
    return rows


def effdet_pair(args: argparse.Namespace) -> list[dict]:
    from effdet import DetBenchPredict, DetBenchTrain, create_model

    import objdet

    torch.manual_seed(0)
    size = args.effdet_size
    net = create_model("tf_efficientdet_d0", pretrained=False, pretrained_backbone=False, image_size=(size, size))
    ours = objdet.from_effdet("tf_efficientdet_d0", net.state_dict(), image_size=size)
    predict, train = DetBenchPredict(net), DetBenchTrain(net, create_labeler=True)
    images = [torch.rand(3, size, size) for _ in range(args.batch)]
    x = torch.stack([(im - MEAN) / STD for im in images])
    boxes = torch.tensor([[20.0, 30.0, 200.0, 220.0], [300.0, 100.0, 420.0, 300.0]]) * size / 512
    targets = [{"boxes": boxes, "labels": torch.tensor([3, 17])} for _ in images]
    effdet_target = {"bbox": torch.stack([boxes[:, [1, 0, 3, 2]]] * args.batch),
                     "cls": torch.tensor([[3.0, 17.0]] * args.batch)}
    rows = []
    predict.eval(), ours.eval()
    if not args.train_only:
        with torch.no_grad():
            rows.append(compare(f"EfficientDet-D0 inference (x{args.batch})", lambda: ours(images),
                                lambda: predict(x), args.repeats))
    train.train(), ours.train()
    step_ours = _sgd_step(lambda: sum(ours(images, targets).values()), torch.optim.SGD(ours.parameters(), lr=1e-4))
    step_peer = _sgd_step(lambda: train(x, effdet_target)["loss"], torch.optim.SGD(net.parameters(), lr=1e-4))
    rows.append(compare(f"EfficientDet-D0 train step (x{args.batch})", step_ours, step_peer, args.repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["retinanet", "effdet"], help="run one pair only")
    parser.add_argument("--train-only", action="store_true", help="only the training-step rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--retina-size", type=int, default=512, help="RetinaNet min_size (images are this tall)")
    parser.add_argument("--retina-max", type=int, default=683, help="RetinaNet max_size (images are this wide)")
    parser.add_argument("--effdet-size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.repeats} repeats", flush=True)
    if args.only in (None, "retinanet"):
        retinanet_pair(args)
    if args.only in (None, "effdet"):
        effdet_pair(args)


if __name__ == "__main__":
    main()
