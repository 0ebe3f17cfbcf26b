"""Darknet-19 (paper Section 3, Table 6): 19 conv layers + 5 maxpools, shared by the classifier and the detector."""

from __future__ import annotations

import torch
from torch import nn

from yolo9000.models import check_flags
from yolo9000.models.layers import BNStyle, ConvBNLeaky, InitStyle, init_weights_

# (filters, kernel) per conv, "M" = maxpool 2/2; exactly cfg/darknet19.cfg without its 1x1x1000 classifier.
DARKNET19_LAYOUT: list[tuple[int, int] | str] = [
    (32, 3), "M",
    (64, 3), "M",
    (128, 3), (64, 1), (128, 3), "M",
    (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3),  # 13th conv: the passthrough source (stride 16)
    "M",
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
]  # fmt: skip


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 8, a multiple of 4 so reorg's C/4 split stays whole)."""
    return channels if width == 1.0 else max(8, int(round(channels * width / 4)) * 4)


class Darknet19(nn.Module):
    """Darknet-19 feature extractor.

    ``forward`` maps (B, 3, H, W) images (H, W multiples of 32) to a dict of features:
    ``"c4"``: output of the 13th conv, (B, 512 * width, H / 16, W / 16) (the passthrough source);
    ``"c5"``: output of the 18th conv, (B, 1024 * width, H / 32, W / 32).

    Args:
        batch_norm: BN after every conv (paper Section 2, "Batch Normalization"); off = convs with biases.
        width: channel multiplier for CPU-sized variants (1.0 = the paper's network).
        bn_momentum: running-stat momentum (darknet: 0.01).
        bn_style: ``"torch"`` (``nn.BatchNorm2d``, divides by sqrt(var + 1e-5)) or ``"darknet"`` (darknet's
            (x - mean) / (sqrt(var) + 1e-6), :class:`~yolo9000.models.layers.DarknetBatchNorm2d`; converted darknet
            networks). The YOLOv2 head follows the backbone's style.
    """

    def __init__(
        self, batch_norm: bool = True, width: float = 1.0, bn_momentum: float = 0.01, bn_style: BNStyle = "torch"
    ) -> None:
        super().__init__()
        check_flags("Darknet19", batch_norm=batch_norm)
        if bn_style not in ("torch", "darknet"):
            raise ValueError(f"bn_style must be 'torch' or 'darknet', got {bn_style!r}")
        self.batch_norm, self.width, self.bn_style, self.bn_momentum = batch_norm, width, bn_style, bn_momentum
        stage1: list[nn.Module] = []
        stage2: list[nn.Module] = []
        in_ch, n_conv, target = 3, 0, stage1
        for item in DARKNET19_LAYOUT:
            if item == "M":
                if n_conv == 13:  # the maxpool after the 13th conv starts stage 2
                    target = stage2
                target.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # darknet's: an odd side rounds up (240 -> 8)
                continue
            filters, k = item  # type: ignore[misc]
            out_ch = scaled(filters, width)
            target.append(
                ConvBNLeaky(in_ch, out_ch, k, batch_norm=batch_norm, bn_momentum=bn_momentum, bn_style=bn_style)
            )
            in_ch, n_conv = out_ch, n_conv + 1
        self.stage1 = nn.Sequential(*stage1)
        self.stage2 = nn.Sequential(*stage2)
        self.c4_channels = scaled(512, width)
        self.out_channels = scaled(1024, width)

    def input_conv(self) -> nn.Conv2d:
        """The first convolution: the only layer that reads the input images."""
        return self.stage1[0][0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c4 = self.stage1(x)
        return {"c4": c4, "c5": self.stage2(c4)}


class ClassifierHead(nn.Module):
    """Darknet-19's classifier: 1x1 conv to classes (linear, with bias), global average pool.

    (B, C, H, W) features -> (B, num_classes) logits (softmax belongs to the loss).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


class Darknet19Classifier(nn.Module):
    """Darknet-19 + classifier head: (B, 3, H, W) -> (B, num_classes) logits. Same ``backbone`` as the detector.
    ``init``: weight initialisation of the whole network (:func:`~yolo9000.models.layers.init_weights_`)."""

    def __init__(self, backbone: Darknet19, num_classes: int = 1000, init: InitStyle = "darknet") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClassifierHead(backbone.out_channels, num_classes)
        init_weights_(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)["c5"])
