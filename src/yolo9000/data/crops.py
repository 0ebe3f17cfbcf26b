"""Object crops of a VOC detection dataset as an ImageFolder classification dataset (the CPU stand-in for ImageNet).

``out_dir/<split>/<class>/<image id>_<k>.jpg``: one square crop per kept box ``k`` of the image (the boxes that
survive :func:`~yolo9000.data.records.sanitize_boxes`, in annotation order), centred on the box with a context
margin, moved inside the image where it sticks out, resampled to ``side x side`` (``torchvision.ops.roi_align``,
deterministic). ``out_dir/crops.json`` records the settings and the counts; a folder with a matching
``crops.json`` is complete and left alone (idempotent). The folder is written under a temporary name and renamed
at the end, so an interrupted build leaves no half folder behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import roi_align

from .image_io import ImageDecodeError, read_record_image
from .records import IssueLog
from .voc import VOCParser

logger = logging.getLogger("yolo9000.data")

__all__ = ["MARKER", "build_crops", "crop_windows", "crops_complete", "format_counts"]

MARKER = "crops.json"


def crop_windows(boxes: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """Square windows around boxes.

    Side ``max(w, h) * (1 + 2 * margin)`` (``margin`` of the longer box side on each side), at most the shorter
    image side; centred on the box, then shifted inside the image.

    Args:
        boxes: float (N, 4) xyxy pixel boxes (0-based continuous coordinates).
        width, height: image size in pixels.
        margin: context on each side, as a fraction of the longer box side.

    Returns:
        float64 (N, 4) xyxy windows inside ``[0, width] x [0, height]``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = (boxes[:, 2:] - boxes[:, :2]).max(1) * (1.0 + 2.0 * margin)
    side = np.minimum(side, float(min(width, height)))
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    x0 = np.clip(centre[:, 0] - side / 2.0, 0.0, width - side)
    y0 = np.clip(centre[:, 1] - side / 2.0, 0.0, height - side)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def _settings(class_names: Sequence[str], splits: Sequence[str], margin: float, side: int, difficult: bool, q: int):
    return {
        "class_names": list(class_names),
        "splits": list(splits),
        "margin": float(margin),
        "side": int(side),
        "include_difficult": bool(difficult),
        "quality": int(q),
    }


def crops_complete(out_dir: str | Path, settings: dict[str, Any] | None = None) -> bool:
    """True when ``out_dir`` holds a finished build (its ``crops.json``) with ``settings`` when given (the same
    values; a build with more splits will do)."""
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return False
    try:
        saved = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if settings is None:
        return True
    have = saved.get("settings", {})
    same = all(have.get(k) == v for k, v in settings.items() if k != "splits")
    return same and set(settings.get("splits", [])) <= set(have.get("splits", []))  # a superset will do


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """Plain-text table: one row per split, one column per class, and the totals."""
    classes = list(next(iter(counts.values()), {}))
    width = max([5, *(len(c) for c in classes)])
    head = f"{'split':<8}" + "".join(f"{c:>{width + 2}}" for c in classes) + f"{'total':>{width + 2}}"
    rows = [head]
    for split, per in counts.items():
        rows.append(
            f"{split:<8}" + "".join(f"{per[c]:>{width + 2}}" for c in classes) + f"{sum(per.values()):>{width + 2}}"
        )
    return "\n".join(rows)


def build_crops(
    source: str | Path,
    out_dir: str | Path,
    class_names: Sequence[str] | None = None,
    splits: Sequence[str] = ("train", "val", "test"),
    margin: float = 0.15,
    side: int = 96,
    include_difficult: bool = True,
    quality: int = 95,
    on_error: str = "skip",
    force: bool = False,
) -> dict[str, dict[str, int]]:
    """Cut every box of the VOC dataset ``source`` (splits from ``ImageSets/Main``) into ``out_dir``.

    Args:
        source: VOC dataset root (Annotations/, JPEGImages/, ImageSets/Main/).
        out_dir: output ImageFolder root; replaced only when it holds an older build (its ``crops.json``).
        class_names: classes to keep (folder names); None: every object name of the annotations, sorted.
        splits: the ``ImageSets/Main`` splits to cut.
        margin: context on each side of the box, as a fraction of its longer side.
        side: output crop side in pixels.
        include_difficult: also crop boxes flagged ``difficult``.
        quality: JPEG quality.
        on_error: :class:`IssueLog` policy for bad annotations / images (``error`` | ``skip``).
        force: rebuild even when ``out_dir`` is complete.

    Returns:
        ``{split: {class: number of crops}}``.

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and was not written by this function.
    """
    source, out_dir = Path(source), Path(out_dir)
    names = list(class_names) if class_names is not None else VOCParser(source).discover_class_names()
    if not names:
        raise ValueError(f"{source}: no class names given or found in the annotations")
    settings = _settings(names, splits, margin, side, include_difficult, quality)
    if not force and crops_complete(out_dir, settings):
        counts = json.loads((out_dir / MARKER).read_text())["counts"]
        logger.info("crops in %s are complete (%s)", out_dir, MARKER)
        return {split: counts[split] for split in splits}  # a build of more splits: the ones asked for
    if out_dir.exists() and not (out_dir / MARKER).is_file() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists without {MARKER}: not written by build_crops, refusing to replace it")

    logger.info("cutting object crops of %s into %s (margin %.2f, side %d)", source, out_dir, margin, side)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    issues = IssueLog(on_error)  # type: ignore[arg-type]
    counts: dict[str, dict[str, int]] = {}
    try:
        for split in splits:
            counts[split] = _cut_split(
                source, tmp / split, split, names, margin, side, include_difficult, quality, issues
            )
        summary = {"source": str(source), "settings": settings, "counts": counts, "issues": issues.summary()}
        (tmp / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("crops per split and class:\n%s\n%s", format_counts(counts), issues.summary())
    return counts


def _cut_split(
    source: Path,
    out: Path,
    split: str,
    names: list[str],
    margin: float,
    side: int,
    include_difficult: bool,
    quality: int,
    issues: IssueLog,
) -> dict[str, int]:
    """Crops of one split into ``out/<class>/``; returns the count per class."""
    for n in names:
        (out / n).mkdir(parents=True, exist_ok=True)
    counts = np.zeros(len(names), np.int64)
    for rec in VOCParser(source, split).parse(names, issues):
        keep = np.ones(len(rec.boxes), bool) if include_difficult else ~rec.difficult
        if not keep.any():
            continue
        try:
            image = read_record_image(rec, notes=False)[0]  # as the detection data reads it (EXIF)
        except ImageDecodeError as e:
            issues.report(rec.image_path, str(e).split(" (")[0], action="skip_image", detail=str(e))
            continue
        h, w = image.shape[:2]
        boxes = rec.boxes
        if rec.width and rec.height and (rec.width, rec.height) != (w, h):
            reason = "annotation size differs from the image, boxes rescaled"
            issues.fixed(rec.image_path, reason, detail=f"{rec.width}x{rec.height} vs {w}x{h}")
            boxes = boxes * np.array([w / rec.width, h / rec.height] * 2, np.float32)
        index = np.flatnonzero(keep)
        windows = torch.from_numpy(crop_windows(boxes[index], w, h, margin)).float()
        rois = torch.cat([torch.zeros(len(index), 1), windows], dim=1)  # (K, 5): batch index, xyxy
        img = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        crops = roi_align(img, rois, output_size=(side, side), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        crops_u8 = crops.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (K, side, side, 3)
        labels = rec.labels[index]
        for k, crop, label in zip(index.tolist(), crops_u8, labels.tolist(), strict=True):
            Image.fromarray(crop).save(out / names[label] / f"{rec.image_id}_{k}.jpg", quality=quality)
        counts += np.bincount(labels, minlength=len(names))
    return dict(zip(names, counts.tolist(), strict=True))
