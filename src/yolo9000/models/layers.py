"""Building blocks shared by Darknet-19 and the YOLOv2 head: conv-BN-leaky, darknet's reorg, same-size maxpool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNLeaky(nn.Sequential):
    """darknet's ``[convolutional]`` block: conv (no bias when batch-normalised) -> BN -> leaky ReLU(0.1).

    darknet's ``pad=1`` means padding = kernel // 2, so a 1x1 conv has none.
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
    ) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch, momentum=bn_momentum))
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
