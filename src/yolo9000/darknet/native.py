"""cfg <-> this project's modules: recognise Darknet-19 classifiers and YOLOv2 detectors in a cfg, build them, load
their ``.weights``, and write the cfg of a native module.

:func:`match_native` recognises Darknet-19 classifiers (darknet19, darknet19_448, darknet9000) and YOLOv2 detectors
with or without the passthrough (yolov2-voc, yolov2, yolo9000) at any width of
:func:`~yolo9000.models.darknet19.scaled`; those are built as ``Darknet19Classifier``, ``YOLOv2`` or
``YOLOv2(fuse=False)`` with ``bn_style="darknet"``, so a converted network trains with the same code. Everything
else YOLOv2-era (yolov2-tiny) becomes a generic :class:`~yolo9000.darknet.net.DarknetNet`; :func:`darknet_detector`
builds any detector cfg set to a dataset's classes and priors (``model=darknet``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from yolo9000.darknet.cfg import (
    LayerSpec,
    SearchPath,
    Sections,
    as_sections,
    conv_load_options,
    detector_cfg_text,
    layer_specs,
    option,
    parse_cfg,
    parse_cfg_text,
    read_text,
    region_from_section,
)
from yolo9000.darknet.net import DarknetNet
from yolo9000.darknet.weights import load_weights
from yolo9000.models.darknet19 import DARKNET19_LAYOUT, Darknet19, Darknet19Classifier, scaled
from yolo9000.models.layers import ConvBNLeaky, DarknetConv, init_weights_
from yolo9000.models.yolov2 import YOLOv2

log = logging.getLogger("yolo9000")


@dataclass
class NativeSpec:
    """A cfg recognised as one of this project's modules (see :func:`match_native`)."""

    kind: Literal["classifier", "detector"]
    width: float
    num_classes: int
    anchors: list[list[float]] | None = None
    passthrough: bool = False
    passthrough_channels: int = 0
    extra_convs: int = 0
    fuse: bool = True


# --------------------------------------------------------------------------------------------------- matching
def _is_conv(s: LayerSpec, filters: int, size: int, bn: bool = True, act: str = "leaky") -> bool:
    return (
        s.type == "convolutional"
        and s.filters == filters
        and s.size == size
        and s.stride == 1
        and s.groups == 1
        and s.padding == size // 2
        and s.batch_norm == bn
        and s.activation == act
    )


def _match_backbone(specs: list[LayerSpec]) -> tuple[float, int] | None:
    """(width, index of the 13th conv) when the cfg starts with Darknet-19 (``DARKNET19_LAYOUT`` at the width of
    its 18th conv), else None."""
    n_bb = len(DARKNET19_LAYOUT)
    if len(specs) < n_bb + 2 or specs[n_bb - 1].type != "convolutional":
        return None
    w = specs[n_bb - 1].filters / 1024
    c4_index = -1
    n_conv = 0
    for s, item in zip(specs[:n_bb], DARKNET19_LAYOUT, strict=True):
        if item == "M":
            if not (s.type == "maxpool" and s.size == 2 and s.stride == 2 and s.padding == 1):
                return None
            continue
        filters, k = item  # type: ignore[misc]
        if not _is_conv(s, scaled(filters, w), k):
            return None
        n_conv += 1
        if n_conv == 13:
            c4_index = s.index
    return w, c4_index


def _match_passthrough(spec: NativeSpec, tail: list[LayerSpec], c4_index: int, deep: int) -> NativeSpec | None:
    """The layers after the extra convs: route(c4) [conv 1x1] reorg(2) route(reorg, deep) fuse."""
    w, hid = spec.width, scaled(1024, spec.width)
    if tail[0].type != "route" or tail[0].sources != [c4_index]:
        return None
    i = 1
    pt_channels = 0
    if i < len(tail) and tail[i].type == "convolutional":
        f = tail[i].filters
        pt_channels = f if w == 1.0 else next((c for c in (64, round(f / w)) if scaled(c, w) == f), -1)
        if pt_channels <= 0 or not _is_conv(tail[i], f, 1):
            return None
        i += 1
    if not (i + 2 < len(tail) and tail[i].type == "reorg" and tail[i].stride == 2):
        return None
    if tail[i + 1].type != "route" or tail[i + 1].sources != [tail[i].index, deep]:
        return None
    if len(tail) != i + 3 or not _is_conv(tail[i + 2], hid, 3):
        return None
    spec.passthrough, spec.passthrough_channels = True, pt_channels
    return spec


def match_native(cfg: str | Path | Sections) -> NativeSpec | None:
    """Compare the cfg's conv / maxpool / route / reorg sequence with this project's modules.

    Recognised (width w inferred from the 18th conv, every layer checked against ``scaled(filters, w)``):
    Darknet-19 (18 BN-leaky convs + 5 maxpools 2/2, ``DARKNET19_LAYOUT``) followed by
    - a linear 1x1 conv with bias, ``[avgpool]`` (then optional ``[softmax]`` / ``[cost]``): a classifier;
    - E 3x3 convs, an optional passthrough (``[route]`` to the 13th conv, optional 1x1 conv, ``[reorg] stride=2``,
      ``[route]`` reorg + deep), the fuse 3x3 conv, a linear 1x1 conv with A * (5 + C) filters and ``[region]``
      (coords=4): a YOLOv2 (yolov2-voc, yolov2); with no conv at all between backbone and prediction: a
      ``YOLOv2(fuse=False)`` (yolo9000).
    Returns None for anything else (built by :class:`~yolo9000.darknet.net.DarknetNet`).
    """
    sections = as_sections(cfg)
    if option(sections[0], "channels", 3) != 3:
        return None
    specs = layer_specs(sections)
    backbone = _match_backbone(specs)
    if backbone is None:
        return None
    w, c4_index = backbone
    n_bb = len(DARKNET19_LAYOUT)
    rest = specs[n_bb:]

    # classifier: 1x1 linear conv, avgpool, then only softmax / cost
    if rest[0].type == "convolutional" and len(rest) >= 2 and rest[1].type == "avgpool":
        if not _is_conv(rest[0], rest[0].filters, 1, bn=False, act="linear"):
            return None
        if any(s.type not in ("softmax", "cost") for s in rest[2:]):
            return None
        return NativeSpec("classifier", w, rest[0].filters)

    # detector: ... pred conv, region
    if len(rest) < 2 or rest[-1].type != "region" or rest[-1] is not specs[-1]:
        return None
    region = region_from_section(rest[-1].section)
    pred = rest[-2]
    if region.coords != 4 or not _is_conv(pred, region.num * (5 + region.classes), 1, bn=False, act="linear"):
        return None
    head = rest[:-2]
    e = 0
    while e < len(head) and _is_conv(head[e], scaled(1024, w), 3):
        e += 1
    spec = NativeSpec("detector", w, region.classes, anchors=region.anchors.tolist())
    if e == len(head):  # no passthrough: E convs = extra_convs + fuse (yolov2 without passthrough), or none (yolo9000)
        spec.extra_convs, spec.fuse = max(e - 1, 0), e > 0
        return spec
    spec.extra_convs = e
    deep = head[e - 1].index if e else specs[n_bb - 1].index
    return _match_passthrough(spec, head[e:], c4_index, deep)


# --------------------------------------------------------------------------------------------------- building
def native_net_config(spec: NativeSpec) -> dict[str, Any]:
    """The Hydra ``net`` config of a recognised cfg (``bn_style: darknet``, darknet's BN momentum 0.01)."""
    backbone = {
        "_target_": "yolo9000.models.darknet19.Darknet19",
        "batch_norm": True,
        "width": spec.width,
        "bn_momentum": 0.01,
        "bn_style": "darknet",
    }
    if spec.kind == "classifier":
        return {
            "_target_": "yolo9000.models.darknet19.Darknet19Classifier",
            "backbone": backbone,
            "num_classes": spec.num_classes,
        }
    return {
        "_target_": "yolo9000.models.yolov2.YOLOv2",
        "backbone": backbone,
        "num_classes": spec.num_classes,
        "anchors": spec.anchors,
        "passthrough": spec.passthrough,
        "passthrough_channels": spec.passthrough_channels,
        "extra_convs": spec.extra_convs,
        "fuse": spec.fuse,
        "head": "conv",
        "location": "direct",
    }


# the ``_target_`` names :func:`native_net_config` uses, built here without Hydra
_NATIVE_TARGETS: dict[str, type[nn.Module]] = {
    "yolo9000.models.darknet19.Darknet19": Darknet19,
    "yolo9000.models.darknet19.Darknet19Classifier": Darknet19Classifier,
    "yolo9000.models.yolov2.YOLOv2": YOLOv2,
}


def _instantiate(cfg: dict[str, Any]) -> nn.Module:
    """Build a :func:`native_net_config` dict as Hydra would (nested ``_target_`` dicts first)."""
    kwargs = {k: _instantiate(v) if isinstance(v, dict) else v for k, v in cfg.items() if k != "_target_"}
    return _NATIVE_TARGETS[cfg["_target_"]](**kwargs)


def build_native(spec: NativeSpec) -> nn.Module:
    """Instantiate :func:`native_net_config` (Darknet19Classifier, YOLOv2 or YOLOv2(fuse=False))."""
    return _instantiate(native_net_config(spec))


def build_darknet(cfg: str | Path, native: bool | None = None) -> nn.Module:
    """The network of a cfg, untrained. ``native``: None = native module where the structure matches, else
    :class:`~yolo9000.darknet.net.DarknetNet`; True = native or ValueError; False = always ``DarknetNet``."""
    sections = parse_cfg(cfg)
    spec = match_native(sections) if native is not False else None
    if native and spec is None:
        raise ValueError(f"{cfg}: the layer sequence matches no native module (Darknet-19 classifier / YOLOv2)")
    return build_native(spec) if spec is not None else DarknetNet(sections)


def load_darknet(
    cfg: str | Path, weights: str | Path | None = None, native: bool | None = None, strict: bool = False
) -> nn.Module:
    """Build a cfg's network (see :func:`build_darknet`), load ``weights`` (if given; ``strict``: a file with more
    floats than the network takes is refused, see :func:`~yolo9000.darknet.weights.load_weights`) and switch to
    eval mode.

    ``forward``: (B, 3, H, W) float images in [0, 1], H and W multiples of 32 -> the raw last-conv output
    (B, A * (5 + C), H / 32, W / 32) for detectors, (B, classes) logits for classifiers (softmax left out).
    """
    model = build_darknet(cfg, native)
    if weights is not None:
        load_weights(model, weights, options=conv_load_options(cfg), strict=strict)
    return model.eval()


# ---------------------------------------------------------------------------------------------- cfg generation
def _fmt(v: float) -> str:
    return str(np.float32(v))


def _conv_cfg(filters: int, size: int, bn: bool = True, act: str = "leaky") -> str:
    s = "[convolutional]\n" + ("batch_normalize=1\n" if bn else "")
    return s + f"filters={filters}\nsize={size}\nstride=1\npad=1\nactivation={act}\n"


def _backbone_cfg(bb: Darknet19) -> tuple[list[str], int, int]:
    """The backbone's cfg sections, the index of its last layer and of its 13th conv (the passthrough source)."""
    parts: list[str] = []
    idx = c4 = -1
    n_conv = 0
    for item in DARKNET19_LAYOUT:
        idx += 1
        if item == "M":
            parts.append("[maxpool]\nsize=2\nstride=2\n")
            continue
        filters, k = item  # type: ignore[misc]
        parts.append(_conv_cfg(scaled(filters, bb.width), k, bb.batch_norm))
        n_conv += 1
        if n_conv == 13:
            c4 = idx
    return parts, idx, c4


def native_cfg_text(
    model: nn.Module, size: int | tuple[int, int] = 416, softmax: bool = True, tree: str | None = None
) -> str:
    """A darknet cfg describing a native Darknet19Classifier / YOLOv2 / YOLOv2(fuse=False) (for trained checkpoints that
    carry no cfg), its ``[net]`` of ``size`` (a side, or (height, width)). Only the layers and ``[region]`` anchors /
    classes / ``softmax`` (False: the logistic classes of ``softmax=0``) / ``tree`` (a WordTree head's tree file, as
    the cfg names it); darknet's training options are left out."""
    height, width = (size, size) if isinstance(size, int) else size
    bb = model.backbone if isinstance(model, Darknet19Classifier | YOLOv2) else None
    if not isinstance(bb, Darknet19):
        raise TypeError(f"no cfg for {type(model).__name__}")
    bn = bb.batch_norm
    parts = [f"[net]\nbatch=1\nsubdivisions=1\nheight={height}\nwidth={width}\nchannels=3\n"]
    backbone, idx, c4 = _backbone_cfg(bb)
    parts += backbone
    if isinstance(model, Darknet19Classifier):
        parts.append(_conv_cfg(model.head.conv.out_channels, 1, bn=False, act="linear"))
        parts.append("[avgpool]\n")
        parts.append("[softmax]\ngroups=1\n")
        return "\n".join(parts)
    assert isinstance(model, YOLOv2)
    if model.head_type != "conv" or model.location != "direct":
        raise NotImplementedError("darknet has no fc head and no 'offset' location: no cfg for this YOLOv2")
    hid = scaled(1024, bb.width)
    for _ in model.extra:
        idx += 1
        parts.append(_conv_cfg(hid, 3, bn))
    deep = idx
    if model.passthrough:
        idx += 1
        parts.append(f"[route]\nlayers={c4 - idx}\n")
        if isinstance(model.pt_conv, ConvBNLeaky):
            idx += 1
            parts.append(_conv_cfg(model.pt_conv[0].out_channels, 1, bn))
        idx += 1
        parts.append("[reorg]\nstride=2\n")
        idx += 1
        parts.append(f"[route]\nlayers=-1,{deep - idx}\n")
    if isinstance(model.fuse, ConvBNLeaky):
        parts.append(_conv_cfg(hid, 3, bn))
    parts.append(_conv_cfg(model.out_channels, 1, bn=False, act="linear"))
    anchors = ", ".join(_fmt(v) for v in model.anchors.flatten().tolist())
    parts.append(
        f"[region]\nanchors = {anchors}\nbias_match={int(model.bias_match)}\nclasses={model.num_classes}\n"
        f"coords=4\nnum={model.num_anchors}\nsoftmax={int(softmax)}\n" + (f"tree={tree}\n" if tree else "")
    )
    return "\n".join(parts)


def darknet_detector(
    cfg: str | Path | None = None,
    cfg_text: str | None = None,
    num_classes: int | None = None,
    anchors: Sequence[Sequence[float]] | None = None,
    weights: str | Path | None = None,
    bn_momentum: float = 0.01,
    init: str = "darknet",
    search: SearchPath | None = None,
) -> DarknetNet:
    """A darknet detector cfg as a trainable network: :func:`detector_cfg_text` sets its ``[region]`` to
    ``num_classes`` and ``anchors`` (the data's, from the build), then :class:`DarknetNet` builds it; the text it was
    built from is its ``cfg_text``. ``cfg_text`` (a checkpoint's) wins over the ``cfg`` file. ``init``: the weights
    before any file is read, darknet's (:func:`~yolo9000.models.layers.init_weights_`) or ``torch``'s defaults.

    ``weights``: darknet ``.weights`` to start from. A partial file (``yolov2-tiny.conv.13``) fills the first
    layers, as darknet's ``detector train``; a whole detector's file fills every layer, but the prediction conv
    when the classes or priors changed its shape (that conv starts fresh, logged).
    """
    if cfg_text is None:
        if cfg is None:
            raise ValueError("a darknet detector needs its cfg: model.net.cfg=<path to a .cfg with a [region]>")
        cfg_text = read_text(cfg) if Path(cfg).is_file() else None
        if cfg_text is None:
            raise FileNotFoundError(f"darknet cfg not found: {cfg} (model.net.cfg)")
    source = str(cfg) if cfg is not None else "<checkpoint cfg>"
    text = detector_cfg_text(cfg_text, num_classes, anchors, source)
    net = DarknetNet(parse_cfg_text(text, source), bn_momentum=bn_momentum, search=search)
    for spec in net.specs:
        if spec.type == "crop":  # its window moves (and flips) the image under boxes the targets do not follow
            raise ValueError(
                f"{spec.where}: [crop] is a classifier's input layer: a detector does not train through it (its "
                "window would move the image under the boxes); crops and flips are the data's augmentation here"
            )
    net.cfg_text = text
    if text != cfg_text:
        log.info(
            "%s: [region] set to %d classes and %d priors, the conv before it to %d filters (the data's classes and "
            "the priors)",
            source,
            net.num_classes,
            net.num_anchors,
            net.out_channels,
        )
    init_weights_(net, init)  # type: ignore[arg-type]
    if weights is not None:
        pairs, options = net.conv_pairs(), conv_load_options(parse_cfg_text(text, source))
        head = net.specs[-2]  # the conv before [region]
        written = [s for s in parse_cfg_text(cfg_text, source) if s["type"] == "convolutional"][-1]
        filters = option(written, "filters", 1)
        if filters != head.filters:  # the file holds the cfg's head: read into a stand-in of its shape, then dropped
            log.info(
                "%s: the prediction conv has %d outputs here (the data's classes and priors), %d in the cfg and the "
                "weights: it starts fresh; the other layers come from %s",
                source,
                head.filters,
                filters,
                weights,
            )
            stand_in = DarknetConv(
                head.in_channels, filters, head.size, head.stride, head.padding, head.groups, head.batch_norm
            )
            pairs = [*pairs[:-1], stand_in.conv_pair()]
        info = load_weights(pairs, weights, options=options)
        log.info("%s: %d of %d layers from %s (seen %d)", source, info.layers_loaded, len(pairs), weights, info.seen)
    return net
