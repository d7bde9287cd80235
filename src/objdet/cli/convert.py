"""`objdet convert`: a torchvision or effdet state dict as an objdet checkpoint (weights, zoo name, config)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="turn a torchvision or effdet checkpoint into an objdet checkpoint",
                       description="Convert a peer library's state dict (IN.pth) into an objdet checkpoint "
                                   "(OUT.pt) holding the weights, the zoo name and the config.")
    p.add_argument("--from", dest="source", required=True, choices=["torchvision", "effdet"], help="library")
    p.add_argument("--arch", required=True, help="the library's model name, e.g. fasterrcnn_resnet50_fpn")
    p.add_argument("input", help="the library's checkpoint (a state dict, or a dict holding one under 'model')")
    p.add_argument("output", help="objdet checkpoint to write")
    p.set_defaults(run=run)


def read_state_dict(path: str) -> dict:
    """A state dict of tensors from a weights-only file (also one wrapped under 'model' or 'state_dict')."""
    import pickle
    import zipfile

    import torch

    from objdet.errors import CheckpointError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"cannot read a weights-only state dict: {err}", path=path) from err
    if isinstance(state, dict):
        state = next((state[k] for k in ("model", "state_dict") if isinstance(state.get(k), dict)), state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a state dict of tensors", path=path)
    return state


def run(args: argparse.Namespace) -> int:
    from objdet.engine import checkpoint
    from objdet.errors import CheckpointError

    state = read_state_dict(args.input)
    try:
        if args.source == "torchvision":
            from objdet.weights.torchvision import from_torchvision

            model = from_torchvision(args.arch, state)
        else:
            from objdet.weights.effdet import from_effdet

            model = from_effdet(args.arch, state)
    except CheckpointError as err:
        raise CheckpointError(str(err), path=args.input) from err
    checkpoint.save(args.output, checkpoint.model_payload(model))
    print(f"wrote {args.output} ({model.arch}, from {args.source} {args.arch})")
    return 0
