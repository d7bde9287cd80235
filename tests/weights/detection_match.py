"""Comparing two detectors' outputs: equal within a tolerance, up to the order of near-tied scores."""

import torch
from torchvision.ops.misc import FrozenBatchNorm2d


def assert_same_detections(ours, boxes, scores, labels, atol=1e-4, rtol=1e-4):
    """Every objdet detection has an unused reference detection with the same label, its score within
    atol and its box within atol + rtol * |box| (float32 noise through a deep trunk grows with the
    coordinates); detections whose scores tie within float noise may swap places (their order is arbitrary)."""
    assert len(ours["boxes"]) == len(boxes)
    used = torch.zeros(len(boxes), dtype=torch.bool)
    unmatched = []
    for b, s, lab in zip(ours["boxes"], ours["scores"], ours["labels"]):
        close = ((boxes - b).abs() <= atol + rtol * boxes.abs()).all(1)
        ok = ~used & (labels == lab) & ((scores - s).abs() <= atol) & close
        if ok.any():
            used[torch.where(ok)[0][0]] = True
        else:
            unmatched.append((float(s), int(lab)))
    # a near-tie (two candidates whose scores agree within float noise) may resolve either way in NMS
    for s, lab in unmatched:
        tie = ~used & (labels == lab) & ((scores - s).abs() <= 1e-5)
        assert tie.any(), f"no reference detection for score {s} label {lab}"
        used[torch.where(tie)[0][0]] = True
    assert len(unmatched) <= max(1, len(boxes) // 20)


def freeze_batchnorms(module: torch.nn.Module) -> None:
    """Swap BatchNorm2d for FrozenBatchNorm2d in place, as torchvision builds the trunks of its
    pretrained v1 detectors (a random-init torchvision detector has plain BatchNorm2d)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features))
        else:
            freeze_batchnorms(child)
