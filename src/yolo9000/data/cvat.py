"""CVAT XML, "CVAT for images 1.1": one ``annotations.xml`` holding every image of a CVAT task or project export.

The file is ``<annotations><version>1.1</version><meta>...</meta><image id name width height [subset] [task_id]>
<box .../> <polygon .../> ...</image>...</annotations>``; CVAT's zip puts the images in an ``images/`` folder beside
it (``images/<name>``, ``name`` possibly with subfolders; a project export may add the subset:
``images/<subset>/<name>``); images beside the XML are found too.

Splits (the choice is logged): CVAT's ``subset`` of each ``<image>`` (``Train``, ``Validation`` / ``valid`` /
``val``, ``Test``, any case; an image without the attribute takes its task's ``<subset>`` from the meta) when some
image carries a subset other than ``Default``; images of ``Default`` (or of a subset name that is none of the three)
then belong to no split (counted in one log line; ``split="all"`` reads them). Without such subsets, the images are
split by a hash of their names (``split_fractions``, ``split_seed``). A missing test split is the val split, and a
missing val split a hash share of the train images, the train split then being the rest of them (both logged; the
two never share an image).

Boxes, in CVAT's continuous 0-based pixel coordinates (as COCO's: no 1-based shift):
  - ``<box xtl ytl xbr ybr>``; with a ``rotation`` (degrees, clockwise about the box's centre) other than 0, the
    rotated rectangle's axis-aligned bounding box;
  - ``<polygon>`` / ``<polyline>`` (``points="x,y;x,y;..."``) and ``<cuboid>`` (its 8 corners): their points'
    bounding box;
  - ``<ellipse cx cy rx ry>``: ``cx - rx .. cx + rx``, ``cy - ry .. cy + ry``; rotated, the rotated ellipse's bounding
    box (half sides ``sqrt(rx² cos² + ry² sin²)`` and ``sqrt(rx² sin² + ry² cos²)``);
  - ``<mask rle left top width height>``: CVAT's RLE decoded (run lengths of 0s and 1s alternately, 0s first, row
    by row over the ``width`` x ``height`` patch at ``left, top``): the bounding box of its set pixels;
  - ``<points>`` and ``<skeleton>`` have no box (dropped, reported); a ``<tag>`` labels the whole image and gives no
    box (noted, not a problem).
``occluded``, ``z_order``, ``group_id``, ``source`` and ``<attribute>`` are ignored. A label not in the class list
drops its box (reported). The record's size is the ``<image>``'s ``width`` x ``height`` (an image file of another
size gets its boxes rescaled at load, reported, as VOC's and CSV's sizes; without them, the image header's). An image
without shapes is a negative (noted). Problems name the image file; a missing image is reported naming the file.
An XML that does not parse is an error naming the file, line and column; a CVAT for video export (``<track>``s, no
``<image>``) is an error saying so.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo9000.darknet.cfg import read_names

from .records import DetectionRecord, IssueLog, parse_class_names, sanitize_boxes, size_or_header
from .splits import SPLIT_ALIASES, canonical_split, expand_split, hash_split
from .voc import DEFAULT_SPLIT_FRACTIONS, log_once, train_val_fractions

logger = logging.getLogger("yolo9000.data")

XML_NAME = "annotations.xml"  # CVAT's file name in its zip
BOX_SHAPES = ("box", "polygon", "polyline", "ellipse", "mask", "cuboid")  # shapes giving a box
NO_BOX_SHAPES = ("points", "skeleton")  # no extent: dropped, reported
UNASSIGNED = "Default"  # CVAT's subset of images put in none (and of images without a subset)


@dataclass
class _Shape:
    """One shape element of an ``<image>``: its tag (``box``, ``polygon``, ...), label and XML attributes."""

    kind: str
    label: str
    attrib: dict[str, str]


@dataclass
class _Image:
    """One ``<image>``: its ``name``, ``id``, size (None when absent / not positive), subset (as written, ``""``
    when none) and shapes in file order."""

    name: str
    id: str
    width: int | None
    height: int | None
    subset: str
    shapes: list[_Shape] = field(default_factory=list)


@dataclass
class _Annotations:
    """An annotations.xml read: its images (file order) and the meta's label names (CVAT's order)."""

    path: Path
    images: list[_Image]
    meta_labels: list[str]


_CACHE: dict[tuple[str, int, int], _Annotations] = {}  # the last XML read (train / val / test parsers share it)


def _size(value: str | None) -> int | None:
    try:
        v = int(round(float(value or "")))
    except ValueError:
        return None
    return v if v > 0 else None


def _floats(attrib: Mapping[str, str], keys: Sequence[str]) -> list[float]:
    """The attributes ``keys`` as numbers; ValueError naming a missing or non-numeric one."""
    out = []
    for k in keys:
        try:
            out.append(float(attrib[k]))
        except (KeyError, ValueError):
            raise ValueError(f"{k}={attrib.get(k)!r} is not a number") from None
    return out


def _points(text: str) -> np.ndarray:
    """CVAT's ``"x,y;x,y;..."`` as float64 (K, 2); ValueError when not pairs of numbers."""
    try:
        p = np.asarray([[float(v) for v in pair.split(",")] for pair in text.strip().split(";") if pair.strip()])
    except ValueError:
        raise ValueError(f"points {text[:60]!r} are not 'x,y;x,y;...' numbers") from None
    if p.ndim != 2 or p.shape[1] != 2 or not len(p):
        raise ValueError(f"points {text[:60]!r} are not 'x,y;x,y;...' pairs")
    return p


def rotated_box(x0: float, y0: float, x1: float, y1: float, degrees: float) -> list[float]:
    """The axis-aligned bounding box ``[x0, y0, x1, y1]`` of the rectangle ``x0..x1``, ``y0..y1`` turned by
    ``degrees`` about its centre (either direction gives the same box)."""
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    ex, ey = hw * c + hh * s, hw * s + hh * c
    return [cx - ex, cy - ey, cx + ex, cy + ey]


def ellipse_box(cx: float, cy: float, rx: float, ry: float, degrees: float = 0.0) -> list[float]:
    """The axis-aligned bounding box ``[x0, y0, x1, y1]`` of the ellipse of centre ``cx, cy``, radii ``rx, ry``,
    turned by ``degrees`` about its centre."""
    t = math.radians(degrees)
    ex = math.sqrt((rx * math.cos(t)) ** 2 + (ry * math.sin(t)) ** 2)
    ey = math.sqrt((rx * math.sin(t)) ** 2 + (ry * math.cos(t)) ** 2)
    return [cx - ex, cy - ey, cx + ex, cy + ey]


def mask_box(rle: str, left: float, top: float, width: int, height: int) -> list[float]:
    """The bounding box ``[x0, y0, x1, y1]`` (continuous pixels) of a CVAT mask: ``rle`` is comma-separated run
    lengths of 0s and 1s alternately (0s first) over the ``width`` x ``height`` patch at ``left, top``, row by row.
    ValueError for runs that do not fill the patch, or a mask without a set pixel."""
    try:
        runs = np.asarray([int(float(v)) for v in rle.replace(" ", "").split(",") if v], np.int64)
    except ValueError:
        raise ValueError(f"rle {rle[:40]!r} is not run lengths") from None
    if width <= 0 or height <= 0 or (runs < 0).any() or runs.sum() != width * height:
        raise ValueError(f"rle runs sum to {int(runs.sum())}, the {width}x{height} patch holds {width * height}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)  # (width * height,) True where set
    rows, cols = np.nonzero(flat.reshape(height, width))
    if not len(rows):
        raise ValueError("an empty mask")
    return [
        float(left + cols.min()),
        float(top + rows.min()),
        float(left + cols.max() + 1),
        float(top + rows.max() + 1),
    ]


def shape_box(shape: _Shape) -> list[float]:
    """A shape's box ``[x0, y0, x1, y1]`` in continuous pixels (see the module docstring); ValueError for a shape
    without a box or with malformed coordinates."""
    a, kind = shape.attrib, shape.kind
    if kind == "box":
        x0, y0, x1, y1 = _floats(a, ("xtl", "ytl", "xbr", "ybr"))
        rot = float(a.get("rotation") or 0.0)
        return rotated_box(x0, y0, x1, y1, rot) if rot % 360 else [x0, y0, x1, y1]
    if kind in ("polygon", "polyline"):
        p = _points(a.get("points", ""))
        return [float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())]
    if kind == "ellipse":
        cx, cy, rx, ry = _floats(a, ("cx", "cy", "rx", "ry"))
        return ellipse_box(cx, cy, abs(rx), abs(ry), float(a.get("rotation") or 0.0))
    if kind == "cuboid":
        xs = [float(v) for k, v in a.items() if re.fullmatch(r"x[a-z]{2}[12]", k)]
        ys = [float(v) for k, v in a.items() if re.fullmatch(r"y[a-z]{2}[12]", k)]
        if len(xs) != 8 or len(ys) != 8:
            raise ValueError(f"a cuboid has 8 corners (xtl1 ... ybr2), got {len(xs)} x and {len(ys)} y")
        return [min(xs), min(ys), max(xs), max(ys)]
    if kind == "mask":
        left, top, w, h = _floats(a, ("left", "top", "width", "height"))
        return mask_box(a.get("rle", ""), left, top, int(w), int(h))
    raise ValueError(f"a <{kind}> has no box")


def read_cvat_xml(path: Path) -> _Annotations:
    """An annotations.xml's images and meta labels (the last file read is kept: the three split parsers share it).

    Raises ValueError naming the file, line and column for XML that does not parse, and naming the file for an XML
    that is no CVAT for images export."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        return _CACHE[key]
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        reason = re.sub(r": line \d+, column \d+$", "", str(e))  # expat's position, 0-based column: given 1-based
        raise ValueError(f"{path}: broken XML at line {line}, column {col + 1}: {reason}") from None
    if root.tag != "annotations":
        raise ValueError(f"{path}: not a CVAT XML export (its root element is <{root.tag}>, not <annotations>)")
    images = root.findall("image")
    if not images and root.find("track") is not None:
        raise ValueError(
            f"{path}: a 'CVAT for video' export (<track> elements, no <image>): export the task as 'CVAT for images'"
        )
    meta = root.find("meta")
    labels: list[str] = []
    task_subsets: dict[str, str] = {}
    if meta is not None:
        for group in meta.iter("labels"):
            for lab in group.findall("label"):
                name = (lab.findtext("name") or "").strip()
                kind = (lab.findtext("type") or "").strip().lower()
                if name and kind not in ("skeleton", "tag") and not (lab.findtext("parent") or "").strip():
                    labels.append(name)
        for task in meta.iter("task"):
            tid, sub = (task.findtext("id") or "").strip(), (task.findtext("subset") or "").strip()
            if sub:
                task_subsets[tid] = sub
    only_task = next(iter(task_subsets.values())) if len(task_subsets) == 1 else ""
    out = []
    for im in images:
        a = im.attrib
        subset = a.get("subset") or task_subsets.get(a.get("task_id", ""), "" if "task_id" in a else only_task)
        shapes = [
            _Shape(el.tag, (el.get("label") or "").strip(), dict(el.attrib)) for el in im if isinstance(el.tag, str)
        ]
        out.append(
            _Image(
                a.get("name", "").strip(),
                a.get("id", ""),
                _size(a.get("width")),
                _size(a.get("height")),
                subset.strip(),
                shapes,
            )
        )
    ann = _Annotations(path, out, list(dict.fromkeys(labels)))
    _CACHE.clear()
    _CACHE[key] = ann
    return ann


class CVATParser:
    """Parse a CVAT for images 1.1 XML export (see the module docstring for the splits and shapes).

    Args:
        root: the folder holding the XML (and ``images/``), or the XML itself.
        split: ``train`` / ``val`` / ``test`` (``valid`` = ``val``), a union (``train+val``, ``trainval``), or
            None / ``"all"`` (every image, Default subset included).
        class_names: class list (normally given by the data module); None: ``names_file``, else the labels of the
            XML's meta (project or task ``<labels>``, in CVAT's order; skeletons, their points and tag-only labels
            left out), else, a meta without labels, every label of a box-giving shape, sorted (logged).
        names_file: class names, one a line (relative to ``root``).
        xml_file: the XML, relative to ``root``; None: ``annotations.xml``, else the only ``*.xml`` in ``root``.
        split_fractions, split_seed: the hash split (images without subsets, and a val share of a train subset
            when there is no validation subset).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        class_names: Sequence[str] | None = None,
        names_file: str | Path | None = None,
        xml_file: str | Path | None = None,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int | None = 0,
    ) -> None:
        root = Path(root)
        self._key = "data.xml_file"  # the key that named the XML (for its not-found error)
        if root.suffix.lower() == ".xml" and xml_file is None:
            root, xml_file, self._key = root.parent, root.name, "data.root"
        self.root = root
        self.split = split
        self.class_names = list(class_names) if class_names is not None else None
        self.names_file = self.root / names_file if names_file is not None else None
        self.xml_file = self.root / xml_file if xml_file is not None else None
        self.split_fractions = {
            canonical_split(k): float(v) for k, v in (split_fractions or DEFAULT_SPLIT_FRACTIONS).items()
        }
        self.split_seed = int(split_seed or 0)

    def __repr__(self) -> str:
        return f"CVATParser(root={str(self.root)!r}, split={self.split!r})"

    # ------------------------------------------------------------------------------------------ files
    def xml_path(self) -> Path:
        """The XML: ``xml_file``, else ``annotations.xml`` in ``root``, else the only ``*.xml`` there."""
        if self.xml_file is not None:
            if not self.xml_file.is_file():
                raise FileNotFoundError(f"CVAT XML not found: {self.xml_file} ({self._key})")
            return self.xml_file
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root not found: {self.root} (data.root)")
        if (self.root / XML_NAME).is_file():
            return self.root / XML_NAME
        xmls = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
        if len(xmls) == 1:
            return xmls[0]
        raise FileNotFoundError(
            f"no {XML_NAME} in {self.root}"
            + (f" and several *.xml: {', '.join(p.name for p in xmls)}; set data.xml_file" if xmls else "")
            + ": set data.root to the folder of the CVAT for images export (annotations.xml + images/)"
        )

    def annotations(self) -> _Annotations:
        return read_cvat_xml(self.xml_path())

    def image_path(self, image: _Image, xml: Path) -> Path:
        """The file of an ``<image>`` of the XML ``xml``: ``images/<name>`` beside the XML, else ``<name>`` beside
        it, else ``images/<subset>/<name>`` (a project export; ``default`` / ``Default`` for an image without a
        subset); the first when none exists."""
        folder = xml.parent
        rel = image.name.replace("\\", "/").lstrip("/")
        cands = [folder / "images" / rel, folder / rel]
        cands += [folder / "images" / s / rel for s in ([image.subset] if image.subset else ["default", UNASSIGNED])]
        return next((c for c in cands if c.is_file()), cands[0])

    # ---------------------------------------------------------------------------------------- classes
    def discover_class_names(self) -> list[str] | None:
        """Given class names, else ``names_file``, else the meta's labels in CVAT's order, else every label of a
        box-giving shape, sorted (logged)."""
        if self.class_names is not None:
            return self.class_names
        if self.names_file is not None:
            return read_names(self.names_file)
        ann = self.annotations()
        if ann.meta_labels:
            log_once(
                ("cvat names", str(ann.path)),
                logging.INFO,
                "%s: %d labels of its meta, in CVAT's order: %s",
                ann.path,
                len(ann.meta_labels),
                ann.meta_labels,
            )
            return list(ann.meta_labels)
        names = {s.label for im in ann.images for s in im.shapes if s.kind in BOX_SHAPES} - {""}
        out = sorted(names)
        log_once(
            ("cvat names", str(ann.path)),
            logging.INFO,
            "%s: no labels in its meta: the %d labels of its shapes, sorted: %s",
            ann.path,
            len(out),
            out,
        )
        return out or None

    # ------------------------------------------------------------------------------------------ parse
    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """The split's images and boxes (one record per ``<image>``); problems go to ``issues`` (default: the
        ``"error"`` log)."""
        names, index = parse_class_names(self, class_names)
        issues = issues if issues is not None else IssueLog("error")
        ann = self.annotations()
        records = []
        seen: dict[str, str] = {}  # image id -> the <image> id that gave it
        for image in self._pick(ann):
            rec = self._record(ann.path, image, names, index, issues, seen)
            if rec is not None:
                records.append(rec)
        return records

    def _pick(self, ann: _Annotations) -> list[_Image]:
        """The split's images, as the module docstring says (each decision logged once)."""
        split, path = self.split, ann.path
        images = ann.images
        if split in (None, "all"):
            return list(images)
        groups: dict[str, list[_Image]] = {}  # train / val / test, else the subset as written (Default)
        for im in images:
            s = canonical_split(im.subset)
            groups.setdefault(s if s in SPLIT_ALIASES else im.subset or UNASSIGNED, []).append(im)
        named = {s: v for s, v in groups.items() if s in SPLIT_ALIASES}
        if not named:
            log_once(
                ("cvat layout", str(path)),
                logging.INFO,
                "%s: no image of a Train / Validation / Test subset: its %d images split by a hash of their names "
                "(fractions %s, seed %d)",
                path,
                len(images),
                self.split_fractions,
                self.split_seed,
            )
            parts = expand_split(split)
            if "test" in parts and not self.split_fractions.get("test"):
                log_once(("cvat test=val", str(path)), logging.WARNING, "%s: no test share: test = val", path)
                parts = ["val" if p == "test" else p for p in parts]
            s = "+".join(dict.fromkeys(parts))  # test = val asked with val: each image once
            picked = set(hash_split([im.name for im in images], s, self.split_fractions, self.split_seed))
            out = [im for im in images if im.name in picked]
            self._log(path, "hash split of the image names", len(out))
            return out
        others = {s: len(v) for s, v in groups.items() if s not in SPLIT_ALIASES}
        log_once(
            ("cvat layout", str(path)),
            logging.INFO,
            "%s: CVAT subsets: %s%s",
            path,
            ", ".join(f"{s} {len(v)}" for s, v in named.items()),
            f"; in no split (Default or another subset): {others}" if others else "",
        )
        out: list[_Image] = []
        taken: set[int] = set()  # test = val asked with val: each image once
        for s in expand_split(str(split)):
            if s == "test" and "test" not in named:
                log_once(("cvat test=val", str(path)), logging.WARNING, "%s: no Test subset: test = val", path)
                s = "val"
            if s in ("train", "val") and "val" not in named and "train" in named:
                # no Validation subset: val is a hash share of the Train images and train the rest (never both)
                fractions = train_val_fractions(self.split_fractions)
                share = set(hash_split([im.name for im in named["train"]], s, fractions, self.split_seed))
                picked = [im for im in named["train"] if im.name in share]
                what = f"the {s} hash share of the Train subset (no Validation subset; {fractions})"
                self._log(path, what, len(picked))
            elif s in named:
                picked = named[s]
                self._log(path, f"subset {picked[0].subset}", len(picked))
            else:
                raise ValueError(f"{path}: no {s} subset among its images' subsets ({', '.join(sorted(named))})")
            out += [im for im in picked if id(im) not in taken]
            taken |= {id(im) for im in picked}
        return out

    def _log(self, path: Path, what: str, n: int) -> None:
        log_once(
            ("cvat split", str(path), str(self.split), what),
            logging.INFO,
            "%s: split %r: %d image%s, %s",
            path,
            self.split,
            n,
            "" if n == 1 else "s",
            what,
        )

    def _record(
        self,
        xml: Path,
        image: _Image,
        names: Sequence[str],
        index: Mapping[str, int],
        issues: IssueLog,
        seen: dict[str, str],
    ) -> DetectionRecord | None:
        """One ``<image>``'s record (None: image skipped, reported)."""
        where = f"{xml.name} <image id={image.id!r} name={image.name!r}>"
        if not image.name:
            issues.report(xml, "an <image> without a name", action="skip_image", detail=f"id {image.id!r}")
            return None
        path = self.image_path(image, xml)
        image_id = image.name.replace("\\", "/").lstrip("/")
        image_id = image_id.rsplit(".", 1)[0] if "." in Path(image_id).name else image_id
        if image_id in seen:
            issues.report(path, "another <image> of the same name", action="skip_image", detail=where)
            return None
        if not path.is_file():
            issues.report(path, "missing image file", action="skip_image", detail=f"named in {where}")
            return None
        size = size_or_header(image.width, image.height, path, xml, issues, field=f"width / height of {where}")
        if size is None:
            return None
        seen[image_id] = image.id
        width, height = size
        boxes, labels = [], []
        for k, shape in enumerate(image.shapes):
            what = f"shape {k + 1} <{shape.kind}> {shape.label!r} in {where}"
            if shape.kind == "tag":
                issues.note(path, "a <tag> labels the image, no box", detail=what)
                continue
            if shape.kind in NO_BOX_SHAPES:
                issues.report(path, f"a <{shape.kind}> shape has no box", action="drop_box", detail=what)
                continue
            if shape.kind not in BOX_SHAPES:
                issues.report(path, f"unknown shape <{shape.kind}>", action="drop_box", detail=what)
                continue
            try:
                box = shape_box(shape)
            except ValueError as e:
                issues.report(path, f"<{shape.kind}> without a box", action="drop_box", detail=f"{what}: {e}")
                continue
            if shape.label not in index:
                issues.report(path, f"unknown class '{shape.label}'", action="drop_box", detail=what)
                continue
            boxes.append(box)
            labels.append(index[shape.label])
        if not image.shapes:
            issues.note(path, "no shapes, kept as a negative", detail=where)
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        lab = np.asarray(labels, np.int64)
        b, lab, dif = sanitize_boxes(b, lab, np.zeros(len(lab), bool), width, height, path, issues, names)
        return DetectionRecord(path, image_id, width, height, b, lab, dif)
