"""darknet interop: ``.cfg`` parsing, network building, ``.weights`` I/O, region metadata and parameter counts.

- :func:`parse_cfg` reads a darknet cfg into sections (``type``, ``options``, and where each came from).
- :func:`match_native` recognises Darknet-19 classifiers (darknet19, darknet19_448, darknet9000) and YOLOv2
  detectors with or without the passthrough (yolov2-voc, yolov2, yolo9000) at any width of
  :func:`~yolo9000.models.darknet19.scaled`; those are built as this project's modules (``Darknet19Classifier``,
  ``YOLOv2``, ``YOLOv2(fuse=False)``) with ``bn_style="darknet"``, so a converted network trains with the same code.
  Everything else YOLOv2-era (yolov2-tiny: maxpool size 2 stride 1) becomes a generic :class:`DarknetNet`.
- :func:`load_weights` / :func:`save_weights` read and write darknet's ``.weights`` (partial ``.conv.N`` files too);
  values are copied, never transformed, so a round trip is bit-exact.
- :func:`load_darknet` = build + load: (B, 3, H, W) images in [0, 1] -> the raw last-conv output
  (B, A * (5 + C), H / 32, W / 32) for detectors, (B, classes) logits for classifiers (softmax left out).
- :func:`darknet_to_checkpoint` / :func:`checkpoint_to_darknet`: the conversions behind ``src/convert.py``.

Conv layer order in ``.weights`` = the cfg's order; for the native YOLOv2 that is backbone (18 convs), ``extra``,
``pt_conv`` (1x1x64), ``fuse`` (3x3x1024), ``pred`` (see :func:`darknet_convs`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from yolo9000.models.darknet19 import DARKNET19_LAYOUT, Darknet19, Darknet19Classifier, scaled
from yolo9000.models.layers import ConvBNLeaky, DarknetBatchNorm2d, MaxPoolSame, Reorg
from yolo9000.models.yolov2 import YOLOv2

log = logging.getLogger("yolo9000")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DARKNET_DATA = PROJECT_ROOT / "data" / "darknet"
WORDTREE_DIR = DARKNET_DATA / "wordtree"

# darknet's section aliases (parser.c string_to_layer_type) -> one canonical name
_ALIASES = {
    "network": "net",
    "conv": "convolutional",
    "max": "maxpool",
    "avg": "avgpool",
    "soft": "softmax",
    "conn": "connected",
}
SUPPORTED = ("convolutional", "maxpool", "avgpool", "route", "reorg", "region", "softmax", "cost", "dropout")
_ACTIVATIONS = ("leaky", "linear", "relu", "logistic")

ConvPair = tuple[nn.Conv2d, nn.BatchNorm2d | None]


# ----------------------------------------------------------------------------------------------------------- parsing
def parse_cfg(path: str | Path) -> list[dict[str, Any]]:
    """Read a darknet cfg the way darknet's ``read_cfg`` does.

    Every whitespace character is removed from a line (``anchors = 1, 2`` == ``anchors=1,2``); empty lines and
    lines starting with ``#`` or ``;`` are skipped; ``[name]`` opens a section; every other line is ``key=value``.
    A repeated key keeps its first value (darknet's ``option_find``).

    Returns:
        One dict per section: ``type`` (lower case, darknet's aliases resolved: ``[conv]`` -> ``convolutional``),
        ``options`` (key -> raw string value), ``lines`` (key -> line number), ``path`` and ``line`` (of the header).
    Raises:
        FileNotFoundError; ValueError naming ``file:line`` for a malformed line, an option before the first section,
        or a first section other than ``[net]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"darknet cfg not found: {path}")
    return parse_cfg_text(path.read_text(), str(path))


def parse_cfg_text(text: str, source: str = "<cfg>") -> list[dict[str, Any]]:
    """:func:`parse_cfg` on cfg text; ``source`` names it in errors (``source:line``)."""
    sections: list[dict[str, Any]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise ValueError(f"{source}:{lineno}: malformed section header {raw.strip()!r}")
            name = line[1:-1].lower()
            sections.append(
                {"type": _ALIASES.get(name, name), "options": {}, "lines": {}, "path": source, "line": lineno}
            )
            continue
        if "=" not in line or line.startswith("="):
            raise ValueError(f"{source}:{lineno}: expected 'key=value', got {raw.strip()!r}")
        if not sections:
            raise ValueError(f"{source}:{lineno}: option {raw.strip()!r} before the first [section]")
        key, value = line.split("=", 1)
        sec = sections[-1]
        if key in sec["options"]:
            log.debug("%s:%d: repeated option %r ignored (darknet keeps the first)", source, lineno, key)
            continue
        sec["options"][key] = value
        sec["lines"][key] = lineno
    if not sections:
        raise ValueError(f"{source}: no [sections] found")
    if sections[0]["type"] != "net":
        raise ValueError(
            f"{source}:{sections[0]['line']}: the first section must be [net], got [{sections[0]['type']}]"
        )
    return sections


def _where(sec: dict[str, Any], key: str | None = None) -> str:
    """``file:line`` of a section header or of one of its options."""
    line = sec["lines"].get(key, sec["line"]) if key else sec["line"]
    return f"{sec['path']}:{line}"


def _opt(sec: dict[str, Any], key: str, default: Any, kind: type = int) -> Any:
    """Option ``key`` of a section parsed as ``kind`` (int, float or str), ``default`` when absent."""
    if key not in sec["options"]:
        return default
    value = sec["options"][key]
    try:
        return kind(value)
    except ValueError as e:
        raise ValueError(f"{_where(sec, key)}: option {key}={value!r} is not a valid {kind.__name__}") from e


def _opt_list(sec: dict[str, Any], key: str, kind: type = float) -> list[Any] | None:
    """Comma-separated option (``anchors``, ``layers``, ``steps``) as a list, None when absent."""
    if key not in sec["options"]:
        return None
    value = sec["options"][key]
    try:
        return [kind(v) for v in value.split(",") if v != ""]
    except ValueError as e:
        raise ValueError(f"{_where(sec, key)}: option {key}={value!r} is not a list of {kind.__name__}") from e


# ------------------------------------------------------------------------------------------------- layer shapes
@dataclass
class LayerSpec:
    """One cfg layer after shape inference (channels only; darknet's layers keep no other state here).

    ``index`` counts layers after ``[net]`` from 0, as darknet's ``route`` indices do.
    """

    index: int
    type: str
    section: dict[str, Any]
    in_channels: int
    out_channels: int
    params: int = 0
    # convolutional
    filters: int = 0
    size: int = 0
    stride: int = 1
    padding: int = 0
    groups: int = 1
    batch_norm: bool = False
    activation: str = "linear"
    # route
    sources: list[int] = field(default_factory=list)
    # dropout
    probability: float = 0.5

    @property
    def where(self) -> str:
        return _where(self.section)


def layer_specs(sections: Sequence[dict[str, Any]]) -> list[LayerSpec]:
    """Shape inference over the layers of a parsed cfg (everything after ``[net]``).

    Raises NotImplementedError (with ``file:line``) for sections this module does not implement (``shortcut``,
    ``upsample``, ``yolo``, ``connected``, unknown names) and ValueError for inconsistent options.
    """
    net = sections[0]
    in_ch = _opt(net, "channels", 3)
    specs: list[LayerSpec] = []
    for i, sec in enumerate(sections[1:]):
        t = sec["type"]
        if t not in SUPPORTED:
            known = "a darknet section" if t in ("shortcut", "upsample", "yolo", "connected") else "an unknown section"
            raise NotImplementedError(
                f"{_where(sec)}: [{t}] ({known}) is not supported; darknet interop covers the YOLOv2-era layers "
                f"{', '.join(SUPPORTED)}"
            )
        spec = LayerSpec(index=i, type=t, section=sec, in_channels=in_ch, out_channels=in_ch)
        if t == "convolutional":
            for flag in ("binary", "xnor", "flipped", "dot"):
                if _opt(sec, flag, 0):
                    raise NotImplementedError(f"{_where(sec, flag)}: convolutional option {flag}=1 is not supported")
            spec.filters = _opt(sec, "filters", 1)
            spec.size = _opt(sec, "size", 1)
            spec.stride = _opt(sec, "stride", 1)
            spec.groups = _opt(sec, "groups", 1)
            spec.padding = spec.size // 2 if _opt(sec, "pad", 0) else _opt(sec, "padding", 0)
            spec.batch_norm = bool(_opt(sec, "batch_normalize", 0))
            spec.activation = _opt(sec, "activation", "logistic", str)  # darknet's default activation
            if spec.activation not in _ACTIVATIONS:
                raise NotImplementedError(
                    f"{_where(sec, 'activation')}: activation {spec.activation!r} is not supported ({_ACTIVATIONS})"
                )
            if spec.filters < 1 or spec.size < 1 or spec.stride < 1 or spec.groups < 1 or in_ch % spec.groups:
                raise ValueError(
                    f"{spec.where}: invalid convolutional (filters={spec.filters}, size={spec.size}, "
                    f"stride={spec.stride}, groups={spec.groups}, {in_ch} input channels)"
                )
            n = spec.filters
            spec.params = n * (in_ch // spec.groups) * spec.size**2 + n + (n if spec.batch_norm else 0)
            spec.out_channels = n
        elif t == "maxpool":
            spec.stride = _opt(sec, "stride", 1)
            spec.size = _opt(sec, "size", spec.stride)
            spec.padding = _opt(sec, "padding", spec.size - 1)
        elif t == "route":
            rel = _opt_list(sec, "layers", int)
            if not rel:
                raise ValueError(f"{spec.where}: [route] needs layers=")
            spec.sources = [r if r >= 0 else i + r for r in rel]
            bad = [s for s in spec.sources if not 0 <= s < i]
            if bad:
                raise ValueError(f"{_where(sec, 'layers')}: [route] layer {i} refers to layers {bad} (need 0..{i - 1})")
            spec.out_channels = sum(specs[s].out_channels for s in spec.sources)
        elif t == "reorg":
            for flag in ("reverse", "flatten", "extra"):
                if _opt(sec, flag, 0):
                    raise NotImplementedError(f"{_where(sec, flag)}: [reorg] {flag}=1 is not supported")
            spec.stride = _opt(sec, "stride", 1)
            spec.out_channels = in_ch * spec.stride**2
        elif t == "region":
            meta = _region_from_section(sec)
            expected = meta.num * (meta.coords + 1 + meta.classes)
            if in_ch != expected:
                raise ValueError(
                    f"{spec.where}: [region] num={meta.num} classes={meta.classes} coords={meta.coords} needs "
                    f"{expected} input channels, the previous layer gives {in_ch}"
                )
        elif t == "dropout":
            spec.probability = _opt(sec, "probability", 0.5, float)
        specs.append(spec)
        in_ch = spec.out_channels
    return specs


def count_params(cfg: str | Path | Sequence[dict[str, Any]]) -> int:
    """Learnable parameters from the cfg alone, darknet's way: conv weights + biases + BN scales."""
    sections = parse_cfg(cfg) if isinstance(cfg, str | Path) else cfg
    return sum(s.params for s in layer_specs(sections))


# ------------------------------------------------------------------------------------------------------- region
@dataclass
class RegionMeta:
    """darknet's ``[region]`` options (defaults as darknet's ``parse_region``).

    ``anchors``: (A, 2) priors (w, h) in grid cells; ``tree`` / ``map``: resolved paths (the vendored WordTree
    files when the cfg's darknet-relative path does not exist), None when absent.
    """

    anchors: torch.Tensor
    classes: int = 20
    num: int = 1
    coords: int = 4
    softmax: bool = False
    thresh: float = 0.5
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    coord_scale: float = 1.0
    rescore: bool = False
    bias_match: bool = False
    absolute: bool = False
    jitter: float = 0.2
    random: bool = False
    tree: Path | None = None
    map: Path | None = None


def resolve_data_file(value: str, cfg_path: str | Path | None = None) -> Path:
    """A cfg's darknet-relative data path (``data/9k.tree``): as given if it exists (from the working directory or
    the cfg's folder), else the vendored file of that name in ``data/darknet/wordtree`` or ``data/darknet``."""
    cands = [Path(value)]
    if cfg_path is not None:
        cands.append(Path(cfg_path).parent / value)
    cands += [WORDTREE_DIR / Path(value).name, DARKNET_DATA / Path(value).name]
    for c in cands:
        if c.is_file():
            return c
    log.warning("%s: data file %r not found (looked in %s)", cfg_path, value, [str(c) for c in cands])
    return Path(value)


def _region_from_section(sec: dict[str, Any]) -> RegionMeta:
    num = _opt(sec, "num", 1)
    biases = _opt_list(sec, "anchors", float)
    if biases is None:
        biases = [0.5] * (2 * num)  # make_region_layer's default
    if len(biases) != 2 * num:
        raise ValueError(f"{_where(sec, 'anchors')}: {len(biases)} anchor values for num={num} (need {2 * num})")
    tree = sec["options"].get("tree")
    mapf = sec["options"].get("map")
    return RegionMeta(
        anchors=torch.tensor(biases, dtype=torch.float32, device="cpu").view(num, 2),
        classes=_opt(sec, "classes", 20),
        num=num,
        coords=_opt(sec, "coords", 4),
        softmax=bool(_opt(sec, "softmax", 0)),
        thresh=_opt(sec, "thresh", 0.5, float),
        object_scale=_opt(sec, "object_scale", 1.0, float),
        noobject_scale=_opt(sec, "noobject_scale", 1.0, float),
        class_scale=_opt(sec, "class_scale", 1.0, float),
        coord_scale=_opt(sec, "coord_scale", 1.0, float),
        rescore=bool(_opt(sec, "rescore", 0)),
        bias_match=bool(_opt(sec, "bias_match", 0)),
        absolute=bool(_opt(sec, "absolute", 0)),
        jitter=_opt(sec, "jitter", 0.2, float),
        random=bool(_opt(sec, "random", 0)),
        tree=resolve_data_file(tree, sec["path"]) if tree else None,
        map=resolve_data_file(mapf, sec["path"]) if mapf else None,
    )


def region_meta(cfg: str | Path | Sequence[dict[str, Any]]) -> RegionMeta | None:
    """The cfg's (last) ``[region]`` section, None for a network without one (a classifier)."""
    sections = parse_cfg(cfg) if isinstance(cfg, str | Path) else cfg
    regions = [s for s in sections if s["type"] == "region"]
    return _region_from_section(regions[-1]) if regions else None


# ----------------------------------------------------------------------------------------------- generic network
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


class DarknetConv(nn.Sequential):
    """darknet's ``[convolutional]`` with any padding / groups / activation: conv -> [darknet BN] -> [activation].

    Shapes: (B, C_in, H, W) -> (B, filters, H', W').
    """

    def __init__(self, spec: LayerSpec, bn_momentum: float = 0.01) -> None:
        mods: OrderedDict[str, nn.Module] = OrderedDict(
            {
                "conv": nn.Conv2d(
                    spec.in_channels,
                    spec.filters,
                    spec.size,
                    spec.stride,
                    spec.padding,
                    groups=spec.groups,
                    bias=not spec.batch_norm,
                )
            }
        )
        if spec.batch_norm:
            mods["bn"] = DarknetBatchNorm2d(spec.filters, momentum=bn_momentum)
        act = {"leaky": nn.LeakyReLU(0.1), "relu": nn.ReLU(), "logistic": nn.Sigmoid()}.get(spec.activation)
        if act is not None:
            mods["act"] = act
        super().__init__(mods)


class DarknetNet(nn.Module):
    """A darknet network built layer by layer from its cfg (the fallback for structures without a native module).

    ``forward``: (B, C, H, W) (``[net] channels``) -> the last layer's output; ``[region]`` is the identity (raw
    head output (B, A * (5 + C), H / 32, W / 32)), ``[softmax]`` / ``[cost]`` are the identity (logits), and a
    network with an ``[avgpool]`` whose output is 1 x 1 returns (B, C) logits.

    Detector attributes the training code reads (when the cfg has a ``[region]``): ``num_classes``, ``anchors``
    (buffer, (A, 2)), ``num_anchors``, ``location`` (``"direct"``), ``bias_match``, ``region`` (:class:`RegionMeta`).
    """

    def __init__(self, sections: Sequence[dict[str, Any]], bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.specs = layer_specs(sections)
        self.in_channels = _opt(sections[0], "channels", 3)
        layers: list[nn.Module] = []
        for spec in self.specs:
            t = spec.type
            if t == "convolutional":
                layers.append(DarknetConv(spec, bn_momentum))
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
            else:  # route (handled in forward), region, softmax, cost
                layers.append(nn.Identity())
        self.layers = nn.ModuleList(layers)
        self.keep = sorted({s for spec in self.specs for s in spec.sources})
        self.classifier = any(s.type == "avgpool" for s in self.specs)
        self.region = region_meta(sections)
        if self.region is not None:
            self.num_classes = self.region.classes
            self.register_buffer("anchors", self.region.anchors.clone())  # (A, 2) grid-cell units
            self.num_anchors = self.region.num
            self.location = "direct"
            self.bias_match = self.region.bias_match
            self.out_channels = self.specs[-1].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> raw output (see the class docstring)."""
        saved: dict[int, torch.Tensor] = {}
        for spec, layer in zip(self.specs, self.layers, strict=True):
            if spec.type == "route":
                srcs = [saved[s] for s in spec.sources]
                x = srcs[0] if len(srcs) == 1 else torch.cat(srcs, dim=1)
            else:
                x = layer(x)
            if spec.index in self.keep:
                saved[spec.index] = x
        if self.classifier and x.shape[-2:] == (1, 1):
            x = x.flatten(1)
        return x

    def conv_pairs(self) -> list[ConvPair]:
        """(conv, BN or None) of every ``[convolutional]`` in cfg order."""
        out: list[ConvPair] = []
        for layer in self.layers:
            if isinstance(layer, DarknetConv):
                bn = layer.bn if "bn" in layer._modules else None
                out.append((layer.conv, bn))  # type: ignore[arg-type]
        return out


def darknet_net_from_text(cfg_text: str, bn_momentum: float = 0.01) -> DarknetNet:
    """A :class:`DarknetNet` from cfg text (the ``_target_`` of converted generic checkpoints)."""
    return DarknetNet(parse_cfg_text(cfg_text, "<checkpoint cfg>"), bn_momentum=bn_momentum)


# ------------------------------------------------------------------------------------------------ native modules
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


def match_native(cfg: str | Path | Sequence[dict[str, Any]]) -> NativeSpec | None:
    """Compare the cfg's conv / maxpool / route / reorg sequence with this project's modules.

    Recognised (width w inferred from the 18th conv, every layer checked against ``scaled(filters, w)``):
    Darknet-19 (18 BN-leaky convs + 5 maxpools 2/2, ``DARKNET19_LAYOUT``) followed by
    - a linear 1x1 conv with bias, ``[avgpool]`` (then optional ``[softmax]`` / ``[cost]``): a classifier;
    - E 3x3 convs, an optional passthrough (``[route]`` to the 13th conv, optional 1x1 conv, ``[reorg] stride=2``,
      ``[route]`` reorg + deep), the fuse 3x3 conv, a linear 1x1 conv with A * (5 + C) filters and ``[region]``
      (coords=4): a YOLOv2 (yolov2-voc, yolov2); with no conv at all between backbone and prediction: a
      ``YOLOv2(fuse=False)`` (yolo9000).
    Returns None for anything else (built by :class:`DarknetNet`).
    """
    sections = parse_cfg(cfg) if isinstance(cfg, str | Path) else cfg
    if _opt(sections[0], "channels", 3) != 3:
        return None
    specs = layer_specs(sections)
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
    rest = specs[n_bb:]
    bb_last = specs[n_bb - 1].index
    hid = scaled(1024, w)

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
    region = _region_from_section(rest[-1].section)
    pred = rest[-2]
    if region.coords != 4 or not _is_conv(pred, region.num * (5 + region.classes), 1, bn=False, act="linear"):
        return None
    head = rest[:-2]
    e = 0
    while e < len(head) and _is_conv(head[e], hid, 3):
        e += 1
    spec = NativeSpec("detector", w, region.classes, anchors=region.anchors.tolist())
    tail = head[e:]
    if not tail:  # no passthrough: E convs = extra_convs + fuse (yolov2 without passthrough), or none (yolo9000)
        spec.extra_convs, spec.fuse = max(e - 1, 0), e > 0
        return spec
    # passthrough: route(c4) [conv 1x1] reorg(2) route(reorg, deep) fuse
    deep = head[e - 1].index if e else bb_last
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
    spec.passthrough, spec.passthrough_channels, spec.extra_convs = True, pt_channels, e
    return spec


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


def build_native(spec: NativeSpec) -> nn.Module:
    """Instantiate :func:`native_net_config` (Darknet19Classifier, YOLOv2 or YOLOv2(fuse=False))."""
    import hydra

    return hydra.utils.instantiate(native_net_config(spec), _convert_="all")


def build_darknet(cfg: str | Path, native: bool | None = None) -> nn.Module:
    """The network of a cfg, untrained. ``native``: None = native module where the structure matches, else
    :class:`DarknetNet`; True = native or ValueError; False = always :class:`DarknetNet`."""
    sections = parse_cfg(cfg)
    spec = match_native(sections) if native is not False else None
    if native and spec is None:
        raise ValueError(f"{cfg}: the layer sequence matches no native module (Darknet-19 classifier / YOLOv2)")
    return build_native(spec) if spec is not None else DarknetNet(sections)


def load_darknet(cfg: str | Path, weights: str | Path | None = None, native: bool | None = None) -> nn.Module:
    """Build a cfg's network (see :func:`build_darknet`), load ``weights`` (if given) and switch to eval mode.

    ``forward``: (B, 3, H, W) float images in [0, 1], H and W multiples of 32 -> the raw last-conv output
    (B, A * (5 + C), H / 32, W / 32) for detectors, (B, classes) logits for classifiers.
    """
    model = build_darknet(cfg, native)
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


# ------------------------------------------------------------------------------------------------- .weights I/O
def _pair(block: nn.Module) -> ConvPair:
    """(conv, BN or None) of a ConvBNLeaky."""
    conv = block[0]
    bn = block[1] if len(block) > 1 and isinstance(block[1], nn.BatchNorm2d) else None  # type: ignore[arg-type]
    return conv, bn  # type: ignore[return-value]


def darknet_convs(model: nn.Module | Sequence[ConvPair]) -> list[ConvPair]:
    """The (conv, BN or None) pairs of a network in darknet's ``.weights`` order (= its cfg's layer order).

    Darknet19: the 18 convs in order; Darknet19Classifier: + the 1x1 classifier conv; YOLOv2: backbone, ``extra``,
    ``pt_conv`` (when a conv), ``fuse`` (when a conv), ``pred``; DarknetNet: its convs in cfg order; a module with a
    ``model`` attribute (the Lightning DetectorModule): that model's pairs. A list of pairs is returned as is.
    """
    if not isinstance(model, nn.Module):
        return list(model)
    if isinstance(model, DarknetNet):
        return model.conv_pairs()
    if isinstance(model, Darknet19):
        return [_pair(m) for m in [*model.stage1, *model.stage2] if isinstance(m, ConvBNLeaky)]
    if isinstance(model, Darknet19Classifier):
        return [*darknet_convs(model.backbone), (model.head.conv, None)]
    if isinstance(model, YOLOv2):
        if not isinstance(model.pred, nn.Conv2d):
            raise NotImplementedError("the fc head (head=fc) has no darknet .weights layout")
        pairs = darknet_convs(model.backbone) + [_pair(m) for m in model.extra]
        if model.passthrough and isinstance(model.pt_conv, ConvBNLeaky):
            pairs.append(_pair(model.pt_conv))
        if isinstance(model.fuse, ConvBNLeaky):
            pairs.append(_pair(model.fuse))
        return [*pairs, (model.pred, None)]
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return darknet_convs(inner)
    raise TypeError(f"no darknet conv order known for {type(model).__name__}")


def _tensors(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> list[torch.Tensor]:
    """One conv layer's tensors in file order: biases, [scales, rolling_mean, rolling_variance], weights (OIHW)."""
    if bn is not None:
        if conv.bias is not None:
            raise ValueError("a batch-normalised conv with its own bias has no darknet layout")
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]  # type: ignore[list-item]
    if conv.bias is None:
        raise ValueError("a conv without bias and without BN has no darknet layout (darknet always stores biases)")
    return [conv.bias, conv.weight]


def _describe(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> str:
    k = conv.kernel_size[0]
    return f"{k}x{k} conv {conv.in_channels}->{conv.out_channels}{' + BN' if bn is not None else ''}"


def _seen_is_int64(major: int, minor: int) -> bool:
    """darknet's ``load_weights``: ``seen`` is a size_t when major * 10 + minor >= 2 (and both < 1000)."""
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


@dataclass
class WeightsInfo:
    """A ``.weights`` header and how many conv layers a load filled."""

    major: int
    minor: int
    revision: int
    seen: int
    layers_loaded: int = 0
    layers_total: int = 0


def read_header(path: str | Path) -> tuple[WeightsInfo, int]:
    """The header of a ``.weights`` file and its size in bytes (16 or 20)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 12:
        raise ValueError(f"{path}: {len(head)} bytes is too short for a darknet .weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], dtype="<i4"))
    wide = _seen_is_int64(major, minor)
    size = 20 if wide else 16
    if len(head) < size:
        raise ValueError(f"{path}: the header of version {major}.{minor} takes {size} bytes, the file has {len(head)}")
    seen = int(np.frombuffer(head[12:size], dtype="<u8" if wide else "<i4")[0])
    return WeightsInfo(major, minor, revision, seen), size


def load_weights(model_or_convs: nn.Module | Sequence[ConvPair], path: str | Path) -> WeightsInfo:
    """Copy a darknet ``.weights`` file into a network's convs and BNs (see :func:`darknet_convs` for the order).

    A file that ends exactly after k < N conv layers (darknet's ``.conv.23`` style) fills those k and leaves the
    rest untouched (logged). Raises ValueError, with the float counts expected and found, when the file ends inside a
    layer or holds more floats than the network takes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"darknet weights not found: {path}")
    info, offset = read_header(path)
    body = path.read_bytes()[offset:]
    pairs = darknet_convs(model_or_convs)
    layers = [_tensors(c, b) for c, b in pairs]
    sizes = [sum(t.numel() for t in ts) for ts in layers]
    bounds = np.cumsum([0, *sizes])  # bounds[k] = floats taken by the first k layers
    total = int(bounds[-1])
    if len(body) % 4:
        raise ValueError(f"{path}: {len(body)} bytes after the header is not a whole number of float32 values")
    found = len(body) // 4
    if found > total:
        raise ValueError(
            f"{path}: {len(pairs)} conv layers expect {total} floats after the header, found {found} "
            f"({found - total} trailing): the cfg does not match the weights"
        )
    k = int(np.searchsorted(bounds, found, side="right")) - 1  # complete layers in the file
    if found != bounds[k]:
        got = found - int(bounds[k])
        raise ValueError(
            f"{path}: the file ends inside conv layer {k} ({_describe(*pairs[k])}): expected {sizes[k]} floats for "
            f"it ({int(bounds[k + 1])} in total for the first {k + 1} layers, {total} for all {len(pairs)}), found "
            f"{got} ({found} in total)"
        )
    floats = np.frombuffer(body, dtype="<f4")
    with torch.no_grad():
        for i in range(k):
            o = int(bounds[i])
            for t in layers[i]:
                n = t.numel()
                t.copy_(torch.from_numpy(floats[o : o + n].copy()).view_as(t))
                o += n
    info.layers_loaded, info.layers_total = k, len(pairs)
    if k < len(pairs):
        log.info("%s: a partial file: filled %d of %d conv layers", path, k, len(pairs))
    else:
        log.info("%s: loaded all %d conv layers (seen=%d)", path, k, info.seen)
    return info


def save_weights(
    model_or_convs: nn.Module | Sequence[ConvPair],
    path: str | Path,
    seen: int = 0,
    major: int = 0,
    minor: int = 2,
    revision: int = 0,
    cutoff: int | None = None,
) -> None:
    """Write a darknet ``.weights`` file: header (int32 major, minor, revision; ``seen`` int64 when
    major * 10 + minor >= 2, else int32), then every conv's tensors in :func:`darknet_convs` order as float32 LE.
    ``cutoff``: write only the first ``cutoff`` conv layers (darknet's ``partial``, e.g. ``.conv.23``)."""
    pairs = darknet_convs(model_or_convs)[:cutoff]
    wide = _seen_is_int64(major, minor)
    with open(path, "wb") as f:
        f.write(np.array([major, minor, revision], dtype="<i4").tobytes())
        f.write(np.array([seen], dtype="<u8" if wide else "<i4").tobytes())
        for conv, bn in pairs:
            for t in _tensors(conv, bn):
                f.write(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes())


# ---------------------------------------------------------------------------------------------- cfg generation
def _fmt(v: float) -> str:
    return str(np.float32(v))


def _conv_cfg(filters: int, size: int, bn: bool = True, act: str = "leaky") -> str:
    s = "[convolutional]\n" + ("batch_normalize=1\n" if bn else "")
    return s + f"filters={filters}\nsize={size}\nstride=1\npad=1\nactivation={act}\n"


def native_cfg_text(model: nn.Module, size: int = 416) -> str:
    """A darknet cfg describing a native Darknet19Classifier / YOLOv2 / YOLOv2(fuse=False) (for trained checkpoints that
    carry no cfg). Only the layers and ``[region]`` anchors / classes; darknet's training options are left out."""
    bb = model.backbone if isinstance(model, Darknet19Classifier | YOLOv2) else None
    if not isinstance(bb, Darknet19):
        raise TypeError(f"no cfg for {type(model).__name__}")
    bn = bb.batch_norm
    parts = [f"[net]\nbatch=1\nsubdivisions=1\nheight={size}\nwidth={size}\nchannels=3\n"]
    idx = -1
    c4 = -1
    n_conv = 0
    for item in DARKNET19_LAYOUT:
        idx += 1
        if item == "M":
            parts.append("[maxpool]\nsize=2\nstride=2\n")
            continue
        filters, k = item  # type: ignore[misc]
        parts.append(_conv_cfg(scaled(filters, bb.width), k, bn))
        n_conv += 1
        if n_conv == 13:
            c4 = idx
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
        f"coords=4\nnum={model.num_anchors}\nsoftmax=1\n"
    )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------- checkpoints
def _read_names(path: str | Path) -> list[str]:
    return [s.strip() for s in Path(path).read_text().splitlines() if s.strip()]


def detector_model_config(
    sections: Sequence[dict[str, Any]],
    net_cfg: dict[str, Any],
    class_names: list[str],
    base: str | Path = PROJECT_ROOT / "conf" / "model" / "yolov2.yaml",
) -> dict[str, Any]:
    """``conf/model/yolov2.yaml`` with ``net`` replaced by ``net_cfg`` and darknet's ``[net]`` / ``[region]``
    training options filled in (lr, momentum, decay, burn_in, steps, scales; thresh, scales, rescore, tree)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(base), resolve=False)
    assert isinstance(cfg, dict)
    if net_cfg["_target_"] == "yolo9000.darknet.darknet_net_from_text":
        cfg["net"] = net_cfg  # the generic network takes only its cfg text
    else:
        cfg["net"] = {**cfg["net"], **net_cfg, "num_anchors": len(net_cfg["anchors"])}
    region = region_meta(sections)
    assert region is not None
    loss = cfg["loss"]
    loss.update(
        thresh=region.thresh,
        object_scale=region.object_scale,
        noobject_scale=region.noobject_scale,
        class_scale=region.class_scale,
        coord_scale=region.coord_scale,
        rescore=region.rescore,
    )
    if region.tree is not None:
        loss["tree"] = {"_target_": "yolo9000.wordtree.WordTree.from_file", "path": str(region.tree.resolve())}
    ns = sections[0]
    policy = _opt(ns, "policy", "steps", str)
    cfg.update(
        lr=_opt(ns, "learning_rate", cfg["lr"], float),
        momentum=_opt(ns, "momentum", cfg["momentum"], float),
        weight_decay=_opt(ns, "decay", cfg["weight_decay"], float),
        burn_in=_opt(ns, "burn_in", 0),
        power=_opt(ns, "power", cfg["power"], float),
    )
    if policy in ("steps", "poly"):
        cfg["lr_policy"] = policy
    steps, scales = _opt_list(ns, "steps", float), _opt_list(ns, "scales", float)
    if steps and scales and len(steps) == len(scales):
        cfg["steps"], cfg["scales"] = [int(s) if s.is_integer() else s for s in steps], scales
    cfg["class_names"] = class_names
    cfg["eval_size"] = _opt(ns, "height", 416)
    return cfg


def darknet_to_checkpoint(
    cfg: str | Path, weights: str | Path | None = None, names: str | Path | None = None
) -> dict[str, Any]:
    """A darknet cfg (+ ``.weights``) as a checkpoint dict.

    Detectors: ``{"state_dict": DetectorModule.state_dict() ("model.<param>", "seen" = the header's seen),
    "yolo9000_model_config": ..., "darknet": {...}}``, loadable by :func:`yolo9000.runner.load_module`. The net is
    the native YOLOv2 / YOLOv2(fuse=False) when the structure matches, else a :class:`DarknetNet` built from the stored
    cfg text. Classifiers: ``{"state_dict": {"model.<param>"}, "yolo9000_classifier_config": net config, ...}``
    (``backbone.*`` keys usable as ``model.backbone_ckpt``). ``darknet`` holds the cfg's bytes and the header, so
    :func:`checkpoint_to_darknet` writes the same bytes back. ``names``: one class name a line (default: the
    WordTree's 9k.names for a 9418-node tree, else "0", "1", ...).
    """
    from omegaconf import OmegaConf

    from yolo9000.runner import instantiate_module

    cfg = Path(cfg)
    sections = parse_cfg(cfg)
    spec = match_native(sections)
    info: WeightsInfo | None = None
    region = region_meta(sections)
    dk: dict[str, Any] = {"cfg_name": cfg.name, "cfg_bytes": cfg.read_bytes(), "weights": str(weights or "")}
    if region is None:
        if spec is None or spec.kind != "classifier":
            raise NotImplementedError(f"{cfg}: only Darknet-19 classifiers convert without a [region]")
        net_cfg = native_net_config(spec)
        model = build_native(spec)
        if weights is not None:
            info = load_weights(model, weights)
        dk["header"] = vars(info) if info else None
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        return {"state_dict": state, "yolo9000_classifier_config": net_cfg, "darknet": dk}

    if spec is not None and spec.kind == "detector":
        net_cfg = native_net_config(spec)
    else:
        net_cfg = {"_target_": "yolo9000.darknet.darknet_net_from_text", "cfg_text": dk["cfg_bytes"].decode()}
    if names is not None:
        class_names = _read_names(names)
    elif region.tree is not None and region.classes == 9418 and (WORDTREE_DIR / "9k.names").is_file():
        class_names = _read_names(WORDTREE_DIR / "9k.names")
    else:
        class_names = [str(i) for i in range(region.classes)]
    if len(class_names) != region.classes:
        raise ValueError(f"{names}: {len(class_names)} names for the {region.classes} classes of {cfg}")
    model_cfg = detector_model_config(sections, net_cfg, class_names)
    module = instantiate_module(OmegaConf.create({"model": model_cfg}))
    if weights is not None:
        info = load_weights(module.model, weights)
        module.seen.fill_(info.seen)
    dk["header"] = vars(info) if info else None
    return {"state_dict": module.state_dict(), "yolo9000_model_config": model_cfg, "darknet": dk}


def checkpoint_to_darknet(
    ckpt_path: str | Path, weights_out: str | Path, cfg_out: str | Path | None = None
) -> WeightsInfo:
    """Write a checkpoint's network as darknet ``.weights`` (+ cfg).

    The header (version and ``seen``) is the one the checkpoint was converted from (``seen`` from the module's
    ``seen`` buffer for detectors), else 0.2.0 with seen = the module's ``seen``. The cfg is the stored cfg text
    when there is one (bytes unchanged), else generated by :func:`native_cfg_text`.
    """
    import hydra

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    dk = ckpt.get("darknet") or {}
    header = dk.get("header") or {"major": 0, "minor": 2, "revision": 0, "seen": 0}
    if "yolo9000_model_config" in ckpt:
        from yolo9000.runner import load_module

        module = load_module(ckpt_path)
        model: nn.Module = module.model
        seen = int(module.seen)
        size = int(ckpt["yolo9000_model_config"].get("eval_size") or 416)
    elif "yolo9000_classifier_config" in ckpt:
        model = hydra.utils.instantiate(ckpt["yolo9000_classifier_config"], _convert_="all")
        model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
        seen = int(header["seen"])
        size = 224
    else:
        raise ValueError(f"{ckpt_path}: neither a yolo9000 detection nor a converted classifier checkpoint")
    if any(isinstance(m, nn.BatchNorm2d) and not isinstance(m, DarknetBatchNorm2d) for m in model.modules()):
        log.warning("%s: trained with bn_style=torch; darknet normalises with sqrt(var) + 1e-6", ckpt_path)
    save_weights(model, weights_out, seen, int(header["major"]), int(header["minor"]), int(header["revision"]))
    if cfg_out is not None:
        Path(cfg_out).write_bytes(dk.get("cfg_bytes") or native_cfg_text(model, size).encode())
    n = len(darknet_convs(model))
    return WeightsInfo(int(header["major"]), int(header["minor"]), int(header["revision"]), seen, n, n)
