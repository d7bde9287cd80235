"""The eval-mode fast path: every detector in eval mode runs it without being asked.

A frozen (or eval-mode) batch norm after a convolution is an affine map, so it is folded into a copy of
the conv's weight and bias, cached on the conv and rebuilt when any of the tensors it came from changes
(their version counters and storage are the cache key: an optimiser step, `load_state_dict` or `.to()`
all invalidate it). On the CPU the folded conv, its bias, the activation and a residual sum run as one
oneDNN call (`mkldnn._convolution_pointwise`, the kernel torch.compile's CPU backend emits) on
channels-last tensors. Modules and state dicts are untouched: `model.train()` trains exactly as before,
and checkpoints saved after eval are those of the unfused model.

The fast path stays off in train mode, while tracing (exports get plain convolutions), under autocast,
when autograd needs the conv's gradient (the folded weights are then computed on the fly, differentiably)
and inside `disabled()`. In-place edits through `tensor.data` bypass version counters: call `clear(model)`.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objdet.norm import FrozenBatchNorm2d

_switch = threading.local()
_CACHE = "_objdet_folded"  # attribute on a conv: (key, weight, bias); on a module: (key, folded copy)
# conv -> (weight, its version, the weight in oneDNN's blocked layout); outside the module, so deepcopy and
# pickling never meet oneDNN's opaque tensors
_BLOCKED: weakref.WeakKeyDictionary[nn.Module, tuple[Tensor, int, Tensor]] = weakref.WeakKeyDictionary()


def _pointwise_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


_POINTWISE = _pointwise_available()
_LINEAR = _POINTWISE and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the plain (unfused) eval path inside this block, in this thread: for comparisons and tests."""
    before = getattr(_switch, "off", False)
    _switch.off = True
    try:
        yield
    finally:
        _switch.off = before


def active(module: nn.Module, x: Tensor) -> bool:
    """Whether `module` (in eval mode) takes the fast path for input `x`."""
    return not (module.training or getattr(_switch, "off", False) or torch.jit.is_tracing()
                or torch.jit.is_scripting() or torch.is_autocast_enabled(x.device.type))


def foldable(norm: nn.Module | None) -> bool:
    """A norm that is a fixed per-channel affine map here: FrozenBN, or BatchNorm2d in eval mode with statistics."""
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return (isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_mean is not None
            and norm.running_var is not None)


def _affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift) of a foldable norm: `norm(x) = x * scale + shift` per channel."""
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_and_shift()
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = norm.weight * scale
    shift = -norm.running_mean * scale
    return scale, shift if norm.bias is None else norm.bias + shift


def _fold(conv: nn.Conv2d, norm: nn.Module | None) -> tuple[Tensor, Tensor | None]:
    if norm is None:
        return conv.weight, conv.bias
    scale, shift = _affine(norm)
    weight = conv.weight * scale.reshape(-1, *[1] * (conv.weight.dim() - 1))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return weight, bias


def _sources(conv: nn.Conv2d, norm: nn.Module | None) -> list[Tensor]:
    tensors = [conv.weight, conv.bias]
    if norm is not None:
        tensors += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
    return [t for t in tensors if t is not None]


def folded(conv: nn.Conv2d, norm: nn.Module | None = None) -> tuple[Tensor, Tensor | None]:
    """`conv`'s weight and bias with the foldable `norm` after it folded in (cached; differentiable and
    uncached when autograd records the conv's parameters)."""
    sources = _sources(conv, norm)
    if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
        return _fold(conv, norm)
    if norm is None:
        return conv.weight, conv.bias
    key = (id(norm), tuple((t.data_ptr(), t._version, t.dtype) for t in sources))
    cached = conv.__dict__.get(_CACHE)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            weight, bias = _fold(conv, norm)
        cached = (key, weight.contiguous(memory_format=torch.channels_last) if weight.dim() == 4 else weight, bias)
        conv.__dict__[_CACHE] = cached
    return cached[1], cached[2]


def clear(module: nn.Module) -> None:
    """Drop every folded copy cached under `module` (they are rebuilt on the next eval call)."""
    for m in module.modules():
        m.__dict__.pop(_CACHE, None)
        _BLOCKED.pop(m, None)


def _post_op(act: nn.Module | None) -> str | None:
    """oneDNN's name for `act` as a fused post-op (None: applied after the call; oneDNN's swish rounds
    differently from PyTorch's SiLU, so SiLU stays outside)."""
    if act is None or isinstance(act, nn.Identity):
        return "none"
    return "relu" if isinstance(act, nn.ReLU) else None


def _blocked(layer: nn.Conv2d, weight: Tensor, x: Tensor) -> Tensor:
    """`weight` reordered once into the blocked layout oneDNN picks for inputs shaped like `x` (cached per conv;
    otherwise every call reorders it: 3-4% of a Keypoint R-CNN call). Another input shape still runs correctly,
    with a reorder when its layout differs."""
    cached = _BLOCKED.get(layer)
    if cached is None or cached[0] is not weight or cached[1] != weight._version:
        blocked = torch._C._nn.mkldnn_reorder_conv2d_weight(weight.contiguous().to_mkldnn(), list(layer.padding),
                                                            list(layer.stride), list(layer.dilation), layer.groups,
                                                            list(x.shape))
        cached = (weight, weight._version, blocked)
        _BLOCKED[layer] = cached
    return cached[2]


def conv(x: Tensor, layer: nn.Conv2d, norm: nn.Module | None = None, act: nn.Module | None = None,
         residual: Tensor | None = None) -> Tensor:
    """`act(norm(layer(x)) + residual)` in eval mode, with the norm folded and, on the CPU, everything in one
    oneDNN call. A norm that cannot be folded (GroupNorm) runs after the conv as usual."""
    if isinstance(norm, nn.Identity):
        norm = None
    post = norm if norm is not None and not foldable(norm) else None
    weight, bias = folded(layer, None if post is not None else norm)
    fused_act = _post_op(act)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if (_POINTWISE and post is None and fused_act is not None and not needs_grad and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str) and layer.groups == 1):  # oneDNN's grouped path is 2x slower
        # an NCHW input (pooled RoIs) would be reordered to oneDNN's layout and back in every call of a tower
        x = x.contiguous(memory_format=torch.channels_last)
        args = (_blocked(layer, weight, x), bias, list(layer.padding), list(layer.stride), list(layer.dilation),
                layer.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, fused_act, [], "")
        unary = None if fused_act == "none" else fused_act
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *args, "add", 1.0, unary, [], "")
    y = layer._conv_forward(x, weight, bias)
    if post is not None:
        y = post(y)
    if residual is not None:
        y = y + residual
    if isinstance(act, nn.SiLU):
        return F.silu(y, inplace=True)  # `y` is this call's own tensor: no second map
    return y if act is None else act(y)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """`F.linear(x, weight, bias)` (then ReLU) in eval mode; for a 2-d float32 `x` on the CPU one oneDNN matmul with
    the bias and ReLU fused (1.3-1.7x faster than MKL's sgemm on this project's AMD CPU)."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if (_LINEAR and not needs_grad and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and x.dim() == 2):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
    y = F.linear(x, weight, bias)
    return F.relu(y) if relu else y


def upsample_nearest(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """`F.interpolate(x, size, mode="nearest")`; an exact 2x upsample is a strided copy (PyTorch's nearest
    kernel is ~10x slower on channels-last maps), with the same values."""
    h, w = x.shape[-2:]
    if tuple(size) != (2 * h, 2 * w):
        return F.interpolate(x, size=size, mode="nearest")
    n, c = x.shape[:2]
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((n, c, 2 * h, 2 * w), dtype=x.dtype, device=x.device, memory_format=layout)
    out.view(n, c, h, 2, w, 2).copy_(x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2))
    return out


def _fold_pairs(module: nn.Module) -> nn.Module:
    """Fold, in `module` (a private copy), every foldable norm registered right after a conv into that conv; the
    norm is left as its activation (timm's BatchNormAct2d) or an identity."""
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (_, layer), (norm_name, norm) in zip(children, children[1:]):
            if isinstance(layer, nn.Conv2d) and foldable(norm) and norm.num_features == layer.out_channels:
                weight, bias = _fold(layer, norm)
                layer.weight = nn.Parameter(weight.contiguous(memory_format=torch.channels_last), False)
                layer.bias = nn.Parameter(bias, False)
                act = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
                setattr(parent, norm_name, nn.Sequential(*act) if act else nn.Identity())
    return module


def folded_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` (a trunk objdet does not own, e.g. timm's) with its norms folded into the
    convs, cached on `module` until any of its tensors changes. It costs the trunk's size in memory."""
    tensors = list(module.parameters()) + list(module.buffers())
    key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
    cached = module.__dict__.get(_CACHE)
    if cached is None or cached[0] != key:
        module.__dict__.pop(_CACHE, None)  # not deep-copied into the copy
        with torch.no_grad():
            cached = (key, _fold_pairs(copy.deepcopy(module).eval()))
        module.__dict__[_CACHE] = cached
    return cached[1]
