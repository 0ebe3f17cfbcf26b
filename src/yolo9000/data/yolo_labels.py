"""YOLO / darknet label files: where an image's label file is, and its ``cls cx cy w h`` lines as boxes.

Used by :class:`~yolo9000.data.yolo_txt.YOLOTxtParser`; :func:`label_path_for` is also importable from
:mod:`yolo9000.data.yolo_txt`, where it lived first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolo9000.text_io import read_text, text_lines

from .records import IssueLog

__all__ = ["keypoint_values", "label_boxes", "label_file_for", "label_path_for", "read_label_rows"]


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


def label_file_for(image_path: Path) -> Path:
    """The label file an image's boxes are read from: :func:`label_path_for`'s when it exists, else a ``.txt`` of
    the image's name beside it when that exists (darknet's and LabelImg's layout where no ``images`` folder is
    renamed: a folder above the dataset named ``images``, or a few labels left beside their images), else
    :func:`label_path_for`'s (missing: a negative image)."""
    path = label_path_for(image_path)
    if path.is_file():
        return path
    beside = image_path.with_suffix(".txt")
    return beside if beside != path and beside.is_file() else path


def keypoint_values(kpt_shape: object, source: object) -> int:
    """Values a pose label line holds after its box: an Ultralytics dataset yaml's ``kpt_shape`` ``[N, D]`` (N
    keypoints of D = 2 (x, y) or 3 (x, y, visibility) values); ValueError naming ``source`` for another value."""
    ok = (
        isinstance(kpt_shape, (list, tuple))
        and len(kpt_shape) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in kpt_shape)
        and kpt_shape[0] >= 1
        and kpt_shape[1] in (2, 3)
    )
    if not ok:
        raise ValueError(
            f"{source}: kpt_shape must be [keypoints, 2 or 3] (Ultralytics' pose labels: x, y and optionally a "
            f"visibility per keypoint after the box), got {kpt_shape!r}"
        )
    return int(kpt_shape[0]) * int(kpt_shape[1])  # type: ignore[index]


def read_label_rows(
    label_path: Path, image_path: Path, num_classes: int, issues: IssueLog, keypoints: int = 0
) -> list[list[float]]:
    """The valid ``[cls, cx, cy, w, h]`` rows (normalised) of an image's label file.

    A missing or empty file is a negative image (noted); a polygon (segment) line ``cls x1 y1 x2 y2 ...`` becomes
    its bounding box (fixed); malformed lines and classes outside [0, ``num_classes``) are reported
    (``drop_box``). ``keypoints``: a pose dataset's values after each box (:func:`keypoint_values`; its lines are
    ``cls cx cy w h`` and then those, never polygons): the box is read, the keypoints left (noted).
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
        if keypoints and len(vals) == 5 + keypoints:  # pose: the box, then the keypoints
            issues.note(label_path, "pose label: its box read, its keypoints left (kpt_shape)")
            vals = vals[:5]
        elif not keypoints and len(vals) > 5 and len(vals) % 2 == 1 and vals[0].is_integer():  # a polygon
            xs, ys = np.asarray(vals[1::2]), np.asarray(vals[2::2])
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            issues.fixed(label_path, "polygon label converted to its bounding box", detail=f"line {n}")
            vals = [vals[0], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
        if len(vals) != 5 or not vals[0].is_integer():
            want = f" (kpt_shape: {5 + keypoints} values a line)" if keypoints else ""
            issues.report(label_path, "malformed label line", action="drop_box", detail=f"line {n}: {line!r}{want}")
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
