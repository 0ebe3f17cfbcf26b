"""Classification data in the ImageFolder layout: ``root/<split>/<class>/<image>`` (ImageNet: ``train/<wnid>/*.JPEG``),
or a split's images in one folder with a labels file (ImageNet's flat ``val/`` with Kaggle's
``LOC_val_solution.csv`` or the devkit's ``ILSVRC2012_validation_ground_truth.txt``, a Kaggle ``filename,label``
CSV, a ``name label`` text list): :func:`read_labels_file`.

The class list is, in order of precedence: ``class_names`` from the config, ``class_file`` (one name per line,
e.g. darknet's ``data/imagenet.labels.list``; blank lines and ``#`` comments ignored), or the sorted folder
names of the training split. Data problems go through the detection pipeline's
:class:`~yolo9000.data.records.IssueLog` (``on_error: error`` raises :class:`~yolo9000.data.records.DataError`
naming the file, ``skip`` logs + counts + skips): images in a folder that is not in the class list, images
outside any class folder, and (at load time) missing / corrupt / unreadable images, which the collate drops.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from yolo9000.models import STRIDE
from yolo9000.text_io import read_text, text_lines

from .classify_transforms import ClassificationTransform, ClassifyAugmentConfig
from .dataset import stack_nhwc
from .image_io import (
    CONVERTED,
    ISSUE_FLAGS,
    LOAD_FAILED,
    NOTED,
    ImageDecodeError,
    LoadCounters,
    LoadFlags,
    conversion_issue,
    load_time_issues,
    read_image_notes,
)
from .records import (
    Issue,
    IssueLog,
    PackedSequence,
    PackedStrings,
    class_index,
    write_issue_report,
)
from .sharded import ShardedDataModule, default_report_path
from .sharded import plain as _plain

logger = logging.getLogger("yolo9000.data")

__all__ = [
    "IMAGE_EXTENSIONS",
    "ClassificationCollate",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ClassificationRecord",
    "ImageFolderParser",
    "read_class_file",
    "read_labels_file",
    "stratified_subset",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)
_STAT_KEYS = ("loaded", "skipped_images")
_NOT_DATA = frozenset({"Thumbs.db", "desktop.ini"})  # files that operating systems leave in folders (not reported)


@dataclass(frozen=True)
class ClassificationRecord:
    """One labelled image: its path and class index."""

    path: Path
    label: int


class PackedClassificationRecords(PackedSequence[ClassificationRecord]):
    """:class:`ClassificationRecord` s held as one byte array of paths and an array of labels, each record built
    when read: forked loader workers share them (a list costs ~680 bytes of Python objects an image, which every
    worker copies as it reads: ImageNet's 1.28 M images, ~0.9 GB a worker). ``labels``: int64 (N,)."""

    def __init__(self, records: Sequence[ClassificationRecord]) -> None:
        self._paths = PackedStrings([r.path for r in records])
        self.labels = np.array([r.label for r in records], np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def _item(self, i: int) -> ClassificationRecord:
        return ClassificationRecord(Path(self._paths[i]), int(self.labels[i]))


def nfc(name: str) -> str:
    """``name`` in Unicode's composed form (NFC): a folder name written decomposed (macOS archives: ``a`` + a
    combining umlaut) names the same class as its composed spelling."""
    return unicodedata.normalize("NFC", name)


def read_class_file(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines and ``#`` comments skipped; a UTF-8 byte-order mark dropped; names
    in Unicode's composed form); raises on duplicates."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class file not found: {path}")
    names = [nfc(ln.split("#", 1)[0].strip()) for ln in text_lines(read_text(path))]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"class file {path} lists no classes")
    class_index(names)  # duplicates raise
    return names


_IMAGE_COLUMNS = ("imageid", "image_id", "filename", "file_name", "file", "image", "path", "fname", "id", "name")
_LABEL_COLUMNS = ("predictionstring", "label", "class", "class_name", "category", "target", "wnid", "synset", "labels")
# found for a flat val folder in the root or up to 3 folders above it: Kaggle's ImageNet, image-net.org's devkit
LABELS_FILES = (
    "LOC_val_solution.csv",
    "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
    "ILSVRC2012_validation_ground_truth.txt",
)
DEVKIT_META = ("meta.mat", "meta_clsloc.mat")  # the devkit's class table (ILSVRC2012_ID -> WNID), beside its labels


def read_labels_file(path: str | Path) -> list[tuple[str, str]]:
    """(image, class) pairs of a labels file, in file order.

    * CSV (``.csv``) with a header: the image column (``ImageId``, ``filename``, ``file``, ``image``, ``path``, ``id``,
      ...) and the class column (``PredictionString``: its first word, the wnid of ImageNet's
      ``LOC_val_solution.csv``; ``label``, ``class``, ``category``, ...), any case; without a known header, the first
      two columns;
    * ImageNet's devkit ground truth (``ILSVRC2012_validation_ground_truth.txt``: one number a line, the class of
      ``ILSVRC2012_val_<line number, 8 digits>``, an ``ILSVRC2012_ID`` of the devkit's own order): the classes are
      the wnids that the devkit's ``meta.mat`` beside it gives those ids (:func:`read_devkit_classes`);
    * any other file: one ``<image> <class>`` line each (blank lines and ``#`` comments skipped).

    The image is a file name or a path relative to the split folder, with or without its extension; the class a
    name, or a class index (digits) where no class has that name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    text = read_text(path)
    if path.suffix.lower() != ".csv":
        rows = [ln.split("#", 1)[0].split() for ln in text_lines(text)]
        filled = [r for r in rows if r]
        if filled and all(len(r) == 1 and r[0].isdigit() for r in filled):  # the devkit's: one class id a line
            while not rows[-1]:
                rows.pop()  # blank lines at the end
            blank = [n for n, r in enumerate(rows, start=1) if not r]
            if blank:  # the n-th line labels the n-th image: a line left out would shift every label after it
                raise ValueError(
                    f"{path}: lines {blank[:5]} hold no class id; in ImageNet's devkit ground truth line n labels "
                    "ILSVRC2012_val_<n>, so every line must hold one"
                )
            return _devkit_labels(path, [int(r[0]) for r in rows])
        bad = [i + 1 for i, r in enumerate(rows) if r and len(r) < 2]
        if bad:
            raise ValueError(f"{path}: lines {bad[:5]} do not hold '<image> <class>'")
        return [(r[0], _line_class(ln)) for ln, r in zip(text_lines(text), rows, strict=True) if r]
    table = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
    if not table:
        raise ValueError(f"{path}: no rows")
    head = [c.strip().lower() for c in table[0]]
    img = next((head.index(c) for c in _IMAGE_COLUMNS if c in head), None)
    lab = next((head.index(c) for c in _LABEL_COLUMNS if c in head), None)
    if img is None or lab is None:
        if img is not None or lab is not None:
            raise ValueError(f"{path}: columns {table[0]}: no {'class' if lab is None else 'image'} column")
        img, lab, table = 0, 1, [None, *table]  # no header: the first two columns
    out = []
    for i, row in enumerate(table[1:], start=2):
        if len(row) <= max(img, lab) or not row[img].strip() or not row[lab].strip():
            raise ValueError(f"{path}: row {i} ({row}) has no image or class")
        cls = row[lab].split()[0] if head[lab] == "predictionstring" else " ".join(row[lab].split())
        out.append((row[img].strip(), cls))  # only ImageNet's PredictionString is cut to its first word (the wnid)
    return out


def _line_class(line: str) -> str:
    """The class of a labels file's ``<image> <class>`` line: its second column where tabs separate the columns
    (Tiny ImageNet's ``val_annotations.txt``: the box after it), else the rest of the line ("golden retriever"),
    unless what follows the second word is numbers only (a box, a score: then the second word)."""
    line = line.split("#", 1)[0]
    if "\t" in line:
        return line.split("\t")[1].strip()
    words = line.split()
    if len(words) > 2 and all(_is_number(w) for w in words[2:]):
        return words[1]
    return " ".join(words[1:])


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def read_devkit_classes(meta: str | Path) -> dict[int, str]:
    """``ILSVRC2012_ID`` -> wnid of the ImageNet devkit's class table (``data/meta.mat``; ILSVRC2014's
    ``meta_clsloc.mat``): its ``synsets`` struct array, read with SciPy (albumentations' dependency)."""
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - albumentations requires SciPy
        raise ImportError(f"{meta}: reading the ImageNet devkit's class table needs SciPy (pip install scipy)") from e
    try:
        synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
        ids, wnids = np.atleast_1d(synsets["ILSVRC2012_ID"]), np.atleast_1d(synsets["WNID"])
    except Exception as e:  # noqa: BLE001 - SciPy's MatReadError (a truncated file) subclasses none of ours
        raise ValueError(
            f"{meta}: not the ImageNet devkit's class table (a 'synsets' struct with ILSVRC2012_ID and "
            f"WNID fields): {e}"
        ) from None
    return {int(i): str(w) for i, w in zip(ids, wnids, strict=True)}


def _devkit_labels(path: Path, ids: list[int]) -> list[tuple[str, str]]:
    """(``ILSVRC2012_val_<n>``, wnid) of the devkit ground truth ``path`` whose n-th line holds ``ids[n - 1]``."""
    meta = next((path.parent / m for m in DEVKIT_META if (path.parent / m).is_file()), None)
    if meta is None:
        raise FileNotFoundError(
            f"{path}: one number a line, ImageNet's devkit ground truth; its numbers are the devkit's class ids, which "
            f"only the devkit's {DEVKIT_META[0]} maps to wnids: none beside it (unpack ILSVRC2012_devkit_t12.tar.gz "
            "whole, or give a labels file of '<image> <class>' lines)"
        )
    wnid = read_devkit_classes(meta)
    unknown = sorted(set(ids) - set(wnid))
    if unknown:
        raise ValueError(f"{path}: class ids {unknown[:5]} are not in {meta} (another devkit's table?)")
    logger.info("%s: ImageNet's devkit ground truth, %d images, classes by %s", path, len(ids), meta)
    return [(f"ILSVRC2012_val_{n:08d}", wnid[i]) for n, i in enumerate(ids, start=1)]


def _loose_hint(split_dir: Path, split: str) -> str:
    """`` (N images lie directly in it: ...)`` for a split folder holding images outside class folders, else ``""``."""
    loose = sum(1 for e in os.scandir(split_dir) if e.is_file() and _is_image(e.name))
    if not loose:
        return ""
    return (
        f" ({loose} images lie directly in it: sort them into one folder per class, e.g. ImageNet's val/<wnid>/*.JPEG,"
        f" or name their classes in a labels file: data.labels_files.{split}=<CSV of filename,label, or ImageNet's "
        "LOC_val_solution.csv or devkit ILSVRC2012_validation_ground_truth.txt>)"
    )


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class ImageFolderParser:
    """One split of an ImageFolder tree: ``root/<split>/<class>/<image>``.

    Args:
        root: dataset root.
        split: sub-folder of ``root`` holding the class folders (None: ``root`` itself).
    """

    def __init__(self, root: str | Path, split: str | None = "train") -> None:
        self.root = Path(root)
        self.split = split
        self.split_dir = self.root / split if split else self.root

    def __repr__(self) -> str:
        return f"ImageFolderParser(root={str(self.root)!r}, split={self.split!r})"

    def _check(self) -> None:
        if not self.split_dir.is_dir():
            raise FileNotFoundError(f"image folder split not found: {self.split_dir}")

    def folder_names(self) -> list[str]:
        """The names of the class folders (hidden folders ignored), as they are on disk, sorted by their composed
        Unicode form (:func:`nfc`): the same class order whether an archive wrote 'Pläte' composed or decomposed, as
        macOS does (sorted as stored, 'Pläte' and 'Plb' came in either order)."""
        self._check()
        names = [e.name for e in os.scandir(self.split_dir) if e.is_dir() and not e.name.startswith(".")]
        return sorted(names, key=lambda n: (nfc(n), n))

    def folders_with_images(self) -> list[str]:
        """:meth:`folder_names` holding at least one image directly (an empty class folder has no class)."""
        return [f for f in self.folder_names() if any(_is_image(e.name) for e in os.scandir(self.split_dir / f))]

    def parse_labels(
        self, labels: Sequence[tuple[str, str]], class_names: Sequence[str], issues: IssueLog | None = None
    ) -> list[ClassificationRecord]:
        """The split folder's images named by ``labels`` (:func:`read_labels_file`: (image, class) pairs), in the
        list's order. An image the folder lacks and a class not in ``class_names`` are reported to ``issues`` and
        skipped; the folder's images the list does not name are left out (counted in the log: splits may share
        a folder, each with its own list)."""
        self._check()
        issues = issues if issues is not None else IssueLog("error")
        idx = {nfc(name): i for name, i in class_index(class_names).items()}
        files = {e.name for e in os.scandir(self.split_dir) if e.is_file() and _is_image(e.name)}
        by_stem: dict[str, str] = {}
        for f in sorted(files):
            by_stem.setdefault(os.path.splitext(f)[0], f)
        records: list[ClassificationRecord] = []
        used: set[str] = set()
        labelled: dict[str, int] = {}  # file -> the class its first row gave
        conflicted: set[str] = set()  # files listed with two classes: left out
        for name, cls in labels:
            file = name if name in files else by_stem.get(name)
            if file is None and "/" in name and (self.split_dir / name).is_file():
                file = name  # a path below the split folder
            label = idx.get(nfc(cls))
            if label is None and cls.isdigit() and int(cls) < len(class_names):
                label = int(cls)  # a class index (Caffe's val.txt)
            if file is None:
                issues.report(self.split_dir / name, "missing image file (named in the labels file)")
            elif label is None:
                issues.report(self.split_dir / file, "class not in the class list", detail=f"label {cls!r}")
            elif file in labelled:  # listed again: once (twice would weigh it double, or teach it two classes)
                first = class_names[labelled[file]]
                if label == labelled[file]:
                    issues.note(self.split_dir / file, "listed twice in the labels file, used once", detail=first)
                elif file not in conflicted:
                    conflicted.add(file)
                    issues.report(
                        self.split_dir / file,
                        "listed with two classes in the labels file: its class is unknown",
                        detail=f"{first!r} and {class_names[label]!r}",
                    )
            else:
                labelled[file] = label
                records.append(ClassificationRecord(self.split_dir / file, label))
            used.add(file or name)
        if conflicted:
            dropped = {self.split_dir / f for f in conflicted}
            records = [r for r in records if r.path not in dropped]
        unlisted = sorted(files - used)
        if unlisted:  # another split's images in a shared folder, or left out: not a problem, said once
            logger.info(
                "%s: %d images not named in the labels file, not used: %s", self.split_dir, len(unlisted), unlisted[:3]
            )
        return records

    def parse(self, class_names: Sequence[str], issues: IssueLog | None = None) -> list[ClassificationRecord]:
        """Every image of the split whose folder is in ``class_names``, in (folder, file name) order.

        Images in unknown folders and images directly under the split folder are reported to ``issues``
        (default: a fresh ``"error"`` log) and skipped. Files without an image extension are left out, counted in
        one log line with examples (a ``.heic`` photo is not read). Folder and class names match in Unicode's
        composed form.
        """
        self._check()
        issues = issues if issues is not None else IssueLog("error")
        idx = {nfc(name): i for name, i in class_index(class_names).items()}
        other: list[str] = []  # files without an image extension (not hidden)
        loose = sorted(e.name for e in os.scandir(self.split_dir) if e.is_file() and _is_image(e.name))
        for name in loose:
            issues.report(self.split_dir / name, "image outside a class folder", action="skip_image")
        records: list[ClassificationRecord] = []
        for folder in self.folder_names():
            entries = list(os.scandir(self.split_dir / folder))
            files = sorted(e.name for e in entries if e.is_file() and _is_image(e.name))
            other += [
                f"{folder}/{e.name}"
                for e in entries
                if e.is_file() and not e.name.startswith(".") and not _is_image(e.name) and e.name not in _NOT_DATA
            ]
            for e in sorted((e for e in entries if e.is_symlink() and not e.is_file() and not e.is_dir()), key=str):
                if _is_image(e.name):  # a link whose target is gone
                    issues.report(Path(e.path), "missing image (a broken link)", action="skip_image")
            for sub in sorted(e.name for e in entries if e.is_dir()):
                inside = sorted(p for p in (self.split_dir / folder / sub).rglob("*") if _is_image(p.name))
                for path in inside:  # every image not read
                    issues.report(
                        path,
                        "image in a sub-folder of a class folder (not read)",
                        action="skip_image",
                        detail="images must lie directly in <split>/<class>/",
                    )
            label = idx.get(nfc(folder))
            if label is None:
                for name in files:
                    issues.report(
                        self.split_dir / folder / name,
                        "class folder not in the class list",
                        action="skip_image",
                        detail=f"folder {folder!r}",
                    )
                continue
            records.extend(ClassificationRecord(self.split_dir / folder / n, label) for n in files)
        if other:
            kinds = sorted({os.path.splitext(f)[1].lower() or "(no extension)" for f in other})
            logger.info(
                "%s: %d files without an image extension (%s) left out, e.g. %s; read: %s",
                self.split_dir,
                len(other),
                ", ".join(kinds[:8]),
                other[:3],
                " ".join(sorted(IMAGE_EXTENSIONS)),
            )
        return records


def stratified_subset(records: Sequence[ClassificationRecord], n: int) -> list[ClassificationRecord]:
    """The first ``n`` records in round-robin class order (first image of every class, then the second, ...),
    so a small ``max_images`` keeps every class. Deterministic; the kept records stay in input order."""
    if n >= len(records):
        return list(records)
    labels = np.asarray([r.label for r in records], np.int64)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty_like(labels)
    rank[order] = np.arange(len(labels)) - starts  # position of each record within its class
    keep = np.lexsort((labels, rank))[:n]
    return [records[i] for i in np.sort(keep)]


class ClassificationDataset(Dataset):
    """Images + class labels, transformed to a square input.

    Unreadable images (missing, empty, corrupt, truncated) go to ``issues``: under ``"error"`` a
    :class:`DataError` is raised, under ``"skip"`` the sample is ``None`` (dropped by the collate), logged with the
    file and the reason and counted (counters shared by the DataLoader workers, see :meth:`stats`).

    Args:
        records: the labelled images.
        transform: a :class:`ClassificationTransform` (uint8 (H, W, 3) -> uint8 (S, S, 3)).
        issues: problem log (default: an ``"error"`` log).
    """

    def __init__(
        self,
        records: Sequence[ClassificationRecord],
        transform: ClassificationTransform,
        issues: IssueLog | None = None,
    ) -> None:
        # packed: shared by forked loader workers, not copied
        self.records = (
            records if isinstance(records, PackedClassificationRecords) else PackedClassificationRecords(records)
        )
        self.transform = transform
        self.issues = issues if issues is not None else IssueLog("error")
        self._stats = LoadCounters(_STAT_KEYS)
        # per-image load-time flags (LOAD_FAILED, CONVERTED), shared with the DataLoader workers
        self._load_flags = LoadFlags(len(self.records))
        self._flags = self._load_flags.flags

    def __len__(self) -> int:
        return len(self.records)

    def _flag(self, index: int, bit: int) -> bool:
        """Set a load-time flag of an image (visible to every process); True when it was not set before."""
        return self._load_flags.set(index, bit)

    def load_issues(self) -> list[Issue]:
        """Load-time issues found by every process (DataLoader workers included) since the last call, each naming
        its image (unreadable images, conversions to RGB), re-derived from the shared per-image flags."""
        flags = self._flags[: len(self.records)].numpy() & ISSUE_FLAGS  # (a copy)
        seen = getattr(self, "_flags_seen", None)  # what earlier calls re-derived (this process only)
        new = flags & ~seen if seen is not None else flags
        self._flags_seen = flags
        out: list[Issue] = []
        for i in np.flatnonzero(new).tolist():
            out += load_time_issues(self.records[i].path, int(new[i]))
        return out

    def unreadable_images(self) -> int:
        """How many distinct images failed to load so far, in any process (the shared ``LOAD_FAILED`` flags)."""
        return int(np.count_nonzero(self._flags[: len(self.records)].numpy() & LOAD_FAILED))

    def stats(self) -> dict[str, int]:
        """Counters over all processes: loaded, skipped_images."""
        return self._stats.totals()

    def class_counts(self, num_classes: int) -> np.ndarray:
        """int64 (num_classes,): images per class."""
        return np.bincount(self.records.labels, minlength=num_classes)  # int64 labels: int64 counts

    def __getitem__(self, item: int | tuple[int, int, int]) -> dict[str, Any] | None:
        """``{"image": uint8 (3, S, S) RGB, "label": int, "path": str}``, or None for a skipped image. ``item`` is
        an index or the training batch sampler's ``(index, size, seed)`` (the size is the transform's own; the seed
        fixes the sample's augmentation)."""
        index, _, seed = item if isinstance(item, tuple) else (item, None, None)
        rec = self.records[int(index)]
        try:
            # the conversions are checked at the first load of each image (in any process), not at every epoch
            image, conversions = read_image_notes(rec.path, notes=self._flag(int(index), NOTED))
        except ImageDecodeError as e:
            self._stats.add("skipped_images")
            if self._flag(int(index), LOAD_FAILED) or self.issues.policy == "error":  # logged once per image
                self.issues.report(rec.path, e.reason, action="skip_image", detail=e.detail)
            return None
        if conversions and self._flag(int(index), CONVERTED):
            for reason, detail in conversions:
                self.issues.add(conversion_issue(rec.path, reason, detail))
        out = self.transform(image, seed=seed)
        self._stats.add("loaded")
        return {
            # (3, S, S) view of the HWC pixels: no transposing copy (the collate stacks them NHWC, the module's
            # float conversion writes the network's layout in one pass), as the detection samples
            "image": torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1),
            "label": rec.label,
            "path": str(rec.path),
        }


class ClassificationCollate:
    """Samples -> ``{"images": uint8 (B, 3, S, S) with NHWC strides, "labels": int64 (B,), "paths": list[str]}``;
    ``None`` (skipped) samples are dropped (B = the kept ones; 0 when every image was unreadable: the module skips
    such a batch)."""

    def __call__(self, samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [s for s in samples if s is not None]
        if len(kept) < len(samples):
            # each image was reported once by the dataset (and every load counted): a line a batch would repeat it
            logger.debug("collate: dropped %d unreadable sample(s) from the batch", len(samples) - len(kept))
        if not kept:  # every image unreadable (data.on_error=skip): an empty batch, which the module skips
            return {
                "images": torch.zeros(0, 3, 0, 0, dtype=torch.uint8),
                "labels": torch.zeros(0, dtype=torch.long),
                "paths": [],
            }
        return {
            "images": stack_nhwc([s["image"] for s in kept]),  # uint8, NHWC strides: the module scales them
            "labels": torch.tensor([s["label"] for s in kept], dtype=torch.long),
            "paths": [s["path"] for s in kept],
        }


_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
    None: ("train", "val", "test"),
}


class ClassificationDataModule(ShardedDataModule):
    """ImageFolder classification data (keys documented in conf/data/imagenet.yaml and bccd_crops.yaml).

    Args:
        root: dataset root holding one folder per split.
        train_split, val_split: split folder names.
        test_split: test split folder; None: ``test/`` when it holds class folders with images, else the
            ``val_split`` images (ImageNet has no labelled test set; logged, as the metrics are then not held out
            from the checkpoint choice).
        class_names: class list (index = position); None: ``class_file``, else the training folders, sorted.
        class_file: text file with one class name per line (used when ``class_names`` is None).
        batch_size: training batch size per process; eval_batch_size: eval batch size (None: batch_size).
        num_workers, pin_memory, persistent_workers: DataLoader settings.
        img_size: network input side (train crops and eval centre crops; a multiple of 32).
        augment: :class:`~yolo9000.data.classify_transforms.ClassifyAugmentConfig` keys.
        on_error: ``"error"`` (raise DataError on bad input) or ``"skip"`` (log, count, skip).
        max_images: keep only N images of each split (int) or per split ({train: N, ...}), every class kept
            (see :func:`stratified_subset`).
        drop_last: drop the last incomplete training batch.
        seed: seed of the training shuffle (epoch-dependent, identical on all ranks).
        build_from: a VOC dataset to cut object crops from when ``root`` is not a complete crop folder
            (:func:`yolo9000.data.crops.build_crops`, run by :meth:`prepare_data`); None: ``root`` must exist.
        crops: keys of :func:`~yolo9000.data.crops.build_crops` (margin, side, include_difficult, quality).
        labels_files: per split (``train`` / ``val`` / ``test``) a labels file (:func:`read_labels_file`; relative to
            ``root``) naming the images of that split's folder and their classes, for splits whose images lie in one
            folder. Unset for a split whose folder holds images but no class folders: Kaggle's
            ``LOC_val_solution.csv`` or the devkit's ground truth (:data:`LABELS_FILES`) in ``root`` or up to three
            folders above it is used, logged.
    """

    def __init__(
        self,
        root: str,
        train_split: str | None = "train",
        val_split: str | None = "val",
        test_split: str | None = None,
        class_names: Sequence[str] | None = None,
        class_file: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        img_size: int = 224,
        augment: Mapping[str, Any] | ClassifyAugmentConfig | None = None,
        on_error: str = "skip",
        max_images: int | Mapping[str, int] | None = None,
        drop_last: bool = False,
        seed: int = 0,
        build_from: str | None = None,
        crops: Mapping[str, Any] | None = None,
        labels_files: Mapping[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        self.labels_files = {k: v for k, v in dict(_plain(labels_files) or {}).items() if v}
        if set(self.labels_files) - {"train", "val", "test"}:
            raise ValueError(f"labels_files: keys are train / val / test, got {sorted(self.labels_files)}")
        self.root = Path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split or val_split}
        self._test_given = bool(test_split)
        self._test_found = False  # test_split=null found a test/ folder of class folders (logged at setup)
        if not test_split and build_from is None and val_split != "test":
            found = self.root / "test"
            if found.is_dir() and ImageFolderParser(self.root, "test").folders_with_images():
                self.splits["test"], self._test_found = "test", True
        self._class_source = ""  # where the class list came from (logged at setup)
        self._labels_for: dict[str, Path | None] = {}  # each split's labels file (None: class folders), once
        self._logged_classes = False  # the classes and split notes are logged once
        self._class_names = [str(c) for c in _plain(class_names)] if class_names is not None else None
        self.class_file = class_file
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size is not None else self.batch_size
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        if int(img_size) % STRIDE:
            raise ValueError(f"img_size must be a multiple of {STRIDE}, got {img_size}")
        self.img_size = int(img_size)
        self.augment = ClassifyAugmentConfig.from_mapping(_plain(augment))
        self.issues = IssueLog(on_error)  # type: ignore[arg-type]
        self.on_error = on_error
        self.max_images = _plain(max_images)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.build_from = build_from
        self.crops = dict(_plain(crops) or {})
        self.datasets: dict[str, ClassificationDataset] = {}
        self.report_file: Path | None = None  # where the full issue list goes; None: <Hydra run dir>/data_issues.txt
        self._built: dict[str, ClassificationDataset] = {}  # by split folder: test = val shares one dataset

    # ------------------------------------------------------------------------------------ preparation
    def prepare_data(self) -> None:
        """Cut the object crops of ``build_from`` into ``root`` unless it already holds them (idempotent)."""
        if self.build_from is None:
            return
        from .crops import MARKER, build_crops

        splits = tuple(dict.fromkeys(s for s in self.splits.values() if s))
        hint = "for class folders of your own use data=imagenet data.root=<folder> (this config cuts crops)"
        if self.root.is_dir() and not (self.root / MARKER).is_file() and any(self.root.iterdir()):
            raise FileExistsError(
                f"data.root={self.root} holds other files than object crops (no {MARKER}): this data config cuts the "
                f"crops of {self.build_from} into its root; {hint}"
            )
        if not (self.root / MARKER).is_file():
            logger.warning(
                "data.root=%s has no crops yet: cutting those of %s into it (%s)", self.root, self.build_from, hint
            )
        build_crops(self.build_from, self.root, class_names=self._class_names, splits=splits, **self.crops)

    @property
    def class_names(self) -> list[str]:
        """Class names (index = position)."""
        if self._class_names is None:
            if self.class_file:
                self._class_names = self._read_class_file()
            else:
                if self.splits["train"] is None:
                    raise ValueError("no class_names, class_file or train_split to take the classes from")
                self.prepare_data()
                parser = ImageFolderParser(self.root, self.splits["train"])
                labels = self._labels_file("train")
                if labels is not None:  # a flat training folder: the classes its labels file names, sorted
                    self._class_names = sorted({nfc(c) for _, c in read_labels_file(labels)})
                    self._class_source = f"the sorted classes of {labels}"
                    return self._class_names
                names = parser.folders_with_images()
                empty = sorted(set(parser.folder_names()) - set(names))
                if empty:
                    logger.warning(
                        "%s: class folders without an image left out of the classes: %s", parser.split_dir, empty[:10]
                    )
                if not names:
                    raise ValueError(
                        f"no class folders with images in {parser.split_dir}{_loose_hint(parser.split_dir, 'train')}"
                    )
                self._class_names = [nfc(n) for n in names]
                self._class_source = f"the sorted folder names of {parser.split_dir}"
        elif not self._class_source:
            self._class_source = "data.class_names"
        return self._class_names

    def _read_class_file(self) -> list[str]:
        """The ``class_file``'s names; a file of ``<wnid> <description>`` lines (ImageNet's
        ``LOC_synset_mapping.txt``) whose first words, not whole lines, name the training folders gives those words."""
        names = read_class_file(self.class_file)  # type: ignore[arg-type]
        self._class_source = f"data.class_file={self.class_file}"
        train = self.splits["train"]
        if train is None or not (self.root / train).is_dir():
            return names
        folders = {nfc(f) for f in ImageFolderParser(self.root, train).folder_names()}
        first = [n.split()[0] for n in names]
        if not folders & set(names) and folders & set(first) and len(set(first)) == len(first):
            self._class_source += " (the first word of each line: the folder names)"
            return first
        return names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _labels_file(self, split: str) -> Path | None:
        """The labels file of ``split`` (:func:`read_labels_file`): ``labels_files[split]``, else for a folder of
        images without class folders the first of :data:`LABELS_FILES` in ``root`` or up to three folders above
        (Kaggle's ``ILSVRC/Data/CLS-LOC/val/`` beside the CSV at the top; the devkit unpacked beside ``val/``); None:
        class folders."""
        if split not in self._labels_for:
            self._labels_for[split] = self._find_labels_file(split)
        return self._labels_for[split]

    def _find_labels_file(self, split: str) -> Path | None:
        """:meth:`_labels_file`, looked up (a found one logged)."""
        given = self.labels_files.get(split)
        if given:
            path = Path(given) if Path(given).is_absolute() else self.root / given
            if not path.is_file():
                raise FileNotFoundError(f"data.labels_files.{split}={given}: no file {path}")
            return path
        folder = self.splits[split]
        split_dir = self.root / folder if folder else None
        if split_dir is None or not split_dir.is_dir() or ImageFolderParser(self.root, folder).folders_with_images():
            return None
        if not any(e.is_file() and _is_image(e.name) for e in os.scandir(split_dir)):
            return None
        for up in [self.root, *list(self.root.resolve().parents)[:3]]:
            for name in LABELS_FILES:
                if (up / name).is_file():
                    logger.info(
                        "data.%s: %s holds images without class folders: their classes from %s",
                        split,
                        split_dir,
                        up / name,
                    )
                    return up / name
        return None

    # ------------------------------------------------------------------------------------------ setup
    def _build(self, split: str) -> ClassificationDataset | None:
        folder = self.splits[split]
        if folder is None:
            return None
        key = f"{folder}:{split == 'train'}:{self._limit(split)}"
        if key in self._built:
            return self._built[key]
        if self.build_from is not None and not (self.root / folder).is_dir():
            self.prepare_data()
        self._check_split(split)
        parser = ImageFolderParser(self.root, folder)
        labels = self._labels_file(split)
        folders = {nfc(f) for f in parser.folder_names()} if labels is None else set()
        unknown = sorted(folders - set(self.class_names))
        known = folders & set(self.class_names)
        if split == "train" and unknown and len(known) < len(self.class_names):
            fix = (
                f"data.class_file={self.class_file} lists other names than the class folders: fix the file, or "
                "data.class_file=null to take the sorted folder names"
                if self.class_file and self._class_source.startswith("data.class_file")
                else "data.class_names / data.class_file do not describe this dataset (a config such as bccd_crops "
                "sets them): data=imagenet data.class_names=null data.class_file=null takes the sorted folder names"
            )
            raise ValueError(
                f"data.train: class folders {unknown[:5]} of {self.root / folder} are not in the class list "
                f"{self.class_names[:10]} and {len(self.class_names) - len(known)} listed classes have no folder: "
                + fix
            )
        if labels is None:
            records = parser.parse(self.class_names, self.issues)
        else:
            records = parser.parse_labels(read_labels_file(labels), self.class_names, self.issues)
        limit = self._limit(split)
        if limit is not None:
            records = stratified_subset(records, limit)
        if not records and labels is not None:
            raise ValueError(
                f"data.{split}: {labels} names no readable image of {self.root / folder} (see the warnings)"
            )
        if not records:
            hint = _loose_hint(self.root / folder, split)
            if folders and not known:  # folders full of images, none named as a class (other names than train's)
                hint += (
                    f" (none of its folders {sorted(folders)[:5]}{', ...' if len(folders) > 5 else ''} is a class of "
                    f"the class list {self.class_names[:5]}{', ...' if len(self.class_names) > 5 else ''}: name them "
                    "as the training classes)"
                )
            raise ValueError(f"data.{split}: no images in the class folders of {self.root / folder}{hint}")
        transform = ClassificationTransform(split == "train", self.img_size, self.augment)
        ds = ClassificationDataset(records, transform, self.issues)
        counts = ds.class_counts(self.num_classes)
        empty = [self.class_names[i] for i in np.flatnonzero(counts == 0)]
        expected = self.expected_empty_classes(split)
        for level, names, note in (
            (logging.WARNING, [c for c in empty if c not in expected], ""),
            (logging.INFO, [c for c in empty if c in expected], ", as expected"),
        ):
            if names:
                n = len(names)
                es = "" if n == 1 else "es"
                logger.log(level, "data.%s: %d class%s without images%s: %s", split, n, es, note, names[:10])
        self._built[key] = ds
        return ds

    def expected_empty_classes(self, split: str) -> set[str]:
        """Classes of ``split`` that are expected to have no image (logged as such, not warned about): none here; a
        data module whose labels are tree nodes names the nodes that are never (or, in a split, not) labels."""
        return set()

    def _check_split(self, split: str) -> None:
        """The folder of ``split`` exists, else FileNotFoundError naming it, the key and the folders there are."""
        folder = self.splits[split]
        if folder is None or (self.root / folder).is_dir():
            return
        there = sorted(e.name for e in os.scandir(self.root) if e.is_dir()) if self.root.is_dir() else None
        raise FileNotFoundError(
            f"data.{split}_split={folder}: no folder {self.root / folder} "
            + (
                f"({self.root} holds {there[:8]}); set data.{split}_split=<one of them>"
                if there is not None
                else f"({self.root} does not exist); set data.root to the dataset's folder"
            )
            + (" (only a train folder: data.val_split=train data.test_split=train)" if there == ["train"] else "")
        )

    def setup(self, stage: str | None = None) -> None:
        """Scan the splits the stage needs (once each) and log the sizes and the problem summary."""
        if stage == "fit" and self.splits["val"] is None:  # the module validates every epoch (best = val/top1)
            raise ValueError(
                "data.val_split is null: training validates every epoch and keeps the best by val/top1; set "
                f"data.val_split=<a folder of {self.root}> (only a train folder: data.val_split=train)"
            )
        if stage == "fit" and self.build_from is None:  # a missing val or test folder fails now, not after training
            for split in ("train", "val", "test"):
                self._check_split(split)
        added = False
        for split in _STAGE_SPLITS.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                ds = self._build(split)
                if ds is not None:
                    self.datasets[split] = ds
                    added = True
        if added and self._rank_zero():
            parts = [f"{s}: {len(d)} images ({self.splits[s]}/)" for s, d in self.datasets.items()]
            logger.info("data (%d classes) %s; %s", self.num_classes, "; ".join(parts), self.issue_summary())
            self._log_classes_and_splits()

    def _log_classes_and_splits(self) -> None:
        """Once: where the classes came from, each with its training images, and the splits that are not held out
        (a validation split that is the training folder, a test split that is either)."""
        if self._logged_classes:
            return
        self._logged_classes = True
        counts = self.datasets["train"].class_counts(self.num_classes) if "train" in self.datasets else None
        listed = [
            f"{i} {n}" + (f": {int(counts[i])}" if counts is not None else "")
            for i, n in enumerate(self.class_names[:30])
        ]
        more = f", ... ({self.num_classes - 30} more)" if self.num_classes > 30 else ""
        what = "classes (index name: training images)" if counts is not None else "classes"
        logger.info("%s from %s: %s%s", what, self._class_source or "the config", ", ".join(listed), more)
        train, val, test = (self.splits[k] for k in ("train", "val", "test"))
        if self._test_found:
            logger.info(
                "data.test_split=null: %s holds class folders, the test metrics are its images'", self.root / test
            )
        if val is not None and val == train:
            logger.warning(
                "data.val_split=%s is the training folder: the best checkpoint is chosen on training images and the "
                "validation metrics are not held out",
                val,
            )
        if test is not None and test == train:
            logger.warning("data.test_split=%s is the training folder: the test metrics are not held out", test)
        elif test is not None and test == val:
            logger.info(
                "the test split is the validation folder %s%s: the test metrics are of the images the best "
                "checkpoint was chosen on (a test/ folder of class folders, or data.test_split=<folder>, holds "
                "images out)",
                val,
                " (data.test_split=null)" if not self._test_given else "",
            )

    def report_path(self) -> Path | None:
        """Where the full issue list is written: ``report_file``, else ``<Hydra run dir>/data_issues.txt``."""
        return self.report_file if self.report_file is not None else default_report_path()

    def issue_summary(self) -> str:
        """Summary of the data problems found while scanning and (so far) while loading, by every process (DataLoader
        workers included): counts per reason with the first files, then the failed loads per split."""
        for d in {id(d): d for d in self.datasets.values()}.values():
            for issue in d.load_issues():
                self.issues.add(issue, log=False)
        text = self.issues.summary(see=self.report_path())
        runtime, counted = [], set()
        for s, d in self.datasets.items():
            n = d.stats()["skipped_images"]
            if n and id(d) not in counted:  # the test split may be the val dataset
                images = d.unreadable_images()  # each epoch loads an unreadable image again: both counts
                runtime.append(f"{s}: {images} unreadable image{'s' * (images != 1)} ({n} skipped loads)")
            counted.add(id(d))
        if runtime:
            text += "\nat load time: " + "; ".join(runtime)
        return text

    def data_report(self) -> dict[str, Any]:
        """What the run's ``metrics.json`` gets about the data (also writes :meth:`report_path`, logs the summary):
        ``data_issues`` (:meth:`issue_summary`), ``data_problems`` (per reason: action, count and every file) and
        ``augmentation`` (per split: ``samples_loaded``; classification crops drop nothing)."""
        summary = self.issue_summary()
        path = self.report_path()
        if self._rank_zero():
            logger.info("data summary: %s", summary)
            if path is not None and len(self.issues):
                write_issue_report(path, self.issues)
        return {
            "data_issues": summary,
            "data_problems": self.issues.report_dict(),
            "augmentation": {s: {"samples_loaded": self.split_stats(s)["loaded"]} for s in self.datasets},
            **self.counts_scope(),
        }

    # ---------------------------------------------------------------------------------------- loaders
    def collate_fn(self, train: bool = False) -> ClassificationCollate:
        return ClassificationCollate()

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seed + epoch: Lightning calls the sampler's ``set_epoch``), sharded over DDP ranks, every
        sample's augmentation seeded by (seed, epoch, index); resumable mid-epoch (see ShardedDataModule)."""
        ds = self._dataset("train")
        return self._resumable_train_loader(
            self._train_batch_sampler_for(ds, [self.img_size], enabled=False, fixed_size=self.img_size)
        )
