"""COCO JSON parser (``images``, ``annotations`` with ``bbox`` = x, y, w, h in pixels, ``categories``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .image_io import ImageDecodeError, image_size
from .records import DetectionRecord, IssueLog, class_index, sanitize_boxes


class COCOParser:
    """Parse a COCO instances JSON file.

    ``bbox`` [x, y, w, h] (0-based continuous pixels) becomes xyxy [x, y, x + w, y + h]; ``iscrowd`` boxes
    get ``difficult = True`` (kept for evaluation, left out of the training targets like VOC difficult).

    Args:
        ann_file: the JSON file (relative paths are taken under ``root``).
        image_dir: folder of the images (``file_name`` is relative to it; relative to ``root``).
        root: optional base folder for the two paths above.
        class_names: class list; default (and when the data module gives none): the category names in
            increasing category-id order (darknet's coco.names order). Categories not in the list are
            reported as unknown classes.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        root: str | Path | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        base = Path(root) if root is not None else Path()
        self.ann_file = base / ann_file
        self.image_dir = base / image_dir
        self.class_names = list(class_names) if class_names is not None else None
        self._data: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"COCOParser(ann_file={str(self.ann_file)!r}, image_dir={str(self.image_dir)!r})"

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            with open(self.ann_file) as f:
                self._data = json.load(f)
        return self._data

    def discover_class_names(self) -> list[str] | None:
        """Given class names, else the category names ordered by category id."""
        if self.class_names is not None:
            return self.class_names
        cats = sorted(self._load().get("categories", []), key=lambda c: c["id"])
        return [str(c["name"]) for c in cats] or None

    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """Parse every image of the JSON file; problems go to ``issues`` (default: ``"error"`` log)."""
        issues = issues if issues is not None else IssueLog("error")
        try:
            data = self._load()
        except (OSError, json.JSONDecodeError) as e:
            raise FileNotFoundError(f"{self.ann_file}: cannot read COCO JSON ({e})") from e
        names = list(class_names) if class_names is not None else self.discover_class_names()
        if not names:
            raise ValueError(f"{self.ann_file}: no class names (no categories and none configured)")
        cls_idx = class_index(names)
        cat_to_cls: dict[int, int | None] = {}
        cat_names: dict[int, str] = {}
        for c in data.get("categories", []):
            cat_names[int(c["id"])] = str(c["name"])
            cat_to_cls[int(c["id"])] = cls_idx.get(str(c["name"]))

        per_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        images = {im["id"]: im for im in data.get("images", [])}
        for ann in data.get("annotations", []):
            if ann.get("image_id") not in images:
                issues.report(
                    self.ann_file,
                    "annotation for an unknown image id",
                    action="drop_box",
                    detail=f"annotation {ann.get('id')} image_id {ann.get('image_id')}",
                )
                continue
            per_image[ann["image_id"]].append(ann)

        records = []
        for img_id, im in images.items():
            file_name = im.get("file_name")
            image_path = self.image_dir / str(file_name)
            tag = f"{self.ann_file.name}[{file_name}]"
            if not file_name or not image_path.is_file():
                issues.report(tag, "missing image file", action="skip_image", detail=str(image_path))
                continue
            width, height = im.get("width"), im.get("height")
            if not width or not height or int(width) <= 0 or int(height) <= 0:
                try:
                    width, height = image_size(image_path)
                except ImageDecodeError as e:
                    issues.report(tag, "missing size and unreadable image", action="skip_image", detail=str(e))
                    continue
                issues.fixed(tag, "missing or 0x0 size, size read from the image header", detail=f"{width}x{height}")
            width, height = int(width), int(height)

            boxes, labels, crowd = [], [], []
            for ann in per_image.get(img_id, []):
                cat = ann.get("category_id")
                cls = cat_to_cls.get(cat) if cat is not None else None
                if cls is None:
                    name = cat_names.get(cat, f"id {cat}")  # type: ignore[arg-type]
                    issues.report(tag, f"unknown class '{name}'", action="drop_box")
                    continue
                bbox = ann.get("bbox")
                if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                    issues.report(tag, "missing or malformed bbox", action="drop_box", detail=str(bbox))
                    continue
                boxes.append([float(v) for v in bbox])
                labels.append(cls)
                crowd.append(bool(ann.get("iscrowd", 0)))
            b = np.asarray(boxes, np.float32).reshape(-1, 4)
            b[:, 2:] += b[:, :2]  # xywh -> xyxy
            b, lab, dif = sanitize_boxes(b, labels, crowd, width, height, tag, issues, names)
            records.append(DetectionRecord(image_path, Path(str(file_name)).stem, width, height, b, lab, dif))
        return records
