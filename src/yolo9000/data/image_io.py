"""Image decoding and header-only size reading."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, read_file

__all__ = ["ImageDecodeError", "image_size", "read_image"]


class ImageDecodeError(RuntimeError):
    """The image file cannot be read or decoded (missing, empty, corrupt, truncated, unknown format)."""


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, UnidentifiedImageError, ValueError) as e:  # FileNotFoundError is an OSError
        raise ImageDecodeError(f"unreadable image header ({type(e).__name__}: {e})") from e
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"image header gives size {w}x{h}")
    return int(w), int(h)


def _decode_torchvision(path: Path) -> torch.Tensor:
    with warnings.catch_warnings():
        # torchvision >= 0.29 deprecates its decoders in favour of torchcodec; they still work.
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities of TorchVision.*")
        img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    if img.dtype == torch.uint16:  # 16-bit PNG
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    return img


def _decode_pil(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        im.load()  # raises OSError on truncated files (LOAD_TRUNCATED_IMAGES is False)
        if im.mode == "I;16" or im.mode.startswith("I;16"):
            arr = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
            arr = np.repeat(arr[..., None], 3, axis=2)
        else:
            arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB.

    JPEG / PNG / WebP / GIF are decoded by ``torchvision.io.decode_image`` (by content, so a PNG named
    ``.jpg`` works; grey, grey+alpha, RGBA and palette images are converted to RGB, 16-bit PNG to 8 bit);
    other formats (BMP, TIFF, ...) by PIL.

    Returns:
        uint8 (H, W, 3) RGB array (contiguous).

    Raises:
        ImageDecodeError: missing, empty, corrupt or truncated file, or unknown format.
    """
    path = Path(path)
    try:
        img = _decode_torchvision(path)
    except (RuntimeError, OSError) as e:
        msg = str(e)
        if "Unsupported image file" not in msg:
            reason = msg.strip().splitlines()[-1].split(", ")[-1] if msg.strip() else type(e).__name__
            raise ImageDecodeError(f"corrupt or unreadable image ({reason})") from e
        try:
            img = _decode_pil(path)
        except (OSError, UnidentifiedImageError, ValueError) as e2:
            raise ImageDecodeError(f"corrupt or unreadable image ({type(e2).__name__}: {e2})") from e2
    if img.ndim != 3 or img.shape[0] != 3 or img.shape[1] == 0 or img.shape[2] == 0:
        raise ImageDecodeError(f"decoded image has shape {tuple(img.shape)}")
    return np.ascontiguousarray(img.permute(1, 2, 0).numpy())
