"""The generic darknet network: any supported cfg built layer by layer from :mod:`yolo9000.models.layers`.

Used for structures without a native module (yolov2-tiny: maxpool size 2 stride 1; residual networks with
``[shortcut]``; ``[upsample]``; ``[connected]`` classifiers; darknet's AlexNet, VGG-16 and Extraction with their
input ``[crop]``) and to check the native ones.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo9000.darknet.cfg import (
    SearchPath,
    Sections,
    fixed_input_size,
    layer_specs,
    option,
    parse_cfg_text,
    region_meta,
)
from yolo9000.models.layers import (
    DarknetConnected,
    DarknetConv,
    DarknetCrop,
    DarknetMaxPool,
    DarknetShortcut,
    DarknetUpsample,
    GlobalAvgPool,
    MaxPoolSame,
    Reorg,
)

# a layer's weights as darknet stores them: (conv or connected layer, its batch norm or None)
ConvPair = tuple[nn.Conv2d | nn.Linear, nn.BatchNorm2d | None]


class DarknetNet(nn.Module):
    """A darknet network built layer by layer from its cfg (the fallback for structures without a native module).

    ``forward``: (B, C, H, W) (``[net] channels``) -> the last layer's output; ``[region]`` is the identity (raw
    head output (B, A * (5 + C), H / 32, W / 32)), ``[softmax]`` / ``[cost]`` are the identity (logits), and a
    network with an ``[avgpool]`` or ``[connected]`` whose output is 1 x 1 returns (B, C) logits. A network with a
    ``[connected]`` layer runs at its cfg's ``[net]`` size only (as darknet's).

    Detector attributes the training code reads (when the cfg has a ``[region]``): ``num_classes``, ``anchors``
    (buffer, (A, 2)), ``num_anchors``, ``location`` (``"direct"``), ``bias_match``, ``region``
    (:class:`~yolo9000.darknet.cfg.RegionMeta`; its ``tree`` / ``map`` as the cfg writes them, or resolved with
    ``search`` when given: the network itself reads neither).
    """

    def __init__(self, sections: Sections, bn_momentum: float = 0.01, search: SearchPath | None = None) -> None:
        super().__init__()
        self.specs = layer_specs(sections)
        self.in_channels = option(sections[0], "channels", 3)
        layers: list[nn.Module] = []
        for spec in self.specs:
            t = spec.type
            if t == "convolutional":
                layers.append(
                    DarknetConv(
                        spec.in_channels,
                        spec.filters,
                        spec.size,
                        spec.stride,
                        spec.padding,
                        groups=spec.groups,
                        batch_norm=spec.batch_norm,
                        activation=spec.activation,  # type: ignore[arg-type]
                        bn_momentum=bn_momentum,
                    )
                )
            elif t == "maxpool":
                if spec.size == 2 and spec.stride == 1 and spec.padding == 1:
                    layers.append(MaxPoolSame(2, 1))
                else:
                    layers.append(DarknetMaxPool(spec.size, spec.stride, spec.padding))
            elif t == "avgpool":
                layers.append(GlobalAvgPool())
            elif t == "reorg":
                layers.append(Reorg(spec.stride))
            elif t == "dropout":
                layers.append(nn.Dropout(spec.probability))
            elif t == "shortcut":
                layers.append(DarknetShortcut(spec.alpha, spec.beta, spec.activation))
            elif t == "upsample":
                layers.append(DarknetUpsample(spec.stride, spec.scale, spec.reverse))
            elif t == "crop":
                assert spec.in_hw is not None and spec.out_hw is not None  # layer_specs refuses a crop without them
                layers.append(DarknetCrop(spec.out_hw, spec.in_hw, spec.flip, spec.adjust))
            elif t == "connected":
                layers.append(
                    DarknetConnected(spec.in_features, spec.filters, spec.batch_norm, spec.activation, bn_momentum)
                )
            else:  # route (handled in forward), region, softmax, cost
                layers.append(nn.Identity())
        self.layers = nn.ModuleList(layers)
        self.keep = sorted({s for spec in self.specs for s in spec.sources})
        self.classifier = any(s.type in ("avgpool", "connected") for s in self.specs)
        # (height, width) of the one input a [connected] layer ties the network to; None: any multiple of 32
        self.fixed_hw = fixed_input_size(sections)
        self.region = region_meta(sections, search)
        if self.region is not None:
            self.num_classes = self.region.classes
            self.register_buffer("anchors", self.region.anchors.clone())  # (A, 2) grid-cell units
            self.num_anchors = self.region.num
            self.location = "direct"
            self.bias_match = self.region.bias_match
            self.out_channels = self.specs[-1].out_channels

    def input_conv(self) -> nn.Conv2d | None:
        """The convolution of a first ``[convolutional]`` layer (the only layer that reads the input: routes and
        shortcuts name layers' outputs, never the input), else None."""
        first = self.layers[0] if len(self.layers) else None
        return first.conv if isinstance(first, DarknetConv) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> raw output (see the class docstring)."""
        saved: dict[int, torch.Tensor] = {}
        for spec, layer in zip(self.specs, self.layers, strict=True):
            if spec.type == "route":
                srcs = [saved[s] for s in spec.sources]
                if len({t.shape[-2:] for t in srcs}) > 1:
                    raise ValueError(
                        f"{spec.where}: [route] layers {spec.sources} have different sizes "
                        f"{[tuple(t.shape[-2:]) for t in srcs]}"
                    )
                x = srcs[0] if len(srcs) == 1 else torch.cat(srcs, dim=1)
            elif spec.type == "shortcut":
                x = layer(x, saved[spec.sources[0]])
            else:
                x = layer(x)
            if spec.index in self.keep:
                saved[spec.index] = x
        if self.classifier and self.region is None and x.shape[-2:] == (1, 1):
            x = x.flatten(1)
        return x

    def conv_pairs(self) -> list[ConvPair]:
        """(conv or linear, BN or None) of every ``[convolutional]`` and ``[connected]`` in cfg order (the
        ``.weights`` order)."""
        return [layer.conv_pair() for layer in self.layers if isinstance(layer, DarknetConv | DarknetConnected)]


def darknet_net_from_text(
    cfg_text: str, bn_momentum: float = 0.01, search: SearchPath | None = None, source: str = "<checkpoint cfg>"
) -> DarknetNet:
    """A :class:`DarknetNet` from cfg text (the ``_target_`` of converted generic checkpoints); ``source`` names
    the text in errors (``file:line``): the cfg file it was converted from."""
    return DarknetNet(parse_cfg_text(cfg_text, source), bn_momentum=bn_momentum, search=search)
