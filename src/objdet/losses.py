"""Detection losses: smooth L1 / Huber for box deltas, focal loss and alpha-balanced cross-entropy for classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from objdet.errors import ConfigError

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown loss reduction {reduction!r}; expected one of {REDUCTIONS}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    _check_reduction(reduction)
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if reduction == "mean" else loss


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float = 1.0 / 9, reduction: str = "sum") -> Tensor:
    """The seed's smooth L1: ``0.5 x^2 / beta`` where ``|x| < beta``, else ``|x| - 0.5 beta``; ``beta=0`` is L1."""
    if beta < 0:
        raise ConfigError(f"smooth L1 needs beta >= 0, got {beta}")
    _check_reduction(reduction)
    # PyTorch's fused kernel: one pass, no temporaries, and torchvision's rounding to the last bit
    return F.smooth_l1_loss(input, target, reduction=reduction, beta=beta)


def huber_loss(input: Tensor, target: Tensor, delta: float = 1.0, reduction: str = "sum") -> Tensor:
    """Huber loss ``0.5 x^2`` where ``|x| <= delta``, else ``delta (|x| - 0.5 delta)`` (effdet's box loss).

    It is ``delta`` times the smooth L1 loss with ``beta = delta``.
    """
    if delta < 0:
        raise ConfigError(f"Huber loss needs delta >= 0, got {delta}")
    return delta * smooth_l1_loss(input, target, beta=delta, reduction=reduction)


def _alpha_weighted(loss: Tensor, targets: Tensor, alpha: float | None) -> Tensor:
    if alpha is None or alpha < 0:
        return loss
    if alpha > 1:
        raise ConfigError(f"alpha must lie in [0, 1] (or be None / negative to disable), got {alpha}")
    # alpha t + (1 - alpha)(1 - t) in torchvision's order, so the weights round as its do
    return torch.mul(targets, alpha).add_(torch.sub(1, targets).mul_(1 - alpha)).mul_(loss)


def alpha_balanced_bce(logits: Tensor, targets: Tensor, alpha: float | None = 0.25, reduction: str = "sum") -> Tensor:
    """Binary cross-entropy on logits, weighted ``alpha`` for positives and ``1 - alpha`` for negatives."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return _reduce(_alpha_weighted(bce, targets, alpha), reduction)


class _FocalLoss(torch.autograd.Function):
    """Element-wise focal loss that saves only logits and targets and recomputes the rest in backward.

    Autograd through the plain formula keeps about ten (anchor, class)-sized tensors alive until
    backward; this keeps two and peaks at about six, lowering a dense detector's peak memory. Its
    backward repeats autograd's chain op for op, so gradients are torchvision's to the last bit.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, alpha: float | None, gamma: float) -> Tensor:
        ctx.save_for_backward(logits, targets)
        ctx.alpha, ctx.gamma = alpha, gamma
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if gamma != 0:
            p = torch.sigmoid(logits)
            p_t = p * targets
            p_t.add_(p.neg_().add_(1).mul_(1 - targets))  # p t + (1 - p)(1 - t)
            del p
            loss.mul_(p_t.neg_().add_(1).pow_(gamma))  # times (1 - p_t)^gamma
        return _alpha_weighted(loss, targets, alpha)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None, None]:
        # Autograd's chain through the plain formula, op for op (so the gradient is autograd's to the
        # bit), with q = 1 - p_t rebuilt from the logits instead of saved:
        #   d/dx = [g bce gamma q^(gamma-1)] (1 - 2t) p (1 - p) + (p - t) g q^gamma,  g = grad alpha_t
        logits, targets = ctx.saved_tensors
        gamma = ctx.gamma
        grad = _alpha_weighted(grad_output, targets, ctx.alpha)
        p = torch.sigmoid(logits)
        q = torch.mul(p, targets).add_(torch.sub(1, p).mul_(torch.sub(1, targets))).neg_().add_(1)
        grad_bce = torch.pow(q, gamma).mul_(grad)
        if gamma == 0:
            return grad_bce.mul_(p.sub_(targets)), None, None, None
        grad_q = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mul_(grad)
        grad_q.mul_(q.pow_(gamma - 1).mul_(gamma))
        del q
        # p_t = p t + (1 - p)(1 - t), so dp_t/dp = t - (1 - t) and dq/dp = (1 - t) - t
        grad_p = torch.sub(1, targets).mul_(grad_q).sub_(grad_q.mul_(targets))
        del grad_q
        grad_p.mul_(torch.sub(1, p)).mul_(p)
        return grad_p.add_(grad_bce.mul_(p.sub_(targets))), None, None, None


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "sum"
) -> Tensor:
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` on logits, for targets in {0, 1}.

    It down-weights easy examples; ``gamma=0`` is exactly ``alpha_balanced_bce``. Gradients flow to
    ``logits`` only (targets are labels), through a backward that recomputes its terms to save memory.
    """
    if gamma < 0:
        raise ConfigError(f"focal loss needs gamma >= 0, got {gamma}")
    return _reduce(_FocalLoss.apply(logits, targets, alpha, gamma), reduction)


def giou_loss(boxes: Tensor, target: Tensor) -> Tensor:
    """Generalised IoU loss 1 - GIoU per box pair (xyxy rows), summed (torchvision's RetinaNet v2 box loss)."""
    lt, rb = torch.max(boxes[:, :2], target[:, :2]), torch.min(boxes[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    union = area(boxes) + area(target) - inter
    eps = 1e-7
    iou = inter / (union + eps)
    hull = (torch.max(boxes[:, 2:], target[:, 2:]) - torch.min(boxes[:, :2], target[:, :2])).prod(1)
    return (1 - iou + (hull - union) / (hull + eps)).sum()
