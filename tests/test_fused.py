"""The eval-mode fast path (`objdet.fused`): folded, fused convolutions equal the plain modules' outputs, the
cache follows every change of the weights, and nothing of it reaches state dicts or training."""

import copy
import io

import pytest
import torch
from torch import nn

from objdet import fused
from objdet.layers import ConvNormAct, SeparableConv2d
from objdet.norm import FrozenBatchNorm2d


def _randomise_norms(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.2)


def _plain(module: nn.Module, *args):
    with torch.no_grad(), fused.disabled():
        return module(*args)


@pytest.mark.parametrize("norm", [None, "BN", "FrozenBN", "GN"])
@pytest.mark.parametrize("act", [None, "relu", "silu"])
@pytest.mark.parametrize("residual", [False, True])
def test_conv_norm_act_equals_the_plain_block(norm, act, residual, one_thread):
    gen = torch.Generator().manual_seed(0)
    block = ConvNormAct(8, 32, 3, stride=1, norm=norm, act=act)
    _randomise_norms(block, gen)
    block.eval()
    x = torch.randn(2, 8, 9, 11, generator=gen).contiguous(memory_format=torch.channels_last)
    extra = (torch.randn(2, 32, 9, 11, generator=gen),) if residual else ()
    expected = _plain(block, x, *extra)
    with torch.no_grad():
        got = block(x, *extra)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(got, _plain(block, x * 0.5, *extra))  # the comparison can fail


def test_separable_conv_with_a_shared_head_norm(one_thread):
    gen = torch.Generator().manual_seed(1)
    conv, norm = SeparableConv2d(8, 16, bn=False), nn.BatchNorm2d(16, eps=1e-3)
    _randomise_norms(norm, gen)
    conv.eval(), norm.eval()
    x = torch.randn(1, 8, 10, 10, generator=gen)
    with torch.no_grad():
        got = conv(x, norm, nn.SiLU())
    torch.testing.assert_close(got, _plain(conv, x, norm, nn.SiLU()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["FrozenBN", None])
def test_the_cache_follows_every_change_of_the_weights(norm, one_thread):
    """Folded weights and their copies in oneDNN's blocked layout are rebuilt when any source tensor changes."""
    gen = torch.Generator().manual_seed(2)
    block = ConvNormAct(4, 8, 3, norm=norm).eval()
    _randomise_norms(block, gen)
    x = torch.randn(1, 4, 6, 6, generator=gen)
    with torch.no_grad():
        block(x)
        block[0].weight.mul_(2.0)  # an in-place edit (an optimiser step)
        torch.testing.assert_close(block(x), _plain(block, x), rtol=1e-5, atol=1e-5)
        if norm is not None:
            block[1].running_var.add_(1.0)  # the norm's statistics too
            torch.testing.assert_close(block(x), _plain(block, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(block(x[:, :, :4]), _plain(block, x[:, :, :4]), rtol=1e-5, atol=1e-5)  # new shape
        other = ConvNormAct(4, 8, 3, norm=norm)
        _randomise_norms(other, gen)
        block.load_state_dict(other.state_dict())
        torch.testing.assert_close(block(x), _plain(other.eval(), x), rtol=1e-5, atol=1e-5)
        torch.save(copy.deepcopy(block), io.BytesIO())  # the caches do not stop copying or pickling a used model
        block.double()  # new storage, new dtype
        torch.testing.assert_close(block(x.double()), _plain(block, x.double()))


def test_gradients_flow_in_eval_mode(one_thread):
    """With autograd recording, the folded weights are computed differentiably: the gradient is the plain one."""
    gen = torch.Generator().manual_seed(3)
    block = ConvNormAct(4, 8, 3, norm="BN").eval()
    _randomise_norms(block, gen)
    x = torch.randn(1, 4, 6, 6, generator=gen)
    block(x).square().sum().backward()
    fast = block[0].weight.grad.clone()
    block.zero_grad()
    with fused.disabled():
        block(x).square().sum().backward()
    torch.testing.assert_close(fast, block[0].weight.grad, rtol=1e-5, atol=1e-5)


def test_state_dict_is_the_unfused_one_after_eval():
    from objdet import zoo

    model = zoo.build("faster_rcnn_r18_fpn", num_classes=2, min_size=64, max_size=64, backbone_norm="FrozenBN")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        model([torch.rand(3, 64, 64)])
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    buffer = io.BytesIO()
    torch.save(after, buffer)
    buffer.seek(0)
    again = zoo.build("faster_rcnn_r18_fpn", num_classes=2, min_size=64, max_size=64, backbone_norm="FrozenBN")
    again.load_state_dict(torch.load(buffer, weights_only=True))
    assert all(torch.equal(again.state_dict()[k], before[k]) for k in before)


def test_training_after_eval_is_unaffected():
    """Two SGD steps give bit-identical weights whether or not the model ran in eval mode first."""
    from objdet import zoo

    def trained(eval_first: bool) -> dict:
        torch.manual_seed(0)
        model = zoo.build("retinanet_r18_fpn", num_classes=2, min_size=64, max_size=64)
        if eval_first:
            model.eval()
            with torch.no_grad():
                model([torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))])
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        gen = torch.Generator().manual_seed(1)
        images = [torch.rand(3, 64, 64, generator=gen)]
        targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])}]
        for _ in range(2):
            opt.zero_grad()
            sum(model(images, targets).values()).backward()
            opt.step()
        assert not any(fused._CACHE in m.__dict__ for m in model.modules())  # train() dropped the copies
        return model.state_dict()

    a, b = trained(False), trained(True)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_nearest_upsample_equals_interpolate():
    x = torch.randn(2, 5, 7, 9).contiguous(memory_format=torch.channels_last)
    for size in [(14, 18), (15, 18)]:
        got = fused.upsample_nearest(x, size)
        assert torch.equal(got, torch.nn.functional.interpolate(x, size=size, mode="nearest"))
