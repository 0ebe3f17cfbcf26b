"""CSV box tables: one row per box, as TensorFlow's Object Detection CSV (Roboflow's "Tensorflow Object Detection
CSV" export: ``filename,width,height,class,xmin,ymin,xmax,ymax``), Kaggle-style annotation tables and Open Images'
box CSVs (``ImageID,...,LabelName,XMin,XMax,YMin,YMax``, normalised).

Layouts (first match wins; the choice is logged):
  1. ``csv_files``: a CSV per split (``{train: a.csv, val: b.csv}``);
  2. split folders, each with its images and one CSV (``<root>/{train,valid,test}/_annotations.csv``, Roboflow's);
  3. one CSV (``csv_file``, else the only ``*.csv`` in ``root``; ``root`` may be the CSV itself): a split column
     (``split``, ``subset``, ``set``, ``fold``) picks the rows, else the images are split by hash (``split_fractions``,
     ``split_seed``).
A missing test split (no test folder, table or rows of the split column) is the val split, and a missing val split a
hash share of train, the train split then being the rest of train (both logged): one fallback for every layout.

Columns by header name (any case; spaces, ``_`` and ``-`` ignored): the image (``filename``, ``file``, ``image``,
``image_id``, ``path``, ...), the class (``class``, ``label``, ``category``, ``name``, ``labelname``, ...; without
one every box is of one class, :data:`ONE_CLASS` unless ``class_names`` names it), the box (``xmin``, ``ymin``,
``xmax``, ``ymax``; ``x1`` ... ``y2``; ``left``, ``top``, ``right``, ``bottom``; or one ``bbox`` cell ``[x, y, w, h]``,
COCO's order, as Kaggle's Global Wheat table) and, optionally,
the image's ``width`` / ``height`` (the record's size, as VOC's and COCO's: an image of another size gets its boxes
rescaled at load, reported; without them, the image header's). A row with an empty class and box lists an image
without objects. Image paths are relative to the CSV's folder (or its ``images/`` folder, a folder named as the CSV,
``root``), or ``image_dir``.

Units: box values are pixels (0-based continuous, COCO's convention) or fractions of the image's sides (Open Images).
``normalized`` true / false forces either reading; None (or ``"auto"``) decides per file: fractions where every
(finite) box value lies in [0, 1] up to :data:`FRACTION_TOLERANCE` (0.01: an export's rounding, ``1.0004``), else
pixels (logged). A fraction outside [0, 1] by at most that much is clipped into it, reported as fixed naming the file
and line. A file read as pixels whose boxes are mostly under :data:`TINY_BOX` pixels a side (its values look like
fractions: a fraction file with a stray value beyond the tolerance, or ``normalized=false`` on fractions) is warned
about, naming the file, the cause and the lines holding the stray values, and noted in the data problems: its boxes
would train on nothing.
"""

from __future__ import annotations

import array
import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo9000.darknet.cfg import read_names
from yolo9000.text_io import read_text

from .records import (
    DetectionRecord,
    IssueLog,
    header_size,
    parse_class_names,
    paused_gc,
    sanitize_boxes,
    size_or_header,
)
from .splits import SPLIT_ALIASES, canonical_split, expand_split, hash_split
from .voc import DEFAULT_SPLIT_FRACTIONS, log_once, train_val_fractions

logger = logging.getLogger("yolo9000.data")

_COLUMNS: dict[str, tuple[str, ...]] = {  # role -> accepted header names (normalised: lower case, no ' _-')
    "file": ("filename", "file", "image", "imagename", "imageid", "imagefile", "imagepath", "path", "img", "name"),
    "class": ("class", "label", "classname", "category", "categoryname", "labelname", "celltype", "object", "name"),
    "xmin": ("xmin", "x1", "left"),
    "ymin": ("ymin", "y1", "top"),
    "xmax": ("xmax", "x2", "right"),
    "ymax": ("ymax", "y2", "bottom"),
    "width": ("width", "imagewidth", "imgwidth"),
    "height": ("height", "imageheight", "imgheight"),
    "split": ("split", "subset", "set", "fold"),
    "bbox": ("bbox", "box", "boundingbox"),  # one cell "[x, y, w, h]" (COCO's order; Kaggle's Global Wheat)
}
_BOX = ("xmin", "ymin", "xmax", "ymax")
ONE_CLASS = "object"  # the class of a table without a class column, unless data.class_names names it
CSV_NAMES = ("_annotations.csv", "annotations.csv", "labels.csv")  # preferred in a folder holding several CSVs
FRACTION_TOLERANCE = 0.01  # auto units: values within [-0.01, 1.01] (an export's rounding) are fractions, then clipped
TINY_BOX = 2.0  # pixels: a pixel table whose boxes are mostly smaller a side looks like fractions (warned)


def _norm(name: str) -> str:
    return "".join(c for c in name.strip().lower() if c not in " _-")


def _columns(header: Sequence[str], path: Path) -> dict[str, int]:
    """Role -> column index, each column one role at most, in :data:`_COLUMNS` order (``name`` is the file's only
    without another file header, else the class's). ValueError naming the file and its header for a missing role."""
    norm = [_norm(h) for h in header]
    out: dict[str, int] = {}
    for role, names in _COLUMNS.items():
        for n in names:
            if n in norm and norm.index(n) not in out.values():
                out[role] = norm.index(n)
                break
    if all(k in out for k in _BOX):
        out.pop("bbox", None)  # the corners win over a bbox column
    missing = [r for r in ("file", *(() if "bbox" in out else _BOX)) if r not in out]
    if missing:
        raise ValueError(
            f"{path}: no {', '.join(missing)} column in the header {list(header)} (a box table needs the image file "
            f"and xmin, ymin, xmax, ymax, or a bbox column of [x, y, w, h]; the class column is optional for one "
            "class; accepted names: "
            + "; ".join(f"{r}: {', '.join(dict.fromkeys(_COLUMNS[r]))}" for r in missing)
            + ")"
        )
    return out


def _box(row: Sequence[str], cols: Mapping[str, int]) -> list[float] | None:
    """A row's box as pixel (or fraction) corners ``[x0, y0, x1, y1]``: its four corner cells, or its bbox cell
    ``[x, y, w, h]`` (brackets optional, commas or spaces between); None when the row has no box (every cell
    empty). Raises ValueError for values that are not four numbers."""
    if "bbox" in cols:
        cell = _cell(row, cols["bbox"]).strip("[]() ")
        if not cell:
            return None
        x, y, w, h = (float(v) for v in cell.replace(",", " ").split())
        return [x, y, x + w, y + h]
    idx = [cols[k] for k in _BOX]
    values = [row[k].strip() for k in idx] if max(idx) < len(row) else [_cell(row, k) for k in idx]
    return [float(v) for v in values] if any(values) else None


@dataclass
class _Table:
    """One CSV read: its rows as strings (line number first), its columns, its coordinate reading and the warning
    that its pixel boxes look like fractions (None: they do not)."""

    path: Path
    rows: list[tuple[int, list[str]]]
    cols: dict[str, int]
    normalized: bool
    units_warning: str | None = None


def _cell(row: Sequence[str], col: int | None) -> str:
    return row[col].strip() if col is not None and col < len(row) else ""


class CSVParser:
    """Parse a CSV box table (see the module docstring for the layouts and columns).

    Args:
        root: dataset root (or the CSV itself).
        split: ``train`` / ``val`` / ``test`` (``valid`` = ``val``), a union (``train+val``, ``trainval``), or
            None / ``"all"`` (every image).
        csv_file: the one CSV of layout 3 (relative to ``root``); None: the only ``*.csv`` in ``root``.
        csv_files: a CSV per split (relative to ``root``), layout 1.
        class_names: class list (normally given by the data module); None: ``names_file``, else every class the
            dataset's CSVs name, sorted.
        names_file: class names, one a line (relative to ``root``).
        normalized: box values as fractions of the image's sides (True), pixels (False), or decided per file
            (None or ``"auto"``: fractions where every value lies in [0, 1] up to :data:`FRACTION_TOLERANCE`;
            logged; see the module docstring's units).
        split_fractions, split_seed: the hash split.
        image_dir: the images' folder (relative to ``root``), or one a split (``{train: train, val: validation}``:
            Open Images' layout beside ``csv_files``); None: beside the CSV, in its ``images/`` or ``<CSV name>/``
            folder (Kaggle's ``train.csv`` beside ``train/``), in ``root`` or ``root/images``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        csv_file: str | Path | None = None,
        csv_files: Mapping[str, str | Path | None] | None = None,
        class_names: Sequence[str] | None = None,
        names_file: str | Path | None = None,
        normalized: bool | str | None = None,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int | None = 0,
        image_dir: str | Path | Mapping[str, str | Path | None] | None = None,
    ) -> None:
        root = Path(root)
        self._key = "data.csv_file"  # the key that named the one CSV (for its not-found error)
        if root.suffix.lower() == ".csv" and csv_file is None:
            root, csv_file, self._key = root.parent, root.name, "data.root"
        self.root = root
        self.split = split
        self.csv_file = self.root / csv_file if csv_file is not None else None
        self.csv_files = {canonical_split(k): self.root / v for k, v in (csv_files or {}).items() if v}
        self.class_names = list(class_names) if class_names is not None else None
        self.names_file = self.root / names_file if names_file is not None else None
        self.normalized = _units(normalized)
        if isinstance(image_dir, Mapping):  # one a split: this parser's split's
            image_dir = {canonical_split(k): v for k, v in image_dir.items()}.get(canonical_split(split or "train"))
        self.image_dir = self.root / image_dir if image_dir is not None else None
        self.split_fractions = {
            canonical_split(k): float(v) for k, v in (split_fractions or DEFAULT_SPLIT_FRACTIONS).items()
        }
        self.split_seed = int(split_seed or 0)
        self._tables: dict[Path, _Table] = {}
        self._dirs: dict[Path, list[Path]] = {}  # each table's image folders (_image_dirs)

    def __repr__(self) -> str:
        return f"CSVParser(root={str(self.root)!r}, split={self.split!r})"

    # ------------------------------------------------------------------------------------------ files
    def split_csvs(self) -> dict[str, Path]:
        """Split -> CSV of layouts 1 and 2 ({} for layout 3)."""
        if self.csv_files:
            for s, p in self.csv_files.items():
                if not p.is_file():
                    raise FileNotFoundError(f"CSV of split {s!r} not found: {p} (data.csv_files)")
            return dict(self.csv_files)
        if self.csv_file is not None or not self.root.is_dir():
            return {}
        out: dict[str, Path] = {}
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            s = canonical_split(folder.name)
            if s in SPLIT_ALIASES and s not in out and (found := _folder_csv(folder)) is not None:
                out[s] = found
        return out

    def single_csv(self) -> Path:
        """The CSV of layout 3: ``csv_file``, else the only ``*.csv`` in ``root``."""
        if self.csv_file is not None:
            if not self.csv_file.is_file():
                raise FileNotFoundError(f"box table not found: {self.csv_file} ({self._key})")
            return self.csv_file
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root not found: {self.root} (data.root)")
        found = _folder_csv(self.root)
        if found is None:
            raise FileNotFoundError(
                f"no box table in {self.root}: no *.csv there, and no train/ valid/ test/ folders holding one; set "
                "data.root, data.csv_file or data.csv_files"
            )
        return found

    def table(self, path: Path) -> _Table:
        """A CSV read once: its rows (blank ones skipped), columns and coordinate reading."""
        if path in self._tables:
            return self._tables[path]
        with paused_gc():
            return self._read_table(path)

    def _read_table(self, path: Path) -> _Table:
        reader = csv.reader(io.StringIO(read_text(path), newline=""))  # any editor's encoding (Excel's UTF-16 too)
        lines = [(n, r) for n, r in enumerate(reader, 1) if "".join(r).strip()]  # blank rows skipped
        if not lines:
            raise ValueError(f"{path}: an empty CSV (a box table needs a header and one row per box)")
        cols = _columns(lines[0][1], path)
        rows = lines[1:]
        at: list[int] = []  # the line of each row with a box of numbers
        found = array.array("d")  # the boxes' values, flat (a list of lists held ~100 MB per 500k rows)
        for n, r in rows:
            try:
                box = _box(r, cols)
            except ValueError:
                continue
            if box is not None:
                at.append(n)
                found.extend(box)
        boxes = np.frombuffer(found, np.float64).reshape(-1, 4)
        finite = np.isfinite(boxes)
        tol = FRACTION_TOLERANCE
        stray = finite & ((boxes < -tol) | (boxes > 1.0 + tol))  # beyond an export's rounding of a fraction
        normalized = self.normalized
        if normalized is None:
            normalized = bool(finite.any()) and not stray.any()
            if normalized:
                out = int((finite & ((boxes < 0.0) | (boxes > 1.0))).sum())
                log_once(
                    ("csv normalized", str(path)),
                    logging.INFO,
                    "%s: every box value lies in [0, 1]%s: read as fractions of the image's sides (data.normalized)",
                    path,
                    f" up to {tol:g} (an export's rounding; {out} value{'' if out == 1 else 's'} "
                    "outside [0, 1] clipped, reported)"
                    if out
                    else "",
                )
        warning = None
        if not normalized:
            warning = _tiny_boxes(boxes, finite, stray, at, explicit=self.normalized is False)
        if warning is not None:
            log_once(("csv tiny boxes", str(path)), logging.WARNING, "%s: %s", path, warning)
        self._tables[path] = _Table(path, rows, cols, normalized, warning)
        return self._tables[path]

    # ---------------------------------------------------------------------------------------- classes
    def discover_class_names(self) -> list[str] | None:
        """Given class names, else ``names_file``, else every class the dataset's CSVs name (all splits), sorted."""
        if self.class_names is not None:
            return self.class_names
        if self.names_file is not None:
            return read_names(self.names_file)
        paths = list(self.split_csvs().values()) or [self.single_csv()]
        if any("class" not in self.table(p).cols for p in paths):  # one class (Kaggle's Global Wheat)
            log_once(
                ("csv one class", str(self.root)),
                logging.INFO,
                "%s: no class column: every box is of one class, %r (data.class_names=[<name>] names it)",
                self.root,
                ONE_CLASS,
            )
            return [ONE_CLASS]
        names = {_cell(r, t.cols["class"]) for p in paths for t in [self.table(p)] for _, r in t.rows}
        names.discard("")
        out = sorted(names)
        log_once(
            ("csv names", str(self.root)),
            logging.INFO,
            "%s: %d classes named in %s, sorted: %s",
            self.root,
            len(out),
            ", ".join(_shown(p, self.root) for p in paths),
            out,
        )
        return out

    # ------------------------------------------------------------------------------------------ parse
    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """The split's images and boxes; problems go to ``issues`` (default: the ``"error"`` log)."""
        names, index = parse_class_names(self, class_names)
        issues = issues if issues is not None else IssueLog("error")
        records = []
        for table, files in self._pick():
            if "class" not in table.cols and len(names) != 1:
                raise ValueError(
                    f"{table.path}: no class column, so its boxes are of one class, but the class list has "
                    f"{len(names)}: {names[:5]} (give one name: data.class_names=[<name>])"
                )
            if table.units_warning is not None:  # in the data problems too: the run's summary is no "0 problems"
                issues.note(table.path, "box values read as pixels look like fractions", detail=table.units_warning)
            grouped = _group(table, files)
            for file in files:
                rec = self._record(table, file, grouped[file], names, index, issues)
                if rec is not None:
                    records.append(rec)
        return records

    def _pick(self) -> list[tuple[_Table, list[str]]]:
        """(table, its image entries) of the split, as the module docstring's layouts decide."""
        split = self.split
        per_split = self.split_csvs()
        if not per_split:
            table = self.table(self.single_csv())
            files = _files(table)
            if split in (None, "all"):
                return [(table, files)]
            if "split" in table.cols:  # the split column's splits, through the split tables' fallbacks
                by_split: dict[str, set[str]] = {}
                split_col, file_col = table.cols["split"], table.cols["file"]
                for _, r in table.rows:
                    by_split.setdefault(canonical_split(_cell(r, split_col)), set()).add(_cell(r, file_col))
                by_split.pop("", None)  # rows without a split value are in none
                rows_of = {s: (table, [f for f in files if f in picked]) for s, picked in by_split.items()}
                desc, where = "the rows of that split (its split column)", f"{table.path}'s split column"
                return self._from_splits(list(rows_of), rows_of.__getitem__, table.path, desc, where, " rows")
            s = split if split in self.split_fractions else "+".join(expand_split(split))
            if s == "test" and not self.split_fractions.get("test"):
                s = "val"
            picked = set(hash_split(files, s, self.split_fractions, self.split_seed))
            desc = f"hash split of its {len(files)} images (fractions {self.split_fractions}, seed {self.split_seed})"
            self._log(table.path, desc, len(picked))
            return [(table, [f for f in files if f in picked])]

        def read(s: str) -> tuple[_Table, list[str]]:  # a split's CSV, read where the split is asked for
            table = self.table(per_split[s])
            return table, _files(table)

        return self._from_splits(list(per_split), read, self.root, "its split's table", f"the CSVs of {self.root}")

    def _from_splits(
        self,
        splits: Sequence[str],
        images: Callable[[str], tuple[_Table, list[str]]],
        origin: Path,
        desc: str,
        where: str,
        unit: str = " split",
    ) -> list[tuple[_Table, list[str]]]:
        """(table, its image entries) of the split from the ``splits`` found and the ``images`` of each (a split
        table's, or a split column's rows), the one fallback of every layout: a missing test split is val (logged), a
        missing val split the val hash share of train's images and train the rest (logged; never both); ValueError
        for another split that is missing. A table's images are listed once, in its row order (``val+test`` without
        a test split: val's)."""
        split = self.split
        if split in (None, "all"):
            parts, plain = list(splits), True
        elif canonical_split(split) in splits:  # the split itself (a split column's "trainval": its found parts too)
            parts = list(dict.fromkeys([canonical_split(split), *(p for p in expand_split(split) if p in splits)]))
            plain = len(parts) > 1  # a union found as such: the splits found, no fallback
        else:
            parts, plain = expand_split(split), False
        out: list[tuple[_Table, list[str]]] = []
        for s in dict.fromkeys("val" if p == "test" and "test" not in splits else p for p in parts):
            if s == "val" and "test" in parts and "test" not in splits:
                log_once(("csv test=val", str(origin)), logging.WARNING, "%s: no test%s: test = val", origin, unit)
            if not plain and s in ("train", "val") and "val" not in splits and "train" in splits:
                # no val split: val is a hash share of train's images and train the rest (never both)
                table, files = images("train")
                share = set(hash_split(files, s, train_val_fractions(self.split_fractions), self.split_seed))
                self._log(table.path, f"the {s} hash share of train (no val split; seed {self.split_seed})", len(share))
                out.append((table, [f for f in files if f in share]))
                continue
            if s not in splits:
                raise ValueError(f"no {s!r} split among {where} (found: {', '.join(sorted(splits)) or 'none'})")
            table, files = images(s)
            self._log(table.path, desc, len(files))
            out.append((table, files))
        merged: dict[Path, tuple[_Table, set[str]]] = {}  # a table's images once, in its row order (trainval)
        for table, files in out:
            merged.setdefault(table.path, (table, set()))[1].update(files)
        return [(table, [f for f in _files(table) if f in picked]) for table, picked in merged.values()]

    def _log(self, path: Path, what: str, n: int) -> None:
        log_once(
            ("csv split", str(path), str(self.split)),
            logging.INFO,
            "%s: split %r: %d image%s, %s",
            path,
            self.split,
            n,
            "" if n == 1 else "s",
            what,
        )

    def _image_dirs(self, table: _Table) -> list[Path]:
        """Where a table's relative image paths are looked for, in order: ``image_dir``, else the CSV's folder, its
        ``images/`` and ``<CSV name>/`` folders (Kaggle's ``train.csv`` beside ``train/``), ``root`` and
        ``root/images``."""
        if self.image_dir is not None:
            return [self.image_dir]
        if table.path not in self._dirs:  # once a table, not once an image
            here = table.path.parent
            places = [here, here / "images", here / table.path.stem, self.root, self.root / "images"]
            self._dirs[table.path] = list(dict.fromkeys(places))
        return self._dirs[table.path]

    def _image_path(self, table: _Table, file: str) -> Path:
        p = Path(file)
        if p.is_absolute():
            return p
        cands = [d / p for d in self._image_dirs(table)]
        if not p.suffix:  # Open Images' ImageID names the file without its suffix
            cands += [c.with_name(c.name + ext) for c in cands[:] for ext in (".jpg", ".jpeg", ".png", ".JPG")]
        return next((c for c in cands if c.is_file()), cands[0])

    def _missing(self, table: _Table, file: str, where: str) -> str:
        """The detail of a missing image: the row naming it and the folders looked in."""
        dirs = ", ".join(str(d) for d in self._image_dirs(table))
        suffix = "" if Path(file).suffix else " (with .jpg, .jpeg, .png or .JPG)"
        return f"named in {where}; looked for {file}{suffix} in {dirs}; data.image_dir names the images' folder"

    def _record(
        self,
        table: _Table,
        file: str,
        rows: list[tuple[int, list[str]]],
        names: Sequence[str],
        index: Mapping[str, int],
        issues: IssueLog,
    ) -> DetectionRecord | None:
        """One image's record from its rows (None: image skipped, reported)."""
        image_path = self._image_path(table, file)
        where = f"{table.path}:{rows[0][0]}"
        if not image_path.is_file():
            detail = self._missing(table, file, where)
            issues.report(image_path, "missing image file", action="skip_image", detail=detail)
            return None
        c = table.cols
        if "width" in c and "height" in c:  # the table's size (a differing image gets its boxes rescaled at load)
            w, h = (_cell(rows[0][1], c[k]) for k in ("width", "height"))
            try:
                w, h = int(float(w or 0)), int(float(h or 0))
            except ValueError:
                w = h = 0
            size = size_or_header(w, h, image_path, where, issues, field="width / height")
        else:
            size = header_size(image_path, issues, detail=f"named in {where}")
        if size is None:
            return None
        width, height = size
        boxes, labels = [], []
        for n, row in rows:
            cls = _cell(row, c["class"]) if "class" in c else names[0]
            try:
                box = _box(row, c)
            except ValueError:
                issues.report(table.path, "a box value is not a number", action="drop_box", detail=f"line {n}: {row}")
                continue
            if box is None:
                if "class" in c and cls:
                    issues.report(table.path, "a class without a box", action="drop_box", detail=f"line {n}")
                continue  # an image without objects
            if cls not in index:
                issues.report(table.path, f"unknown class '{cls}'", action="drop_box", detail=f"line {n}")
                continue
            if table.normalized:
                box = _clip_fractions(box, table.path, n, issues)
            boxes.append(box)
            labels.append(index[cls])
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        if table.normalized:
            b *= np.array([width, height, width, height], np.float32)
        if not len(b):
            issues.note(image_path, "image without objects (negative)")
        lab = np.asarray(labels, np.int64)
        # the boxes' problems name the image (its rows are in the table under its file name)
        b, lab, dif = sanitize_boxes(b, lab, np.zeros(len(lab), bool), width, height, image_path, issues, names)
        return DetectionRecord(image_path, Path(file).stem, width, height, b, lab, dif)


def _units(normalized: bool | str | None) -> bool | None:
    """``normalized`` as True (fractions), False (pixels) or None (decided per file: ``"auto"``, None)."""
    if normalized is None or isinstance(normalized, bool):
        return normalized
    if isinstance(normalized, int) and normalized in (0, 1):  # Hydra reads data.normalized=1 as an int
        return bool(normalized)
    word = str(normalized).strip().lower()
    if word in ("auto", "none", "null", ""):
        return None
    if word in ("true", "fractions", "normalized", "normalised"):
        return True
    if word in ("false", "pixels"):
        return False
    raise ValueError(f"data.normalized must be true (fractions), false (pixels) or null / auto, got {normalized!r}")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _clip_fractions(box: list[float], path: Path, line: int, issues: IssueLog) -> list[float]:
    """A fraction box with its values outside [0, 1] by at most :data:`FRACTION_TOLERANCE` (an export's rounding)
    clipped into it, reported as fixed naming the file and line; values further out are left to the image clipping
    (:func:`sanitize_boxes`)."""
    lo, hi = -FRACTION_TOLERANCE, 1.0 + FRACTION_TOLERANCE
    clipped = [min(max(v, 0.0), 1.0) if lo <= v <= hi else v for v in box]
    if clipped != box:
        issues.fixed(
            path,
            "a box fraction outside [0, 1] clipped",
            detail=f"line {line}: {_fmt(box)} -> {_fmt(clipped)} (within {FRACTION_TOLERANCE:g}: an export's rounding)",
        )
    return clipped


def _tiny_boxes(
    boxes: np.ndarray, finite: np.ndarray, stray: np.ndarray, lines: Sequence[int], explicit: bool
) -> str | None:
    """The warning (after the file's name) for a table read as pixels whose values look like fractions: most of
    them within [0, 1] up to :data:`FRACTION_TOLERANCE` and most boxes under :data:`TINY_BOX` pixels a side; with
    the likely cause. None otherwise (a pixel table, tiny boxes and all).

    Args:
        boxes: float (N, 4) the table's boxes; finite: bool (N, 4) their finite values; stray: bool (N, 4) the
            finite values beyond the tolerance; lines: (N,) each box's line.
        explicit: ``data.normalized=false`` was given.
    """
    n_values, n_stray = int(finite.sum()), int(stray.sum())
    with np.errstate(invalid="ignore"):
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    tiny = int((side < TINY_BOX).sum())
    if not len(boxes) or 2 * tiny <= len(boxes) or 2 * n_stray >= n_values:
        return None
    head = (
        f"{tiny} of its {len(boxes)} boxes are under {TINY_BOX:g} px a side read as pixels: its values look like "
        "fractions of the image's sides, and the run would train on nearly empty boxes; "
    )
    if explicit:
        return head + "data.normalized=false reads them as pixels (set data.normalized=true, or null to decide)"
    rows = np.flatnonzero(stray.any(axis=1))
    shown = ", ".join(f"line {lines[k]}: {boxes[k][stray[k]][0]:g}" for k in rows[:3]) + (
        ", ..." if len(rows) > 3 else ""
    )
    some = f"{n_stray} value lies" if n_stray == 1 else f"{n_stray} values lie"
    return head + (
        f"read as pixels because {some} outside [0, 1] beyond the {FRACTION_TOLERANCE:g} rounding tolerance "
        f"({shown}); if the values are fractions, fix those lines or set data.normalized=true"
    )


def _files(table: _Table) -> list[str]:
    """The table's image entries, once each, in row order."""
    return [f for f in dict.fromkeys(_cell(r, table.cols["file"]) for _, r in table.rows) if f]


def _shown(path: Path, root: Path) -> str:
    """A CSV's path relative to the dataset root where it lies under it (``train/_annotations.csv``)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _group(table: _Table, files: Sequence[str]) -> dict[str, list[tuple[int, list[str]]]]:
    """The rows of each of ``files`` (in file order)."""
    wanted = set(files)
    out: dict[str, list[tuple[int, list[str]]]] = {f: [] for f in files}
    col = table.cols["file"]
    for n, row in table.rows:
        f = _cell(row, col)
        if f in wanted:
            out[f].append((n, row))
    return out


def _folder_csv(folder: Path) -> Path | None:
    """The box table of a folder: one of :data:`CSV_NAMES`, else its only ``*.csv``; None without."""
    csvs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not csvs:
        return None
    named = [p for n in CSV_NAMES for p in csvs if p.name.lower() == n]
    if named:
        return named[0]
    if len(csvs) > 1:
        raise ValueError(
            f"several CSV files in {folder}: {', '.join(p.name for p in csvs)}; set data.csv_file (or data.csv_files)"
        )
    return csvs[0]
