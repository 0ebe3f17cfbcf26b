"""Data pipeline: annotation parsers, datasets, darknet transforms, multi-scale sampling, the data module.

The data module (which imports Lightning) is loaded lazily: ``from yolo9000.data import DetectionDataModule``.
"""

from __future__ import annotations

from typing import Any

from .coco import COCOParser
from .csv_boxes import CSVParser
from .dataset import DetectionCollate, DetectionDataset, detection_collate
from .image_io import ImageDecodeError, image_size, read_image
from .multiscale import MultiScaleBatchSampler, resolve_sizes, size_for_batch
from .records import DataError, DetectionRecord, IssueLog, hash_split
from .transforms import AugmentConfig, DetectionTransform, letterbox_geometry
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
    raise AttributeError(name)
