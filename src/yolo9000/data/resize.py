"""The inference-time resize and the input-size helpers, without albumentations (the predict path imports this,
not :mod:`yolo9000.data.transforms` and its training augmentations).

A network input size is one side (square) or (height, width), each a multiple of the stride. The eval resize of an
image alone is a stretch (default, as darknet's ``validate_detector`` of the paper era) or a letterbox; its
parameters are the map ``net_pixel = orig_pixel * scale + pad``, which :func:`boxes_to_original` inverts.
:class:`~yolo9000.data.transforms.DetectionTransform`'s eval pipeline runs the same functions.
"""

from __future__ import annotations

import functools
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
    "can_warp",
    "check_input_size",
    "input_hw",
    "letterbox_geometry",
    "letterbox_image",
    "normal_size",
    "place_image",
    "size_text",
    "stretch_image",
    "warp_matches_resize",
    "warp_resample",
    "warpable",
    "window_part",
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


def _dst(out: np.ndarray | None) -> np.ndarray | None:
    """``out`` where OpenCV can write into it (a contiguous buffer), else None (:func:`_into` copies)."""
    return out if out is not None and out.flags.c_contiguous else None


def window_part(img: np.ndarray, crop: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The image's part of the window ``crop`` (x0, y0, width, height; it may reach past the image) as a view, and
    the window's overhang on each side (top, bottom, left, right) in pixels."""
    x0, y0, cw, ch = crop
    h, w = img.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + cw, w), min(y0 + ch, h)
    return img[iy0:iy1, ix0:ix1], (iy0 - y0, y0 + ch - iy1, ix0 - x0, x0 + cw - ix1)


def warp_resample(
    src: np.ndarray,
    hw: tuple[int, int],
    sx: float,
    sy: float,
    ox: float,
    oy: float,
    border: int = cv2.BORDER_CONSTANT,
    fill: int = 127,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 (h, w[, C]) output of ``hw`` whose pixel (x, y) samples ``src`` bilinearly at (ox + (x + 0.5) sx - 0.5,
    oy + (y + 0.5) sy - 0.5): ``cv2.resize``'s half-pixel centres at ``sx`` x ``sy`` source pixels an output pixel,
    shifted by (ox, oy); beyond ``src`` its OpenCV ``border`` (``fill`` for a constant one). One ``cv2.warpAffine``
    (1 to 4 channels: :func:`warpable`); a (H, W, 1) source keeps its channel axis. Written into ``out`` (h, w[, C])
    when given."""
    h, w = hw
    m = np.array([[sx, 0.0, ox + 0.5 * sx - 0.5], [0.0, sy, oy + 0.5 * sy - 0.5]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    value = {} if border != cv2.BORDER_CONSTANT else {"borderValue": (fill,) * (src.shape[2] if src.ndim == 3 else 1)}
    res = cv2.warpAffine(src, m, (w, h), dst=_dst(out), flags=flags, borderMode=border, **value)
    return _into(src, res, out)


def warpable(img: np.ndarray) -> bool:
    """Whether :func:`warp_resample` takes ``img``: 2-D, or 1 to 4 channels (OpenCV's scalar border value)."""
    return img.ndim == 2 or (img.ndim == 3 and 1 <= img.shape[2] <= 4)


@functools.cache
def warp_matches_resize() -> bool:
    """Whether this OpenCV's bilinear ``cv2.warpAffine`` (:func:`warp_resample`) gives ``cv2.resize``'s pixels within
    one grey level. OpenCV 5.1 does (it computes the warp's sampling positions in float; the one-level differences are
    rounding); OpenCV 4.x quantises them to 1/32 pixel and differs by up to ~7 levels on sharp edges, so the training
    geometries and the eval resize keep the resize there. Checked once per process on a fixed noise image (every
    pixel an edge): windows inside the image and reaching past it, constant and replicate borders, shrunk and
    (replicate) enlarged."""
    rng = np.random.default_rng(0)
    # (image h, w, channels), window (x0, y0, cw, ch), output (h, w), border: crops inside and reaching past the image,
    # an enlarged replicate one, 1 and 4 channels, a wide image, a window of the image's own width (sx = 1)
    cases = [((48, 64, 3), (5, 3, 50, 40), (24, 32), cv2.BORDER_CONSTANT),
             ((48, 64, 3), (-9, -6, 80, 60), (30, 40), cv2.BORDER_CONSTANT),
             ((48, 64, 3), (-9, 4, 70, 50), (64, 96), cv2.BORDER_REPLICATE),
             ((40, 56, 1), (-7, 2, 60, 45), (20, 24), cv2.BORDER_CONSTANT),
             ((40, 56, 4), (3, -5, 50, 44), (32, 40), cv2.BORDER_CONSTANT),
             ((60, 400, 3), (-31, 7, 450, 50), (32, 288), cv2.BORDER_CONSTANT),
             ((36, 48, 3), (0, -4, 48, 40), (20, 48), cv2.BORDER_CONSTANT)]  # fmt: skip
    for (ih, iw, c), (x0, y0, cw, ch), hw, border in cases:
        img = rng.integers(0, 256, (ih, iw, c), dtype=np.uint8)  # noise: every pixel an edge
        patch, pads = window_part(img, (x0, y0, cw, ch))
        window = cv2.copyMakeBorder(patch, *pads, border, value=(127,) * c).reshape(ch, cw, c)
        want = cv2.resize(window, hw[::-1], interpolation=cv2.INTER_LINEAR).reshape(*hw, c)
        got = warp_resample(patch, hw, cw / hw[1], ch / hw[0], -pads[2], -pads[0], border).reshape(*hw, c)
        if np.abs(got.astype(np.int16) - want.astype(np.int16)).max() > 1:
            return False
    return True


def can_warp(image: np.ndarray, interpolation: int) -> bool:
    """Whether :func:`warp_resample` may stand in for ``cv2.resize`` on ``image``: linear ``interpolation``, an image
    the warp takes (:func:`warpable`) and an OpenCV whose warp samples as its resize does
    (:func:`warp_matches_resize`)."""
    return interpolation == cv2.INTER_LINEAR and warpable(image) and warp_matches_resize()


def stretch_image(
    image: np.ndarray,
    size: Size,
    interpolation: int = cv2.INTER_LINEAR,
    out: np.ndarray | None = None,
    warp: bool = False,
) -> np.ndarray:
    """The eval stretch resize (albumentations' ``Resize``): uint8 (H, W, C) -> (h, w, C) of ``size`` (a side, or
    (height, width)) by OpenCV's ``resize`` (an image of that size is returned as it is), written into ``out``
    (h, w, C) when given. ``warp``: where :func:`can_warp`, one ``cv2.warpAffine`` with a replicated border samples
    the resize's points (its edge taps clamp as the border repeats): within one grey level, ~3x faster (a BCCD photo
    to 256: 0.05 against 0.17 ms)."""
    hw = input_hw(size)
    h, w = image.shape[:2]
    if (h, w) == hw:
        return _into(image, image, out)
    if warp and can_warp(image, interpolation):
        return warp_resample(image, hw, w / hw[1], h / hw[0], 0.0, 0.0, cv2.BORDER_REPLICATE, out=out)
    return _into(image, cv2.resize(image, hw[::-1], dst=_dst(out), interpolation=interpolation), out)


def place_image(
    image: np.ndarray,
    hw: tuple[int, int],
    place: tuple[int, int, int, int],
    fill: int = 127,
    interpolation: int = cv2.INTER_LINEAR,
    out: np.ndarray | None = None,
    warp: bool = False,
) -> np.ndarray:
    """uint8 (H, W[, C]) -> (h, w[, C]) of ``hw``: a ``fill`` canvas with ``image`` resized to (iw, ih) pasted at
    (x, y), ``place = (x, y, iw, ih)`` (it may reach past the canvas: the part inside is kept); written into ``out``
    when given. The letterbox and darknet HEAD's training placement.

    ``warp``: where the image shrinks in both axes and :func:`can_warp`, the resize and the paste are one
    ``cv2.warpAffine`` onto the grey: the image's pixels within one grey level of the resize (whose taps stay inside
    the image when it shrinks), the canvas around them exactly ``fill`` (every tap of a pixel outside the pasted
    rectangle lies beyond the image or has weight 0); ~1.7x faster. An enlarged image is resized and pasted (its edge
    taps would blend with the grey where ``cv2.resize`` repeats the image's edge)."""
    x, y, iw, ih = place
    h, w = image.shape[:2]
    if warp and 1 <= iw <= w and 1 <= ih <= h and can_warp(image, interpolation):
        # output (x + i, y + j) is pixel (i, j) of the image resized to iw x ih
        return warp_resample(image, hw, w / iw, h / ih, -x * w / iw, -y * h / ih, cv2.BORDER_CONSTANT, fill, out)
    canvas = np.empty((*hw, *image.shape[2:]), image.dtype) if out is None else out
    canvas[...] = fill
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + iw, hw[1]), min(y + ih, hw[0])
    if iw >= 1 and ih >= 1 and x1 > x0 and y1 > y0:
        resized = _into(image, cv2.resize(image, (iw, ih), interpolation=interpolation), None)
        canvas[y0:y1, x0:x1] = resized[y0 - y : y1 - y, x0 - x : x1 - x]
    return canvas


def letterbox_image(
    image: np.ndarray,
    size: Size,
    fill: int = 127,
    interpolation: int = cv2.INTER_LINEAR,
    out: np.ndarray | None = None,
    warp: bool = False,
) -> np.ndarray:
    """The letterbox resize: uint8 (H, W, C) -> (h, w, C) of ``size`` (a side, or (height, width)), the image
    resized to :func:`letterbox_geometry` and centred on a ``fill`` canvas (:func:`place_image`, ``warp`` as there);
    written into ``out`` when given."""
    h, w = image.shape[:2]
    nw, nh, px, py = letterbox_geometry(w, h, size)
    return place_image(image, input_hw(size), (px, py, nw, nh), fill, interpolation, out, warp)


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
        warp: with linear interpolation, one ``cv2.warpAffine`` where it samples what the resize would (the stretch
            always, the letterbox where the image shrinks; within one grey level, where this OpenCV's warp is that
            close: :func:`warp_matches_resize`); False: ``cv2.resize`` (the pixels of runs before session 42).
    """

    def __init__(
        self, letterbox: bool = False, fill: int = 127, interpolation: str = "linear", warp: bool = True
    ) -> None:
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(_INTERPOLATIONS)}, got {interpolation!r}")
        self.letterbox = bool(letterbox)
        self.fill = int(fill)
        self.interpolation = interpolation
        self.warp = bool(warp)

    def __repr__(self) -> str:
        return (
            f"EvalResize(letterbox={self.letterbox}, fill={self.fill}, interpolation={self.interpolation!r}, "
            f"warp={self.warp})"
        )

    def resize(self, image: np.ndarray, size: Size, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) -> (uint8 (h, w, 3) of ``size``, a side or (height, width); params float32 (4,));
        :meth:`to_original` maps the network's boxes back with ``params``. Written into ``out`` (h, w, 3) when given
        (a slot of a batch buffer)."""
        interp = _INTERPOLATIONS[self.interpolation]
        h, w = image.shape[:2]
        if self.letterbox:
            resized = letterbox_image(image, size, self.fill, interp, out=out, warp=self.warp)
        else:
            resized = stretch_image(image, size, interp, out=out, warp=self.warp)
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
