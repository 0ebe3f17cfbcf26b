"""Data pipeline: annotation parsers, datasets, darknet transforms, multi-scale sampling, the data module.

The data module (which imports Lightning) and the training transforms (albumentations) are loaded lazily:
``from yolo9000.data import DetectionDataModule`` / ``AugmentConfig`` / ``DetectionTransform`` import them on first
use, so the predict path (:mod:`yolo9000.data.predict`, :mod:`yolo9000.data.resize`) loads neither.
"""

from __future__ import annotations

from typing import Any

from .coco import COCOParser
from .csv_boxes import CSVParser
from .dataset import DetectionCollate, DetectionDataset, detection_collate
from .image_io import ImageDecodeError, image_size, read_image
from .multiscale import MultiScaleBatchSampler, resolve_sizes, size_for_batch
from .records import DataError, DetectionRecord, IssueLog, hash_split
from .resize import letterbox_geometry
from .voc import VOCParser
from .yolo_txt import YOLOTxtParser

__all__ = [
    "AugmentConfig",
    "COCOParser",
    "CSVParser",
    "DataError",
    "DetectionCollate",
    "DetectionDataModule",
    "DetectionDataset",
    "DetectionRecord",
    "DetectionTransform",
    "ImageDecodeError",
    "IssueLog",
    "MultiScaleBatchSampler",
    "VOCParser",
    "YOLOTxtParser",
    "detection_collate",
    "hash_split",
    "image_size",
    "letterbox_geometry",
    "read_image",
    "resolve_sizes",
    "size_for_batch",
]


def __getattr__(name: str) -> Any:
    if name == "DetectionDataModule":
        from .datamodule import DetectionDataModule

        return DetectionDataModule
    if name in ("AugmentConfig", "DetectionTransform"):
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(name)
