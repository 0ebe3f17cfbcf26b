"""Classification transforms, following darknet's classifier data loader (``load_data_augment``).

Train (darknet ``random_augment_image`` -> flip -> ``random_distort_image``): one affine warp that scales the
image so its (aspect-adjusted) shorter side is a random length in ``[min_ratio, max_ratio] * size``, stretches
x by a random aspect, rotates by U(-angle, angle) degrees about the image centre and cuts a ``size x size``
window at a random offset (bilinear, edge pixels beyond the image); a horizontal flip with probability
``flip``; the HSV distortion of the detector (:class:`~yolo9000.data.transforms.DarknetHSV`).

Eval (darknet ``validate_classifier_single``): resize the shorter side to ``size`` (times ``eval_resize``) and
cut the centre ``size x size`` window.

darknet19.cfg (``angle=7 hue=.1 saturation=.75 exposure=.75 aspect=.75``, ``min_crop=128 max_crop=448`` at
``width=256``) is read as darknet's code reads it: ``rand_scale(s)`` draws U(1, s) -- U(s, 1) for s < 1 -- and
inverts it with probability 1/2, so ``saturation=.75`` scales S by a factor in [0.75, 1.33] (half the draws
uniform in [0.75, 1], half the inverses of such draws); the same holds for exposure (V) and aspect.
``min_crop / width = 0.5`` and ``max_crop / width = 1.75`` become ``min_ratio`` / ``max_ratio`` so the
augmentation keeps its meaning at any input size (darknet19_448.cfg: ``max_crop=512`` at 448, min = width:
ratios 1.0 and 1.143).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from .resize import _INTERPOLATIONS
from .transforms import DarknetHSV, MappingConfig, _rand_scale, run_pipeline, seed_pipeline

__all__ = [
    "ClassificationTransform",
    "ClassifyAugmentConfig",
    "DarknetRandomAugment",
    "darknet_augment_matrix",
    "resize_center_crop",
]


@dataclass
class ClassifyAugmentConfig(MappingConfig):
    """Classification augmentation settings (every field is a key of ``augment`` in a classification data config).

    Attributes:
        min_ratio, max_ratio: the aspect-adjusted shorter side is scaled to ``randint(min, max)`` pixels with
            ``min = min_ratio * size``, ``max = max_ratio * size`` (darknet ``min_crop``, ``max_crop`` / width).
        aspect: x is stretched by ``1 / rand_scale(aspect)`` (darknet ``aspect``; 1 = off).
        angle: rotation U(-angle, angle) degrees (darknet ``angle``; 0 = off).
        hue: hue shift U(-hue, hue) of the hue circle (darknet ``hue``).
        saturation, exposure: S / V scaled by ``rand_scale`` of these (darknet values; 1 = off, s and 1 / s are
            nearly the same distribution, see the module docstring).
        flip: horizontal flip probability (darknet: 0.5).
        border: what fills the window beyond the image: ``replicate`` (darknet's clamped bilinear lookup) or
            ``constant`` (``fill``).
        fill: grey value for ``border=constant``.
        interpolation: nearest | linear | area | cubic (darknet: bilinear).
        eval_resize: eval resizes the shorter side to ``round(eval_resize * size)`` before the centre crop
            (darknet: 1.0; torchvision's ImageNet recipe: 256 / 224 = 1.143).
    """

    min_ratio: float = 0.5
    max_ratio: float = 1.75
    aspect: float = 0.75
    angle: float = 7.0
    hue: float = 0.1
    saturation: float = 0.75
    exposure: float = 0.75
    flip: float = 0.5
    border: str = "replicate"
    fill: int = 127
    interpolation: str = "linear"
    eval_resize: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.min_ratio <= self.max_ratio:
            raise ValueError(f"augment needs 0 < min_ratio <= max_ratio, got {self.min_ratio}, {self.max_ratio}")
        if self.aspect <= 0 or self.saturation <= 0 or self.exposure <= 0:
            raise ValueError("augment.aspect, saturation and exposure are scale limits > 0 (1 = off)")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"augment.flip is a probability, got {self.flip}")
        if self.border not in ("replicate", "constant"):
            raise ValueError(f"augment.border must be replicate or constant, got {self.border!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"augment.interpolation must be one of {list(_INTERPOLATIONS)}")
        if self.eval_resize < 1:
            raise ValueError(f"augment.eval_resize must be >= 1, got {self.eval_resize}")


def darknet_augment_matrix(
    width: int, height: int, size: int, scale: float, aspect: float, rad: float, dx: float, dy: float
) -> np.ndarray:
    """The map from output pixel (x, y) to input pixel of darknet's ``rotate_crop_image``.

    darknet: ``u = (x - size/2 + dx) * aspect / scale``, ``v = (y - size/2 + dy) / scale``, then
    ``(rx, ry) = R(rad) (u, v) + (width/2, height/2)``.

    Returns:
        float64 (2, 3) affine matrix for ``cv2.warpAffine(..., flags=WARP_INVERSE_MAP)``.
    """
    c, s = math.cos(rad), math.sin(rad)
    ax, ay = aspect / scale, 1.0 / scale
    ox, oy = dx - size / 2.0, dy - size / 2.0
    return np.array(
        [
            [c * ax, -s * ay, c * ax * ox - s * ay * oy + width / 2.0],
            [s * ax, c * ay, s * ax * ox + c * ay * oy + height / 2.0],
        ],
        dtype=np.float64,
    )


class DarknetRandomAugment(A.ImageOnlyTransform):
    """darknet's ``random_augment_image``: random scale, aspect, rotation and crop to ``size x size`` in one warp.

    Parameters are drawn as darknet's ``random_augment_args``: ``aspect = rand_scale(aspect)``,
    ``r = randint(min_size, max_size)``, ``scale = r / int(min(h, w * aspect))`` (darknet's expression, although
    the output width is ``w * scale / aspect``), ``rad = U(-angle, angle)`` degrees, and the window offset
    ``dx = U(-(w * scale / aspect - size) / 2, +...)``, ``dy = U(-(h * scale - size) / 2, +...)``.

    Args:
        size: output side in pixels.
        min_size, max_size: range of the scaled shorter side in pixels (inclusive).
        angle: maximum rotation in degrees.
        aspect: darknet ``aspect`` (1 = no stretch).
        interpolation: OpenCV flag.
        border: ``replicate`` (darknet) or ``constant`` (``fill``).
        fill: grey value of the constant border.
    """

    def __init__(
        self,
        size: int,
        min_size: int,
        max_size: int,
        angle: float = 7.0,
        aspect: float = 0.75,
        interpolation: int = cv2.INTER_LINEAR,
        border: str = "replicate",
        fill: int = 127,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.size, self.min_size, self.max_size = int(size), int(min_size), int(max_size)
        self.angle, self.aspect = float(angle), float(aspect)
        self.interpolation, self.border, self.fill = interpolation, border, fill

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "min_size", "max_size", "angle", "aspect", "interpolation", "border", "fill")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        r = self.py_random
        aspect = _rand_scale(r, self.aspect)
        side = r.randint(min(self.min_size, self.max_size), max(self.min_size, self.max_size))
        scale = side / max(1, int(min(h, w * aspect)))
        rad = math.radians(r.uniform(-self.angle, self.angle))
        dx = (w * scale / aspect - self.size) / 2.0
        dy = (h * scale - self.size) / 2.0
        dx, dy = r.uniform(-dx, dx), r.uniform(-dy, dy)
        return {"matrix": darknet_augment_matrix(w, h, self.size, scale, aspect, rad, dx, dy)}

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (size, size, 3)."""
        border = cv2.BORDER_REPLICATE if self.border == "replicate" else cv2.BORDER_CONSTANT
        return cv2.warpAffine(
            img,
            matrix,
            (self.size, self.size),
            flags=self.interpolation | cv2.WARP_INVERSE_MAP,
            borderMode=border,
            borderValue=(self.fill,) * (img.shape[2] if img.ndim == 3 else 1),
        )


def resize_center_crop(
    image: np.ndarray, size: int, resize: float = 1.0, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """darknet's eval: ``resize_min`` (shorter side -> ``round(resize * size)``, the other side in proportion,
    integer arithmetic as darknet) then ``crop_image`` at ``((w - size) // 2, (h - size) // 2)``.

    uint8 (H, W, 3) -> uint8 (size, size, 3).
    """
    h, w = image.shape[:2]
    short = max(size, int(round(resize * size)))
    nw, nh = (short, h * short // w) if w < h else (w * short // h, short)
    nw, nh = max(nw, size), max(nh, size)
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=interpolation)
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    return np.ascontiguousarray(image[y0 : y0 + size, x0 : x0 + size])


class ClassificationTransform:
    """Train or eval transform of one image to ``size x size``: uint8 (H, W, 3) -> uint8 (size, size, 3).

    The albumentations pipeline is seeded from ``torch.initial_seed()`` of the calling process and rebuilt when
    that changes, so every DataLoader worker draws different augmentations; its steps share one random stream and
    run without albumentations' call machinery (:func:`~yolo9000.data.transforms.seed_pipeline`,
    :func:`~yolo9000.data.transforms.run_pipeline`, as :class:`DetectionTransform`).

    Args:
        train: darknet's training augmentation, else the eval resize + centre crop.
        size: output side in pixels.
        augment: :class:`ClassifyAugmentConfig` or a mapping of its fields.
    """

    def __init__(
        self, train: bool, size: int, augment: ClassifyAugmentConfig | Mapping[str, Any] | None = None
    ) -> None:
        self.train, self.size = train, int(size)
        self.cfg = ClassifyAugmentConfig.from_mapping(augment)
        self._compose: A.Compose | None = None
        self._token: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"ClassificationTransform(train={self.train}, size={self.size}, {self.cfg})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_compose"], state["_token"] = None, None
        return state

    def compose(self) -> A.Compose:
        """The (per-process) training pipeline."""
        token = (os.getpid(), torch.initial_seed())
        if self._compose is None or token != self._token:
            c, s = self.cfg, self.size
            steps: list[A.BasicTransform] = [
                DarknetRandomAugment(
                    s,
                    int(round(c.min_ratio * s)),
                    int(round(c.max_ratio * s)),
                    c.angle,
                    c.aspect,
                    _INTERPOLATIONS[c.interpolation],
                    c.border,
                    c.fill,
                )
            ]
            if c.flip > 0:
                steps.append(A.HorizontalFlip(p=c.flip))
            if c.hue > 0 or c.saturation != 1 or c.exposure != 1:
                steps.append(DarknetHSV(c.hue, c.saturation, c.exposure))
            self._compose = A.Compose(steps)
            seed_pipeline(self._compose, int((torch.initial_seed() * 1_000_003 + s) % 2**32))
            self._token = token
        return self._compose

    def __call__(self, image: np.ndarray, seed: int | None = None) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> uint8 (size, size, 3) RGB; ``seed`` (training) fixes this call's random draws
        (the training batch sampler gives every sample its own: exact resume, any number of workers)."""
        if self.train:
            comp = self.compose()
            if seed is not None:
                seed_pipeline(comp, int(seed))
            return run_pipeline(comp, image)[0]
        return resize_center_crop(image, self.size, self.cfg.eval_resize, _INTERPOLATIONS[self.cfg.interpolation])
