"""Building blocks shared by Darknet-19, the YOLOv2 head and the generic darknet network
(:class:`yolo9000.darknet.DarknetNet`): conv-BN-leaky, darknet's batch norm, darknet's reorg, darknet's maxpool and
global average pool, and darknet's general ``[convolutional]`` block."""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections import OrderedDict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

BNStyle = Literal["torch", "darknet"]
InitStyle = Literal["darknet", "torch"]


def init_weights_(module: nn.Module, style: InitStyle = "darknet") -> nn.Module:
    """Initialise a network's weights in place; returns it.

    ``darknet``: conv weights ``N(0, 2 / fan_in)`` (``make_convolutional_layer``: ``scale * rand_normal()``,
    scale = sqrt(2 / (size * size * c / groups))), fully connected weights ``U(-s, s)``, s = sqrt(2 / inputs)
    (``make_connected_layer``), every bias 0, batch-norm scales 1 and shifts 0. This keeps the activations' scale
    through the 20-odd leaky-ReLU convs of a network WITHOUT batch norm, where PyTorch's default (about a third of
    the variance per layer) leaves the output nearly constant and the network cannot learn (Table 2's YOLO column).
    ``torch``: PyTorch's defaults, as the layers were built.
    """
    if style == "torch":
        return module
    if style != "darknet":
        raise ValueError(f"init must be 'darknet' or 'torch', got {style!r}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
        elif isinstance(m, nn.Linear):
            bound = math.sqrt(2.0 / m.in_features)
            nn.init.uniform_(m.weight, -bound, bound)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
        if isinstance(m, nn.Conv2d | nn.Linear | nn.modules.batchnorm._BatchNorm) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return module


class DarknetBatchNorm2d(nn.BatchNorm2d):
    """darknet's batch norm: ``(x - mean) / (sqrt(var) + eps) * weight + bias`` with ``eps = 1e-6`` OUTSIDE the root.

    PyTorch's :class:`~torch.nn.BatchNorm2d` divides by ``sqrt(var + eps)``; the two differ where a channel's
    variance is small, which matters for converted darknet weights. Same parameters, buffers and state-dict keys as
    ``nn.BatchNorm2d`` (darknet's scales = ``weight``, biases = ``bias``, rolling_mean / rolling_variance =
    ``running_mean`` / ``running_var``), so a darknet network's values are copied, never transformed.

    Training (darknet's CPU ``forward_batchnorm_layer``): the batch mean and the UNBIASED batch variance (divisor
    B*H*W - 1, darknet's ``variance_cpu``) normalise the batch, and the running statistics move by ``momentum``
    towards them (darknet: 0.01). Eval: the running statistics. (darknet's cuDNN build normalises training batches
    with cuDNN's ``sqrt(var + 1e-5)`` instead; inference is this formula in every build.)

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, num_features: int, eps: float = 1e-6, momentum: float | None = 0.01, **kwargs: object) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"DarknetBatchNorm2d expects (B, C, H, W), got {tuple(x.shape)}")
        use_batch = self.training or self.running_mean is None or self.running_var is None
        if use_batch:
            n = x.numel() // x.shape[1]
            if n < 2:
                raise ValueError(f"DarknetBatchNorm2d needs more than 1 value per channel when training, got {n}")
            mean = x.mean(dim=(0, 2, 3))  # (C,)
            var = x.var(dim=(0, 2, 3), correction=1)  # (C,) unbiased, as darknet
            if self.training and self.track_running_stats and self.running_mean is not None:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
                    m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                    self.running_mean.mul_(1.0 - m).add_(mean.detach(), alpha=m)
                    self.running_var.mul_(1.0 - m).add_(var.detach(), alpha=m)  # type: ignore[union-attr]
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean[None, :, None, None]) / (var.sqrt() + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def bn_affine(
    gamma: torch.Tensor, beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float, darknet: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch norm's inference transform as ``y = x * scale + shift`` from its (C,) tensors, in their dtype:
    ``scale = gamma / sqrt(var + eps)`` (PyTorch), or ``gamma / (sqrt(var) + eps)`` with ``darknet``
    (:class:`DarknetBatchNorm2d`); ``shift = beta - mean * scale``."""
    std = var.sqrt() + eps if darknet else (var + eps).sqrt()
    scale = gamma / std
    return scale, beta - mean * scale


def bn_inference_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`bn_affine` of a batch-norm layer with its own formula, in float64: ``scale``, ``shift`` (C,)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics has no fixed inference transform")
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(var)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(var)
    return bn_affine(gamma, beta, mean, var, bn.eps, darknet=isinstance(bn, DarknetBatchNorm2d))


def _conv_with_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with a bias that computes ``bn(conv(x))`` of the eval-mode pair."""
    scale, shift = bn_inference_affine(bn)
    w = conv.weight.detach()
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=w.device,
        dtype=w.dtype,
    )
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        fused.weight.copy_((w.double() * scale.view(-1, 1, 1, 1)).to(w.dtype))
        fused.bias.copy_((bias * scale + shift).to(w.dtype))  # type: ignore[union-attr]
    return fused


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` (eval mode, no gradients) whose every conv directly followed by a batch norm
    in an ``nn.Sequential`` (:class:`ConvBNLeaky`, :class:`DarknetConv`) absorbs that BN's running-statistics
    transform (:func:`bn_inference_affine`); the BN becomes ``nn.Identity``. The copy computes what ``net`` computes
    in eval mode, up to float rounding, with one op fewer per layer; ``net`` itself is left untouched (training
    goes on with its BNs). Memory layout of the copy: NCHW (set it afterwards); a compiled ``net``'s copy runs
    eagerly (compile it again if wanted).
    """
    out = copy.deepcopy(net).eval().requires_grad_(False)
    for seq in out.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None:
                setattr(seq, a, _conv_with_bn(conv, bn).requires_grad_(False))
                setattr(seq, b, nn.Identity())
    return out


def fold_input_scale(net: nn.Module, scale: float) -> bool:
    """Fold a constant input scaling into ``net``'s input convolution, in place: afterwards ``net(x)`` computes what
    it computed for ``scale * x`` before, up to float rounding (a convolution is linear and its zero padding
    scales with the input). ``net`` names that convolution with an ``input_conv()`` method (the only layer that
    reads the input; :class:`~yolo9000.models.yolov2.YOLOv2`, :class:`~yolo9000.darknet.DarknetNet`); without one,
    or when it returns None, nothing changes. On success ``net.folded_input_scale`` is set to ``scale`` (the
    caller then feeds unscaled inputs: uint8 pixels cast to float, with no division by 255). Returns whether it
    folded. Meant for an inference copy (:func:`fold_batch_norms`); a network folded twice is refused.
    """
    conv = net.input_conv() if callable(getattr(net, "input_conv", None)) else None
    if conv is None:
        return False
    if getattr(net, "folded_input_scale", None) is not None:
        raise ValueError(f"{type(net).__name__}: an input scale is folded into it already")
    with torch.no_grad():
        conv.weight.mul_(scale)
    net.folded_input_scale = float(scale)
    return True


@functools.cache
def _pointwise_conv_op() -> Any:
    """oneDNN's fused convolution + eltwise post-op (``torch.ops.mkldnn._convolution_pointwise``, what inductor
    emits for a conv followed by an activation on the CPU), or None where this PyTorch build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


def _zero_padded(conv: nn.Conv2d) -> bool:
    """A conv whose padding oneDNN's fused call takes: numbers (not ``"same"`` / ``"valid"``), zeros."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def fused_layer_count(net: nn.Module) -> int:
    """How many of ``net``'s layers :func:`fuse_for_inference` replaced (0: none, or a network never fused)."""
    return sum(isinstance(m, (FusedConvLeaky, MaxPool2x2)) for m in net.modules())


class FusedConvLeaky(nn.Module):
    """Inference only: ``leaky_relu(conv(x), slope)`` in one oneDNN call on the CPU (the activation applied to each
    output value as it is written: one pass over the activations fewer). The same values as the two ops up to float
    rounding; built by :func:`fuse_for_inference` from a conv and the leaky ReLU after it, sharing their
    parameters. Inputs oneDNN would not take (another device or dtype, autocast, gradients wanted, oneDNN switched
    off) run the two ops, and so does a batch of one: there the fused forms made the default model's forward at 256
    slower on a 2-core Xeon VM (PyTorch runs a batch of one's small late convs with a kernel of its own), where
    batches of 4 and 32 gain 4-6 and 11-12 % (``docs/results/bench_cpu_s40``). Shapes: (B, in_ch, H, W) ->
    (B, out_ch, H', W').
    """

    def __init__(self, conv: nn.Conv2d, slope: float) -> None:
        super().__init__()
        if not _zero_padded(conv):
            raise ValueError(f"FusedConvLeaky takes a conv with numeric zero padding, got {conv}")
        self.conv, self.slope = conv, float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        op = _pointwise_conv_op() if x.dim() == 4 and x.shape[0] > 1 else None  # batch 1: the two ops (docstring)
        if (
            op is None
            or not torch.backends.mkldnn.enabled  # switched off by the caller: PyTorch's own conv
            or x.device.type != "cpu"
            or not x.dtype == c.weight.dtype == torch.float32
            or (torch.is_grad_enabled() and (x.requires_grad or c.weight.requires_grad))
            or torch.is_autocast_enabled("cpu")  # autocast casts the conv's operands: the two ops, as unfused
        ):
            return F.leaky_relu(c(x), self.slope, inplace=True)  # the conv's own new output
        padding, stride, dilation = list(c.padding), list(c.stride), list(c.dilation)  # type: ignore[arg-type]
        return op(x, c.weight, c.bias, padding, stride, dilation, c.groups, "leaky_relu", [self.slope], "")

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


class MaxPool2x2(nn.Module):
    """Inference only: a 2 x 2, stride-2 max pool of even-sided inputs as two element-wise maxima of strided views
    (rows, then columns), the same values as the pool it replaces; on NHWC CPU inputs about 1.3x faster at 8
    channels and 1.9x at 16 (oneDNN's pooling is not what PyTorch's CPU ``max_pool2d`` runs). Odd sides, a batch
    of one (as :class:`FusedConvLeaky`) and inputs that want gradients (a max pool's gradient goes to one element
    of a tie, the maxima's to both) run ``pool``, the module it replaces. Shapes: (B, C, H, W) -> (B, C, H / 2, W / 2).
    """

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2 or x.shape[0] == 1 or (torch.is_grad_enabled() and x.requires_grad):
            return self.pool(x)
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _is_pool_2x2(m: nn.Module) -> bool:
    """A max pool that takes each 2 x 2 block of an even-sided input (stride 2, no padding before the block;
    darknet's padding of one after it reaches past an even side only)."""
    if isinstance(m, nn.MaxPool2d):
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        return (
            not m.return_indices
            and pair(m.kernel_size) == (2, 2)
            and pair(m.stride) == (2, 2)
            and pair(m.padding) == (0, 0)
            and pair(m.dilation) == (1, 1)
        )
    return isinstance(m, DarknetMaxPool) and (m.size, m.stride) == (2, 2) and m.padding in (0, 1)  # type: ignore[attr-defined]


def fused_sibling(net: nn.Module) -> tuple[nn.Module, int]:
    """A copy of the inference network ``net`` sharing its parameters and buffers (no second copy of the weights:
    later in-place changes of either show in both) with :func:`fuse_for_inference` applied; and how many layers it
    replaced (0: nothing to fuse, the copy computes as ``net``)."""
    shared: dict[int, object] = {id(t): t for t in itertools.chain(net.parameters(), net.buffers())}
    sibling = copy.deepcopy(net, memo=shared)
    return sibling, fuse_for_inference(sibling)


def fuse_for_inference(net: nn.Module) -> int:
    """Rewrite an inference copy (:func:`fold_batch_norms`) in place for the CPU's eager forward pass: every conv
    followed (past ``nn.Identity``s, the folded BNs) by a leaky ReLU in an ``nn.Sequential`` becomes a
    :class:`FusedConvLeaky` (the ReLU an ``nn.Identity``), every 2 x 2 stride-2 max pool a :class:`MaxPool2x2`.
    The same outputs up to float rounding. Returns how many layers were replaced. Not for training: the fused
    forms run the plain ops whenever gradients are wanted."""
    count, fusable = 0, _pointwise_conv_op() is not None
    for seq in list(net.modules()):
        for name, m in list(seq._modules.items()):
            if m is not None and _is_pool_2x2(m):
                setattr(seq, name, MaxPool2x2(m))
                count += 1
        if not isinstance(seq, nn.Sequential) or not fusable:
            continue
        names = list(seq._modules)
        for i, name in enumerate(names):
            conv = seq._modules[name]
            if type(conv) is not nn.Conv2d or not _zero_padded(conv):
                continue
            after = [k for k in names[i + 1 :] if not isinstance(seq._modules[k], nn.Identity)]
            act = seq._modules[after[0]] if after else None
            if isinstance(act, nn.LeakyReLU):
                setattr(seq, name, FusedConvLeaky(conv, act.negative_slope))
                setattr(seq, after[0], nn.Identity())
                count += 1
    return count


_NARROW = 16  # channels: fewer in NHWC memory take PyTorch's slow CPU batch-norm backward (one vector's width)


class _NarrowNhwcBatchNorm(torch.autograd.Function):
    """Training batch norm of an NHWC CPU batch with few channels: PyTorch's own forward (``native_batch_norm``:
    the output, the batch statistics saved, the running statistics updated), and a backward of a few passes over
    the (B * H * W, C) matrix the NHWC batch is: the input centred on the batch mean, the column sums of the
    gradient and of gradient x centred input, then one per-channel affine combination of the two (as PyTorch's
    kernel, on centred values: no cancellation where the mean is large against the spread)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        momentum: float,
        eps: float,
    ) -> torch.Tensor:
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable  # the batch statistics' second derivatives are not written
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        b, c, h, w = x.shape
        centred = x.permute(0, 2, 3, 1).reshape(-1, c) - mean  # (B * H * W, C): the NHWC batch as rows, centred
        g = grad.permute(0, 2, 3, 1).reshape(-1, c)  # a view when the gradient is NHWC too, else a copy
        n = centred.shape[0]
        grad_bias = g.sum(0)  # (C,)
        grad_weight = (g * centred).sum(0) * invstd  # sum of grad x normalised input
        # d loss / d x = a * grad + k * (x - mean) + m per channel: the batch statistics' own gradients folded in
        a = weight * invstd
        k = -a * invstd * grad_weight / n
        m = -a * grad_bias / n
        dx = torch.addcmul(torch.addcmul(m, centred, k), g, a)
        return dx.view(b, h, w, c).permute(0, 3, 1, 2), grad_weight, grad_bias, None, None, None, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (the same parameters, buffers, state-dict keys and values), whose training step on an
    NHWC CPU batch of fewer than 16 channels takes :class:`_NarrowNhwcBatchNorm`'s backward: PyTorch's took 77 ms
    for the default CPU model's first batch norm (batch 16, 8 channels, 256 x 256; about a quarter of a training
    step on a 2-core Xeon VM), this one ~20 ms. The forward pass and the running statistics are PyTorch's own;
    the gradients the same up to float rounding (sums in another order). Every other case (evaluation, no
    gradients, NCHW, 16 channels and more, another device or dtype, a graph being compiled: inductor writes its
    own backward) is ``nn.BatchNorm2d``'s. Shapes: (B, C, H, W) -> (B, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        narrow = (
            self.training
            and torch.is_grad_enabled()
            and x.dim() == 4
            and x.shape[1] < _NARROW
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.affine
            and self.track_running_stats
            and self.running_mean is not None
            and self.num_batches_tracked is not None
            and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous()  # NHWC strides (a 1 x 1 image or one channel is both)
            and x.numel() > x.shape[1]  # more than one value per channel
            and not torch.compiler.is_compiling()
        )
        if not narrow:
            return super().forward(x)
        self.num_batches_tracked.add_(1)  # as nn.BatchNorm2d: momentum None averages over the batches
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return _NarrowNhwcBatchNorm.apply(
            x, self.weight, self.bias, self.running_mean, self.running_var, factor, self.eps
        )


def make_batch_norm(channels: int, momentum: float = 0.01, style: BNStyle = "torch") -> nn.BatchNorm2d:
    """``style="torch"``: :class:`BatchNorm2d` (``nn.BatchNorm2d``, eps 1e-5 under the root); ``"darknet"``:
    :class:`DarknetBatchNorm2d`."""
    if style == "torch":
        return BatchNorm2d(channels, momentum=momentum)
    if style == "darknet":
        return DarknetBatchNorm2d(channels, momentum=momentum)
    raise ValueError(f"bn_style must be 'torch' or 'darknet', got {style!r}")


class ConvBNLeaky(nn.Sequential):
    """darknet's ``[convolutional]`` block: conv (no bias when batch-normalised) -> BN -> leaky ReLU(0.1).

    darknet's ``pad=1`` means padding = kernel // 2, so a 1x1 conv has none. ``bn_style``: ``"torch"``
    (``nn.BatchNorm2d``) or ``"darknet"`` (:class:`DarknetBatchNorm2d`, darknet's formula; converted networks).
    Shapes: (B, in_ch, H, W) -> (B, out_ch, H / stride, W / stride).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        batch_norm: bool = True,
        bn_momentum: float = 0.01,
        activation: bool = True,
        bn_style: BNStyle = "torch",
    ) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=not batch_norm)]
        if batch_norm:
            layers.append(make_batch_norm(out_ch, bn_momentum, bn_style))
        if activation:
            layers.append(nn.LeakyReLU(0.1, inplace=True))
        super().__init__(*layers)


def reorg(x: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """darknet's passthrough ``reorg`` (``reorg_cpu(..., forward=0)``), NOT ``pixel_unshuffle``.

    darknet reads the (B, C, H, W) input buffer as (B, C / s^2, H * s, W * s), gathers each s x s block of that
    view into channels ``offset * C / s^2 + c`` with ``offset = dy * s + dx`` of a (B, C, H, W) buffer, and the
    next layer reads that buffer as (B, C * s^2, H / s, W / s). The official weights were trained with this order.

    Args:
        x: (B, C, H, W), C divisible by stride^2, H and W divisible by stride.
    Returns:
        (B, C * s^2, H / s, W / s).
    """
    b, c, h, w = x.shape
    s = stride
    if c % (s * s) or h % s or w % s:
        raise ValueError(f"reorg needs C % {s * s} == 0 and H, W % {s} == 0, got {tuple(x.shape)}")
    c2 = c // (s * s)
    # The flat buffer read as (B, c2, H*s, W*s), split into s x s blocks: (B, c2, H, s(dy), W, s(dx)).
    # darknet writes element (b, k = (dy*s + dx)*c2 + c, j, i) of a (B, C, H, W) buffer from block (c, j, dy, i, dx),
    # and the next layer reads that same flat buffer as (B, C*s^2, H/s, W/s).
    y = x.reshape(b, c2, h, s, w, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * s * s, h // s, w // s)


class Reorg(nn.Module):
    """Module wrapper of :func:`reorg`: (B, C, H, W) -> (B, C * s^2, H / s, W / s)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reorg(x, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class MaxPoolSame(nn.Module):
    """darknet maxpool with stride 1 (yolov2-tiny): pads one row/column right/bottom with -inf, keeps the size."""

    def __init__(self, size: int = 2, stride: int = 1) -> None:
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.size - 1
        x = F.pad(x, (0, pad, 0, pad), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class DarknetMaxPool(nn.Module):
    """darknet's maxpool: pads ``padding // 2`` before and the rest after with -inf, then max over ``size`` windows.

    Output size (W + padding - size) // stride + 1 (darknet's ``make_maxpool_layer``). Shapes: (B, C, H, W) ->
    (B, C, H', W').
    """

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p:
            x = F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool(nn.Module):
    """darknet's ``[avgpool]``: (B, C, H, W) -> (B, C, 1, 1) mean over all positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


DarknetActivation = Literal[
    "linear",
    "leaky",
    "relu",
    "logistic",
    "loggy",
    "elu",
    "selu",
    "relie",
    "ramp",
    "tanh",
    "plse",
    "stair",
    "hardtan",
    "lhtan",
]
# darknet's activations (activations.h of the YOLOv2-era darknet), as cfgs name them
DARKNET_ACTIVATIONS: tuple[str, ...] = DarknetActivation.__args__  # type: ignore[attr-defined]


def _stair(x: torch.Tensor) -> torch.Tensor:
    n = torch.floor(x)
    return torch.where(torch.remainder(n, 2) == 0, torch.floor(x / 2), (x - n) + torch.floor(x / 2))


# the elementwise formulas of darknet's activations.h (the forward pass; backward is autograd's)
_ACTIVATION_FNS = {
    "loggy": lambda x: 2.0 * torch.sigmoid(x) - 1.0,
    "elu": lambda x: torch.where(x >= 0, x, torch.expm1(x)),
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x)),
    "relie": lambda x: torch.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: x * (x > 0) + 0.1 * x,
    "tanh": torch.tanh,
    "plse": lambda x: torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)),
    "stair": _stair,
    "hardtan": lambda x: x.clamp(-1.0, 1.0),
    "lhtan": lambda x: torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x)),
}


class DarknetActivationFn(nn.Module):
    """One of darknet's less common activations by its cfg name (``elu``, ``selu``, ``tanh``, ``ramp``, ``plse``,
    ``stair``, ``hardtan``, ``lhtan``, ``loggy``, ``relie``), elementwise as darknet's ``activations.h``. Shapes:
    any -> the same."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in _ACTIVATION_FNS:
            raise ValueError(f"no darknet activation {name!r} (one of {', '.join(_ACTIVATION_FNS)})")
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATION_FNS[self.name](x)

    def extra_repr(self) -> str:
        return self.name


def darknet_activation(name: str) -> nn.Module | None:
    """The module of a darknet activation name: ``leaky`` (slope 0.1), ``relu``, ``logistic`` as PyTorch's modules,
    the others as :class:`DarknetActivationFn`; None for ``linear`` (no op). Raises ValueError for other names."""
    if name == "linear":
        return None
    common = {"leaky": nn.LeakyReLU(0.1), "relu": nn.ReLU(), "logistic": nn.Sigmoid()}
    return common[name] if name in common else DarknetActivationFn(name)


class DarknetConv(nn.Sequential):
    """darknet's ``[convolutional]`` with any padding / groups / activation: conv -> [darknet BN] -> [activation].

    The general form of :class:`ConvBNLeaky` that cfg-built networks use (submodules ``conv``, ``bn``, ``act``, so
    their state-dict keys name the part). The conv has a bias only without batch norm; the BN is
    :class:`DarknetBatchNorm2d`; ``activation``: one of :data:`DARKNET_ACTIVATIONS` (``linear``: none).
    Shapes: (B, in_ch, H, W) -> (B, out_ch, (H + 2 * padding - size) / stride + 1, ...).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        batch_norm: bool = False,
        activation: DarknetActivation = "linear",
        bn_momentum: float = 0.01,
    ) -> None:
        mods: OrderedDict[str, nn.Module] = OrderedDict(
            {"conv": nn.Conv2d(in_ch, out_ch, size, stride, padding, groups=groups, bias=not batch_norm)}
        )
        if batch_norm:
            mods["bn"] = DarknetBatchNorm2d(out_ch, momentum=bn_momentum)
        act = darknet_activation(activation)
        if act is not None:
            mods["act"] = act
        super().__init__(mods)

    def conv_pair(self) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
        """(conv, BN or None): the tensors darknet stores for this layer."""
        bn = self.bn if "bn" in self._modules else None
        return self.conv, bn  # type: ignore[return-value]


class DarknetShortcut(nn.Module):
    """darknet's ``[shortcut]`` (``shortcut_cpu``): the previous layer's output ``x`` plus layer ``from``'s ``y``,
    ``alpha * x + beta * y``, then the activation; the output has ``x``'s shape.

    Where the two differ in size, darknet adds ``y`` sampled every ``stride = W_y / W_x`` positions (``y`` larger)
    or into every ``sample = W_x / W_y``-th position of ``x`` (``y`` smaller), over the smaller of the two channel
    counts; positions it does not reach keep ``x`` (unscaled). Shapes: x (B, C, H, W), y (B, C', H', W') ->
    (B, C, H, W).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, activation: str = "linear") -> None:
        super().__init__()
        self.alpha, self.beta, self.activation = float(alpha), float(beta), activation
        self.act = darknet_activation(activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape == y.shape:
            out = x + y if self.alpha == 1.0 and self.beta == 1.0 else self.alpha * x + self.beta * y
        else:
            out = self._sampled_sum(x, y)
        return out if self.act is None else self.act(out)

    def _sampled_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        (h2, w2), (h1, w1) = x.shape[-2:], y.shape[-2:]
        if w1 // w2 != h1 // h2 or w2 // w1 != h2 // h1 or x.shape[0] != y.shape[0]:  # darknet's asserts
            raise ValueError(
                f"[shortcut] cannot add a {tuple(y.shape)} output to a {tuple(x.shape)} one: their heights and "
                "widths must scale by the same factor (darknet asserts it)"
            )
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
        c, h, w = min(x.shape[1], y.shape[1]), min(h1, h2), min(w1, w2)
        add = y[:, :c, : h * stride : stride, : w * stride : stride]
        region = (slice(None), slice(0, c), slice(0, h * sample, sample), slice(0, w * sample, sample))
        out = x.clone()
        out[region] = self.alpha * x[region] + self.beta * add
        return out

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, activation={self.activation}"


class DarknetUpsample(nn.Module):
    """darknet's ``[upsample]`` (``upsample_cpu``): ``stride`` > 0 repeats every value stride x stride times
    (nearest neighbour), times ``scale``; a negative ``stride`` in the cfg (``reverse``) sums each |stride| x
    |stride| block instead, times ``scale``. Shapes: (B, C, H, W) -> (B, C, H * s, W * s), reverse -> (B, C, H / s,
    W / s) (H and W multiples of s)."""

    def __init__(self, stride: int = 2, scale: float = 1.0, reverse: bool = False) -> None:
        super().__init__()
        self.stride, self.scale, self.reverse = int(stride), float(scale), bool(reverse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if self.reverse:
            b, c, h, w = x.shape
            if h % s or w % s:
                raise ValueError(f"[upsample] stride=-{s} needs a height and width divisible by {s}, got {h} x {w}")
            out = x.reshape(b, c, h // s, s, w // s, s).sum(dim=(3, 5))
        else:
            out = F.interpolate(x, scale_factor=s, mode="nearest") if s != 1 else x
        return out if self.scale == 1.0 else out * self.scale

    def extra_repr(self) -> str:
        return f"stride={'-' if self.reverse else ''}{self.stride}, scale={self.scale}"


class DarknetConnected(nn.Module):
    """darknet's ``[connected]``: the input flattened in (C, H, W) order, ``W x`` (+ biases; with batch norm:
    darknet's BN, whose shift is the layer's biases), then the activation. Submodules ``linear`` (weight (out, in);
    a bias only without BN), ``bn`` (:class:`DarknetBatchNorm2d` over the (out,) values), ``act``.
    Shapes: (B, C, H, W) with C * H * W = ``in_features`` -> (B, out, 1, 1) (darknet's 1 x 1 x out output).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        batch_norm: bool = False,
        activation: str = "logistic",
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=not batch_norm)
        self.bn = DarknetBatchNorm2d(out_features, momentum=bn_momentum) if batch_norm else None
        self.act = darknet_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        if flat.shape[1] != self.linear.in_features:
            raise ValueError(
                f"[connected] takes {self.linear.in_features} inputs, got {tuple(x.shape[1:])} = {flat.shape[1]} "
                "(a connected layer fixes the input size: run the network at its cfg's [net] height and width)"
            )
        y = self.linear(flat)[:, :, None, None]
        if self.bn is not None:
            y = self.bn(y)
        return y if self.act is None else self.act(y)

    def conv_pair(self) -> tuple[nn.Linear, nn.BatchNorm2d | None]:
        """(linear, BN or None): the tensors darknet stores for this layer."""
        return self.linear, self.bn


class DarknetCrop(nn.Module):
    """darknet's ``[crop]`` (``forward_crop_layer``, the input layer of its AlexNet, VGG-16 and Extraction cfgs):
    a ``crop`` window of the input, times 2 minus 1 (``[0, 1]`` pixels to ``[-1, 1]``; ``adjust=False``, darknet's
    ``noadjust=1``: as they are).

    At the size it was made for (``at``, the ``[net]`` height and width) the window is ``crop``; at another size
    darknet's ``resize_crop_layer`` keeps the fraction ``crop_height / height`` of both sides (float32, truncated).
    In eval mode the window is centred (``(H - h) / 2`` rounded down); in training mode it is placed at random and
    mirrored with ``flip`` half the time, one draw for the whole batch, as darknet's CPU layer draws once per batch
    (its ``angle`` / ``saturation`` / ``exposure`` jitter is the GPU layer's data augmentation, not done here).
    Shapes: (B, C, H, W) -> (B, C, h, w).
    """

    def __init__(self, crop: tuple[int, int], at: tuple[int, int], flip: bool = False, adjust: bool = True) -> None:
        super().__init__()
        self.crop, self.at = (int(crop[0]), int(crop[1])), (int(at[0]), int(at[1]))
        self.flip, self.adjust = bool(flip), bool(adjust)

    def window(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width) of the window at an (h, w) input."""
        if (h, w) == self.at:
            return self.crop
        scale = torch.tensor(self.crop[0], dtype=torch.float32) / self.at[0]  # darknet's float l.scale
        return int(scale * h), int(scale * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        oh, ow = self.window(h, w)
        if oh > h or ow > w or oh < 1 or ow < 1:
            raise ValueError(f"[crop] of {oh} x {ow} does not fit a {h} x {w} input")
        if self.training:
            dh, dw = (int(torch.randint(0, n + 1, ())) for n in (h - oh, w - ow))
            flip = self.flip and bool(torch.randint(0, 2, ()))
        else:
            dh, dw, flip = (h - oh) // 2, (w - ow) // 2, False
        out = x[..., dh : dh + oh, dw : dw + ow]
        if flip:
            out = out.flip(-1)
        return out * 2 - 1 if self.adjust else out

    def extra_repr(self) -> str:
        return f"crop={self.crop}, at={self.at}, flip={self.flip}, adjust={self.adjust}"
