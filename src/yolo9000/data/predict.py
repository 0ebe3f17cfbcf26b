"""Inference inputs: image files (or images already in memory) resized by the eval transform, for
``trainer.predict`` and the Python predict path. Unreadable files are reported with their reason, never fatal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset import stack_nhwc
from .image_io import IMAGE_SUFFIXES, ImageDecodeError, images_under, read_image
from .resize import EvalResize, Size, input_hw

__all__ = ["ImageFilesDataset", "PredictCollate", "list_images"]


def list_images(source: str | Path) -> list[Path]:
    """An image file, or the images of a folder (:func:`~yolo9000.data.image_io.images_under`: sorted, recursive,
    hidden files and folders left out). Raises FileNotFoundError naming the path."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = images_under(source)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {source}")
        return files
    raise FileNotFoundError(f"source not found: {source}")


class ImageFilesDataset(Dataset):
    """Images (file paths or uint8 (H, W, 3) RGB arrays) at one input size, through the eval transform.

    ``dataset[i]`` is ``{"image": uint8 (3, h, w), "transform": float32 (4,), "orig_size": (H, W), "path": str}``,
    or ``{"path": str, "error": str}`` for a file that cannot be read.

    Args:
        images: file paths or arrays.
        size: network input: a side, or (height, width) (multiples of the stride).
        letterbox: keep the aspect ratio with grey padding instead of stretching.
        transform: the eval resize to use (an :class:`~yolo9000.data.resize.EvalResize`, or anything with its
            ``resize``, as :class:`~yolo9000.data.transforms.DetectionTransform`); None: a new one with ``letterbox``.
    """

    def __init__(
        self,
        images: Sequence[str | Path | np.ndarray],
        size: Size,
        letterbox: bool = False,
        transform: EvalResize | None = None,
    ) -> None:
        self.images = list(images)
        self.size = input_hw(size)  # (height, width)
        self.transform = transform or EvalResize(letterbox=bool(letterbox))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.read(index)

    def read(self, index: int, out: np.ndarray | None = None) -> dict[str, Any]:
        """``dataset[index]``, its resized pixels written into ``out`` (uint8 (h, w, 3), e.g. a slot of a batch
        buffer) when given: ``image`` is then a view of ``out``. Threads may read samples at once (the eval
        resize keeps no state)."""
        item = self.images[index]
        name = f"<image {index}>" if isinstance(item, np.ndarray) else str(item)
        if isinstance(item, np.ndarray):
            image = item
        else:
            try:
                image = read_image(item)
            except (ImageDecodeError, OSError) as e:
                return {"path": name, "error": str(e)}
        resized, params = self.transform.resize(image, self.size, out=out)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1),  # (3, h, w) view of HWC pixels
            "transform": torch.from_numpy(params),
            "orig_size": tuple(image.shape[:2]),
            "path": name,
        }


class PredictCollate:
    """Batch of readable samples: ``images`` uint8 (B, 3, h, w), ``transforms`` (B, 4), ``orig_sizes`` long (B, 2),
    ``image_paths``; unreadable ones go to ``failed`` as ``{"file", "reason"}`` (B may be 0)."""

    def __call__(self, samples: Sequence[dict[str, Any]], images: torch.Tensor | None = None) -> dict[str, Any]:
        """``images``: the readable samples' pixels already in one uint8 (B, 3, h, w) batch (their ``image`` views
        of it are then not stacked again)."""
        ok = [s for s in samples if "error" not in s]
        failed = [{"file": s["path"], "reason": s["error"]} for s in samples if "error" in s]
        if not ok:
            return {
                "images": torch.zeros(0, 3, 1, 1, dtype=torch.uint8),
                "transforms": torch.zeros(0, 4),
                "orig_sizes": torch.zeros(0, 2, dtype=torch.long),
                "image_paths": [],
                "failed": failed,
            }
        return {
            "images": stack_nhwc([s["image"] for s in ok]) if images is None else images,  # (B, 3, h, w), NHWC
            "transforms": torch.stack([s["transform"] for s in ok]),
            "orig_sizes": torch.tensor([s["orig_size"] for s in ok], dtype=torch.long),
            "image_paths": [s["path"] for s in ok],
            "failed": failed,
        }
