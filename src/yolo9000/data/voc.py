"""PASCAL VOC parser: ``root/Annotations/*.xml``, ``root/JPEGImages/``, ``ImageSets/Main/<split>.txt``."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .image_io import ImageDecodeError, image_size
from .records import DetectionRecord, IssueLog, class_index, hash_split, sanitize_boxes

logger = logging.getLogger("yolo9000.data")

DEFAULT_SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
_OTHER_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp")


class VOCParser:
    """Parse one split of a PASCAL VOC style dataset.

    Box coordinates in the XML are 1-based inclusive pixels; they become 0-based continuous xyxy
    (``xmin - 1, ymin - 1, xmax, ymax``), so a box touching the right border ends at ``width``.

    Args:
        root: dataset root holding ``Annotations/``, ``JPEGImages/`` and optionally ``ImageSets/Main/``.
        split: split name. With ``ImageSets/Main/<split>.txt`` present its ids are used; when the
            ``ImageSets`` folder is absent the ids of ``Annotations/*.xml`` are split deterministically by
            :func:`~yolo9000.data.records.hash_split` (``split_fractions``, ``split_seed``); ``None`` or
            ``"all"`` takes every annotation file.
        class_names: class list (index = position); normally given by the data module.
        image_dir, ann_dir: sub-folder names.
        image_ext: extension tried first for ``<id>``; the XML ``<filename>`` and common extensions next.
        split_fractions: fractions for the deterministic split (default train/val/test = 0.7/0.15/0.15).
        split_seed: seed of the deterministic split.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        class_names: Sequence[str] | None = None,
        image_dir: str = "JPEGImages",
        ann_dir: str = "Annotations",
        image_ext: str = ".jpg",
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names) if class_names is not None else None
        self.image_dir = self.root / image_dir
        self.ann_dir = self.root / ann_dir
        self.image_ext = image_ext
        self.split_fractions = dict(split_fractions or DEFAULT_SPLIT_FRACTIONS)
        self.split_seed = split_seed

    def __repr__(self) -> str:
        return f"VOCParser(root={str(self.root)!r}, split={self.split!r})"

    def discover_class_names(self) -> list[str] | None:
        """The class list given to the parser; without one, every object name found in ``Annotations/*.xml``
        (all files, so every split agrees), sorted. Unreadable XML files are left to :meth:`parse` to report."""
        if self.class_names is not None:
            return self.class_names
        if not self.ann_dir.is_dir():
            return None
        names: set[str] = set()
        for xml in sorted(self.ann_dir.glob("*.xml")):
            try:
                root = ET.parse(xml).getroot()
            except ET.ParseError:
                continue
            names.update((o.findtext("name") or "").strip() for o in root.iter("object"))
        names.discard("")
        if names:
            logger.info("%s: class names from the annotations (sorted): %s", self.root, sorted(names))
        return sorted(names) or None

    def ids(self) -> list[str]:
        """Image ids of the split (file stems)."""
        if not self.ann_dir.is_dir():
            raise FileNotFoundError(f"VOC annotation folder not found: {self.ann_dir}")
        sets = self.root / "ImageSets" / "Main"
        if self.split not in (None, "all") and (self.root / "ImageSets").is_dir():
            split_file = sets / f"{self.split}.txt"
            if not split_file.is_file():
                raise FileNotFoundError(f"split file not found: {split_file}")
            ids = [ln.split()[0] for ln in split_file.read_text().splitlines() if ln.strip()]
            return list(dict.fromkeys(ids))  # drop duplicates, keep order
        all_ids = sorted(p.stem for p in self.ann_dir.glob("*.xml"))
        if self.split not in (None, "all"):
            logger.info(
                "%s: no ImageSets folder, deterministic split %r by hash (fractions %s, seed %d)",
                self.root,
                self.split,
                self.split_fractions,
                self.split_seed,
            )
        return hash_split(all_ids, self.split, self.split_fractions, self.split_seed)

    def _find_image(self, image_id: str, filename: str | None) -> Path | None:
        cands = [self.image_dir / f"{image_id}{self.image_ext}"]
        if filename:
            cands.append(self.image_dir / Path(filename).name)
        cands += [self.image_dir / f"{image_id}{e}" for e in _OTHER_EXTS]
        for c in cands:
            if c.is_file():
                return c
        return None

    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """Parse the split; problems go to ``issues`` (default: a fresh ``"error"`` log)."""
        names = list(class_names) if class_names is not None else self.class_names
        if names is None:
            raise ValueError("VOCParser needs class_names (from the data config)")
        issues = issues if issues is not None else IssueLog("error")
        cls_idx = class_index(names)
        records = []
        for image_id in self.ids():
            rec = self._parse_one(image_id, cls_idx, names, issues)
            if rec is not None:
                records.append(rec)
        return records

    def _parse_one(
        self, image_id: str, cls_idx: dict[str, int], names: Sequence[str], issues: IssueLog
    ) -> DetectionRecord | None:
        xml_path = self.ann_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            issues.report(xml_path, "missing annotation file", action="skip_image")
            return None
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError) as e:
            issues.report(xml_path, "unparsable XML", action="skip_image", detail=str(e))
            return None
        image_path = self._find_image(image_id, root.findtext("filename"))
        if image_path is None:
            issues.report(
                xml_path,
                "missing image file",
                action="skip_image",
                detail=str(self.image_dir / f"{image_id}{self.image_ext}"),
            )
            return None

        width, height = _int_or_none(root.findtext("size/width")), _int_or_none(root.findtext("size/height"))
        if not width or not height or width <= 0 or height <= 0:
            try:
                width, height = image_size(image_path)
            except ImageDecodeError as e:
                issues.report(xml_path, "missing size and unreadable image", action="skip_image", detail=str(e))
                return None
            issues.fixed(xml_path, "missing or 0x0 <size>, size read from the image header", detail=f"{width}x{height}")

        boxes, labels, difficult = [], [], []
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in cls_idx:
                issues.report(xml_path, f"unknown class '{name}'", action="drop_box")
                continue
            bb = obj.find("bndbox")
            try:
                coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr,arg-type]
            except (AttributeError, TypeError, ValueError):
                issues.report(xml_path, "missing or malformed <bndbox>", action="drop_box", detail=name)
                continue
            boxes.append(coords)
            labels.append(cls_idx[name])
            difficult.append((_int_or_none(obj.findtext("difficult")) or 0) != 0)

        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        lab, dif = np.asarray(labels, np.int64), np.asarray(difficult, bool)
        # a box with xmax <= xmin (or ymax <= ymin) in the XML is degenerate (e.g. BCCD's 504,337,504,337),
        # even though the 1-based -> 0-based shift below would give it a 1-pixel extent
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        for k in np.flatnonzero(bad):
            issues.report(
                xml_path,
                "zero-area or inverted box",
                action="drop_box",
                detail=f"{names[lab[k]]} ({', '.join(f'{v:g}' for v in b[k].tolist())})",
            )
        b, lab, dif = b[~bad], lab[~bad], dif[~bad]
        b[:, :2] -= 1.0  # 1-based inclusive -> 0-based continuous
        b, lab, dif = sanitize_boxes(b, lab, dif, width, height, xml_path, issues, names)
        return DetectionRecord(image_path, image_id, width, height, b, lab, dif)


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text.strip()))
    except ValueError:
        return None
