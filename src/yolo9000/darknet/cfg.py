"""darknet ``.cfg`` files: parsing, per-layer shape inference, parameter counts and ``[region]`` metadata.

Pure file-format code: no network is built here (see :mod:`yolo9000.darknet.net` / :mod:`~yolo9000.darknet.native`).
Data files a cfg names (``[region] tree=data/9k.tree``, ``map=``) are resolved relative to the working directory,
the cfg's folder and the search folders the caller passes (:func:`resolve_data_file`); this package knows no
repository layout.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from yolo9000.models.layers import DARKNET_ACTIVATIONS
from yolo9000.text_io import read_text, text_lines  # darknet's files as any editor wrote them

log = logging.getLogger("yolo9000")

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
SUPPORTED += ("shortcut", "upsample", "connected", "crop")
# darknet's other section names (parser.c string_to_layer_type): named as darknet's when refused
_DARKNET_SECTIONS = ("yolo", "detection", "local", "deconvolutional", "batchnorm", "normalization")
_DARKNET_SECTIONS += ("activation", "logistic", "l2norm", "iseg", "rnn", "gru", "lstm", "crnn")
# options of later darknets (AlexeyAB's fork, YOLOv3/v4 cfgs) that change a layer's computation: not implemented,
# so a cfg using them must fail rather than build a different network
_UNSUPPORTED_OPTIONS = {
    "convolutional": (
        "dilation",
        "stride_x",
        "stride_y",
        "antialiasing",
        "share_index",
        "deform",
        "sway",
        "rotate",
        "stretch",
        "stretch_sway",
        "assisted_excitation",
        "coordconv",
    ),
    "maxpool": ("maxpool_depth", "out_channels", "stride_x", "stride_y", "antialiasing", "maxpool_zero_nonmax"),
    "route": ("groups", "group_id"),
    "region": ("background", "log", "sqrt"),
    "shortcut": ("weights_type", "weights_normalization"),  # AlexeyAB's weighted shortcut
}
# values of those options that leave the computation as darknet of the YOLOv2 era does it: accepted
_NEUTRAL_VALUES = {
    "dilation": 1,
    "antialiasing": 0,
    "deform": 0,
    "sway": 0,
    "rotate": 0,
    "stretch": 0,
    "stretch_sway": 0,
    "assisted_excitation": 0,
    "coordconv": 0,
    "maxpool_depth": 0,
    "maxpool_zero_nonmax": 0,
    "background": 0,
    "log": 0,
    "sqrt": 0,
    "weights_type": "none",
    "weights_normalization": "none",
}
# the options darknet of the YOLOv2 era reads per section (parser.c); any other one is reported as darknet does
# ("Unused field"), without stopping: a typo (filtres=8) or an option of another darknet that changes nothing here
_COMMON_OPTIONS = ("stopbackward", "dontload", "dontloadscales", "numload", "dontsave", "learning_rate", "smooth")
_COMMON_OPTIONS += ("onlyforward",)
_KNOWN_OPTIONS = {
    "convolutional": ("filters", "size", "stride", "pad", "padding", "groups", "activation", "batch_normalize")
    + ("binary", "xnor", "flipped", "dot"),
    "maxpool": ("size", "stride", "padding"),
    "avgpool": (),
    "route": ("layers",),
    "reorg": ("stride", "reverse", "flatten", "extra"),
    "region": ("anchors", "classes", "coords", "num", "softmax", "jitter", "rescore", "thresh", "absolute", "random")
    + ("bias_match", "object_scale", "noobject_scale", "class_scale", "coord_scale", "tree", "map", "max")
    + ("classfix", "mask_scale"),  # read by parse_region, used by neither the 4-coordinate loss nor the decode
    "softmax": ("groups", "temperature", "tree", "spatial", "noloss"),
    "cost": ("type", "scale", "ratio", "noobject_scale", "thresh"),
    "dropout": ("probability",),
    "shortcut": ("from", "activation", "alpha", "beta"),
    "upsample": ("stride", "scale"),
    "connected": ("output", "activation", "batch_normalize"),
    "crop": ("crop_height", "crop_width", "flip", "angle", "saturation", "exposure", "noadjust", "shift"),
}

# unused options already reported ("file:line", section, key, value): darknet prints its "Unused field" once a load
_REPORTED_UNUSED: set[tuple[str, str, str, str]] = set()

Sections = Sequence[dict[str, Any]]
SearchPath = Sequence[str | Path]


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
    if path.is_dir():
        raise FileNotFoundError(f"darknet cfg {path}: a folder, not a .cfg file")  # (caught as the missing file is)
    if not path.is_file():
        raise FileNotFoundError(f"darknet cfg not found: {path}")
    return parse_cfg_text(read_text(path), str(path))


def read_names(path: str | Path, num_classes: int | None = None) -> list[str]:
    """Class names, one a line (darknet's ``get_labels``: class ``i`` is line ``i + 1``), spaces around a name
    stripped.

    darknet counts every line: a blank line inside the file is a class (named ""), warned with its line, so the
    classes after it keep darknet's indices; blank lines at the end are dropped (no class after them to shift).
    With ``num_classes`` (a cfg's ``classes``): the first ``num_classes`` names, as darknet uses them (more names are
    warned); fewer names are an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class names file not found: {path} (one class name a line, darknet's .names)")
    names = [line.strip() for line in text_lines(read_text(path))]
    while names and not names[-1]:
        names.pop()
    for i, name in enumerate(names):
        if not name:
            log.warning("%s:%d: a blank line: class %d has no name (darknet counts the line)", path, i + 1, i)
    if num_classes is None or len(names) == num_classes:
        return names
    if len(names) < num_classes:
        raise ValueError(f"{path}: {len(names)} names for {num_classes} classes (one class name a line)")
    log.warning(
        "%s: %d names for %d classes: the first %d are used, as darknet does",
        path,
        len(names),
        num_classes,
        num_classes,
    )
    return names[:num_classes]


def parse_cfg_text(text: str, source: str = "<cfg>") -> list[dict[str, Any]]:
    """:func:`parse_cfg` on cfg text; ``source`` names it in errors (``source:line``)."""
    if "\x00" in text:  # a binary file (a .weights given as the cfg): its bytes would fill the message
        raise ValueError(f"{source}: not a darknet cfg (a text file of [sections]): it holds binary data")
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


def as_sections(cfg: str | Path | Sections) -> Sections:
    """A cfg path parsed with :func:`parse_cfg`; already parsed sections as they are."""
    return parse_cfg(cfg) if isinstance(cfg, str | Path) else cfg


def source_line(sec: dict[str, Any], key: str | None = None) -> str:
    """``file:line`` of a section header or of one of its options."""
    line = sec["lines"].get(key, sec["line"]) if key else sec["line"]
    return f"{sec['path']}:{line}"


def option(sec: dict[str, Any], key: str, default: Any, kind: type = int) -> Any:
    """Option ``key`` of a section parsed as ``kind`` (int, float or str), ``default`` when absent.

    Raises ValueError naming ``file:line`` when the value does not parse.
    """
    if key not in sec["options"]:
        return default
    value = sec["options"][key]
    try:
        return kind(value)
    except ValueError as e:
        # a trailing comment after a number (filters=27 # 3*(5+4)): darknet's atoi / atof read the number
        head = re.match(r"\s*([^#;]*?)\s*[#;]", value) if kind in (int, float) else None
        text = head.group(1) if head else value
        with contextlib.suppress(ValueError):
            return kind(text)
        if kind is int and re.fullmatch(r"\s*[-+]?\d+\.\d*\s*", text):  # random=0.5: darknet's atoi reads 0
            got = int(float(text))
            log.warning("%s: option %s=%s read as %d (darknet's atoi)", source_line(sec, key), key, value, got)
            return got
        raise ValueError(f"{source_line(sec, key)}: option {key}={value!r} is not a valid {kind.__name__}") from e


def option_list(sec: dict[str, Any], key: str, kind: type = float) -> list[Any] | None:
    """Comma-separated option (``anchors``, ``layers``, ``steps``) as a list, None when absent."""
    if key not in sec["options"]:
        return None
    value = re.split(r"[#;]", sec["options"][key], maxsplit=1)[0]  # a trailing comment: darknet's atof stops there
    try:
        return [kind(v) for v in value.split(",") if v.strip() != ""]
    except ValueError as e:
        value = sec["options"][key]
        raise ValueError(f"{source_line(sec, key)}: option {key}={value!r} is not a list of {kind.__name__}") from e


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
    # output height and width at the [net] size (None: the cfg gives no size); only [connected] depends on them
    out_hw: tuple[int, int] | None = None
    # convolutional
    filters: int = 0
    size: int = 0
    stride: int = 1
    padding: int = 0
    groups: int = 1
    batch_norm: bool = False
    activation: str = "linear"
    # route, shortcut (its ``from``)
    sources: list[int] = field(default_factory=list)
    # dropout
    probability: float = 0.5
    # shortcut (alpha * input + beta * from), upsample (scale; reverse: a negative stride in the cfg)
    alpha: float = 1.0
    beta: float = 1.0
    scale: float = 1.0
    reverse: bool = False
    # connected: its inputs (C * H * W of the previous layer at the [net] size)
    in_features: int = 0
    # crop: its input's height and width at the [net] size (the window is ``out_hw``), flip, the 2x - 1 adjust
    in_hw: tuple[int, int] | None = None
    flip: bool = False
    adjust: bool = True

    @property
    def where(self) -> str:
        return source_line(self.section)


def _conv_spec(spec: LayerSpec) -> None:
    """Fill a ``[convolutional]`` spec from its section (filters, size, ..., parameter count, output channels)."""
    sec, in_ch = spec.section, spec.in_channels
    for flag in ("binary", "xnor", "flipped", "dot"):
        if option(sec, flag, 0):
            raise NotImplementedError(f"{source_line(sec, flag)}: convolutional option {flag}=1 is not supported")
    spec.filters = option(sec, "filters", 1)
    spec.size = option(sec, "size", 1)
    spec.stride = option(sec, "stride", 1)
    spec.groups = option(sec, "groups", 1)
    spec.padding = spec.size // 2 if option(sec, "pad", 0) else option(sec, "padding", 0)
    spec.batch_norm = bool(option(sec, "batch_normalize", 0))
    spec.activation = _activation(sec, "logistic")  # darknet's default activation
    if spec.filters < 1 or spec.size < 1 or spec.stride < 1 or spec.groups < 1 or in_ch % spec.groups:
        raise ValueError(
            f"{spec.where}: invalid convolutional (filters={spec.filters}, size={spec.size}, "
            f"stride={spec.stride}, groups={spec.groups}, {in_ch} input channels)"
        )
    n = spec.filters
    spec.params = n * (in_ch // spec.groups) * spec.size**2 + n + (n if spec.batch_norm else 0)
    spec.out_channels = n


def _activation(sec: dict[str, Any], default: str) -> str:
    """A section's ``activation`` (``default`` when absent); NotImplementedError naming ``file:line`` for a name
    outside darknet's YOLOv2-era activations (e.g. the later ``mish``, ``swish``)."""
    name = option(sec, "activation", default, str)
    if name not in DARKNET_ACTIVATIONS:
        # darknet drops a line's spaces and reads '#' / ';' comments only at its start: "leaky # x" is "leaky#x"
        comment = (
            " (darknet reads a comment only at the start of a line: the text after '#' / ';' is part of the value)"
            if re.search("[#;]", name)
            else ""
        )
        raise NotImplementedError(
            f"{source_line(sec, 'activation')}: activation {name!r} is not supported "
            f"({', '.join(DARKNET_ACTIVATIONS)}){comment}"
        )
    return name


def _out_hw(spec: LayerSpec, hw: tuple[int, int] | None, specs: Sequence[LayerSpec]) -> tuple[int, int] | None:
    """A layer's output height and width from its input's (darknet's ``make_*_layer`` arithmetic)."""
    if spec.type == "route":
        return specs[spec.sources[0]].out_hw  # darknet's make_route_layer takes the first layer's size
    if spec.type in ("avgpool", "connected"):
        return (1, 1)
    if spec.type == "crop":
        return option(spec.section, "crop_height", 1), option(spec.section, "crop_width", 1)
    if hw is None:
        return None
    h, w = hw
    if spec.type == "convolutional":
        return (
            (h + 2 * spec.padding - spec.size) // spec.stride + 1,
            (w + 2 * spec.padding - spec.size) // spec.stride + 1,
        )
    if spec.type == "maxpool":
        return ((h + spec.padding - spec.size) // spec.stride + 1, (w + spec.padding - spec.size) // spec.stride + 1)
    if spec.type == "reorg":
        return (h // spec.stride, w // spec.stride)
    if spec.type == "upsample":
        return (h // spec.stride, w // spec.stride) if spec.reverse else (h * spec.stride, w * spec.stride)
    return hw


def _layer_index(spec: LayerSpec, key: str, values: list[int]) -> list[int]:
    """``[route] layers=`` / ``[shortcut] from=`` as absolute layer indices (negative: relative to this layer);
    ValueError naming ``file:line`` for an index outside the earlier layers."""
    i, sec = spec.index, spec.section
    out = [r if r >= 0 else i + r for r in values]
    bad = [s for s in out if not 0 <= s < i]
    if bad:
        raise ValueError(f"{source_line(sec, key)}: [{spec.type}] layer {i} refers to layers {bad} (need 0..{i - 1})")
    return out


def _neutral(sec: dict[str, Any], t: str, key: str) -> bool:
    """Whether an option of a later darknet is set to the value that computes what YOLOv2's darknet computes
    (``dilation=1``, ``antialiasing=0``, ``[route] groups=1``, ``stride_x`` = ``stride_y`` = the stride, ...)."""
    if t == "route" and key in ("groups", "group_id"):
        return option(sec, "groups", 1) == 1 and option(sec, "group_id", 0) == 0
    if key in ("stride_x", "stride_y"):
        return option(sec, key, 0) == option(sec, "stride", 1)
    if key in _NEUTRAL_VALUES:
        neutral = _NEUTRAL_VALUES[key]
        with contextlib.suppress(ValueError):
            return option(sec, key, neutral, str if isinstance(neutral, str) else float) == neutral
    return False


def _same_strides(sec: dict[str, Any]) -> None:
    """AlexeyAB's ``stride_x`` = ``stride_y`` without ``stride``: the layer's stride (his parser takes it so)."""
    opts = sec["options"]
    if "stride" not in opts and "stride_x" in opts and opts.get("stride_x") == opts.get("stride_y"):
        opts["stride"] = opts["stride_x"]


def layer_specs(sections: Sections) -> list[LayerSpec]:
    """Shape inference over the layers of a parsed cfg (everything after ``[net]``).

    Raises NotImplementedError (with ``file:line``) for sections this module does not implement (``yolo``,
    ``local``, ``crop``, ..., unknown names) and ValueError for inconsistent options.
    """
    in_ch = option(sections[0], "channels", 3)
    h, w = option(sections[0], "height", 0), option(sections[0], "width", 0)
    hw: tuple[int, int] | None = (h, w) if h > 0 and w > 0 else None
    specs: list[LayerSpec] = []
    for i, sec in enumerate(sections[1:]):
        t = sec["type"]
        if t not in SUPPORTED:
            known = "a darknet section" if t in _DARKNET_SECTIONS else "an unknown section"
            raise NotImplementedError(
                f"{source_line(sec)}: [{t}] ({known}) is not supported; darknet interop covers the YOLOv2-era "
                f"layers {', '.join(SUPPORTED)}"
            )
        _same_strides(sec)
        for key in _UNSUPPORTED_OPTIONS.get(t, ()):
            if key not in sec["options"] or _neutral(sec, t, key):
                continue
            raise NotImplementedError(
                f"{source_line(sec, key)}: [{t}] option {key}={sec['options'][key]} is not supported by this converter"
            )
        unused = set(sec["options"]) - {*_KNOWN_OPTIONS[t], *_UNSUPPORTED_OPTIONS.get(t, ()), *_COMMON_OPTIONS}
        for key in sorted(unused, key=lambda k: sec["lines"].get(k, 0)):
            # once per line: one load builds a cfg's layers several times (checkpoint, module, network)
            said = (source_line(sec, key), t, key, sec["options"][key])
            if said in _REPORTED_UNUSED:
                continue
            _REPORTED_UNUSED.add(said)
            log.warning(
                "%s: [%s] option %s=%s is not a darknet option of this layer: unused",
                source_line(sec, key),
                t,
                key,
                sec["options"][key],
            )
        if t == "region" and i != len(sections) - 2:
            raise NotImplementedError(f"{source_line(sec)}: [region] must be the last layer (layers follow it)")
        after = [later["type"] for later in sections[i + 2 :] if later["type"] != "cost"]
        if t == "softmax" and after:  # the output's softmax is left out (logits); one inside would change the rest
            raise NotImplementedError(
                f"{source_line(sec)}: [softmax] is supported as the network's output only (a [cost] may follow it); "
                f"[{after[0]}] follows it here"
            )
        spec = LayerSpec(index=i, type=t, section=sec, in_channels=in_ch, out_channels=in_ch)
        if t == "convolutional":
            _conv_spec(spec)
        elif t == "maxpool":
            spec.stride = option(sec, "stride", 1)
            spec.size = option(sec, "size", spec.stride)
            spec.padding = option(sec, "padding", spec.size - 1)
        elif t == "route":
            rel = option_list(sec, "layers", int)
            if not rel:
                raise ValueError(f"{spec.where}: [route] needs layers=")
            spec.sources = _layer_index(spec, "layers", rel)
            spec.out_channels = sum(specs[s].out_channels for s in spec.sources)
        elif t == "reorg":
            for flag in ("reverse", "flatten", "extra"):
                if option(sec, flag, 0):
                    raise NotImplementedError(f"{source_line(sec, flag)}: [reorg] {flag}=1 is not supported")
            spec.stride = option(sec, "stride", 1)
            if spec.stride < 1 or in_ch % spec.stride**2:
                raise ValueError(f"{spec.where}: [reorg] stride={spec.stride} does not divide {in_ch} input channels")
            spec.out_channels = in_ch * spec.stride**2
        elif t == "region":
            meta = region_from_section(sec)
            expected = meta.num * (meta.coords + 1 + meta.classes)
            if in_ch != expected:
                raise ValueError(
                    f"{spec.where}: [region] num={meta.num} classes={meta.classes} coords={meta.coords} needs "
                    f"{expected} input channels, the previous layer gives {in_ch}"
                )
            if meta.coords != 4:
                raise NotImplementedError(f"{source_line(sec, 'coords')}: [region] coords={meta.coords} (only 4)")
        elif t == "dropout":
            spec.probability = option(sec, "probability", 0.5, float)
        elif t == "shortcut":
            _shortcut_spec(spec)
        elif t == "upsample":
            stride = option(sec, "stride", 2)
            if stride == 0:
                raise ValueError(f"{source_line(sec, 'stride')}: [upsample] stride=0")
            spec.stride, spec.reverse = abs(stride), stride < 0
            spec.scale = option(sec, "scale", 1.0, float)
        elif t == "connected":
            _connected_spec(spec, hw)
        elif t == "crop":
            _crop_spec(spec, hw)
        spec.out_hw = _out_hw(spec, hw, specs)
        specs.append(spec)
        in_ch, hw = spec.out_channels, spec.out_hw
    return specs


def _shortcut_spec(spec: LayerSpec) -> None:
    """Fill a ``[shortcut]`` spec: ``from`` (one layer: AlexeyAB's lists of several are refused), ``alpha``,
    ``beta``, ``activation`` (darknet's default ``linear``); the output keeps the input's shape."""
    sec = spec.section
    rel = option_list(sec, "from", int)
    if not rel:
        raise ValueError(f"{spec.where}: [shortcut] needs from=")
    if len(rel) > 1:
        raise NotImplementedError(
            f"{source_line(sec, 'from')}: [shortcut] from={sec['options']['from']}: adding several layers (a later "
            "darknet's) is not supported; YOLOv2-era darknet adds one"
        )
    spec.sources = _layer_index(spec, "from", rel)
    spec.alpha = option(sec, "alpha", 1.0, float)
    spec.beta = option(sec, "beta", 1.0, float)
    spec.activation = _activation(sec, "linear")


def _crop_spec(spec: LayerSpec, hw: tuple[int, int] | None) -> None:
    """Fill a ``[crop]`` spec: ``crop_height`` / ``crop_width`` (darknet's default 1), ``flip``, ``noadjust``;
    darknet needs an image before it ("Layer before crop layer must output image"): the [net] size."""
    sec = spec.section
    if hw is None:
        raise ValueError(f"{spec.where}: [crop] needs an image before it: the cfg's [net] gives no height and width")
    crop = option(sec, "crop_height", 1), option(sec, "crop_width", 1)
    if not (1 <= crop[0] <= hw[0] and 1 <= crop[1] <= hw[1]):
        raise ValueError(
            f"{spec.where}: [crop] crop_height={crop[0]} crop_width={crop[1]} does not fit its {hw[0]} x {hw[1]} input"
        )
    spec.in_hw, spec.flip, spec.adjust = hw, bool(option(sec, "flip", 0)), not option(sec, "noadjust", 0)


def _connected_spec(spec: LayerSpec, hw: tuple[int, int] | None) -> None:
    """Fill a ``[connected]`` spec: ``output`` (darknet's default 1), ``activation`` (default ``logistic``),
    ``batch_normalize``; its inputs are the previous layer's C * H * W at the [net] size, so a cfg needs
    ``height`` / ``width`` (or an ``[avgpool]`` / ``[connected]`` before it)."""
    sec = spec.section
    if hw is None:
        raise ValueError(
            f"{spec.where}: [connected] takes the previous layer's C x H x W values, and the cfg's [net] gives no "
            "height and width to infer H x W from"
        )
    spec.filters = option(sec, "output", 1)
    if spec.filters < 1:
        raise ValueError(f"{source_line(sec, 'output')}: [connected] output={spec.filters}")
    spec.batch_norm = bool(option(sec, "batch_normalize", 0))
    spec.activation = _activation(sec, "logistic")
    spec.in_features = spec.in_channels * hw[0] * hw[1]
    n = spec.filters
    spec.params = spec.in_features * n + n + (n if spec.batch_norm else 0)
    spec.out_channels = n


@dataclass(frozen=True)
class ConvLoad:
    """How darknet reads and writes one ``[convolutional]`` layer of a ``.weights`` file (``load_weights_upto`` /
    ``save_weights_upto``): ``dontload`` skips the layer (no floats read), ``dontloadscales`` reads its biases and
    weights but not its batch-norm scales, means and variances, ``numload`` reads the first ``numload`` filters only,
    ``dontsave`` leaves the layer out of a written file."""

    dontload: bool = False
    dontloadscales: bool = False
    numload: int | None = None
    dontsave: bool = False


def conv_load_options(cfg: str | Path | Sections) -> list[ConvLoad]:
    """The :class:`ConvLoad` of every layer with weights (``[convolutional]``, ``[connected]``), in cfg order (= the
    ``.weights`` order). darknet's connected layers read no ``numload``."""
    out = []
    for sec in as_sections(cfg)[1:]:
        if sec["type"] not in ("convolutional", "connected"):
            continue
        numload = option(sec, "numload", 0) if sec["type"] == "convolutional" else 0
        filters = option(sec, "filters", 1)
        if not 0 <= numload <= filters:
            raise ValueError(f"{source_line(sec, 'numload')}: numload={numload} outside 0..filters={filters}")
        out.append(
            ConvLoad(
                bool(option(sec, "dontload", 0)),
                bool(option(sec, "dontloadscales", 0)),
                numload or None,
                bool(option(sec, "dontsave", 0)),
            )
        )
    return out


def count_params(cfg: str | Path | Sections) -> int:
    """Learnable parameters from the cfg alone, darknet's way: conv weights + biases + BN scales."""
    return sum(s.params for s in layer_specs(as_sections(cfg)))


def fixed_input_size(cfg: str | Path | Sections) -> tuple[int, int] | None:
    """The ``[net]`` height x width a network runs at only: a ``[connected]`` layer whose inputs (the previous
    layer's C x H x W) grow with the input size ties it to the cfg's size; None when any size gives the same
    layers (no ``[connected]``, or each after a global ``[avgpool]``). Its warnings are left to the network's build.
    """
    sections = [s for s in as_sections(cfg) if s["type"] != "region"]  # its classes may await the data's
    disabled, log.disabled = log.disabled, True  # the cfg's unused options are logged where the network is built
    try:
        specs = [s.in_features for s in layer_specs(sections) if s.type == "connected"]
        if not specs:
            return None
        net = sections[0]
        h, w = option(net, "height", 0), option(net, "width", 0)
        doubled = copy.deepcopy(sections)
        doubled[0]["options"].update(height=str(2 * h), width=str(2 * w))
        for sec in doubled:  # a [crop] keeps its fraction of a resized input (darknet's resize_crop_layer)
            if sec["type"] == "crop":
                sec["options"].update({k: str(2 * option(sec, k, 1)) for k in ("crop_height", "crop_width")})
        other = [s.in_features for s in layer_specs(doubled) if s.type == "connected"]
    finally:
        log.disabled = disabled
    return None if other == specs else (h, w)


# ------------------------------------------------------------------------------------------------------- region
@dataclass
class RegionMeta:
    """darknet's ``[region]`` options (defaults as darknet's ``parse_region``).

    ``anchors``: (A, 2) priors (w, h) in grid cells; ``tree`` / ``map``: the data files the cfg names, resolved by
    :func:`resolve_data_file`; None when absent.
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

    def loss_options(self) -> dict[str, Any]:
        """The region loss's settings darknet's ``forward_region_layer`` takes from this section (as
        :class:`~yolo9000.loss.RegionLoss` arguments): ``thresh``, the four scales, ``rescore`` and the classes'
        activation (``softmax``, or ``logistic`` for darknet's ``softmax=0``; a tree's is always its softmax)."""
        return {
            "thresh": self.thresh,
            "object_scale": self.object_scale,
            "noobject_scale": self.noobject_scale,
            "class_scale": self.class_scale,
            "coord_scale": self.coord_scale,
            "rescore": self.rescore,
            "class_activation": "softmax" if self.softmax or self.tree is not None else "logistic",
        }


def _number(value: float) -> str:
    """A float as a cfg line writes it: the shortest text that reads back as the same number (``5``, ``0.125``,
    ``0.3333333333333333``: darknet's atof and this parser read it exactly)."""
    text = repr(float(value))
    return text.removesuffix(".0")


def region_lines(loss: Mapping[str, Any]) -> dict[str, str]:
    """The ``[region]`` lines that say what :meth:`RegionMeta.loss_options` reads, from those loss settings (the
    inverse: a cfg written with them trains and decodes as the loss does)."""
    out = {k: _number(loss[k]) for k in ("thresh", "object_scale", "noobject_scale", "class_scale", "coord_scale")}
    out["rescore"] = str(int(bool(loss["rescore"])))
    out["softmax"] = str(int(loss["class_activation"] == "softmax"))
    return out


def net_training_options(sections: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The training options darknet's ``parse_net_options`` reads from the ``[net]`` section (``sections[0]``), with
    darknet's defaults for absent lines, as the detector module's keys: ``lr`` (learning_rate, 0.001), ``momentum``
    (0.9), ``weight_decay`` (decay, 0.0001), ``burn_in`` (0), ``power`` (4), ``lr_policy`` (policy, constant:
    ``steps`` with no steps; None for a policy the schedules do not run: step, exp, sigmoid, random), ``steps`` /
    ``scales`` (the lr multiplied by each scale from its step on); and ``policy`` (the cfg's word, with its
    ``file:line``), ``max_batches`` (darknet's run length in iterations; 0 when absent) and ``batch`` (images per
    iteration, 1 when absent: darknet's iteration count is ``seen / batch``).

    Raises:
        ValueError: a ``steps`` policy without its steps or scales, or with counts that differ (darknet stops there
            too), naming the file and line.
    """
    ns = sections[0]
    policy = option(ns, "policy", "constant", str).strip()
    steps, scales = option_list(ns, "steps", float), option_list(ns, "scales", float)
    if policy == "steps" and (not steps or not scales or len(steps) != len(scales)):
        raise ValueError(
            f"{source_line(ns, 'policy')}: policy=steps needs steps and scales of the same count, got "
            f"steps={steps} scales={scales}"
        )
    return {
        "lr": option(ns, "learning_rate", 0.001, float),
        "momentum": option(ns, "momentum", 0.9, float),
        "weight_decay": option(ns, "decay", 0.0001, float),
        "burn_in": option(ns, "burn_in", 0),
        "power": option(ns, "power", 4.0, float),
        "lr_policy": {"constant": "steps", "steps": "steps", "poly": "poly"}.get(policy),
        "steps": [int(v) if v.is_integer() else v for v in steps or []] if policy == "steps" else [],
        "scales": list(scales or []) if policy == "steps" else [],
        "policy": f"policy={policy} ({source_line(ns, 'policy')})",
        "max_batches": option(ns, "max_batches", 0),
        "batch": max(1, option(ns, "batch", 1)),
    }


def net_augment_options(sections: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The training augmentation darknet's ``train_detector`` gives ``load_data_detection`` for this cfg, with
    darknet's defaults for absent lines: the last ``[region]``'s ``jitter`` (``parse_region``: .2) and ``random``
    (multi-scale; 0), the ``[net]``'s ``hue`` (0), ``saturation`` (1) and ``exposure`` (1) (``parse_net_options``).
    Keys: ``jitter``, ``random`` (bool), ``hue``, ``saturation``, ``exposure``; a cfg without ``[region]`` gives the
    region's defaults."""
    regions = [s for s in sections if s["type"] == "region"]
    region = region_from_section(regions[-1], None) if regions else None
    ns = sections[0]
    return {
        "jitter": region.jitter if region is not None else 0.2,
        "random": region.random if region is not None else False,
        "hue": option(ns, "hue", 0.0, float),
        "saturation": option(ns, "saturation", 1.0, float),
        "exposure": option(ns, "exposure", 1.0, float),
    }


def trained_net_lines(
    hparams: Mapping[str, Any], sections: Sequence[dict[str, Any]]
) -> tuple[dict[str, str], list[str]]:
    """The ``[net]`` lines that say how a detector module was trained where its hyper-parameters differ from what the
    cfg's ``[net]`` gives (:func:`net_training_options`, darknet's defaults for absent lines): a ``model.lr=...`` (or
    ``momentum``, ``weight_decay``, ``burn_in``, ``power``, ``lr_policy``, ``steps``, ``scales``) given on the
    command line of a ``model=darknet`` run. Returns those lines (``learning_rate``, ``momentum``, ``decay``,
    ``burn_in``, ``power``, ``policy``, ``steps``, ``scales``), none for settings the cfg already says, and notes
    (comment lines, ``# ...``) for settings darknet's ``[net]`` cannot say: steps given as fractions of the run (the
    cfg's steps stay) and ``optimizer=adam`` (darknet's ``adam=1`` has its own betas: not written)."""
    cfg = net_training_options(sections)
    lines: dict[str, str] = {}
    notes: list[str] = []
    for key, line in (("lr", "learning_rate"), ("momentum", "momentum"), ("weight_decay", "decay"), ("power", "power")):
        if key in hparams and float(hparams[key]) != float(cfg[key]):
            lines[line] = _number(hparams[key])
    if "burn_in" in hparams and int(hparams["burn_in"]) != int(cfg["burn_in"]):
        lines["burn_in"] = str(int(hparams["burn_in"]))
    policy = hparams.get("lr_policy", cfg["lr_policy"])
    steps = [float(v) for v in (hparams["steps"] if "steps" in hparams else cfg["steps"]) or []]
    scales = [float(v) for v in (hparams["scales"] if "scales" in hparams else cfg["scales"]) or []]
    # fractions of the run (the rule of modules.schedules.fraction_steps, a layer above): no iterations known
    if policy == "steps" and steps and all(v <= 1.0 for v in steps):
        written = option(sections[0], "policy", "constant", str).strip()  # what darknet trains with instead
        notes.append(
            f"# trained with steps at fractions {steps} of the run (scales {scales}): darknet's steps are "
            f"iterations; the cfg's policy={written} below stays as written"
        )
    else:
        was = (cfg["lr_policy"], [float(v) for v in cfg["steps"]], [float(v) for v in cfg["scales"]])
        if policy == "steps" and (policy, steps, scales) != was:
            lines["policy"] = "steps" if steps else "constant"  # darknet's steps policy needs its steps
            if steps:
                lines["steps"] = ",".join(_number(v) for v in steps)
                lines["scales"] = ",".join(_number(v) for v in scales)
        elif policy == "poly" and cfg["lr_policy"] != "poly":
            lines["policy"] = "poly"
    if hparams.get("optimizer", "sgd") != "sgd":
        notes.append(
            f"# trained with optimizer={hparams['optimizer']}: not written (darknet's adam=1 has its own betas)"
        )
    return lines, notes


def resolve_data_file(value: str, cfg_path: str | Path | None = None, search: SearchPath = ()) -> Path:
    """The file a cfg names with a darknet-relative path (``data/9k.tree``).

    Candidates, first existing wins: ``value`` from the working directory, from the cfg's folder, then for each
    search folder ``folder / value`` and ``folder / <file name>`` (the application passes its vendored darknet data
    folders). None found: ``Path(value)`` and a warning.
    """
    cands = [Path(value)]
    if cfg_path is not None:
        cands.append(Path(cfg_path).parent / value)
    for folder in search:
        cands += [Path(folder) / value, Path(folder) / Path(value).name]
    for c in cands:
        if c.is_file():
            return c
    log.warning("%s: data file %r not found (looked in %s)", cfg_path, value, [str(c) for c in cands])
    return Path(value)


def region_from_section(sec: dict[str, Any], search: SearchPath | None = None) -> RegionMeta:
    """A ``[region]`` section as :class:`RegionMeta`.

    ``search``: None = leave ``tree`` / ``map`` as written (no file lookups: shape checks and structure matching);
    a sequence = resolve them with :func:`resolve_data_file` and those search folders.
    """
    num = option(sec, "num", 1)
    biases = option_list(sec, "anchors", float)
    if biases is None:
        biases = [0.5] * (2 * num)  # make_region_layer's default
    if len(biases) != 2 * num:
        raise ValueError(f"{source_line(sec, 'anchors')}: {len(biases)} anchor values for num={num} (need {2 * num})")

    def data_file(key: str) -> Path | None:
        value = sec["options"].get(key)
        if not value:
            return None
        return Path(value) if search is None else resolve_data_file(value, sec["path"], search)

    return RegionMeta(
        anchors=torch.tensor(biases, dtype=torch.float32, device="cpu").view(num, 2),
        classes=option(sec, "classes", 20),
        num=num,
        coords=option(sec, "coords", 4),
        softmax=bool(option(sec, "softmax", 0)),
        thresh=option(sec, "thresh", 0.5, float),
        object_scale=option(sec, "object_scale", 1.0, float),
        noobject_scale=option(sec, "noobject_scale", 1.0, float),
        class_scale=option(sec, "class_scale", 1.0, float),
        coord_scale=option(sec, "coord_scale", 1.0, float),
        rescore=bool(option(sec, "rescore", 0)),
        bias_match=bool(option(sec, "bias_match", 0)),
        absolute=bool(option(sec, "absolute", 0)),
        jitter=option(sec, "jitter", 0.2, float),
        random=bool(option(sec, "random", 0)),
        tree=data_file("tree"),
        map=data_file("map"),
    )


def region_meta(cfg: str | Path | Sections, search: SearchPath | None = ()) -> RegionMeta | None:
    """The cfg's (last) ``[region]`` section, None for a network without one (a classifier).

    ``tree`` / ``map`` are resolved relative to the working directory, the cfg's folder and ``search``
    (see :func:`resolve_data_file`); ``search=None`` keeps them as the cfg writes them.
    """
    regions = [s for s in as_sections(cfg) if s["type"] == "region"]
    return region_from_section(regions[-1], search) if regions else None


def detector_cfg_text(
    cfg_text: str,
    num_classes: int | None = None,
    anchors: Sequence[Sequence[float]] | None = None,
    source: str = "<cfg>",
    set_region: Mapping[str, str] | None = None,
    set_net: Mapping[str, str] | None = None,
    drop_region: Sequence[str] = (),
) -> str:
    """A detector cfg's text set to a dataset's classes and priors, as darknet's users edit it: the last
    ``[region]``'s ``classes`` (``num_classes``), ``num`` and ``anchors`` (``anchors``: (A, 2) in grid cells), and
    the ``filters`` of the ``[convolutional]`` right before it (``num * (coords + 1 + classes)``); ``set_region``: other
    ``[region]`` lines to set (:func:`region_lines`); ``set_net``: ``[net]`` lines to set (the ``height`` / ``width`` a
    trained network runs at); ``drop_region``: ``[region]`` options whose lines are removed (``tree``, ``map``).
    Lines are replaced (or added after the section's header);
    everything else is kept as written. None: left as the cfg has it. Raises ValueError (naming ``source``) for a
    cfg without ``[region]`` or whose ``[region]`` does not follow a ``[convolutional]``."""
    sections = parse_cfg_text(cfg_text, source)
    idx = [i for i, s in enumerate(sections) if s["type"] == "region"]
    if not idx:
        raise ValueError(f"{source}: no [region] layer: not a YOLOv2 detector cfg")
    region, conv = sections[idx[-1]], sections[idx[-1] - 1]
    if conv["type"] != "convolutional":
        raise ValueError(
            f"{source_line(region)}: the layer before [region] is [{conv['type']}]: its outputs cannot be set to the "
            "data's classes (a [convolutional] predicts the boxes)"
        )
    coords = option(region, "coords", 4)
    classes = option(region, "classes", 20) if num_classes is None else int(num_classes)  # parse_region's defaults
    num = option(region, "num", 1) if anchors is None else len(anchors)
    edits = {**(set_region or {}), "classes": str(classes), "num": str(num)}
    if anchors is not None:
        edits["anchors"] = ", ".join(f"{float(v):g}" for wh in anchors for v in wh)
    lines = cfg_text.splitlines()
    changes: list[tuple[int, str]] = []  # (0-based line, new text); a header line's index + 0.5 = insert after

    def set_option(sec: dict[str, Any], key: str, value: str) -> None:
        if key in sec["lines"]:
            changes.append((sec["lines"][key] - 1, f"{key}={value}"))
        else:
            changes.append((sec["line"] - 1, f"\x00{key}={value}"))  # added after the header

    for key, value in edits.items():
        set_option(region, key, value)
    for key, value in (set_net or {}).items():
        set_option(sections[0], key, str(value))
    set_option(conv, "filters", str(num * (coords + 1 + classes)))
    changes += [(region["lines"][key] - 1, "\x01") for key in drop_region if key in region["lines"]]
    for line, text in sorted(changes, key=lambda c: c[0], reverse=True):
        if text == "\x01":
            del lines[line]
        elif text.startswith("\x00"):
            lines.insert(line + 1, text[1:])
        else:
            lines[line] = text
    return "\n".join(lines) + "\n"
