"""One loader for pretrained weights, shape-checked: this project's detector or classifier checkpoints (or a plain
state dict) and darknet ``.weights`` files (partial ones such as ``darknet19_448.conv.23`` included)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from yolo9000.darknet import load_weights

log = logging.getLogger("yolo9000")

__all__ = ["load_pretrained"]


def _is_darknet_weights(path: Path) -> bool:
    return path.suffix == ".weights" or ".conv." in path.name


def load_pretrained(target: nn.Module, source: str | Path, *, part: str | None = None) -> int:
    """Initialise ``target`` from ``source``; returns the number of tensors (or darknet conv layers) loaded.

    Args:
        target: the network (or sub-network) to fill.
        source: a Lightning checkpoint (its ``state_dict``), a state dict, or darknet ``.weights`` (filled in
            darknet's layer order, see :func:`yolo9000.darknet.darknet_convs`; a partial file fills the first
            convs).
        part: take only the tensors under ``<part>.`` of the checkpoint, e.g. ``"backbone"``: a detector's
            Darknet-19 from a classifier or detector checkpoint (the rest, such as the classifier head, is left out);
            None: the whole network (``model.*`` of a Lightning checkpoint), where missing and unexpected tensors are
            errors too.
    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and every tensor that does not fit (shape ``checkpoint (...) vs model (...)``,
            missing, unexpected), or a darknet file of another size (the float counts).
    """
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if _is_darknet_weights(path):
        info = load_weights(target, path)
        log.info("%s initialised from darknet weights %s (seen %d)", type(target).__name__, path, info.seen)
        return sum(1 for m in target.modules() if isinstance(m, nn.Conv2d))
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state) if isinstance(state, Mapping) else state
    if part:
        state = {k.split(f"{part}.", 1)[1]: v for k, v in state.items() if f"{part}." in k}
        if not state:
            raise ValueError(f"{path}: no '{part}.*' weights found")
    elif any(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    own = target.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    bad += [f"missing {k}" for k in sorted(set(own) - set(state))]
    if part is None:
        bad += [f"unexpected {k}" for k in sorted(set(state) - set(own))]
    if bad:
        raise ValueError(f"{path}: {part or 'network'} does not fit: {bad}")
    target.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    log.info("%s initialised from %s (%d tensors)", part or type(target).__name__, path, len(own))
    return len(own)
