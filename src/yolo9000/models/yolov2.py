"""YOLOv2 detector (paper Section 2): Darknet-19 + detection head with anchors and the passthrough layer.

The head returns raw logits in darknet's layout (B, A * (5 + C), H / 32, W / 32): per anchor a block of 5 + C
channels ``tx, ty, tw, th, to, class logits``. :func:`yolo9000.boxes.split_region` is the one place that views
that layout as (B, A, 5 + C, H, W); decoding and the region loss read it through that helper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from yolo9000.models import STRIDE, check_flags
from yolo9000.models.darknet19 import Darknet19, scaled
from yolo9000.models.layers import ConvBNLeaky, InitStyle, Reorg, init_weights_


class YOLOv2(nn.Module):
    """YOLOv2 / YOLO9000 network.

    Args:
        backbone: the Darknet-19 feature extractor (shared with the classifier).
        num_classes: C, classes per box (WordTree nodes for YOLO9000).
        anchors: A priors (w, h) in grid-cell units (darknet's ``anchors``); ``None`` = no priors: ``num_boxes``
            predictors per cell with a 1 x 1 cell prior, matched by predicted shape (YOLOv1-style, Table 2's
            first columns).
        num_boxes: predictors per cell when ``anchors`` is None.
        passthrough: the reorg passthrough from the 26 x 26 layer (Section 2, "Fine-Grained Features").
        passthrough_channels: the 1 x 1 conv before reorg (darknet's 64; the paper omits it). 0 = none.
        head: ``conv`` (fully convolutional, YOLOv2) or ``fc`` (YOLOv1-style fully connected at a fixed size).
        fc_grid: the fixed output grid of the ``fc`` head (input size / 32).
        fc_hidden: hidden units of the ``fc`` head.
        location: ``direct`` (sigmoid offsets in the cell, exp sizes; Section 2 "Direct location prediction") or
            ``offset`` (RPN-style unconstrained offsets scaled by the prior). Used by decode and loss.
        extra_convs: the 3 x 3 x 1024 convs on the backbone output before the passthrough (darknet: 2).
        fuse: the 3 x 3 x 1024 conv in front of the prediction (yolov2-voc: yes; yolo9000.cfg: none).
        init: weight initialisation of the whole network, backbone included (:func:`init_weights_`): ``darknet``
            or ``torch`` (PyTorch's defaults). Pretrained weights are loaded afterwards.
    """

    def __init__(
        self,
        backbone: Darknet19,
        num_classes: int,
        anchors: Sequence[Sequence[float]] | None = None,
        num_boxes: int = 2,
        passthrough: bool = True,
        passthrough_channels: int = 64,
        head: Literal["conv", "fc"] = "conv",
        fc_grid: int = 13,
        fc_hidden: int = 4096,
        location: Literal["direct", "offset"] = "direct",
        extra_convs: int = 2,
        fuse: bool = True,
        init: InitStyle = "darknet",
    ) -> None:
        super().__init__()
        check_flags("YOLOv2", passthrough=passthrough, fuse=fuse)
        if location not in ("direct", "offset"):
            raise ValueError(f"location must be 'direct' or 'offset', got {location!r}")
        if head not in ("conv", "fc"):
            raise ValueError(f"head must be 'conv' or 'fc', got {head!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.location = location
        self.head_type = head
        self.fc_grid = fc_grid
        self.bias_match = anchors is not None
        priors = torch.tensor(anchors, dtype=torch.float32) if anchors is not None else torch.ones(num_boxes, 2)
        if priors.ndim != 2 or priors.shape[1] != 2:
            raise ValueError(f"anchors must be a list of (w, h) pairs, got shape {tuple(priors.shape)}")
        self.register_buffer("anchors", priors)  # (A, 2) grid-cell units
        self.num_anchors = priors.shape[0]

        bn, w = backbone.batch_norm, backbone.width
        # the head normalises like the backbone
        bn_kw = {"batch_norm": bn, "bn_style": backbone.bn_style, "bn_momentum": backbone.bn_momentum}
        ch = backbone.out_channels
        hid = scaled(1024, w)
        convs: list[nn.Module] = []
        for _ in range(extra_convs):
            convs.append(ConvBNLeaky(ch, hid, 3, **bn_kw))
            ch = hid
        self.extra = nn.Sequential(*convs)

        self.passthrough = passthrough
        if passthrough:
            pt_ch = scaled(passthrough_channels, w) if passthrough_channels else backbone.c4_channels
            self.pt_conv = (
                ConvBNLeaky(backbone.c4_channels, pt_ch, 1, **bn_kw) if passthrough_channels else nn.Identity()
            )
            self.reorg = Reorg(2)
            ch += 4 * pt_ch
        if fuse:
            self.fuse: nn.Module = ConvBNLeaky(ch, hid, 3, **bn_kw)
            ch = hid
        else:
            self.fuse = nn.Identity()
        out_ch = self.num_anchors * (5 + num_classes)
        self.out_channels = out_ch
        if head == "conv":
            self.pred: nn.Module = nn.Conv2d(ch, out_ch, 1, bias=True)
        else:
            self.pred = nn.Sequential(
                nn.Flatten(),
                nn.Linear(ch * fc_grid * fc_grid, fc_hidden),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Linear(fc_hidden, out_ch * fc_grid * fc_grid),
            )
        init_weights_(self, init)

    def input_conv(self) -> nn.Conv2d:
        """The backbone's first convolution: the only layer that reads the input images."""
        return self.backbone.input_conv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> raw head output (B, A * (5 + C), H / 32, W / 32)."""
        feats = self.backbone(x)
        deep = self.extra(feats["c5"])
        if self.passthrough:
            deep = torch.cat([self.reorg(self.pt_conv(feats["c4"])), deep], dim=1)  # reorg first, as darknet
        y = self.fuse(deep)
        if self.head_type == "fc":
            b, _, h, w = y.shape
            if (h, w) != (self.fc_grid, self.fc_grid):
                raise ValueError(
                    f"the fc head is built for a {self.fc_grid * STRIDE}x{self.fc_grid * STRIDE} input, "
                    f"got {h * STRIDE}x{w * STRIDE}"
                    " (turn multi-scale off for head=fc)"
                )
            return self.pred(y).view(b, self.out_channels, h, w)
        return self.pred(y)
