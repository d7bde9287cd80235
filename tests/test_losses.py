"""Losses against torch.nn.functional, torchvision's sigmoid_focal_loss, effdet's box losses and closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from effdet import loss as effdet_loss
from hypothesis import given, settings
from hypothesis import strategies as st

from objdet.errors import ConfigError
from objdet.losses import alpha_balanced_bce, huber_loss, sigmoid_focal_loss, smooth_l1_loss

REDUCTIONS = ["none", "mean", "sum"]


def pair(seed, shape=(64, 4), scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale, torch.randn(shape, generator=g) * scale


def logits_and_targets(seed, shape=(200, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 4, (torch.rand(shape, generator=g) < 0.2).float()


@pytest.mark.parametrize("beta", [0.0, 1.0 / 9, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_smooth_l1_matches_torch(beta, reduction):
    x, y = pair(int(beta * 90))
    torch.testing.assert_close(
        smooth_l1_loss(x, y, beta=beta, reduction=reduction), F.smooth_l1_loss(x, y, beta=beta, reduction=reduction)
    )


@pytest.mark.parametrize("beta", [0.0, 1.0 / 9, 1.0])
def test_smooth_l1_matches_effdet(beta):
    x, y = pair(5)
    torch.testing.assert_close(
        smooth_l1_loss(x, y, beta=beta, reduction="sum"), effdet_loss.smooth_l1_loss(x, y, beta, size_average=False)
    )


def test_smooth_l1_closed_form():
    """The seed's smooth L1 (beta = 1): 0.5 x^2 inside |x| < 1, |x| - 0.5 outside."""
    x = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0])
    expected = torch.tensor([2.5, 0.125, 0.0, 0.03125, 1.5])
    torch.testing.assert_close(smooth_l1_loss(x, torch.zeros(5), beta=1.0, reduction="none"), expected)
    torch.testing.assert_close(smooth_l1_loss(x, torch.zeros(5), beta=0.0, reduction="none"), x.abs())


@pytest.mark.parametrize("delta", [0.1, 1.0, 2.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huber_matches_torch(delta, reduction):
    x, y = pair(int(delta * 10))
    torch.testing.assert_close(
        huber_loss(x, y, delta=delta, reduction=reduction), F.huber_loss(x, y, delta=delta, reduction=reduction)
    )


def test_huber_matches_effdet_box_loss():
    x, y = pair(9, scale=0.3)
    torch.testing.assert_close(
        huber_loss(x, y, delta=0.1, reduction="sum"), effdet_loss.huber_loss(x, y, delta=0.1, size_average=False)
    )


@settings(max_examples=40, deadline=None)
@given(st.floats(-50, 50), st.floats(0.01, 10))
def test_huber_is_delta_times_smooth_l1_closed_form(x, delta):
    value = huber_loss(torch.tensor([x], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), delta=delta)
    expected = 0.5 * x * x if abs(x) <= delta else delta * (abs(x) - 0.5 * delta)
    assert value.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_matches_torchvision(alpha, gamma, reduction):
    logits, targets = logits_and_targets(int(gamma * 10))
    ours = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction=reduction)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction=reduction)
    assert torch.equal(ours, theirs)


def test_focal_alpha_none_disables_balancing():
    logits, targets = logits_and_targets(3)
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha=None, reduction="none"),
        torchvision.ops.sigmoid_focal_loss(logits, targets, alpha=-1, reduction="none"),
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from([0.25, 0.75, None]), st.sampled_from(REDUCTIONS))
def test_focal_with_gamma_zero_is_alpha_balanced_bce_exactly(seed, alpha, reduction):
    logits, targets = logits_and_targets(seed, shape=(30, 3))
    assert torch.equal(
        sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=0.0, reduction=reduction),
        alpha_balanced_bce(logits, targets, alpha=alpha, reduction=reduction),
    )


@settings(max_examples=40, deadline=None)
@given(st.floats(-20, 20), st.sampled_from([0.0, 1.0]), st.floats(0, 1), st.floats(0, 5))
def test_focal_closed_form(x, target, alpha, gamma):
    """-alpha_t (1 - p_t)^gamma log p_t with p = sigmoid(x), in float64."""
    p = 1 / (1 + math.exp(-x))
    p_t = p if target == 1.0 else 1 - p
    alpha_t = alpha if target == 1.0 else 1 - alpha
    log_p_t = -math.log1p(math.exp(-x)) if target == 1.0 else -math.log1p(math.exp(x))
    expected = -alpha_t * (1 - p_t) ** gamma * log_p_t
    t = torch.tensor([x], dtype=torch.float64)
    value = sigmoid_focal_loss(t, torch.tensor([target], dtype=torch.float64), alpha=alpha, gamma=gamma)
    assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_focal_loss_down_weights_easy_examples():
    """Focal <= balanced BCE everywhere; the ratio is (1 - p_t)^gamma, tiny for confident correct logits."""
    logits, targets = logits_and_targets(11)
    focal = sigmoid_focal_loss(logits, targets, gamma=2.0, reduction="none")
    bce = alpha_balanced_bce(logits, targets, reduction="none")
    assert (focal <= bce).all()
    easy = torch.tensor([6.0]), torch.tensor([1.0])
    hard = torch.tensor([-6.0]), torch.tensor([1.0])
    assert sigmoid_focal_loss(*easy) / alpha_balanced_bce(*easy) < 1e-4
    assert sigmoid_focal_loss(*hard) / alpha_balanced_bce(*hard) > 0.99


def test_bad_options_raise_config_error():
    x, y = pair(0)
    with pytest.raises(ConfigError, match="reduction"):
        smooth_l1_loss(x, y, reduction="avg")
    with pytest.raises(ConfigError, match="beta"):
        smooth_l1_loss(x, y, beta=-1.0)
    with pytest.raises(ConfigError, match="alpha"):
        sigmoid_focal_loss(x, (y > 0).float(), alpha=1.5)
    with pytest.raises(ConfigError, match="gamma"):
        sigmoid_focal_loss(x, (y > 0).float(), gamma=-1.0)


@pytest.mark.parametrize("alpha", [0.25, None])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.5])
def test_focal_gradcheck_float64(alpha, gamma):
    """The hand-written backward against finite differences, with soft targets too."""
    g = torch.Generator().manual_seed(int(gamma * 10))
    logits = (torch.randn(6, 3, generator=g, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.cat([(torch.rand(3, 3, generator=g) < 0.4).double(), torch.rand(3, 3, generator=g).double()])
    assert torch.autograd.gradcheck(lambda x: sigmoid_focal_loss(x, targets, alpha, gamma, "none"), (logits,))


@pytest.mark.parametrize("alpha", [0.25, 0.75, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_focal_gradients_match_torchvision_autograd(alpha, gamma, reduction, soft):
    logits, targets = logits_and_targets(int(gamma * 10) + 1)
    if soft:
        targets = torch.rand(targets.shape, generator=torch.Generator().manual_seed(7))
    weights = torch.rand_like(logits)  # a non-uniform upstream gradient for reduction="none"
    grads = []
    for fn in (sigmoid_focal_loss, torchvision.ops.sigmoid_focal_loss):
        x = logits.clone().requires_grad_()
        loss = fn(x, targets, alpha=alpha, gamma=gamma, reduction=reduction)
        (loss * weights).sum().backward() if reduction == "none" else loss.backward()
        grads.append(x.grad)
    # the recomputing backward follows autograd's chain op for op, so the bits agree, not only the values
    assert torch.equal(grads[0], grads[1])
