"""darknet's ``.weights`` files: header, conv order, reading (partial ``.conv.N`` files too) and writing.

Values are copied, never transformed, so a round trip is bit-exact. Conv layer order in ``.weights`` = the cfg's
order; for the native YOLOv2 that is backbone (18 convs), ``extra``, ``pt_conv`` (1x1x64), ``fuse`` (3x3x1024),
``pred`` (see :func:`darknet_convs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolo9000.darknet.cfg import ConvLoad
from yolo9000.darknet.net import ConvPair, DarknetNet
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.models.layers import ConvBNLeaky
from yolo9000.models.yolov2 import YOLOv2

log = logging.getLogger("yolo9000")


# ---------------------------------------------------------------------------------------------------- conv order
def _pair(block: nn.Module) -> ConvPair:
    """(conv, BN or None) of a ConvBNLeaky."""
    conv = block[0]
    bn = block[1] if len(block) > 1 and isinstance(block[1], nn.BatchNorm2d) else None  # type: ignore[arg-type]
    return conv, bn  # type: ignore[return-value]


def darknet_convs(model: nn.Module | Sequence[ConvPair]) -> list[ConvPair]:
    """The (conv, BN or None) pairs of a network in darknet's ``.weights`` order (= its cfg's layer order).

    Darknet19: the 18 convs in order; Darknet19Classifier: + the 1x1 classifier conv; YOLOv2: backbone, ``extra``,
    ``pt_conv`` (when a conv), ``fuse`` (when a conv), ``pred``; DarknetNet: its convs and connected layers in cfg
    order; a module with a ``model`` attribute (the Lightning DetectorModule): that model's pairs. A list of pairs
    is returned as is.
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


def _tensors(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | None, transpose: bool = False) -> list[torch.Tensor]:
    """One layer's tensors in file order. A conv: biases (O,), [scales, rolling_mean, rolling_variance (O,) each],
    weights (O, I / groups, k, k). A connected layer (darknet's ``load_connected_weights``): biases (O,), weights
    (O, I), [scales, rolling_mean, rolling_variance]; with ``transpose`` (a header version over 1000) its weights
    are stored (I, O): a transposed view is returned."""
    if isinstance(conv, nn.Linear):
        w = conv.weight.t() if transpose else conv.weight
        if bn is None:
            if conv.bias is None:
                raise ValueError("a connected layer without bias and without BN has no darknet layout")
            return [conv.bias, w]
        if conv.bias is not None:
            raise ValueError("a batch-normalised connected layer with its own bias has no darknet layout")
        return [bn.bias, w, bn.weight, bn.running_mean, bn.running_var]  # type: ignore[list-item]
    if bn is not None:
        if conv.bias is not None:
            raise ValueError("a batch-normalised conv with its own bias has no darknet layout")
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight]  # type: ignore[list-item]
    if conv.bias is None:
        raise ValueError("a conv without bias and without BN has no darknet layout (darknet always stores biases)")
    return [conv.bias, conv.weight]


def _describe(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | None) -> str:
    if isinstance(conv, nn.Linear):
        return f"connected {conv.in_features}->{conv.out_features}{' + BN' if bn is not None else ''}"
    k = conv.kernel_size[0]
    return f"{k}x{k} conv {conv.in_channels}->{conv.out_channels}{' + BN' if bn is not None else ''}"


# -------------------------------------------------------------------------------------------------------- header
def _transposed(major: int, minor: int) -> bool:
    """darknet's ``load_weights_upto``: connected layers' weights are stored (inputs, outputs) when major or minor
    is over 1000."""
    return major > 1000 or minor > 1000


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
    trailing_floats: int = 0  # floats after the last layer the network takes (ignored, as darknet does)
    unusable_layers: list[int] = field(default_factory=list)  # loaded conv layers (from 0) that output nan


def read_header(path: str | Path) -> tuple[WeightsInfo, int]:
    """The header of a ``.weights`` file and its size in bytes (16 or 20)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 12:
        raise ValueError(f"{path}: {len(head)} bytes is too short for a darknet .weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], dtype="<i4"))
    if not (0 <= major < 2000 and 0 <= minor < 2000 and revision >= 0):  # darknet writes 0.1, 0.2, 1.0 (+1000 flags)
        kind = "a PyTorch checkpoint" if head[:2] == b"PK" or head[:1] == b"\x80" else "not a darknet .weights file"
        raise ValueError(f"{path}: {kind} (its first bytes read as darknet header version {major}.{minor}.{revision})")
    wide = _seen_is_int64(major, minor)
    size = 20 if wide else 16
    if len(head) < size:
        raise ValueError(f"{path}: the header of version {major}.{minor} takes {size} bytes, the file has {len(head)}")
    seen = int(np.frombuffer(head[12:size], dtype="<u8" if wide else "<i4")[0])
    if seen >= 2**63:  # a size_t no training reaches (the checkpoints' int64 counter cannot hold it)
        raise ValueError(f"{path}: its header says {seen} images seen (>= 2^63): a corrupt header")
    return WeightsInfo(major, minor, revision, seen), size


# ---------------------------------------------------------------------------------------------- read and write
def _file_tensors(
    conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | None, how: ConvLoad, transpose: bool = False
) -> list[torch.Tensor]:
    """The tensors (or leading views of them) darknet reads for one layer under its cfg's load options."""
    if how.dontload:
        return []
    ts = _tensors(conv, bn, transpose)
    if bn is not None and how.dontloadscales:
        # biases and weights; the scales, means and variances are not in the file
        ts = ts[:2] if isinstance(conv, nn.Linear) else [ts[0], ts[-1]]
    if how.numload and isinstance(conv, nn.Conv2d):
        ts = [t[: how.numload] for t in ts]  # the first numload filters (each tensor's leading axis)
    return ts


def load_weights(
    model_or_convs: nn.Module | Sequence[ConvPair],
    path: str | Path,
    classifier_tail: bool = False,
    options: Sequence[ConvLoad] | None = None,
    strict: bool = False,
) -> WeightsInfo:
    """Copy a darknet ``.weights`` file into a network's convs and BNs (see :func:`darknet_convs` for the order).

    A file that ends exactly after k < N conv layers (darknet's ``.conv.23`` style) fills those k and leaves the
    rest untouched (logged). ``classifier_tail``: a file holding one more layer after the N, a 1x1 conv with biases
    and no batch norm on the last conv's channels (darknet's classifier: ``darknet19.weights`` into a detector's
    Darknet-19 backbone), fills the N and skips it (logged). A file holding more floats than the network takes
    otherwise fills the N and the rest is ignored, as darknet's ``load_weights`` ignores it (a cfg cut short on
    purpose, e.g. a backbone taken from a detector's weights), with a warning that gives the counts (a cfg that does
    not match the weights looks the same); so are 1 to 3 bytes after the last whole float (darknet reads whole
    floats); ``strict``: refused instead. Raises ValueError, with the float counts
    expected and found, when the file ends inside a layer (darknet would load that layer half-filled), or holds
    more floats than the network takes under ``strict``. ``options``: each conv layer's
    :class:`~yolo9000.darknet.cfg.ConvLoad` from its cfg (``dontload``, ``dontloadscales``, ``numload`` read as
    darknet reads them); None: every layer whole.
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"darknet weights {path}: a folder, not a .weights file")  # (as a missing file)
    if not path.is_file():
        raise FileNotFoundError(
            f"darknet weights not found: {path} (the trained networks' files are darknet's own downloads, e.g. "
            "https://pjreddie.com/media/files/yolov2-voc.weights; without a file the network starts freshly "
            "initialised)"
        )
    info, offset = read_header(path)
    body = path.read_bytes()[offset:]
    pairs = darknet_convs(model_or_convs)
    options = _check_options(options, len(pairs))
    transpose = _transposed(info.major, info.minor)
    layers = [_file_tensors(c, b, how, transpose) for (c, b), how in zip(pairs, options, strict=True)]
    sizes = [sum(t.numel() for t in ts) for ts in layers]
    bounds = np.cumsum([0, *sizes])  # bounds[k] = floats taken by the first k layers
    total = int(bounds[-1])
    found, odd = divmod(len(body), 4)
    if odd and found < total:  # darknet would read those bytes as part of a float of a layer it then fills
        raise ValueError(f"{path}: {len(body)} bytes after the header is not a whole number of float32 values")
    extra = found - total
    last_channels = _outputs(pairs[-1][0]) if pairs else 0
    if extra > 0 and classifier_tail and extra % (last_channels + 1) == 0:
        log.info(
            "%s: the last %d floats are one more layer, darknet's classifier (a 1x1 conv of %d filters on %d "
            "channels): not part of this network, skipped",
            path,
            extra,
            extra // (last_channels + 1),
            last_channels,
        )
        found, body = total, body[: 4 * total]
    elif extra > 0 or odd:
        # darknet's fread reads whole floats: 1 to 3 bytes after the last one are never read, as trailing floats
        tail = f"{extra} trailing" + (f" and {odd} bytes" if odd else "")
        what = f"{path}: {len(pairs)} conv layers expect {total} floats after the header, found {found} ({tail})"
        if strict:
            raise ValueError(f"{what}: the network (its cfg) does not match the weights")
        log.warning(
            "%s: loaded the %d conv layers and ignored the rest, as darknet does (a cfg cut short on purpose); if "
            "the cfg was meant to match the file, it does not (other layers, filters or classes)",
            what,
            len(pairs),
        )
        found, body = total, body[: 4 * total]
        info.trailing_floats = extra
    k = int(np.searchsorted(bounds, found, side="right")) - 1  # complete layers in the file
    if found != bounds[k]:
        got = found - int(bounds[k])
        raise ValueError(
            f"{path}: the file ends inside conv layer {k + 1} of {len(pairs)} ({_describe(*pairs[k])}): expected "
            f"{sizes[k]} floats for it ({int(bounds[k + 1])} in total for the first {k + 1} layers, {total} for all "
            f"{len(pairs)}), found {got} ({found} in total): a truncated file, or the weights of another cfg (other "
            "layers, filters or classes read the file out of step)"
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
    info.unusable_layers = _warn_unusable(path, floats, bounds, pairs[:k], options[:k])
    if k == 0 and pairs:
        log.warning("%s: a header and no weights: none of the %d conv layers filled (all random)", path, len(pairs))
    elif k < len(pairs):
        log.info("%s: a partial file: filled %d of %d conv layers", path, k, len(pairs))
    else:
        log.info("%s: loaded all %d conv layers (seen=%d)", path, k, info.seen)
    return info


def _outputs(layer: nn.Conv2d | nn.Linear) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _warn_unusable(
    path: str | Path, floats: np.ndarray, bounds: np.ndarray, pairs: Sequence[ConvPair], options: Sequence[ConvLoad]
) -> list[int]:
    """Warn (naming the file and the conv layers) about loaded values that make the network output nan: nan / inf
    floats, and negative rolling variances (darknet's ``sqrt(var)``). darknet loads them silently; its detector
    then finds nothing, as this one does. Layers by index from 0, as the other messages here. ``bounds``: each
    layer's first float (and the end); ``pairs`` / ``options``: the layers loaded. Returns those layers' indices."""
    bad = np.flatnonzero(~np.isfinite(floats[: int(bounds[len(pairs)])]))
    layers: list[int] = []
    if len(bad):
        layers = sorted(set((np.searchsorted(bounds, bad, side="right") - 1).tolist()))  # conv layer indices
        log.warning("%s: %d nan / inf values, in conv layers %s: the network outputs nan", path, len(bad), layers)
    negative = [
        i
        for i, ((_, bn), how) in enumerate(zip(pairs, options, strict=True))
        if bn is not None and not how.dontload and not how.dontloadscales and bool((bn.running_var < 0).any())
    ]
    if negative:
        log.warning("%s: negative rolling variances in conv layers %s: the network outputs nan", path, negative)
    return sorted(set(layers) | set(negative))


def _check_options(options: Sequence[ConvLoad] | None, n: int) -> list[ConvLoad]:
    if options is None:
        return [ConvLoad()] * n
    if len(options) != n:
        raise ValueError(f"{len(options)} conv load options for a network of {n} conv layers")
    return list(options)


def save_weights(
    model_or_convs: nn.Module | Sequence[ConvPair],
    path: str | Path,
    seen: int = 0,
    major: int = 0,
    minor: int = 2,
    revision: int = 0,
    cutoff: int | None = None,
    options: Sequence[ConvLoad] | None = None,
) -> None:
    """Write a darknet ``.weights`` file: header (int32 major, minor, revision; ``seen`` int64 when
    major * 10 + minor >= 2, else int32), then every conv's tensors in :func:`darknet_convs` order as float32 LE.
    ``cutoff``: write only the first ``cutoff`` conv (and connected) layers. darknet's ``partial`` counts every
    cfg layer instead: its ``.conv.23`` of darknet19_448.cfg (the first 23 layers, maxpools included) holds 18 convs,
    ``cutoff=18`` here;
    ``options``: each conv layer's cfg options (a ``dontsave`` layer is left out, as darknet's ``save_weights``).
    Connected layers' weights are written (outputs, inputs), or (inputs, outputs) under a header version over 1000
    (the layout such a header announces)."""
    all_pairs = darknet_convs(model_or_convs)
    options = _check_options(options, len(all_pairs))
    pairs = [p for p, how in zip(all_pairs[:cutoff], options, strict=False) if not how.dontsave]
    wide = _seen_is_int64(major, minor)
    with open(path, "wb") as f:
        f.write(np.array([major, minor, revision], dtype="<i4").tobytes())
        f.write(np.array([seen], dtype="<u8" if wide else "<i4").tobytes())
        for conv, bn in pairs:
            for t in _tensors(conv, bn, _transposed(major, minor)):
                f.write(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes())
