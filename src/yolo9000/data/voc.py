"""PASCAL VOC parser: ``root/Annotations/*.xml``, ``root/JPEGImages/``, ``ImageSets/Main/<split>.txt``.

Other folder names (``annotations/`` + ``images/``, XML next to the images) and other split lists (a txt of file
names or paths per split, a CSV with a split column) are configured with ``image_dir``, ``ann_dir`` and
``split_files`` (data-level keys ``data.image_dir`` ... in conf/data/voc.yaml and bccd.yaml).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolo9000.text_io import read_text, text_lines

from .image_io import IMAGE_SUFFIXES, images_under
from .records import (
    SPLIT_ALIASES,
    DetectionRecord,
    IssueLog,
    canonical_split,
    class_index,
    expand_split,
    flag_value,
    hash_split,
    read_list_file,
    sanitize_boxes,
    size_or_header,
)

logger = logging.getLogger("yolo9000.data")

DEFAULT_SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def train_val_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """The train and val shares of ``fractions`` (defaults for missing ones): a source without a val split is cut
    into these two alone (:func:`hash_split` renormalises them), the test split then being val."""
    return {k: float(fractions.get(k, DEFAULT_SPLIT_FRACTIONS[k])) for k in ("train", "val")}


DEFAULT_IMAGE_DIR, DEFAULT_ANN_DIR, DEFAULT_SPLIT_FILES = "JPEGImages", "Annotations", "ImageSets/Main"
_OTHER_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".webp", ".tif", ".tiff")
# tried, in order, when the default folder is missing (the folder itself: XML files next to the images)
_IMAGE_DIR_FALLBACKS = ("images", "Images", "imgs", "img", ".")
_ANN_DIR_FALLBACKS = ("annotations", "Annotation", "annotation", "xml", "xmls", ".")
_logged: set[tuple[str, ...]] = set()  # decisions already logged (several parsers share a root)


def reset_decision_log() -> None:
    """Log the layout / split decisions again (a new data module, e.g. the next job of a multirun)."""
    _logged.clear()


def log_once(key: tuple[str, ...], level: int, msg: str, *args: Any) -> None:
    """Log a decision once per process (the train, val and test parsers of a root make the same ones)."""
    if key not in _logged:
        _logged.add(key)
        logger.log(level, msg, *args)


def _has_files(folder: Path, suffixes: Sequence[str]) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in suffixes for p in folder.iterdir())


class VOCParser:
    """Parse one split of a PASCAL VOC style dataset.

    Box coordinates in the XML are 1-based inclusive pixels; they become 0-based continuous xyxy
    (``xmin - 1, ymin - 1, xmax, ymax``), so a box touching the right border ends at ``width``.

    Args:
        root: dataset root.
        split: split name (``valid`` / ``validation`` = ``val``; ``trainval`` or ``a+b``: a union; ``None`` or
            ``"all"``: every annotation file). Its image ids come from ``split_files``.
        class_names: class list (index = position); normally given by the data module.
        image_dir: images folder under ``root`` (``"."``: the root itself). When the default ``JPEGImages`` is
            missing, ``images/`` (then ``Images``, ``imgs``, ``img``, the root itself) is used, logged.
        ann_dir: XML folder under ``root``. When the default ``Annotations`` is missing, ``annotations/`` (then
            ``Annotation``, ``xml``, ``xmls``, the root itself) is used, logged.
        split_files: where the split lists are (relative to ``root``, or absolute):

            - a folder holding ``<split>.txt`` (or ``<split>.csv``; ``valid.txt`` for val): VOC's
              ``ImageSets/Main`` (the default; when the ``ImageSets`` folder is absent, a hash split);
            - a mapping ``{train: a.txt, val: b.csv, test: ...}``;
            - one CSV with a split column (``split`` / ``subset`` / ``set``; ``valid`` = ``val``);
            - one txt or CSV without a split column: the images to use, split by hash;
            - ``None``: a hash split of every annotation file.

            A txt list has one entry a line: a VOC id, a file name with or without extension, or a path
            (relative to the root or the images folder, or absolute); a CSV a file-name column (``filename``,
            ``file``, ``image``, ``path``, ``id``, ...). A missing test list: test = val (logged).
        image_ext: extension tried first for ``<id>``; the XML ``<filename>`` and common extensions next.
        split_fractions: fractions of the hash split (default train/val/test = 0.7/0.15/0.15).
        split_seed: seed of the hash split.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        class_names: Sequence[str] | None = None,
        image_dir: str | None = DEFAULT_IMAGE_DIR,
        ann_dir: str | None = DEFAULT_ANN_DIR,
        image_ext: str = ".jpg",
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int | None = 0,
        split_files: str | Path | Mapping[str, Any] | None = DEFAULT_SPLIT_FILES,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names) if class_names is not None else None
        self.image_dir_name = str(image_dir) if image_dir is not None else DEFAULT_IMAGE_DIR
        self.ann_dir_name = str(ann_dir) if ann_dir is not None else DEFAULT_ANN_DIR
        self.image_ext = image_ext
        self.split_fractions = {
            canonical_split(k): float(v) for k, v in (split_fractions or DEFAULT_SPLIT_FRACTIONS).items()
        }
        self.split_seed = int(split_seed or 0)
        if isinstance(split_files, Mapping):
            split_files = {canonical_split(str(k)): v for k, v in split_files.items()}
        self.split_files = split_files
        self._image_dir: Path | None = None
        self._ann_dir: Path | None = None
        self._split_dirs: dict[str, Path] | None = None  # split folders (Roboflow's export); None: not looked for
        self._explicit: dict[str, str] = {}  # id -> image path (relative to image_dir) given by a split list
        self.source = ""  # where the split's ids came from (set by ids())

    def __repr__(self) -> str:
        return f"VOCParser(root={str(self.root)!r}, split={self.split!r})"

    # ------------------------------------------------------------------------------------------ folders
    def _find_dir(self, given: str, default: str, fallbacks: Sequence[str], suffixes: Sequence[str], key: str) -> Path:
        what = "annotation (XML)" if key == "ann_dir" else "image"
        first = self.root / given
        if first.is_dir() and (given != "." or _has_files(first, suffixes)):
            return first
        tried = [first]
        if given == default:
            for name in fallbacks:
                cand = self.root / name
                if cand.is_dir() and _has_files(cand, suffixes):
                    log_once(
                        ("dir", str(self.root), key),
                        logging.INFO,
                        "%s: no %s/ folder, using %s for the %s files (set data.%s to choose another)",
                        self.root,
                        default,
                        cand,
                        what,
                        key,
                    )
                    return cand
                tried.append(cand)
        if not self.root.is_dir():  # the dataset itself is not there: its root is what to correct
            raise FileNotFoundError(
                f"VOC {what} folder not found: the dataset root {self.root} does not exist (data.root, or the "
                f"variable .env sets it from)"
            )
        raise FileNotFoundError(
            f"VOC {what} folder not found: looked for {', '.join(map(str, tried))}; set data.{key} to the folder "
            f"holding the {what} files (relative to {self.root}, or absolute)"
        )

    @property
    def image_dir(self) -> Path:
        """The images folder (the configured one, or the fallback found; raises naming what was looked for)."""
        if self._image_dir is None and self._split_folders():
            self._image_dir = self.root  # ids are <split folder>/<stem>
        if self._image_dir is None:
            self._image_dir = self._find_dir(
                self.image_dir_name, DEFAULT_IMAGE_DIR, _IMAGE_DIR_FALLBACKS, IMAGE_SUFFIXES, "image_dir"
            )
        return self._image_dir

    @property
    def ann_dir(self) -> Path:
        """The XML folder (the configured one, or the fallback found; raises naming what was looked for)."""
        if self._ann_dir is None and self._split_folders():
            self._ann_dir = self.root
        if self._ann_dir is None:
            self._ann_dir = self._find_dir(self.ann_dir_name, DEFAULT_ANN_DIR, _ANN_DIR_FALLBACKS, (".xml",), "ann_dir")
        return self._ann_dir

    def _split_folders(self) -> dict[str, Path]:
        """Roboflow's Pascal VOC export: ``train/``, ``valid/``, ``test/`` under the root, each holding its images
        beside their XML files (a split's images are its folder's). Only with the default folder and split-list
        keys and no XML folder of the usual names; else {} (the usual layout)."""
        if self._split_dirs is None:
            self._split_dirs = {}
            usual = (DEFAULT_ANN_DIR, *_ANN_DIR_FALLBACKS)
            if (
                self.ann_dir_name == DEFAULT_ANN_DIR
                and self.image_dir_name == DEFAULT_IMAGE_DIR
                and str(self.split_files) == DEFAULT_SPLIT_FILES
                and not (self.root / "ImageSets").is_dir()
                and self.root.is_dir()
                and not any(_has_files(self.root / name, (".xml",)) for name in usual)
            ):
                for d in sorted(self.root.iterdir()):
                    split = canonical_split(d.name.lower())
                    if split in SPLIT_ALIASES and d.is_dir() and _has_files(d, (".xml",)):
                        self._split_dirs.setdefault(split, d)
            if self._split_dirs:
                log_once(
                    ("split folders", str(self.root)),
                    logging.INFO,
                    "%s: split folders holding images and XML files (Roboflow's Pascal VOC export): %s",
                    self.root,
                    ", ".join(f"{k} {v.name}/" for k, v in self._split_dirs.items()),
                )
        return self._split_dirs

    def _split_folder_ids(self, folders: dict[str, Path]) -> tuple[list[str], str]:
        """The split's ids (``<folder>/<stem>``) in the split-folder layout and where they come from: its folder; a
        missing test folder: the val one; a missing val folder: hash shares of the train folder, train the rest of it
        (both logged; the two never share an image)."""
        split = self.split
        parts = list(folders) if split in (None, "all") else expand_split(str(split))
        ids: list[str] = []
        sources = []

        def folder_ids(folder: Path) -> list[str]:
            return sorted(p.relative_to(self.root).with_suffix("").as_posix() for p in folder.rglob("*.xml"))

        for part in parts:
            if part == "test" and part not in folders and "val" in folders:
                log_once(("test=val", str(self.root)), logging.WARNING, "%s: no test folder: test = val", self.root)
                part = "val"
            shared = split not in (None, "all") and part == "train" and "val" not in folders  # val comes out of it
            if part in folders and not shared:
                ids += folder_ids(folders[part])
                sources.append(f"folder {folders[part]}")
            elif part in ("train", "val", "test") and "train" in folders:  # val (and test) out of train: train the rest
                share = "val" if part == "test" else part
                fractions = train_val_fractions(self.split_fractions)
                ids += hash_split(folder_ids(folders["train"]), share, fractions, self.split_seed)
                how = f"the {share} hash share of {folders['train']} (no val folder; fractions {fractions})"
                log_once(("split folders share", str(self.root), share), logging.WARNING, "%s: %s", self.root, how)
                sources.append(how)
            else:
                raise FileNotFoundError(
                    f"{self.root}: no {part} folder among the split folders ({', '.join(map(str, folders.values()))})"
                )
        return ids, " + ".join(sources)

    def _xml_ids(self) -> list[str]:
        """Ids (paths under the XML folder without ``.xml``) of every annotation file, sorted."""
        return sorted(p.relative_to(self.ann_dir).with_suffix("").as_posix() for p in self.ann_dir.rglob("*.xml"))

    def discover_class_names(self) -> list[str] | None:
        """The class list given to the parser; without one, every object name found in the XML files (all files,
        so every split agrees), sorted, or in the order of CVAT's ``labelmap.txt`` when the export has one.
        Unreadable XML files are left to :meth:`parse` to report."""
        if self.class_names is not None:
            return self.class_names
        names: set[str] = set()
        for xml in sorted(self.ann_dir.rglob("*.xml")):
            try:
                root = ET.parse(xml).getroot()
            except ET.ParseError:
                continue
            names.update((o.findtext("name") or "").strip() for o in root.iter("object"))
        names.discard("")
        ordered = self._labelmap_order(names)
        if ordered is not None:
            return ordered
        if names:
            log_once(
                ("classes", str(self.ann_dir)),
                logging.INFO,
                "%s: class names from the annotations (sorted): %s",
                self.ann_dir,
                sorted(names),
            )
        return sorted(names) or None

    def _labelmap_order(self, found: set[str]) -> list[str] | None:
        """CVAT's ``labelmap.txt`` beside a VOC export (``name:color:parts:actions`` lines): its label order, without
        a ``background`` entry no annotation uses; names of the annotations it lacks follow, sorted. None without."""
        path = self.root / "labelmap.txt"
        if not path.is_file():
            return None
        listed = []
        for line in text_lines(read_text(path)):
            name = line.split(":", 1)[0].strip()
            if name and not line.lstrip().startswith("#") and (name != "background" or name in found):
                listed.append(name)
        names = list(dict.fromkeys(listed)) + sorted(found - set(listed))
        log_once(("classes", str(path)), logging.INFO, "%s: class names in its order: %s", path, names)
        return names or None

    # ------------------------------------------------------------------------------------------- splits
    def _path(self, p: str | Path) -> Path:
        p = Path(p)
        return p if p.is_absolute() else self.root / p

    def _list_in_folder(self, folder: Path, split: str) -> Path | None:
        """``<split>.txt`` / ``.csv`` in ``folder`` under the split's names (``valid.txt`` for val), in any case
        (CVAT writes ``Train.txt``, ``Validation.txt``)."""
        names = [split, *(a for a in _aliases(split) if a != split)]
        files = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
        for name in names:
            for ext in (".txt", ".csv"):
                if f"{name}{ext}".lower() in files:
                    return files[f"{name}{ext}".lower()]
        return None

    def _entries(self) -> tuple[list[str] | None, bool, str]:
        """(entries of the split lists or None for every XML file, hash-split them?, description)."""
        sf = self.split_files
        split = self.split
        if split in (None, "all"):
            return None, False, f"every XML file in {self.ann_dir}"
        assert split is not None
        if sf is None:
            return None, True, f"hash split of every XML file in {self.ann_dir} (data.split_files is null)"
        if isinstance(sf, Mapping):
            return self._entries_from_mapping(sf, split)
        p = self._path(sf)
        if p.is_dir():
            lst = self._list_in_folder(p, split)
            if lst is not None:
                return read_list_file(lst, split)[0], False, str(lst)
            entries, sources = [], []
            for s in expand_split(split):
                lst = self._list_in_folder(p, s)
                if lst is None and s == "test":
                    lst = self._list_in_folder(p, "val")
                    if lst is not None:
                        log_once(
                            ("test=val", str(p)),
                            logging.WARNING,
                            "%s: no test list (test.txt / test.csv): the test split uses the val list %s",
                            p,
                            lst,
                        )
                if lst is None and (share := self._trainval_share(p, "val" if s == "test" else s)) is not None:
                    entries += share[0]
                    sources.append(share[1])
                    continue
                if lst is None:
                    raise FileNotFoundError(
                        f"split list not found: {p / f'{s}.txt'} (nor {s}.csv); set data.split_files to the folder "
                        f"holding <split>.txt, to {{train: ..., val: ...}} or to a CSV with a split column"
                    )
                entries += read_list_file(lst, s)[0]
                sources.append(str(lst))
            return entries, False, " + ".join(sources)
        if p.is_file():
            entries, filtered = read_list_file(p, split)
            if filtered:
                return entries, False, f"{p} (rows with split {split!r})"
            return entries, True, f"hash split of the {len(entries)} entries of {p} (it has no split column)"
        if str(sf) == DEFAULT_SPLIT_FILES and not (self.root / "ImageSets").is_dir():
            return None, True, f"hash split of every XML file in {self.ann_dir} (no ImageSets folder)"
        raise FileNotFoundError(
            f"split list not found: {p}; set data.split_files to a folder of <split>.txt lists, to "
            f"{{train: ..., val: ...}}, to a CSV with a split column, or to null for a hash split"
        )

    def _trainval_share(self, folder: Path, split: str) -> tuple[list[str], str] | None:
        """The ``split`` (train or val) hash share of ``folder``'s trainval list (or ``default`` list: CVAT's export
        of a task without subsets) when it has no train / val lists
        (logged; the shares are disjoint and cover the list: ``split_fractions``' train and val, renormalised); None
        without a trainval list."""
        lst = self._list_in_folder(folder, "trainval") or self._list_in_folder(folder, "default")  # CVAT: default
        if split not in ("train", "val") or lst is None:
            return None
        fractions = train_val_fractions(self.split_fractions)
        entries = read_list_file(lst, "trainval")[0]
        how = f"the {split} hash share of {lst} (no train / val lists; fractions {fractions}, seed {self.split_seed})"
        log_once(("trainval share", str(lst), split), logging.WARNING, "%s: split %r: %s", self.root, split, how)
        return hash_split(entries, split, fractions, self.split_seed), how

    def _entries_from_mapping(self, sf: Mapping[str, Any], split: str) -> tuple[list[str], bool, str]:
        parts = [split] if split in sf else expand_split(split)
        entries, sources = [], []
        for s in parts:
            src = sf.get(s)
            if src is None and s == "test" and sf.get("val") is not None:
                log_once(
                    ("test=val", str(self.root), str(sf.get("val"))),
                    logging.WARNING,
                    "%s: data.split_files has no test entry: the test split uses the val list %s",
                    self.root,
                    sf["val"],
                )
                src = sf["val"]
            if src is None:
                raise ValueError(f"data.split_files has no entry for split {s!r} (keys: {sorted(sf)})")
            p = self._path(src)
            if not p.is_file():
                raise FileNotFoundError(f"split list not found: {p} (data.split_files.{s})")
            entries += read_list_file(p, s)[0]
            sources.append(str(p))
        return entries, False, " + ".join(sources)

    def _entry_id(self, entry: str) -> str:
        """A split-list entry (id, file name, path) -> image id (path under the images folder, no extension)."""
        e = entry.strip().replace("\\", "/")
        while e.startswith("./"):
            e = e[2:]
        p = Path(e)
        rel: Path | None = None
        bases = [self.image_dir, self.ann_dir, self.root]
        if p.is_absolute():
            rel = next((p.relative_to(b) for b in bases if _is_under(p, b)), Path(p.name))
        else:
            for b in bases[:2]:
                prefix = _rel_to_root(b, self.root)
                if prefix and _is_under(p, prefix):
                    rel = p.relative_to(prefix)
                    break
            rel = rel if rel is not None else p
        suffix = rel.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            key = rel.with_suffix("").as_posix()
            self._explicit[key] = rel.as_posix()
            return key
        return rel.with_suffix("").as_posix() if suffix == ".xml" else rel.as_posix()

    def ids(self) -> list[str]:
        """Image ids of the split (paths under the images folder without extension; VOC: the file stems)."""
        folders = self._split_folders()
        if folders:
            pool, source = self._split_folder_ids(folders)
            entries, do_hash = [], False
        else:
            entries, do_hash, source = self._entries()
            pool = self._xml_ids() if entries is None else list(dict.fromkeys(self._entry_id(e) for e in entries))
        if entries is None:
            self._note_unannotated(pool)
        if do_hash:
            assert self.split is not None
            split = self.split if self.split in self.split_fractions else "+".join(expand_split(self.split))
            if split == "test" and not self.split_fractions.get("test"):
                log_once(("test=val hash", str(self.root)), logging.WARNING, "%s: no test share: test = val", self.root)
                split, source = "val", f"the val split, {source}"
            pool = hash_split(pool, split, self.split_fractions, self.split_seed)
            source += f", fractions {self.split_fractions}, seed {self.split_seed}"
        self.source = source
        log_once(
            ("split", str(self.root), str(self.split), source),
            logging.INFO,
            "%s: split %r: %d images from %s",
            self.root,
            self.split,
            len(pool),
            source,
        )
        return pool

    def _note_unannotated(self, xml_ids: Sequence[str]) -> None:
        """Log (once) the images of the images folder that no annotation file describes: the splits are made of the
        XML files, so these are not used (an annotation tool writes no XML for an image not yet labelled)."""
        if ("unannotated", str(self.image_dir)) in _logged:  # the train / val / test parsers share the folder
            return
        known = set(xml_ids) | {Path(i).name for i in xml_ids}
        images = images_under(self.image_dir)
        missing = sorted(
            p
            for p in images
            if p.relative_to(self.image_dir).with_suffix("").as_posix() not in known and p.stem not in known
        )
        if missing:
            log_once(
                ("unannotated", str(self.image_dir)),
                logging.WARNING,
                "%s: %d of its %d images have no annotation file in %s and are not used (%s%s)",
                self.image_dir,
                len(missing),
                len(images),
                self.ann_dir,
                ", ".join(p.name for p in missing[:5]),
                ", ..." if len(missing) > 5 else "",
            )

    # ------------------------------------------------------------------------------------------- parse
    def _find_image(self, image_id: str, filename: str | None) -> Path | None:
        cands = []
        if image_id in self._explicit:
            cands.append(self.image_dir / self._explicit[image_id])
        cands.append(self.image_dir / f"{image_id}{self.image_ext}")
        if filename:
            cands += [self.image_dir / Path(image_id).parent / Path(filename).name, self.image_dir / filename]
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
        if not xml_path.is_file() and (self.ann_dir / f"{Path(image_id).name}.xml").is_file():
            xml_path = self.ann_dir / f"{Path(image_id).name}.xml"
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
            expected = self._explicit.get(image_id, f"{image_id}{self.image_ext}")
            issues.report(xml_path, "missing image file", action="skip_image", detail=str(self.image_dir / expected))
            return None

        size = size_or_header(
            _int_or_none(root.findtext("size/width")),
            _int_or_none(root.findtext("size/height")),
            image_path,
            xml_path,
            issues,
            "<size>",
        )
        if size is None:
            return None
        width, height = size

        boxes, labels, difficult = [], [], []
        places: list[str] = []  # each box's object number, named in its issues
        objects = list(root.iter("object"))
        if not objects:
            issues.note(xml_path, "no objects, kept as a negative")
        for k, obj in enumerate(objects):
            name = (obj.findtext("name") or "").strip()
            if name not in cls_idx:  # the object's place: each box counted (an identical issue is recorded once)
                issues.report(xml_path, f"unknown class '{name}'", action="drop_box", detail=f"object {k + 1}")
                continue
            bb = obj.find("bndbox")
            try:
                coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr,arg-type]
            except (AttributeError, TypeError, ValueError):
                issues.report(
                    xml_path, "missing or malformed <bndbox>", action="drop_box", detail=f"{name}, object {k + 1}"
                )
                continue
            boxes.append(coords)
            places.append(f"object {k + 1}")
            labels.append(cls_idx[name])
            difficult.append(_difficult(obj.findtext("difficult"), xml_path, k, issues))

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
                detail=f"{names[lab[k]]} ({', '.join(f'{v:g}' for v in b[k].tolist())}), {places[k]}",
            )
        b, lab, dif = b[~bad], lab[~bad], dif[~bad]
        b[:, :2] -= 1.0  # 1-based inclusive -> 0-based continuous
        kept = [p for p, drop in zip(places, bad.tolist(), strict=True) if not drop]
        b, lab, dif = sanitize_boxes(b, lab, dif, width, height, xml_path, issues, names, places=kept)
        return DetectionRecord(image_path, image_id, width, height, b, lab, dif)


def _aliases(split: str) -> tuple[str, ...]:
    return SPLIT_ALIASES.get(canonical_split(split), (split,))


def _is_under(p: Path, base: Path) -> bool:
    try:
        p.relative_to(base)
    except ValueError:
        return False
    return True


def _rel_to_root(folder: Path, root: Path) -> Path | None:
    """``folder`` relative to ``root`` (None when it is the root itself or outside it)."""
    if not _is_under(folder, root) or folder == root:
        return None
    return folder.relative_to(root)


def _difficult(text: str | None, xml_path: Path, k: int, issues: IssueLog) -> bool:
    """An object's ``<difficult>`` (:func:`~yolo9000.data.records.flag_value`: a number, or ``true`` / ``yes`` /
    ``false`` / ``no`` as other tools write it); absent: not difficult. Anything else is not difficult, noted with
    the object."""
    flag = flag_value(text)
    if flag is None:
        issues.note(xml_path, "unreadable <difficult>, taken as 0", detail=f"object {k + 1}: {text!r}")
    return bool(flag)


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text.strip()))
    except (ValueError, OverflowError):  # not a number, nan, inf
        return None
