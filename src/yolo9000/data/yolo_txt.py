"""YOLO txt parser: one ``<image>.txt`` per image with lines ``cls cx cy w h`` normalised to [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .image_io import ImageDecodeError, image_size
from .records import DetectionRecord, IssueLog, hash_split, sanitize_boxes
from .voc import DEFAULT_SPLIT_FRACTIONS

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def label_path_for(image_path: Path) -> Path:
    """darknet's rule: the last ``images`` / ``JPEGImages`` folder becomes ``labels``, the suffix ``.txt``."""
    parts = list(image_path.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] in ("images", "JPEGImages"):
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


class YOLOTxtParser:
    """Parse a YOLO / darknet txt dataset.

    Image list, first match wins:
      1. ``list_file``: one image path per line (relative paths under ``root``), darknet's ``train.txt``;
      2. ``root/<images_dir>/<split>/`` (ultralytics layout);
      3. every image under ``root/<images_dir>/``, split deterministically by hash when ``split`` is set
         (``split_fractions``, ``split_seed``; ``None`` / ``"all"`` takes all).
    Labels: :func:`label_path_for` (``.../images/x.jpg`` -> ``.../labels/x.txt``). A missing label file
    is a negative image (logged as fixed). The image size comes from the image header (PIL, no decoding).

    Args:
        root: dataset root.
        split: split name (see above).
        list_file: optional list file.
        images_dir: images folder under ``root``.
        names_file: class names, one per line (relative to ``root``); used when no class list is given.
        class_names: class list (normally given by the data module).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        list_file: str | Path | None = None,
        images_dir: str = "images",
        names_file: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.list_file = self.root / list_file if list_file is not None else None
        self.images_dir = self.root / images_dir
        self.names_file = self.root / names_file if names_file is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self.split_fractions = dict(split_fractions or DEFAULT_SPLIT_FRACTIONS)
        self.split_seed = split_seed

    def __repr__(self) -> str:
        return f"YOLOTxtParser(root={str(self.root)!r}, split={self.split!r})"

    def discover_class_names(self) -> list[str] | None:
        """Given class names, else the lines of ``names_file``."""
        if self.class_names is not None:
            return self.class_names
        if self.names_file is not None:
            return [ln.strip() for ln in self.names_file.read_text().splitlines() if ln.strip()]
        return None

    def image_paths(self) -> list[Path]:
        """Images of the split."""
        if self.list_file is not None:
            lines = [ln.strip() for ln in self.list_file.read_text().splitlines() if ln.strip()]
            return [p if p.is_absolute() else self.root / p for p in map(Path, lines)]
        split_dir = self.images_dir / self.split if self.split not in (None, "all") else None
        if split_dir is not None and split_dir.is_dir():
            return sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"YOLO images folder not found: {self.images_dir}")
        paths = sorted(p for p in self.images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        by_key = {p.relative_to(self.images_dir).as_posix(): p for p in paths}
        keys = hash_split(list(by_key), self.split, self.split_fractions, self.split_seed)
        return [by_key[k] for k in keys]

    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """Parse the split; problems go to ``issues`` (default: ``"error"`` log)."""
        names = list(class_names) if class_names is not None else self.discover_class_names()
        if not names:
            raise ValueError("YOLOTxtParser needs class_names or a names_file")
        issues = issues if issues is not None else IssueLog("error")
        records = []
        for image_path in self.image_paths():
            rec = self._parse_one(image_path, names, issues)
            if rec is not None:
                records.append(rec)
        return records

    def _parse_one(self, image_path: Path, names: Sequence[str], issues: IssueLog) -> DetectionRecord | None:
        label_path = label_path_for(image_path)
        if not image_path.is_file():
            issues.report(image_path, "missing image file", action="skip_image")
            return None
        try:
            width, height = image_size(image_path)
        except ImageDecodeError as e:
            issues.report(image_path, "unreadable image", action="skip_image", detail=str(e))
            return None
        rows: list[list[float]] = []
        if not label_path.is_file():
            issues.fixed(label_path, "missing label file, image kept as a negative")
        else:
            for n, line in enumerate(label_path.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    vals = [float(v) for v in fields[:5]]
                except ValueError:
                    vals = []
                if len(fields) != 5 or len(vals) != 5 or not vals[0].is_integer():
                    issues.report(label_path, "malformed label line", action="drop_box", detail=f"line {n}: {line!r}")
                    continue
                if not 0 <= vals[0] < len(names):
                    issues.report(label_path, f"unknown class '{int(vals[0])}'", action="drop_box", detail=f"line {n}")
                    continue
                rows.append(vals)
        a = np.asarray(rows, np.float64).reshape(-1, 5)
        scale = np.array([width, height, width, height], np.float64)
        cxcy, wh = a[:, 1:3], a[:, 3:5]
        boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1) * scale
        labels = a[:, 0].astype(np.int64)
        b, lab, dif = sanitize_boxes(boxes, labels, np.zeros(len(a), bool), width, height, label_path, issues, names)
        return DetectionRecord(image_path, image_path.stem, width, height, b, lab, dif)
