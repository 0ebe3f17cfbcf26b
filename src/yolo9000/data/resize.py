"""The inference-time resize and the input-size helpers, without albumentations (the predict path imports this,
not :mod:`yolo9000.data.transforms` and its training augmentations).

A network input size is one side (square) or (height, width), each a multiple of the stride. The eval resize of an
image alone is a stretch (default, as darknet's ``validate_detector`` of the paper era) or a letterbox; its
parameters are the map ``net_pixel = orig_pixel * scale + pad``, which :func:`boxes_to_original` inverts.
:class:`~yolo9000.data.transforms.DetectionTransform`'s eval pipeline runs the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from yolo9000.models import STRIDE

__all__ = [
    "EvalResize",
    "Size",
    "boxes_to_original",
    "check_input_size",
    "input_hw",
    "letterbox_geometry",
    "letterbox_image",
    "normal_size",
    "size_text",
    "stretch_image",
]

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}

Size = int | tuple[int, int]  # a network input: a square side, or (height, width)


def check_input_size(size: Any) -> tuple[int, int]:
    """A network input size (``predict``'s ``size``, ``detect.py``'s ``img_size``, ``data.img_size``): one side or
    (height, width), positive multiples of the stride, as (height, width); TypeError / ValueError otherwise."""
    sides = list(size) if isinstance(size, Sequence | torch.Tensor | np.ndarray) and not isinstance(size, str) else None
    if sides is not None and len(sides) != 2:
        raise TypeError(f"size must be one side or (height, width), each a multiple of {STRIDE}, got {size!r}")
    values = sides if sides is not None else [size]
    if any(isinstance(v, bool | str) or int(v) != v or int(v) <= 0 or int(v) % STRIDE for v in values):
        raise ValueError(f"size must be a positive multiple of {STRIDE}, or (height, width) of them, got {size!r}")
    return int(values[0]), int(values[-1])  # one side: both


def normal_size(size: Size | Sequence[int]) -> Size:
    """``size`` (a side, or (height, width)) as one form: a side when the sides are equal, else (height, width)."""
    h, w = input_hw(size)  # type: ignore[arg-type]
    return h if h == w else (h, w)


def size_text(size: Size) -> str:
    """``416`` for a side, ``352x608`` (height x width) for a rectangle: how logs, file names and tables show it."""
    h, w = input_hw(size)
    return str(h) if h == w else f"{h}x{w}"


def input_hw(size: Size) -> tuple[int, int]:
    """(height, width) of a network input given as one side (square) or as (height, width)."""
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def letterbox_geometry(width: int, height: int, size: Size) -> tuple[int, int, int, int]:
    """Letterbox layout of a ``width x height`` image in a ``size`` canvas (a side, or (height, width)).

    The side that limits the scale fills the canvas and the other is truncated, as darknet's ``letterbox_image`` and
    ``correct_region_boxes`` compute it (``new_h = (h * net_w) / w`` in integers; rounding is 1 px off in about a
    third of the sizes, e.g. 517 x 333 at 416: 267 rows, not 268). darknet picks the side by ``net_w / w < net_h /
    h`` in floats; here in exact integers (the same but in a near-tie a float cannot tell apart).

    Returns:
        (new_w, new_h, pad_x, pad_y): resized image size and left / top padding in pixels.
    """
    net_h, net_w = input_hw(size)
    if net_w * height < net_h * width:  # the width limits the scale
        new_w, new_h = net_w, max(1, height * net_w // width)
    else:
        new_w, new_h = max(1, width * net_h // height), net_h
    return new_w, new_h, (net_w - new_w) // 2, (net_h - new_h) // 2


def _into(image: np.ndarray, resized: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``resized`` with ``image``'s channel axis (cv2 drops a single one), copied into ``out`` unless it is there."""
    if resized.ndim < image.ndim:
        resized = resized[..., None]
    if out is None:
        return resized
    if resized.__array_interface__["data"][0] != out.__array_interface__["data"][0]:
        np.copyto(out, resized)
    return out


def stretch_image(
    image: np.ndarray, size: Size, interpolation: int = cv2.INTER_LINEAR, out: np.ndarray | None = None
) -> np.ndarray:
    """The eval stretch resize (albumentations' ``Resize``): uint8 (H, W, C) -> (h, w, C) of ``size`` (a side, or
    (height, width)) by OpenCV's ``resize`` (an image of that size is returned as it is), written into ``out``
    (h, w, C) when given."""
    hw = input_hw(size)
    if image.shape[:2] == hw:
        return _into(image, image, out)
    dst = out if out is not None and out.flags.c_contiguous else None  # cv2 writes into a contiguous buffer
    return _into(image, cv2.resize(image, hw[::-1], dst=dst, interpolation=interpolation), out)


def letterbox_image(
    image: np.ndarray,
    size: Size,
    fill: int = 127,
    interpolation: int = cv2.INTER_LINEAR,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The letterbox resize: uint8 (H, W, C) -> (h, w, C) of ``size`` (a side, or (height, width)), the image
    resized to :func:`letterbox_geometry` and centred on a ``fill`` canvas; written into ``out`` when given."""
    h, w = image.shape[:2]
    nw, nh, px, py = letterbox_geometry(w, h, size)
    resized = _into(image, cv2.resize(image, (nw, nh), interpolation=interpolation), None)
    canvas = np.empty((*input_hw(size), *image.shape[2:]), image.dtype) if out is None else out
    canvas[:py] = fill  # the borders (cv2.copyMakeBorder's constant), then the image
    canvas[py + nh :] = fill
    canvas[py : py + nh, :px] = fill
    canvas[py : py + nh, px + nw :] = fill
    canvas[py : py + nh, px : px + nw] = resized
    return canvas


def boxes_to_original(
    boxes: torch.Tensor, params: torch.Tensor, orig_sizes: torch.Tensor | None = None
) -> torch.Tensor:
    """The inverse of the eval resize's geometry: xyxy boxes in network-input pixels -> original image pixels.

    Args:
        boxes: (B, N, 4) xyxy in input pixels.
        params: (B, 4) ``(scale_x, scale_y, pad_x, pad_y)`` of :meth:`EvalResize.resize` or
            :class:`~yolo9000.data.transforms.DetectionTransform` (input = orig * scale + pad).
        orig_sizes: (B, 2) original ``(h, w)`` to clip to; None = no clipping.
    Returns:
        (B, N, 4) xyxy in original pixels.
    """
    p = params.to(boxes.device, boxes.dtype).view(-1, 1, 2, 2)  # (B, 1, 2, 2): (scale_x, scale_y), (pad_x, pad_y)
    out = (boxes.unflatten(-1, (2, 2)) - p[..., 1:, :]) / p[..., :1, :]  # (B, N, 2, 2) corners: (x - pad_x) / scale_x
    if orig_sizes is not None:
        limit = orig_sizes.to(boxes.device, boxes.dtype).flip(-1).view(-1, 1, 1, 2)  # (B, 1, 1, 2) w, h
        out = torch.minimum(out.clamp_min(0), limit)
    return out.flatten(-2)


class EvalResize:
    """The eval resize of an image alone (inference): stretch, or ``letterbox`` with ``fill`` grey padding, by
    ``interpolation`` (nearest | linear | area | cubic). No state: threads may share one.

    Args:
        letterbox: keep the aspect ratio with ``fill`` padding (:func:`letterbox_image`), else stretch
            (:func:`stretch_image`).
        fill: grey value of the letterbox padding.
        interpolation: resize interpolation.
    """

    def __init__(self, letterbox: bool = False, fill: int = 127, interpolation: str = "linear") -> None:
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(_INTERPOLATIONS)}, got {interpolation!r}")
        self.letterbox = bool(letterbox)
        self.fill = int(fill)
        self.interpolation = interpolation

    def __repr__(self) -> str:
        return f"EvalResize(letterbox={self.letterbox}, fill={self.fill}, interpolation={self.interpolation!r})"

    def resize(self, image: np.ndarray, size: Size, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) -> (uint8 (h, w, 3) of ``size``, a side or (height, width); params float32 (4,));
        :meth:`to_original` maps the network's boxes back with ``params``. Written into ``out`` (h, w, 3) when given
        (a slot of a batch buffer)."""
        interp = _INTERPOLATIONS[self.interpolation]
        h, w = image.shape[:2]
        if self.letterbox:
            resized = letterbox_image(image, size, self.fill, interp, out=out)
        else:
            resized = stretch_image(image, size, interp, out=out)
        return resized, self.eval_params(w, h, size)

    to_original = staticmethod(boxes_to_original)

    def eval_params(self, width: int, height: int, size: Size) -> np.ndarray:
        """(scale_x, scale_y, pad_x, pad_y) of the resize of an image of ``width x height`` to ``size`` (a side, or
        (height, width))."""
        if self.letterbox:
            nw, nh, px, py = letterbox_geometry(width, height, size)
            return np.array([nw / width, nh / height, px, py], np.float32)
        net_h, net_w = input_hw(size)
        return np.array([net_w / width, net_h / height, 0.0, 0.0], np.float32)
