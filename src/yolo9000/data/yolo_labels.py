"""YOLO / darknet label files: where an image's label file is, and its ``cls cx cy w h`` lines as boxes.

Used by :class:`~yolo9000.data.yolo_txt.YOLOTxtParser`; :func:`label_path_for` is also importable from
:mod:`yolo9000.data.yolo_txt`, where it lived first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolo9000.text_io import read_text, text_lines

from .records import IssueLog

__all__ = ["label_boxes", "label_path_for", "read_label_rows"]


def label_path_for(image_path: Path) -> Path:
    """The label file of an image: the last ``images`` / ``JPEGImages`` folder of its path becomes ``labels`` and
    its suffix ``.txt`` (darknet's ``fill_truth_detection`` replaces those names as substrings, the first match
    of each, and only the suffixes .jpg / .png / .JPG / .JPEG; the last folder, as Ultralytics' ``img2label_paths``,
    is what both mean in every common layout and is safe when a parent folder is also called ``images``)."""
    parts = list(image_path.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] in ("images", "JPEGImages"):
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_label_rows(label_path: Path, image_path: Path, num_classes: int, issues: IssueLog) -> list[list[float]]:
    """The valid ``[cls, cx, cy, w, h]`` rows (normalised) of an image's label file.

    A missing or empty file is a negative image (noted); a polygon (segment) line ``cls x1 y1 x2 y2 ...`` becomes
    its bounding box (fixed); malformed lines and classes outside [0, ``num_classes``) are reported
    (``drop_box``).
    """
    rows: list[list[float]] = []
    if not label_path.is_file():
        issues.note(image_path, "no label file, kept as a negative", detail=str(label_path))
        return rows
    lines = text_lines(read_text(label_path))  # any editor's encoding: a BOM is no class id
    if not any(ln.strip() for ln in lines):
        issues.note(image_path, "empty label file, kept as a negative")
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            vals = [float(v) for v in fields]
        except ValueError:
            vals = []
        if len(vals) > 5 and len(vals) % 2 == 1 and vals[0].is_integer():  # polygon: cls x1 y1 x2 y2 ...
            xs, ys = np.asarray(vals[1::2]), np.asarray(vals[2::2])
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            issues.fixed(label_path, "polygon label converted to its bounding box", detail=f"line {n}")
            vals = [vals[0], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
        if len(vals) != 5 or not vals[0].is_integer():
            issues.report(label_path, "malformed label line", action="drop_box", detail=f"line {n}: {line!r}")
            continue
        if not 0 <= vals[0] < num_classes:
            issues.report(label_path, f"unknown class '{int(vals[0])}'", action="drop_box", detail=f"line {n}")
            continue
        if max(vals[1:]) > 2.0:  # far beyond the image: pixel coordinates, not the format's [0, 1] fractions
            issues.report(
                label_path,
                "label coordinates above 1: YOLO labels are fractions of the image size (pixels given?)",
                action="drop_box",
                detail=f"line {n}: {line.strip()!r}",
            )
            continue
        rows.append(vals)
    return rows


def label_boxes(rows: list[list[float]], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``[cls, cx, cy, w, h]`` rows (normalised) -> (xyxy pixel boxes float64 (N, 4), labels int64 (N,))."""
    a = np.asarray(rows, np.float64).reshape(-1, 5)
    scale = np.array([width, height, width, height], np.float64)
    cxcy, wh = a[:, 1:3], a[:, 3:5]
    boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1) * scale
    return boxes, a[:, 0].astype(np.int64)
