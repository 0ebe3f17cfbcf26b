"""One loader for pretrained weights, shape-checked: this project's detector or classifier checkpoints (or a plain
state dict) and darknet ``.weights`` files (partial ones such as ``darknet19_448.conv.23`` included)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo9000.darknet import load_weights, read_header
from yolo9000.models.layers import bn_affine

log = logging.getLogger("yolo9000")

__all__ = ["fold_batch_norm", "load_pretrained"]


def _is_darknet_weights(path: Path) -> bool:
    """darknet weights by content: not a PyTorch checkpoint (a zip or a pickle) and a darknet header (a plausible
    version), whatever the name; a file that cannot be read is left to the loader's errors by its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            return False
        read_header(path)
        return True
    except (OSError, ValueError):
        return path.suffix == ".weights" or ".conv." in path.name


def _darknet_bn(ckpt: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's network normalises as darknet does (``bn_style: darknet`` anywhere in its saved model
    config: a converted darknet network)."""

    def find(node: Any) -> bool:
        if isinstance(node, Mapping):
            return node.get("bn_style") == "darknet" or any(find(v) for v in node.values())
        return isinstance(node, list | tuple) and any(find(v) for v in node)

    return any(find(ckpt.get(k)) for k in ("yolo9000_model_config", "yolo9000_classifier_config", "hyper_parameters"))


def fold_batch_norm(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], darknet: bool = False
) -> dict[str, torch.Tensor]:
    """A batch-normalised checkpoint for a network without batch norm: every conv of ``own`` with a bias that the
    checkpoint lacks, whose checkpoint conv is followed by a BN (the ``<p>.0`` conv / ``<p>.1`` BN pairs of
    :class:`~yolo9000.models.layers.ConvBNLeaky`), absorbs that BN's inference transform (darknet's
    ``denormalize_convolutional_layer``): ``w * g / sqrt(var + 1e-5)`` and bias ``beta - mean * g / sqrt(var +
    1e-5)``; with ``darknet`` (a checkpoint of ``bn_style: darknet``, converted darknet weights) darknet's own
    ``g / (sqrt(var) + 1e-6)``. The network without BN then computes what the checkpoint computes in eval mode
    (Table 2's YOLO column starts from the same classifier as the batch-norm column). Other tensors pass through
    unchanged."""
    out = dict(state)
    folded = 0
    for k in own:
        if not k.endswith(".0.bias") or k in state:
            continue
        p = k[: -len(".0.bias")]
        names = [f"{p}.1.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        if f"{p}.0.weight" not in state or not all(n in state for n in names):
            continue
        scale, shift = bn_affine(*(state[n].double() for n in names), eps=1e-6 if darknet else 1e-5, darknet=darknet)
        w = state[f"{p}.0.weight"]
        out[f"{p}.0.weight"] = (w.float() * scale.view(-1, *[1] * (w.dim() - 1))).to(w.dtype)
        out[k] = shift.to(w.dtype)
        for n in [*names, f"{p}.1.num_batches_tracked"]:
            out.pop(n, None)
        folded += 1
    if folded:
        log.info("folded %d batch norms of the checkpoint into the convs (the network has none)", folded)
    return out


def load_pretrained(
    target: nn.Module,
    source: str | Path,
    *,
    part: str | None = None,
    class_names: list[str] | None = None,
    input_size: int | None = None,
) -> int:
    """Initialise ``target`` from ``source``; returns the number of tensors (or darknet conv layers) loaded.

    Args:
        target: the network (or sub-network) to fill.
        source: a Lightning checkpoint (its ``state_dict``), a state dict, or darknet ``.weights`` (filled in
            darknet's layer order, see :func:`yolo9000.darknet.darknet_convs`; a partial file fills the first
            convs). A batch-normalised checkpoint fills a network without BN with its BNs folded into the convs
            (:func:`fold_batch_norm`).
        part: take only the tensors under ``<part>.`` of the checkpoint, e.g. ``"backbone"``: a detector's
            Darknet-19 from a classifier or detector checkpoint (the rest, such as the classifier head, is left out);
            None: the whole network (``model.*`` of a Lightning checkpoint), where missing and unexpected tensors are
            errors too.
        class_names: the target's classes (a whole classifier, ``part=None``): a checkpoint that records other
            classes is refused; the same classes in another order get the head's rows reordered (logged).
    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, the tensors that do not fit (shape ``checkpoint (...) vs model (...)``,
            missing, unexpected: the first six and how many more), the checkpoint's width when it differs, or a
            darknet file of another size (the float counts).

    ``input_size``: the side ``target`` will train at (a whole classifier): a checkpoint that recorded a larger one
    (``build_info.eval_size``) is a warning, as a "high-resolution" fine-tune below the size its start was trained at.
    """
    path = Path(source)
    if path.is_dir():
        raise FileNotFoundError(f"pretrained weights {path}: a folder, not a checkpoint file (checkpoints/last.ckpt?)")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if _is_darknet_weights(path):
        # a backbone may come from a whole classifier's file (darknet19.weights: its classifier layer is skipped)
        info = load_weights(target, path, classifier_tail=part == "backbone")
        if info.trailing_floats and info.unusable_layers:  # more floats than it takes, and read out of step
            raise ValueError(
                f"{path}: darknet weights that do not fit {type(target).__name__}: its {info.layers_total} conv "
                f"layers take fewer floats than the file holds ({info.trailing_floats} left over) and, read with "
                f"this network's layer sizes, conv layers {info.unusable_layers} get negative variances or nan (the "
                f"file read out of step: another network or width){_darknet_width_hint(target, path)}"
            )
        # partial files (darknet19_448.conv.23) fill the first convs only: say so (init_ckpt's head stays random, as
        # darknet's own detector training from it); a backbone partly filled, or nothing filled, is a warning
        partly = info.layers_loaded == 0 or (part == "backbone" and info.layers_loaded < info.layers_total)
        log.log(
            logging.WARNING if partly else logging.INFO,
            "%s initialised from darknet weights %s (seen %d): %d of %d conv layers, the rest keep their "
            "initialisation",
            type(target).__name__,
            path,
            info.seen,
            info.layers_loaded,
            info.layers_total,
        )
        return info.layers_loaded
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - an image, a truncated file: name it, not the unpickler's traceback
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint or darknet .weights file ({type(e).__name__}: {e}); "
            "model.backbone_ckpt / model.init_ckpt take a training run's checkpoints/last.ckpt, a converted "
            "checkpoint, or darknet weights"
        ) from e
    meta = ckpt if isinstance(ckpt, Mapping) else {}  # a Lightning checkpoint's records; a bare state dict has none
    state = meta.get("state_dict", ckpt)
    saved = (meta.get("hyper_parameters") or {}).get("class_names")
    if (
        part is None
        and class_names is not None
        and str((meta.get("yolo9000_model_config") or {}).get("_target_", "")).endswith("DetectorModule")
    ):
        raise ValueError(
            f"{path}: a detector checkpoint; a classifier starts from a classifier checkpoint (a run of "
            "experiment=pretrain_darknet19) or darknet weights (a detector's backbone goes to model.backbone_ckpt)"
        )
    if part is None and class_names is not None and saved is not None and list(saved) != list(class_names):
        if sorted(saved) != sorted(class_names):
            raise ValueError(
                f"{path}: trained on the classes {list(saved)[:10]}, this model has {list(class_names)[:10]}: "
                "its classifier head does not apply (same data overrides as the run that wrote it?)"
            )
        order = torch.as_tensor([list(saved).index(c) for c in class_names])
        state = dict(state)
        for k in [k for k in state if ".head." in f".{k}"]:
            state[k] = state[k][order]  # rows of the head = classes
        log.warning("%s: head rows reordered from the checkpoint's class order %s to %s", path, saved, class_names)
    left_out: list[str] = []
    if part:
        left_out = sorted({k.removeprefix("model.").split(".", 1)[0] for k in state if f"{part}." not in k})
        state = {k.split(f"{part}.", 1)[1]: v for k, v in state.items() if f"{part}." in k}
        if not state:
            raise ValueError(f"{path}: no '{part}.*' weights found")
    elif any(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    own = target.state_dict()
    state = fold_batch_norm(state, own, darknet=_darknet_bn(meta))
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    bad += [f"missing {k}" for k in sorted(set(own) - set(state))]
    if part is None:
        bad += [f"unexpected {k}" for k in sorted(set(state) - set(own))]
    if bad:
        shown = "; ".join(bad[:6]) + (f"; ... {len(bad) - 6} more" if len(bad) > 6 else "")
        raise ValueError(f"{path}: {part or 'network'} does not fit{_width_hint(target, state, own)}: {shown}")
    target.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    log.info(
        "%s initialised from %s (%d tensors)%s",
        part or type(target).__name__,
        path,
        len(own),
        f"; the rest of the checkpoint ({', '.join(left_out)}) is not used" if left_out else "",
    )
    trained = ((meta.get("hyper_parameters") or {}).get("build_info") or {}).get("eval_size")
    if part is None and input_size and trained and int(input_size) < int(trained):
        log.warning(
            "%s was trained at %d px and this run trains at %d, smaller: the high-resolution fine-tune "
            "(experiment=finetune_448, paper 224 -> 448) runs at twice its start's size: data.img_size=%d",
            path,
            int(trained),
            int(input_size),
            2 * int(trained),
        )
    return len(own)


def _darknet_width_hint(target: nn.Module, path: Path) -> str:
    """Why a darknet file does not fit a narrow Darknet-19: darknet's own files (``darknet19.weights``,
    ``darknet19_448.conv.23``, a YOLOv2's) are width 1; a file holding at least that backbone's floats is one."""
    from yolo9000.models.darknet19 import Darknet19

    net = target if isinstance(target, Darknet19) else getattr(target, "backbone", None)
    if not isinstance(net, Darknet19) or float(net.width) == 1.0:
        return ""
    with torch.device("meta"):  # sizes only
        full = Darknet19(batch_norm=net.batch_norm, width=1.0, bn_style=net.bn_style)
    need = sum(t.numel() for k, t in full.state_dict().items() if not k.endswith("num_batches_tracked"))
    _, offset = read_header(path)
    if (path.stat().st_size - offset) // 4 < need:
        return ""
    return (
        f"; the file holds at least darknet's full-width Darknet-19 ({need} floats) and this network is width "
        f"{float(net.width):g}: build it at darknet's width (a detector: model=yolov2; a classifier: "
        "model=darknet19_cls)"
    )


def _width_hint(target: nn.Module, state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> str:
    """Why a checkpoint does not fit when the widths differ: the checkpoint's width, read off the widest conv both
    have (filters scale with the width), and the key that builds this model at it (darknet's networks: width 1,
    ``model=yolov2``)."""
    width = getattr(getattr(target, "backbone", target), "width", None)
    if width is None:
        return ""
    convs = [k for k, v in own.items() if v.dim() == 4 and k in state and state[k].dim() == 4]
    if not convs:
        return ""
    first = max(convs, key=lambda k: own[k].shape[0])  # the widest (narrow ones are clamped at 8 filters)
    if state[first].shape[0] == own[first].shape[0]:
        return ""
    theirs = float(width) * state[first].shape[0] / own[first].shape[0]
    fix = "model=yolov2 (darknet's width)" if abs(theirs - 1.0) < 1e-6 else f"model.net.backbone.width={theirs:g}"
    return (
        f" (this model is width {width:g}, the checkpoint's network width {theirs:g}: {first} has "
        f"{state[first].shape[0]} filters there, {own[first].shape[0]} here; build it with {fix})"
    )
