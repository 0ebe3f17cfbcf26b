"""Train / eval transforms (albumentations), following darknet's YOLOv2 detection data loader.

Train (darknet ``load_data_detection``): the jitter's geometry -> horizontal flip -> HSV distortion (hue shift,
saturation and exposure scale). The geometry is darknet HEAD's (``jitter_mode="place"``: the whole image at a
jittered aspect ratio placed on a grey canvas) or darknet's as of the paper (``"crop"``: a jittered crop stretched
to the input size). Eval: stretch resize (darknet's ``validate_detector`` as of the paper) or letterbox (HEAD's).
Both return the parameters of the map ``net_pixel = orig_pixel * scale + pad`` so predictions can be mapped back to
the original image.

The eval resize of an image alone, the input-size helpers and the inverse map live in :mod:`yolo9000.data.resize`,
which knows nothing of albumentations (the predict path imports it, not this module).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from yolo9000.models import check_flags

from .resize import (
    _INTERPOLATIONS,
    EvalResize,
    Size,
    boxes_to_original,
    can_warp,
    input_hw,
    letterbox_geometry,
    letterbox_image,
    normal_size,
    place_image,
    stretch_image,
    warp_resample,
    window_part,
)

__all__ = [
    "AugmentConfig",
    "DarknetHSV",
    "DarknetJitterResize",
    "DarknetPlace",
    "DetectionTransform",
    "LetterboxResize",
    "StretchResize",
    "TransformOutput",
    "run_pipeline",
    "seed_pipeline",
]


class MappingConfig:
    """Dataclass helpers for config sections: built from a (Hydra) mapping, unknown keys raise."""

    @classmethod
    def from_mapping(cls, m: Any) -> Any:
        """Build from a mapping (or return an instance as is); unknown keys raise."""
        if isinstance(m, cls):
            return m
        m = dict(m or {})
        unknown = set(m) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}")
        return cls(**m)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class AugmentConfig(MappingConfig):
    """Augmentation / resize settings (every field is a key of ``augment`` in the data config).

    Attributes:
        jitter: darknet jitter: with ``jitter_mode="crop"`` each crop side moves by U(-jitter, jitter) * image side
            (beyond the image the crop is filled as ``jitter_border`` says); with ``"place"`` the image's width and
            height each change by U(-jitter, jitter) of themselves to give its new aspect ratio.
        jitter_mode: the training geometry: ``place`` (darknet HEAD's ``load_data_detection``: the image resized
            to the jittered aspect ratio with one side filling the input, placed at a random offset on a ``fill``
            canvas: :class:`DarknetPlace`) or ``crop`` (darknet as of the paper: the jittered crop stretched to the
            input: :class:`DarknetJitterResize`).
        hue: hue shift U(-hue, hue), in units of the full hue circle.
        saturation, exposure: HSV S / V scaled by U(1, s) or its inverse (darknet ``rand_scale``; an s < 1, as
            yolo9000.cfg's ``.75``, draws U(s, 1) and inverts it half the time: factors in [s, 1 / s]); 1 = off.
        flip: horizontal flip probability.
        small_box: which training boxes are too small after the train transform: ``side`` (darknet's
            ``fill_truth_detection``: normalised width or height < ``min_box_side``) or ``area`` (area <
            ``min_box_area`` * size^2, the rule before issue 11: it drops every box under ~13 x 13 px at 416).
        min_box_side: the side rule's threshold (darknet: 0.001 of the input side).
        min_box_area: the area rule's threshold (fraction of the input area).
        min_box_pixels: after the train transform, boxes with width or height < this many pixels are dropped.
        letterbox: eval resize keeps the aspect ratio and pads with ``fill`` (else stretch).
        fill: grey value of the padding (train: the placement's canvas, the crop beyond the image; eval letterbox).
        jitter_border: what fills the jitter crop beyond the image: ``constant`` (``fill``, as later darknet's
            grey canvas) or ``replicate`` (edge pixels, as the YOLOv2-era darknet ``crop_image``).
        interpolation: resize interpolation (nearest | linear | area | cubic).
        warp: the training geometry with linear interpolation as one ``cv2.warpAffine`` from the image where it
            samples what the resize samples (within one grey level, on an OpenCV whose warp does so:
            :func:`~yolo9000.data.resize.warp_matches_resize`; elsewhere the resize): the crop, its border and the
            stretch (:class:`DarknetJitterResize`, ~3.5x faster), or the placement's resize and paste
            (:class:`DarknetPlace`, ~1.7x); false: ``cv2.copyMakeBorder`` / ``cv2.resize`` and the paste (every run
            before session 41).
        eval_warp: the same for the eval resize (:class:`~yolo9000.data.resize.EvalResize`: the stretch always, the
            letterbox where the image shrinks; a BCCD photo to 256 ~3x faster); false: ``cv2.resize`` (every run
            before session 42).
    """

    jitter: float = 0.3
    jitter_mode: str = "crop"
    hue: float = 0.1
    saturation: float = 1.5
    exposure: float = 1.5
    flip: float = 0.5
    small_box: str = "side"
    min_box_side: float = 0.001
    min_box_area: float = 0.001
    min_box_pixels: float = 1.0
    letterbox: bool = False
    fill: int = 127
    jitter_border: str = "constant"
    interpolation: str = "linear"
    warp: bool = True
    eval_warp: bool = True

    def __post_init__(self) -> None:
        if self.small_box not in ("side", "area"):
            raise ValueError(f"augment.small_box must be 'side' or 'area', got {self.small_box!r}")
        if self.jitter_mode not in ("crop", "place"):
            raise ValueError(f"augment.jitter_mode must be crop or place, got {self.jitter_mode!r}")
        limit = 0.5 if self.jitter_mode == "crop" else 1.0  # a crop keeps some image; a side stays positive
        if not 0 <= self.jitter < limit:
            raise ValueError(
                f"augment.jitter must be in [0, {limit}) with jitter_mode={self.jitter_mode}, got {self.jitter}"
            )
        if self.saturation <= 0 or self.exposure <= 0:
            raise ValueError(
                f"augment.saturation and augment.exposure are scale limits > 0 (1 = off; s and 1 / s draw the same "
                f"range), got {self.saturation} and {self.exposure}"
            )
        if not 0 <= self.flip <= 1:
            raise ValueError(f"augment.flip is a probability, got {self.flip}")
        if self.jitter_border not in ("constant", "replicate"):
            raise ValueError(f"augment.jitter_border must be constant or replicate, got {self.jitter_border!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"augment.interpolation must be one of {list(_INTERPOLATIONS)}")
        check_flags("augment", warp=self.warp, eval_warp=self.eval_warp)


def seed_pipeline(comp: A.Compose, seed: int) -> None:
    """Seed ``comp`` with one random stream that all its steps draw from, in order (as darknet draws every
    augmentation parameter from one ``rand()`` sequence).

    albumentations' own ``Compose.set_random_seed`` gives every step a generator of its own seeded alike, so
    the steps' draws repeat one another: the jitter's first offset, the flip coin and the hue shift all come
    from the first number of the same sequence (flip iff the crop's left offset < 0; hue a linear function of
    it). One shared stream makes them independent.
    """
    comp.set_random_state(np.random.default_rng(seed), random.Random(seed))


def run_pipeline(
    comp: A.Compose, image: np.ndarray, bboxes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``comp``'s steps on one image (and boxes) without albumentations' call machinery.

    Each step does what its ``__call__`` does inside ``Compose`` (``should_apply``, ``get_params``,
    ``update_transform_params``, ``get_params_dependent_on_data``, ``apply`` / ``apply_to_bboxes``; the step's
    ``params`` are kept), in order, drawing from the same generators; what is skipped is the per-call checking,
    dict plumbing and processors (about 0.5 ms of the 1.1 ms an image of the training pipeline on BCCD). The
    result equals ``comp(image=..., bboxes=..., force_apply=True)`` (the Compose's own probability draw is the one
    thing not made) with ``check_each_transform=False``: the images exactly, the boxes before its final filter.

    Args:
        comp: the pipeline (its steps are used; its processors are not).
        image: uint8 (H, W, C).
        bboxes: float (N, 4 + k) in albumentations' format (normalised xyxy, extra columns carried), or None.
    Returns:
        (image, bboxes): the output image, and the boxes in albumentations' format of the output (not clipped or
        filtered) or None.
    """
    image = np.ascontiguousarray(image)
    for step in comp.transforms:
        if not step.should_apply():
            step.params = {}
            continue
        data = {"image": image}
        params = step.update_transform_params(step.get_params(), data)
        params.update(step.get_params_dependent_on_data(params=params, data=data))
        step.params = params
        image = np.ascontiguousarray(step.apply(image, **params))
        if bboxes is not None and "bboxes" in step.targets:  # image-only steps leave the boxes
            bboxes = step.targets["bboxes"](bboxes, **params)
    return image, bboxes


_DEGENERATE_AREA = 1e-7  # px^2: albumentations drops boxes of smaller (or negative) area, before and after the steps


def _boxes_in(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel xyxy boxes -> albumentations' format, as its ``Compose`` with ``BboxParams(format="pascal_voc",
    clip=True)`` prepares them: normalised through float64 into float32, clipped to [0, 1], boxes of area
    under 1e-7 px^2 removed; the box's index is carried as a fifth column.

    Args:
        boxes: float32 (N, 4) xyxy pixels of a ``width x height`` image.
    Returns:
        float32 (M, 5): normalised xyxy and the index of the input box.
    """
    scale = np.array([width, height, width, height], np.float64)
    out = np.empty((len(boxes), 5), np.float32)
    out[:, :4] = (boxes.astype(np.float64) / scale).clip(0, 1)
    out[:, 4] = np.arange(len(boxes))
    px = out[:, :4] * scale  # float64 pixels of the clipped box
    return out[(px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1]) >= _DEGENERATE_AREA]


def _boxes_out(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """albumentations' format after the steps -> (float32 (M, 4) xyxy pixels of the ``width x height`` output,
    int64 (M,) input indices), as its ``Compose`` finishes: boxes of area under 1e-7 px^2 (before clipping)
    removed, the rest clipped to [0, 1] and scaled through float64."""
    scale = np.array([width, height, width, height], np.float64)
    px = boxes[:, :4] * scale
    keep = (px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1]) >= _DEGENERATE_AREA
    out = (boxes[keep, :4].clip(0, 1) * scale).astype(np.float32)
    return out, boxes[keep, 4].astype(np.int64)


class _JitterGeometry(A.DualTransform):
    """What the two training geometries keep: the input ``size`` (a side, or (height, width)), darknet's ``jitter``,
    the grey ``fill``, the resize's OpenCV ``interpolation`` and ``warp`` (one ``cv2.warpAffine`` where it samples
    what the resize would: :func:`~yolo9000.data.resize.can_warp`)."""

    def __init__(
        self,
        size: Size,
        jitter: float = 0.3,
        fill: int = 127,
        interpolation: int = cv2.INTER_LINEAR,
        p: float = 1.0,
        warp: bool = False,
    ) -> None:
        super().__init__(p=p)
        self.size = size
        self.jitter = jitter
        self.fill = fill
        self.interpolation = interpolation
        self.warp = warp

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "jitter", "fill", "interpolation", "warp")

    def net_params(self, width: int, height: int) -> np.ndarray:
        """float32 (4,) (scale_x, scale_y, pad_x, pad_y) of the last call's geometry (its ``params``) on a ``width x
        height`` image: net = orig * scale + pad."""
        raise NotImplementedError


class DarknetJitterResize(_JitterGeometry):
    """darknet's jitter crop (as of the paper) followed by a stretch resize to ``size`` (a side, or (height, width)).

    Crop window: left = trunc(U(-dw, dw)), right = trunc(U(-dw, dw)) (same for top / bottom with dh),
    dw = trunc(jitter * width); the window is ``[left, width - right) x [top, height - bottom)``,
    parts outside the image are filled with ``fill`` (``border="constant"``) or the edge pixels
    (``border="replicate"``).

    The pixels are those of ``cv2.resize`` (half-pixel centres, two taps an axis) of the window made by
    ``cv2.copyMakeBorder``. With ``warp`` (and linear interpolation) one ``cv2.warpAffine`` of the image's part of
    the window samples the same points, the border given by its border mode, without building the window: ~0.05 ms
    against ~0.17 ms for a BCCD photo at 256, and within one grey level of the two steps on OpenCV 5.1 (~10 % of the
    values one apart: rounding; an OpenCV 4.x warp is not that close, and the two steps run there:
    :func:`~yolo9000.data.resize.warp_matches_resize`). It applies where it reads what the
    window would: always with ``replicate``; with ``constant`` where the window shrinks in both axes (an enlarged
    window's edge taps would read ``fill`` past an inner edge where ``cv2.resize`` repeats the window's edge).
    Elsewhere the two steps run.
    """

    def __init__(
        self,
        size: Size,
        jitter: float = 0.3,
        fill: int = 127,
        interpolation: int = cv2.INTER_LINEAR,
        border: str = "constant",
        p: float = 1.0,
        warp: bool = False,
    ) -> None:
        super().__init__(size, jitter, fill, interpolation, p, warp)
        self.border = border

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*super().get_transform_init_args_names(), "border")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        dw, dh = int(w * self.jitter), int(h * self.jitter)
        u = self.py_random.uniform
        pleft, pright = int(u(-dw, dw)), int(u(-dw, dw))
        ptop, pbot = int(u(-dh, dh)), int(u(-dh, dh))
        return {"crop": (pleft, ptop, w - pleft - pright, h - ptop - pbot)}

    def apply(self, img: np.ndarray, crop: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        patch, (top, bottom, left, right) = window_part(img, crop)
        cw, ch = crop[2:]
        net_h, net_w = input_hw(self.size)
        mode = cv2.BORDER_REPLICATE if self.border == "replicate" else cv2.BORDER_CONSTANT
        sx, sy = cw / net_w, ch / net_h  # window pixels per output pixel
        reads_the_window = mode == cv2.BORDER_REPLICATE or (sx >= 1 and sy >= 1)
        if self.warp and patch.size and reads_the_window and can_warp(img, self.interpolation):
            # the window starts (left, top) px before the patch
            return warp_resample(patch, (net_h, net_w), sx, sy, -left, -top, mode, self.fill)
        if top or bottom or left or right:
            fill = (
                {"value": (self.fill,) * (img.shape[2] if img.ndim == 3 else 1)} if mode == cv2.BORDER_CONSTANT else {}
            )
            patch = cv2.copyMakeBorder(patch, top, bottom, left, right, mode, **fill)
        return cv2.resize(patch, (net_w, net_h), interpolation=self.interpolation)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        """bboxes: (N, 4 + k) albumentations-normalised xyxy of the input -> of the output."""
        h, w = params["shape"][:2]
        x0, y0, cw, ch = crop
        out = bboxes.copy()
        out[:, [0, 2]] = ((bboxes[:, [0, 2]] * w - x0) / cw).clip(0, 1)
        out[:, [1, 3]] = ((bboxes[:, [1, 3]] * h - y0) / ch).clip(0, 1)
        return out

    def net_params(self, width: int, height: int) -> np.ndarray:
        """The crop (x0, y0, cw, ch) stretched to the input."""
        x0, y0, cw, ch = self.params["crop"]
        net_h, net_w = input_hw(self.size)
        return np.array([net_w / cw, net_h / ch, -x0 * net_w / cw, -y0 * net_h / ch], np.float32)


class DarknetPlace(_JitterGeometry):
    """darknet HEAD's ``load_data_detection`` geometry: the whole image resized to a jittered aspect ratio, one side
    filling the input (darknet's ``scale = 1``), placed at a random offset on a ``fill`` canvas of ``size`` (a side,
    or (height, width)).

    new_ar = (W + U(-dw, dw)) / (H + U(-dh, dh)) with dw = jitter * W, dh = jitter * H; new_ar < 1: nh = net
    height, nw = nh * new_ar, else nw = net width, nh = nw / new_ar; dx = U(0, net width - nw), dy = U(0, net
    height - nh) (darknet's ``rand_uniform`` orders its bounds: where the image is larger than the input, as on a
    wide rectangular input, it is placed partly outside). The image is resized to (int(nw), int(nh)) and pasted at
    (int(dx), int(dy)), as darknet's ``place_image``'s int arguments truncate them (:func:`place_image` here); the
    boxes move by the float geometry, as ``fill_truth_detection``'s. The resize is OpenCV's, as everywhere here
    (darknet's bilinear samples at x * W / nw, without OpenCV's half-pixel offset).

    With ``warp`` (linear interpolation) and an image that shrinks in both axes, the resize and the paste are one
    ``cv2.warpAffine`` onto the grey (:func:`place_image`): within one grey level, the canvas exactly ``fill``,
    ~1.7x faster.
    """

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        net_h, net_w = input_hw(self.size)
        u = self.py_random.uniform  # uniform(a, b) with a > b draws from [b, a], as darknet's rand_uniform
        dw, dh = self.jitter * w, self.jitter * h
        new_ar = (w + u(-dw, dw)) / (h + u(-dh, dh))
        if new_ar < 1:
            nh = float(net_h)
            nw = nh * new_ar
        else:
            nw = float(net_w)
            nh = nw / new_ar
        dx, dy = u(0, net_w - nw), u(0, net_h - nh)
        return {"place": (dx, dy, nw, nh)}

    def apply(self, img: np.ndarray, place: tuple[float, float, float, float], **params: Any) -> np.ndarray:
        dx, dy, nw, nh = place
        spot = (int(dx), int(dy), int(nw), int(nh))  # C's float -> int: toward zero
        return place_image(img, input_hw(self.size), spot, self.fill, self.interpolation, warp=self.warp)

    def apply_to_bboxes(
        self, bboxes: np.ndarray, place: tuple[float, float, float, float], **params: Any
    ) -> np.ndarray:
        """bboxes: (N, 4 + k) albumentations-normalised xyxy of the input -> of the output (darknet's
        ``correct_boxes``: x * nw / net width + dx / net width, clipped to the input)."""
        dx, dy, nw, nh = place
        net_h, net_w = input_hw(self.size)
        out = bboxes.copy()
        out[:, [0, 2]] = ((bboxes[:, [0, 2]] * nw + dx) / net_w).clip(0, 1)
        out[:, [1, 3]] = ((bboxes[:, [1, 3]] * nh + dy) / net_h).clip(0, 1)
        return out

    def net_params(self, width: int, height: int) -> np.ndarray:
        """The image at (dx, dy), nw x nh (the float geometry, as the boxes move)."""
        dx, dy, nw, nh = self.params["place"]
        return np.array([nw / width, nh / height, dx, dy], np.float32)


class StretchResize(A.DualTransform):
    """The eval stretch resize to ``size`` (a side, or (height, width): :func:`stretch_image`, ``warp`` as there);
    normalised boxes are unchanged."""

    def __init__(self, size: Size, interpolation: int = cv2.INTER_LINEAR, p: float = 1.0, warp: bool = False) -> None:
        super().__init__(p=p)
        self.size = size
        self.interpolation = interpolation
        self.warp = warp

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "interpolation", "warp")

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return stretch_image(img, self.size, self.interpolation, warp=self.warp)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes


class LetterboxResize(A.DualTransform):
    """Aspect-preserving resize into a ``size`` canvas (a side, or (height, width)), centred, padded with ``fill``
    (:func:`letterbox_image`, ``warp`` as there)."""

    def __init__(
        self,
        size: Size,
        fill: int = 127,
        interpolation: int = cv2.INTER_LINEAR,
        p: float = 1.0,
        warp: bool = False,
    ) -> None:
        super().__init__(p=p)
        self.size = size
        self.fill = fill
        self.interpolation = interpolation
        self.warp = warp

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "fill", "interpolation", "warp")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        return {"geometry": letterbox_geometry(w, h, self.size)}

    def apply(self, img: np.ndarray, geometry: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return letterbox_image(img, self.size, self.fill, self.interpolation, warp=self.warp)

    def apply_to_bboxes(self, bboxes: np.ndarray, geometry: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        nw, nh, px, py = geometry
        net_h, net_w = input_hw(self.size)
        out = bboxes.copy()
        out[:, [0, 2]] = (bboxes[:, [0, 2]] * nw + px) / net_w
        out[:, [1, 3]] = (bboxes[:, [1, 3]] * nh + py) / net_h
        return out


_LEVELS = np.arange(256, dtype=np.float32).reshape(256, 1, 1)  # the uint8 values, as a LUT table's rows


def _rand_scale(rng: Any, s: float) -> float:
    """darknet ``rand_scale``: U(1, s) (U(s, 1) for s < 1: darknet's ``rand_uniform`` swaps the bounds), inverted with
    probability 1/2."""
    v = rng.uniform(1.0, s)
    return v if rng.random() < 0.5 else 1.0 / v


class DarknetHSV(A.ImageOnlyTransform):
    """darknet ``random_distort_image`` on uint8 RGB: H += U(-hue, hue) (wraps), S *= rand_scale(saturation),
    V *= rand_scale(exposure), via OpenCV HSV and lookup tables."""

    def __init__(self, hue: float = 0.1, saturation: float = 1.5, exposure: float = 1.5, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.hue = hue
        self.saturation = saturation
        self.exposure = exposure

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("hue", "saturation", "exposure")

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        return {
            "dhue": r.uniform(-self.hue, self.hue),
            "dsat": _rand_scale(r, self.saturation),
            "dexp": _rand_scale(r, self.exposure),
        }

    def apply(self, img: np.ndarray, dhue: float, dsat: float, dexp: float, **params: Any) -> np.ndarray:
        if dhue == 0 and dsat == 1 and dexp == 1:
            return img
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # OpenCV uint8 hue: [0, 180)
        # one (256, 1, 3) table, a column per channel, in one LUT pass over the pixels (the planes split, looked up
        # one by one and merged took ~0.1 ms more at 256 x 256)
        table = np.rint(_LEVELS * np.array([1.0, dsat, dexp], np.float32) + np.array([dhue * 180.0, 0, 0], np.float32))
        table[..., 0] %= 180  # the hue wraps
        return cv2.cvtColor(cv2.LUT(hsv, np.clip(table, 0, 255, out=table).astype(np.uint8)), cv2.COLOR_HSV2RGB)


@dataclass
class TransformOutput:
    """Result of :class:`DetectionTransform`.

    Attributes:
        image: uint8 (h, w, 3) RGB at the input size.
        boxes: float32 (N, 4) xyxy in network-input pixels; labels: int64 (N,); difficult: bool (N,).
        params: float32 (4,) (scale_x, scale_y, pad_x, pad_y): net = orig * scale + pad (train: of the
            jitter's geometry, without the flip).
        n_dropped: number of input boxes removed by the transform (outside the crop or the input, too small).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    params: np.ndarray
    n_dropped: int


class DetectionTransform:
    """Train or eval transform of one image with its boxes at a given input size (a side, or (height, width)).

    The albumentations ``Compose`` is built per size and cached; a call runs its steps through
    :func:`run_pipeline` (the steps' own code without the call machinery) with albumentations' box conversions
    around them. A call with ``seed`` reseeds it (:func:`seed_pipeline`: one stream for all steps), so that
    sample's augmentation is a pure function of the seed (the training batch sampler gives every sample its
    own seed: exact resume, the same augmentation with any number of workers). Without a seed the random state
    comes from ``(torch.initial_seed(), size)`` of the calling process (rebuilt when that changes, so every
    DataLoader worker, whose torch seed differs, draws different augmentations).

    Args:
        train: darknet training augmentation, else the eval resize.
        augment: :class:`AugmentConfig` or a mapping of its fields.
    """

    def __init__(self, train: bool, augment: AugmentConfig | Mapping[str, Any] | None = None) -> None:
        self.train = train
        self.cfg = AugmentConfig.from_mapping(augment)
        self._cache: dict[Size, A.Compose] = {}
        self._token: tuple[int, int] | None = None
        self.dropped_boxes = 0  # boxes removed by this process's calls (see DetectionDataset.stats for all)

    def __repr__(self) -> str:
        return f"DetectionTransform(train={self.train}, {self.cfg})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"], state["_token"] = {}, None
        return state

    def compose(self, size: Size) -> A.Compose:
        """The (cached) albumentations pipeline for inputs of ``size`` (a side, or (height, width))."""
        token = (os.getpid(), torch.initial_seed())
        if token != self._token:
            self._cache, self._token = {}, token
        key = normal_size(size)  # (416, 416) is 416
        comp = self._cache.get(key)
        if comp is None:
            comp = self._build(key)
            # a square side seeds as it always has; a rectangle by both sides
            salt = key if isinstance(key, int) else key[0] * 1_000_003 + key[1]
            seed_pipeline(comp, int((torch.initial_seed() * 1_000_003 + salt) % 2**32))
            self._cache[key] = comp
        return comp

    def _build(self, size: Size) -> A.Compose:
        c = self.cfg
        interp = _INTERPOLATIONS[c.interpolation]
        if self.train:
            geometry = (
                DarknetPlace(size, c.jitter, c.fill, interp, warp=c.warp)
                if c.jitter_mode == "place"
                else DarknetJitterResize(size, c.jitter, c.fill, interp, c.jitter_border, warp=c.warp)
            )
            steps: list[A.BasicTransform] = [geometry]
            if c.flip > 0:
                steps.append(A.HorizontalFlip(p=c.flip))
            if c.hue > 0 or c.saturation != 1 or c.exposure != 1:
                steps.append(DarknetHSV(c.hue, c.saturation, c.exposure))
        elif c.letterbox:
            steps = [LetterboxResize(size, c.fill, interp, warp=c.eval_warp)]
        else:
            steps = [StretchResize(size, interp, warp=c.eval_warp)]
        # the box settings that __call__'s _boxes_in / _boxes_out repeat around run_pipeline (the Compose's own box
        # processors do not run; the tests compare against this Compose): clipped, filtered once after the last step
        bbox_params = A.BboxParams(format="pascal_voc", label_fields=["idx"], clip=True, check_each_transform=False)
        return A.Compose(steps, bbox_params=bbox_params)

    @property
    def eval_resize(self) -> EvalResize:
        """The eval resize of an image alone with this config's ``letterbox``, ``fill``, ``interpolation`` and
        ``eval_warp`` (the pixels and parameters of the eval pipeline's step without the pipeline)."""
        c = self.cfg
        return EvalResize(c.letterbox, c.fill, c.interpolation, c.eval_warp)

    def resize(self, image: np.ndarray, size: Size, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The eval resize of an image alone (inference): :attr:`eval_resize`'s
        (:meth:`yolo9000.data.resize.EvalResize.resize`)."""
        return self.eval_resize.resize(image, size, out=out)

    to_original = staticmethod(boxes_to_original)

    def eval_params(self, width: int, height: int, size: Size) -> np.ndarray:
        """(scale_x, scale_y, pad_x, pad_y) of the eval transform for an image of ``width x height`` at ``size``
        (a side, or (height, width)): :attr:`eval_resize`'s."""
        return self.eval_resize.eval_params(width, height, size)

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        difficult: np.ndarray,
        size: Size,
        seed: int | None = None,
    ) -> TransformOutput:
        """Transform ``image`` uint8 (H, W, 3) and ``boxes`` float (N, 4) xyxy pixels to ``size`` (a side, or
        (height, width)); ``seed`` (training) fixes this call's random draws."""
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)  # clipped to the image by _boxes_in
        n = len(boxes)
        comp = self.compose(size)
        if seed is not None and self.train:
            seed_pipeline(comp, int(seed))
        img, b = run_pipeline(comp, image, _boxes_in(boxes, w, h))
        assert b is not None
        b, idx = _boxes_out(b, img.shape[1], img.shape[0])
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        if self.train:
            net_h, net_w = input_hw(size)
            keep = (bw >= self.cfg.min_box_pixels) & (bh >= self.cfg.min_box_pixels)
            if self.cfg.small_box == "side":  # darknet: w < .001 || h < .001 (normalised) -> skipped
                keep &= (bw >= self.cfg.min_box_side * net_w) & (bh >= self.cfg.min_box_side * net_h)
            else:
                keep &= bw * bh >= self.cfg.min_box_area * net_w * net_h
            params = comp.transforms[0].net_params(w, h)  # the geometry step's last draw
        else:
            keep = (bw > 0) & (bh > 0)
            params = self.eval_params(w, h, size)
        b, idx = b[keep], idx[keep]
        n_dropped = n - len(idx)
        self.dropped_boxes += n_dropped
        return TransformOutput(
            image=img,
            boxes=b,
            labels=np.asarray(labels, np.int64)[idx],
            difficult=np.asarray(difficult, bool)[idx],
            params=params,
            n_dropped=n_dropped,
        )
