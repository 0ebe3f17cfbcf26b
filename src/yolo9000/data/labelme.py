"""LabelMe JSON: one JSON per image (the labelme annotation tool's files, usually beside their images).

A LabelMe file is ``{"shapes": [{"label", "points": [[x, y], ...], "shape_type", "group_id", "flags"}, ...],
"imagePath", "imageHeight", "imageWidth", "imageData"}``; ``imagePath`` is relative to the JSON's folder (Windows
backslashes and ``..`` allowed; an image not found there is looked for beside the JSON under its file name).

Layouts (first match wins; the choice is logged):
  1. split folders ``<root>/{train,val|valid,test}/`` each holding JSONs (and, usually, their images; subfolders
     read too);
  2. every ``*.json`` under ``root`` (subfolders too, hidden ones left out), split by a hash of each image's path
     relative to ``root`` (``split_fractions``, ``split_seed``).
A missing test split is the val split, and a missing val split (layout 1) a hash share of train, the train split
then being the rest of train (both logged; the two never share an image).

Boxes, from LabelMe's continuous 0-based pixel coordinates (as COCO's: no 1-based shift): a ``rectangle`` is its
two corners in any order (min / max), a ``polygon``, ``linestrip``, ``line`` (and labelme 5's ``mask``, whose points
are its rectangle) the bounding box of its points, a ``circle`` (centre, a point on the circle) the circle's
bounding box; a ``point`` has no box (dropped, reported), nor has a shape of another type. ``group_id`` and
``flags`` are ignored. The record's size is ``imageWidth`` x ``imageHeight`` (an image of another size gets its boxes
rescaled at load, reported, as VOC's and CSV's sizes; without them, the image header's).

A JSON that does not parse, or a LabelMe file without ``shapes`` or ``imagePath``, skips its image (reported,
naming the file); a JSON holding neither key (a COCO JSON in the same root, a config file) is not a LabelMe file:
left out, named in one log line. An image file that is missing where ``imagePath`` points is read from the JSON's
``imageData`` (the image embedded as base64, as labelme saves it by default; logged once); without one it is a
missing image (reported). A file without shapes keeps its image as a negative (noted).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from yolo9000.darknet.cfg import read_names

from .records import DetectionRecord, IssueLog, parse_class_names, sanitize_boxes, size_or_header
from .splits import SPLIT_ALIASES, canonical_split, expand_split, hash_split
from .voc import DEFAULT_SPLIT_FRACTIONS, log_once, train_val_fractions

logger = logging.getLogger("yolo9000.data")

LABELME_KEYS = ("shapes", "imagePath")  # a JSON holding neither is not a LabelMe file (left out, logged)
BBOX_SHAPES = ("rectangle", "polygon", "linestrip", "line", "mask")  # box = min / max of the points
NO_BOX_SHAPES = ("point", "points")  # no extent: dropped, reported
BOX_SHAPES = (*BBOX_SHAPES, "circle")  # the shapes that give a box (their labels are the discovered classes)


@dataclass
class _Entry:
    """One LabelMe JSON read: its shapes and image (``error`` set when it cannot be used).

    Attributes:
        json_path: the JSON file.
        key: the image's path relative to the dataset root (posix; the hash split's key), or the JSON's own
            relative path when it names no image.
        image_path: the image file (the first candidate when none exists).
        shapes: the ``shapes`` list as read.
        width, height: ``imageWidth`` / ``imageHeight`` (None when absent or not numbers).
        has_image_data: the JSON embeds the image (``imageData``).
        error: (reason, detail) of a file that cannot be used (unparsable, no shapes / imagePath), else None.
    """

    json_path: Path
    key: str
    image_path: Path | None = None
    shapes: list[Any] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    has_image_data: bool = False
    error: tuple[str, str] | None = None


_Entries = dict[Path, tuple[tuple[int, int], "_Entry | None"]]
_SHARED: dict[Path, _Entries] = {}  # the last root's JSONs read: its train / val / test parsers share them


def _shared_entries(root: Path) -> _Entries:
    """The JSONs of ``root`` read so far (by any parser of it; keyed by path, stamped with mtime and size)."""
    key = root.resolve()
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = {}
    return _SHARED[key]


def _posix_rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, posix (``../x`` outside it)."""
    return Path(os.path.relpath(path, root)).as_posix()


def _json_files(folder: Path) -> list[Path]:
    """``*.json`` files (any case) under ``folder`` and its subfolders, sorted; hidden files and folders left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [Path(dirpath) / f for f in filenames if f.lower().endswith(".json") and not f.startswith(".")]
    return sorted(out)


def _size(value: Any) -> int | None:
    try:
        v = int(float(value))
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def shape_box(shape_type: str, points: Sequence[Sequence[float]]) -> list[float]:
    """A shape's box ``[x0, y0, x1, y1]`` (continuous pixels) from its points ((K, 2) x, y).

    Raises ValueError for a shape without a box (``point``, an unknown type) or points that are not (x, y) numbers
    (a circle needs two: its centre and a point on it).
    """
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or not len(p) or not np.isfinite(p).all():
        raise ValueError("points are not [[x, y], ...] numbers")
    if shape_type in BBOX_SHAPES:
        return [float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())]
    if shape_type == "circle":
        if len(p) != 2:
            raise ValueError(f"a circle has 2 points (centre, a point on it), got {len(p)}")
        (cx, cy), (x, y) = p
        r = math.hypot(x - cx, y - cy)
        return [float(cx - r), float(cy - r), float(cx + r), float(cy + r)]
    raise ValueError(f"a {shape_type!r} shape has no box")


class LabelMeParser:
    """Parse LabelMe JSON files (see the module docstring for the layouts and shapes).

    Args:
        root: dataset root (the JSONs, usually beside their images).
        split: ``train`` / ``val`` / ``test`` (``valid`` = ``val``), a union (``train+val``, ``trainval``), or
            None / ``"all"`` (every image).
        class_names: class list (normally given by the data module); None: ``names_file``, else every label of
            the dataset's box shapes (all splits), sorted.
        names_file: class names, one a line (relative to ``root``).
        split_fractions, split_seed: the hash split (layout 2, and a val share of a train folder in layout 1).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        class_names: Sequence[str] | None = None,
        names_file: str | Path | None = None,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int | None = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names) if class_names is not None else None
        self.names_file = self.root / names_file if names_file is not None else None
        self.split_fractions = {
            canonical_split(k): float(v) for k, v in (split_fractions or DEFAULT_SPLIT_FRACTIONS).items()
        }
        self.split_seed = int(split_seed or 0)
        self._folders: dict[str, Path] | None = None
        self._entries = _shared_entries(self.root)  # JSON -> (its stamp, entry); None: not a LabelMe file

    def __repr__(self) -> str:
        return f"LabelMeParser(root={str(self.root)!r}, split={self.split!r})"

    # ------------------------------------------------------------------------------------------ files
    def split_folders(self) -> dict[str, Path]:
        """Split -> folder of layout 1 ({} for layout 2; logged once)."""
        if self._folders is None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"dataset root not found: {self.root} (data.root)")
            self._folders = {}
            for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                s = canonical_split(d.name)
                if s in SPLIT_ALIASES and s not in self._folders and _json_files(d):
                    self._folders[s] = d
            if self._folders:
                log_once(
                    ("labelme layout", str(self.root)),
                    logging.INFO,
                    "%s: LabelMe split folders: %s",
                    self.root,
                    ", ".join(f"{k} {v.name}/" for k, v in self._folders.items()),
                )
            else:
                log_once(
                    ("labelme layout", str(self.root)),
                    logging.INFO,
                    "%s: no train/ val/ test/ folders holding JSONs: every LabelMe JSON under it, split by a hash of "
                    "the image paths (fractions %s, seed %d)",
                    self.root,
                    self.split_fractions,
                    self.split_seed,
                )
        return self._folders

    def entries(self, folder: Path) -> list[_Entry]:
        """The LabelMe files under ``folder`` (each read once), in path order; JSONs that are not LabelMe files are
        left out (named in one log line)."""
        out, others = [], []
        for path in _json_files(folder):
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            hit = self._entries.get(path)
            if hit is None or hit[0] != stamp:  # read once for the train, val and test parsers of a root
                hit = self._entries[path] = (stamp, self._read(path))
            entry = hit[1]
            if entry is None:
                others.append(path)
            else:
                out.append(entry)
        if others:
            log_once(
                ("labelme not labelme", str(folder)),
                logging.INFO,
                "%s: %d JSON file%s without LabelMe's shapes / imagePath (not LabelMe), left out: %s%s",
                folder,
                len(others),
                "" if len(others) == 1 else "s",
                ", ".join(_posix_rel(p, folder) for p in others[:5]),
                ", ..." if len(others) > 5 else "",
            )
        if not out:
            raise FileNotFoundError(
                f"no LabelMe JSON in {folder}"
                + (f" ({len(others)} other JSON files)" if others else "")
                + ": set data.root to the folder of the labelme files (or of train/ val/ test/ folders holding them)"
            )
        return out

    def _read(self, path: Path) -> _Entry | None:
        """One JSON: its entry (``error`` set when unusable), or None when it is not a LabelMe file."""
        own = _posix_rel(path, self.root)
        try:
            with open(path, encoding="utf-8-sig") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return _Entry(path, own, error=("unreadable JSON", str(e)))
        if not isinstance(data, dict) or not any(k in data for k in LABELME_KEYS):
            return None
        missing = [k for k in LABELME_KEYS if k not in data]
        if missing:
            return _Entry(path, own, error=(f"LabelMe file without {' / '.join(missing)}", ""))
        shapes, image = data["shapes"], data["imagePath"]
        if not isinstance(shapes, list) or not isinstance(image, str) or not image.strip():
            return _Entry(path, own, error=("LabelMe file with malformed shapes / imagePath", f"imagePath {image!r}"))
        image_path = self._image_path(path, image)
        key = _posix_rel(image_path, self.root)
        size = _size(data.get("imageWidth")), _size(data.get("imageHeight"))
        return _Entry(path, key, image_path, shapes, *size, has_image_data=bool(data.get("imageData")))

    @staticmethod
    def _image_path(json_path: Path, image: str) -> Path:
        """The image a JSON names: ``imagePath`` (backslashes as separators, ``..`` resolved) relative to the
        JSON's folder, else its file name beside the JSON (an image moved with its JSON); the first when neither
        exists."""
        rel = image.strip().replace("\\", "/")
        first = Path(os.path.normpath(json_path.parent / rel))
        beside = json_path.parent / PureWindowsPath(rel).name
        return next((c for c in (first, beside) if c.is_file()), first)

    # ---------------------------------------------------------------------------------------- classes
    def discover_class_names(self) -> list[str] | None:
        """Given class names, else ``names_file``, else every label of a box shape in the dataset (all splits),
        sorted (logged)."""
        if self.class_names is not None:
            return self.class_names
        if self.names_file is not None:
            return read_names(self.names_file)
        folders = self.split_folders()
        names: set[str] = set()
        for folder in folders.values() if folders else [self.root]:
            for e in self.entries(folder):
                for s in e.shapes if e.error is None else []:
                    if isinstance(s, dict) and _shape_type(s) in BOX_SHAPES:
                        names.add(str(s.get("label") or "").strip())
        names.discard("")
        out = sorted(names)
        log_once(("labelme names", str(self.root)), logging.INFO, "%s: %d labels, sorted: %s", self.root, len(out), out)
        return out or None

    # ------------------------------------------------------------------------------------------ parse
    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """The split's images and boxes (one record per LabelMe file); problems go to ``issues`` (default: the
        ``"error"`` log)."""
        names, index = parse_class_names(self, class_names)
        issues = issues if issues is not None else IssueLog("error")
        records = []
        seen: dict[Path, Path] = {}  # image -> the JSON that gave it
        for entry in self._pick():
            if entry.error is None and entry.image_path is not None and entry.image_path in seen:
                issues.report(
                    entry.json_path,
                    "another LabelMe file names the same image",
                    action="skip_file",
                    detail=f"{entry.image_path}, named by {seen[entry.image_path]}",
                )
                continue
            rec = self._record(entry, names, index, issues)
            if rec is not None:
                seen[entry.image_path] = entry.json_path  # the target (an embedded image's record path is its JSON)
                records.append(rec)
        return records

    def _pick(self) -> list[_Entry]:
        """The split's LabelMe files, as the module docstring's layouts decide (each decision logged once)."""
        split = self.split
        folders = self.split_folders()
        if not folders:
            entries = self.entries(self.root)
            if split in (None, "all"):
                return entries
            parts = expand_split(split)
            if "test" in parts and not self.split_fractions.get("test"):
                log_once(
                    ("labelme test=val", str(self.root)), logging.WARNING, "%s: no test share: test = val", self.root
                )
                parts = ["val" if p == "test" else p for p in parts]
            s = "+".join(dict.fromkeys(parts))  # test = val asked with val: each file once
            picked = set(hash_split([e.key for e in entries], s, self.split_fractions, self.split_seed))
            out = [e for e in entries if e.key in picked]
            self._log(f"hash split of its {len(entries)} LabelMe files", len(out))
            return out
        parts = list(folders) if split in (None, "all") else expand_split(str(split))
        out: list[_Entry] = []
        taken: set[Path] = set()  # test = val asked with val: each file once
        for s in parts:
            if s == "test" and "test" not in folders:
                log_once(
                    ("labelme test=val", str(self.root)), logging.WARNING, "%s: no test folder: test = val", self.root
                )
                s = "val"
            if split not in (None, "all") and s in ("train", "val") and "val" not in folders and "train" in folders:
                # no val folder: val is a hash share of train's files and train the rest (never both)
                entries = self.entries(folders["train"])
                fractions = train_val_fractions(self.split_fractions)
                share = set(hash_split([e.key for e in entries], s, fractions, self.split_seed))
                picked = [e for e in entries if e.key in share]
                out += [e for e in picked if e.json_path not in taken]
                taken |= {e.json_path for e in picked}
                self._log(
                    f"the {s} hash share of {folders['train'].name}/ (no val folder; fractions {fractions})",
                    len(picked),
                )
                continue
            if s not in folders:
                raise FileNotFoundError(
                    f"{self.root}: no {s} folder among the LabelMe split folders ({', '.join(sorted(folders))})"
                )
            entries = self.entries(folders[s])
            out += [e for e in entries if e.json_path not in taken]
            taken |= {e.json_path for e in entries}
            self._log(f"folder {folders[s].name}/", len(entries))
        return out

    def _log(self, what: str, n: int) -> None:
        log_once(
            ("labelme split", str(self.root), str(self.split), what),
            logging.INFO,
            "%s: split %r: %d image%s, %s",
            self.root,
            self.split,
            n,
            "" if n == 1 else "s",
            what,
        )

    def _record(
        self, entry: _Entry, names: Sequence[str], index: Mapping[str, int], issues: IssueLog
    ) -> DetectionRecord | None:
        """One LabelMe file's record (None: image skipped, reported)."""
        jp = entry.json_path
        if entry.error is not None:
            issues.report(jp, entry.error[0], action="skip_image", detail=entry.error[1])
            return None
        assert entry.image_path is not None
        image_path = entry.image_path
        if not image_path.is_file():
            if not entry.has_image_data:
                issues.report(jp, "missing image file", action="skip_image", detail=str(image_path))
                return None
            image_path = jp  # the image its imageData embeds (yolo9000.data.image_io reads it from the JSON)
            log_once(
                ("labelme embedded", str(self.root)),
                logging.INFO,
                "%s: images missing beside their JSONs are read from the JSONs' imageData (%s, ...)",
                self.root,
                jp.name,
            )
        size = size_or_header(entry.width, entry.height, image_path, jp, issues, field="imageWidth / imageHeight")
        if size is None:
            return None
        width, height = size
        boxes, labels = [], []
        if not entry.shapes:
            issues.note(jp, "no shapes, kept as a negative")
        for k, shape in enumerate(entry.shapes):
            where = f"shape {k + 1}"
            if not isinstance(shape, dict):
                issues.report(jp, "malformed shape", action="drop_box", detail=f"{where}: {shape!r:.80}")
                continue
            kind, label = _shape_type(shape), str(shape.get("label") or "").strip()
            if kind in NO_BOX_SHAPES:
                issues.report(jp, f"a {kind} shape has no box", action="drop_box", detail=f"{where}: {label}")
                continue
            try:
                box = shape_box(kind, shape.get("points") or [])
            except (TypeError, ValueError) as e:
                issues.report(jp, f"{kind} shape without a box", action="drop_box", detail=f"{where}: {label}: {e}")
                continue
            if label not in index:
                issues.report(jp, f"unknown class '{label}'", action="drop_box", detail=where)
                continue
            boxes.append(box)
            labels.append(index[label])
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        lab = np.asarray(labels, np.int64)
        b, lab, dif = sanitize_boxes(b, lab, np.zeros(len(lab), bool), width, height, jp, issues, names)
        image_id = entry.key.rsplit(".", 1)[0] if "." in Path(entry.key).name else entry.key
        return DetectionRecord(image_path, image_id, width, height, b, lab, dif)


def _shape_type(shape: Mapping[str, Any]) -> str:
    """A shape's type, lower case (``polygon`` when absent or null, as labelme reads old files)."""
    return str(shape.get("shape_type") or "polygon").strip().lower()
