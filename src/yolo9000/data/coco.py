"""COCO JSON parser (``images``, ``annotations`` with ``bbox`` = x, y, w, h in pixels, ``categories``).

With only a training JSON (your own data exported from CVAT, Label Studio, Roboflow ...), val and test are derived
from it by a deterministic, logged hash split of the image file names; the image folder of each JSON is found
next to it (``<root>/train2017/``, ``<root>/images/``, the JSON's folder, ...) unless ``image_dir`` is given.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .records import DetectionRecord, IssueLog, class_index, flag_value, sanitize_boxes, size_or_header
from .splits import canonical_split, hash_split
from .voc import DEFAULT_SPLIT_FRACTIONS, log_once

logger = logging.getLogger("yolo9000.data")

_ROBOFLOW_JSON = "_annotations.coco.json"  # Roboflow's COCO export: one per split folder, beside the images
_JSON_PREFIXES = ("instances_", "person_keypoints_", "captions_", "annotations_")
_cache: dict[tuple[str, float], dict[str, Any]] = {}  # the last JSON read (the train JSON serves derived splits)


def release_cache() -> None:
    """Drop the JSON kept for the splits parsed from one file: a data module's setup calls it when it has parsed
    (COCO 2017's train JSON is ~2.5 GB of Python objects; kept, every loader worker's garbage collector would
    walk, and so copy, them)."""
    _cache.clear()


def _without_masks(obj: dict[str, Any]) -> dict[str, Any]:
    """A JSON object without its ``segmentation`` (the masks' polygons or RLE: most of an instances file, unused)."""
    obj.pop("segmentation", None)
    return obj


def _read_json(path: Path) -> dict[str, Any]:
    """The COCO JSON at ``path`` without the annotations' masks, dropped as each object is read: COCO 2017's train
    file (450 MB) peaks at ~1 GB and reads in half the time, against ~3 GB whole (2-core VM)."""
    key = (str(path), path.stat().st_mtime)
    if key not in _cache:
        _cache.clear()
        with open(path, encoding="utf-8-sig") as f:  # a BOM written by some tools is no JSON error
            _cache[key] = json.load(f, object_hook=_without_masks)
    return _cache[key]


class COCOParser:
    """Parse a COCO instances JSON file (one split).

    ``bbox`` [x, y, w, h] (0-based continuous pixels) becomes xyxy [x, y, x + w, y + h]; ``iscrowd`` boxes
    get ``difficult = True`` (kept for evaluation, left out of the training targets like VOC difficult).

    Two ways to configure it:

    - ``ann_file`` (+ ``image_dir``): every image of that JSON;
    - ``ann_files`` ``{train: ..., val: ..., test: ...}`` + ``split``: the split's JSON (a train JSON missing where
      ``root`` holds Roboflow's COCO export, ``train/_annotations.coco.json`` and ``valid/...``: those, logged). A
      val JSON that is missing (or null) makes val and test hash shares of the train JSON (by image file name,
      ``split_fractions``, ``split_seed``; train keeps the rest); a test JSON that is null or the val one tests on
      val; a test JSON that is missing makes test a hash share of train. Logged.

    Args:
        ann_file: the JSON file (relative paths are taken under ``root``).
        image_dir: folder of the images (``file_name`` is relative to it; relative to ``root``), or a mapping per
            split; None: found next to the JSON: ``<root>/<tag>``, ``<root>/images/<tag>``, ``<root>/images``, the
            JSON's folder ... (``<tag>`` = ``train2017`` for ``instances_train2017.json``), checked against the
            first file names; the error names every folder tried.
        root: optional base folder for the paths above.
        class_names: class list; default (and when the data module gives none): the category names in
            increasing category-id order (darknet's coco.names order). Categories not in the list are
            reported as unknown classes.
        split: the split (with ``ann_files``).
        ann_files: the JSON of each split (relative to ``root``).
        split_fractions, split_seed: the hash split of derived splits (default train/val/test = 0.7/0.15/0.15).
    """

    def __init__(
        self,
        ann_file: str | Path | None = None,
        image_dir: str | Path | Mapping[str, Any] | None = None,
        root: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        split: str | None = None,
        ann_files: Mapping[str, Any] | None = None,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int | None = 0,
    ) -> None:
        if ann_file is None and ann_files is None:
            raise ValueError("COCOParser needs ann_file or ann_files")
        self.root = Path(root) if root is not None else None
        self.split = canonical_split(split) if split is not None else None
        self.ann_files = {canonical_split(str(k)): v for k, v in ann_files.items()} if ann_files is not None else None
        self.image_dir_spec = image_dir
        self.class_names = list(class_names) if class_names is not None else None
        self.split_fractions = {
            canonical_split(k): float(v) for k, v in (split_fractions or DEFAULT_SPLIT_FRACTIONS).items()
        }
        self.split_seed = int(split_seed or 0)
        self._plan: tuple[Path, str | None, dict[str, float] | None, str] | None = None
        if ann_file is not None:
            self._plan = (self._path(ann_file), None, None, f"every image of {self._path(ann_file)}")
        self._image_dir: Path | None = None

    def _path(self, p: str | Path) -> Path:
        p = Path(p)
        return p if p.is_absolute() or self.root is None else self.root / p

    @property
    def ann_file(self) -> Path:
        """The JSON this split reads (the train JSON for a derived split)."""
        return self.plan()[0]

    def __repr__(self) -> str:
        return f"COCOParser(ann_file={str(self.ann_file)!r}, split={self.split!r})"

    # ------------------------------------------------------------------------------------------ splits
    def plan(self) -> tuple[Path, str | None, dict[str, float] | None, str]:
        """(JSON to read, hash-split share to keep or None for all, fractions of that split, description)."""
        if self._plan is not None:
            return self._plan
        assert self.ann_files is not None
        if self.split is None:
            raise ValueError("COCOParser with ann_files needs a split")
        files = {s: self._path(v) if v else None for s, v in self.ann_files.items()}
        train = files.get("train")
        own = files.get(self.split)
        if self.split != "train" and own is not None and own.is_file() and (train is None or not train.is_file()):
            self._plan = (own, None, None, str(own))  # a split with its own JSON needs no train JSON (an evaluation)
            return self._plan
        if train is None or not train.is_file():
            export = self._roboflow_files()
            if export is None:
                if self.root is not None and not self.root.is_dir():  # the dataset itself is not there
                    raise FileNotFoundError(f"dataset root not found: {self.root} (data.root)")
                base = self.root if self.root is not None else Path(".")
                found = sorted({*base.glob("*.json"), *base.glob("*/*.json")}) if base.is_dir() else []
                there = (
                    f"; JSON files in {base}: {', '.join(f.relative_to(base).as_posix() for f in found[:8])}"
                    + (", ..." if len(found) > 8 else "")
                    if found
                    else ""
                )
                raise FileNotFoundError(f"COCO train JSON not found: {train} (set data.ann_files.train){there}")
            log_once(  # the layout found, as the other layouts' (a Roboflow export is no problem)
                ("coco roboflow", str(self.root)),
                logging.INFO,
                "COCO train JSON %s not found; %s holds Roboflow's COCO export: %s",
                train,
                self.root,
                ", ".join(f"{k} {v}" for k, v in export.items()),
            )
            files, train = export, export["train"]
        val, test = files.get("val"), files.get("test")
        derived = []
        if val is None or not val.is_file():
            derived.append("val")
        test_is_val = test is None or test == val
        test_missing = (test_is_val and "val" in derived) or (not test_is_val and not test.is_file())  # type: ignore[union-attr]
        if test_missing and self.split_fractions.get("test", 0) > 0:
            derived.append("test")
        elif test_missing:  # no test share in split_fractions: test on val
            test_is_val = True
        fractions = {s: self.split_fractions.get(s, DEFAULT_SPLIT_FRACTIONS[s]) for s in ["train", *derived]}
        if derived:
            missing = ", ".join(f"{s} ({files.get(s) or 'not configured'})" for s in derived)
            log_once(
                ("coco derived", str(train), str(derived)),
                logging.WARNING,
                "COCO JSON missing for %s: %s taken from %s by a hash split of the image file names (fractions %s, "
                "seed %d)",
                missing,
                " and ".join(derived),
                train,
                fractions,
                self.split_seed,
            )
        how = f"hash share of {train.name} (fractions {fractions}, seed {self.split_seed})"
        split = self.split
        if split == "train":
            self._plan = (train, "train", fractions, how) if derived else (train, None, None, str(train))
        elif split in derived:
            self._plan = (train, split, fractions, how)
        elif split == "test" and test_is_val and "val" in derived:
            log_once(("coco test=val", str(train)), logging.WARNING, "COCO: no test share: test uses the val share")
            self._plan = (train, "val", fractions, f"the val split, {how}")
        elif split == "test" and test_is_val:
            assert val is not None
            log_once(("coco test=val", str(val)), logging.INFO, "COCO: no test JSON configured: test uses %s", val)
            self._plan = (val, None, None, f"{val} (the val JSON)")
        elif files.get(split) is not None and files[split].is_file():  # type: ignore[union-attr]
            self._plan = (files[split], None, None, str(files[split]))  # type: ignore[arg-type]
        else:
            raise FileNotFoundError(f"COCO JSON for split {split!r} not found: {files.get(split)} (data.ann_files)")
        return self._plan

    def _roboflow_files(self) -> dict[str, Path] | None:
        """The split JSONs of Roboflow's COCO export under ``root`` (``train/_annotations.coco.json``, ``valid/...``,
        ``test/...``, each beside its images); None without a train one."""
        base = self.root if self.root is not None else Path(".")
        found = {}
        for split, folders in (("train", ("train",)), ("val", ("valid", "val")), ("test", ("test",))):
            path = next((base / f / _ROBOFLOW_JSON for f in folders if (base / f / _ROBOFLOW_JSON).is_file()), None)
            if path is not None:
                found[split] = path
        return found if "train" in found else None

    def _load(self) -> dict[str, Any]:
        """The JSON of this split, its structure checked (:func:`_check_json`)."""
        path = self.ann_file
        try:
            data = _read_json(path)
        except (OSError, json.JSONDecodeError) as e:
            raise FileNotFoundError(f"{path}: cannot read COCO JSON ({e})") from e
        _check_json(data, path)
        return data

    def discover_class_names(self) -> list[str] | None:
        """Given class names, else the category names ordered by category id."""
        if self.class_names is not None:
            return self.class_names
        data = self._load()
        unique = {(_id(c["id"]), str(c["name"])): c for c in data.get("categories", [])}  # a category listed twice
        cats = sorted(unique.values(), key=lambda c: _id_order(_id(c["id"])))
        # Roboflow's COCO export lists the dataset's own name as category 0, the supercategory of every real class,
        # with no annotation: not a class (it would add an output that is never a target)
        used = {_id(a.get("category_id")) for a in data.get("annotations", []) if isinstance(a, dict)}
        placeholder = [  # the supercategory of every other category (COCO's own 'person' is its own only)
            c
            for c in cats
            if _id(c["id"]) not in used
            and len(cats) > 1
            and all(str(o.get("supercategory")) == str(c["name"]) for o in cats if o is not c)
        ]
        if placeholder:
            log_once(
                ("coco placeholder", str(self.ann_file)),
                logging.WARNING,
                "%s: category %s has no annotations and is the supercategory of the others (Roboflow's dataset "
                "name): not a class (set data.class_names to choose the classes yourself)",
                self.ann_file,
                ", ".join(f"{c['name']!r} (id {c['id']})" for c in placeholder),
            )
        names: dict[str, list[Any]] = {}  # name -> its categories' ids (two ids of one name: one class, by name)
        for c in cats:
            if c not in placeholder:
                names.setdefault(str(c["name"]), []).append(c["id"])
        shared = {n: i for n, i in names.items() if len(i) > 1}
        if shared:
            log_once(
                ("coco shared names", str(self.ann_file)),
                logging.WARNING,
                "%s: categories share a name: %s; each name is one class, the boxes of its categories together (set "
                "data.class_names to choose the classes yourself)",
                self.ann_file,
                "; ".join(f"{n!r} (ids {', '.join(map(str, i))})" for n, i in shared.items()),
            )
        return list(names) or None

    # ------------------------------------------------------------------------------------------ images
    def image_dir(self, file_names: Sequence[str] = ()) -> Path:
        """The images folder of this split: ``image_dir`` when given, else the first candidate next to the JSON
        holding the first ``file_names``; raises naming every folder tried."""
        if self._image_dir is not None:
            return self._image_dir
        spec = self.image_dir_spec
        if isinstance(spec, Mapping):
            spec = {canonical_split(str(k)): v for k, v in spec.items()}
            ann_file, share = self.plan()[:2]
            key = self.split if share is None else "train"
            if key not in spec and self.ann_files is not None:
                # this split reads another split's JSON (test on the val JSON): that split's images folder
                key = next((s for s, f in self.ann_files.items() if f and self._path(f) == ann_file and s in spec), key)
            spec = spec.get(key)
        if spec is not None:
            d = self._path(spec)
            if not d.is_dir():
                raise FileNotFoundError(f"COCO image folder not found: {d}; set data.image_dir (relative to data.root)")
            self._image_dir = d
            return d
        js = self.ann_file
        tag = js.stem
        for prefix in _JSON_PREFIXES:
            if tag.startswith(prefix):
                tag = tag[len(prefix) :]
        base = self.root if self.root is not None else js.parent.parent
        cands = [base / tag, base / "images" / tag, base / "images", js.parent / tag, js.parent / "images", js.parent]
        cands += [js.parent.parent / tag, js.parent.parent / "images", base]
        cands = list(dict.fromkeys(cands))
        probe = [f for f in file_names[:5] if f]
        for c in cands:
            if c.is_dir() and (not probe or any((c / f).is_file() for f in probe)):
                log_once(("coco images", str(js), str(c)), logging.INFO, "%s: images in %s", js, c)
                self._image_dir = c
                return c
        looked = f"{probe[0]!r} in " if probe else ""
        raise FileNotFoundError(
            f"COCO image folder for {js.name} not found: looked for {looked}{', '.join(map(str, cands))}; set "
            "data.image_dir (relative to data.root)"
        )

    # ------------------------------------------------------------------------------------------- parse
    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """Parse the split's images of the JSON file; problems go to ``issues`` (default: ``"error"`` log)."""
        issues = issues if issues is not None else IssueLog("error")
        data = self._load()
        ann_file = self.plan()[0]
        names = list(class_names) if class_names is not None else self.discover_class_names()
        if not names:
            raise ValueError(f"{ann_file}: no class names (no categories and none configured)")
        ids = _NumericIds()
        categories = _categories(data, class_index(names), ids)
        found = _images(data, ann_file, issues, ids)
        images = self._split_images(found.images)
        per_image = _annotations_per_image(data, images, found, ann_file, issues, ids)
        _report_shared_ids(found.shared, per_image, ann_file, issues)
        ids.note(ann_file, issues)
        image_dir = self.image_dir([str(im.get("file_name") or "") for im in images.values()])
        records = []
        for img_id, im in images.items():
            rec = _record(im, per_image.get(img_id, []), image_dir, ann_file, categories, names, issues)
            if rec is not None:
                records.append(rec)
        return records

    def _split_images(self, images: Mapping[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        """Of the JSON's usable ``images`` (by image id), this split's (its hash share for a derived split); logs
        the choice."""
        ann_file, share, fractions, how = self.plan()
        if share is not None:
            assert fractions is not None
            keep = set(
                hash_split([str(im.get("file_name")) for im in images.values()], share, fractions, self.split_seed)
            )
            images = {k: im for k, im in images.items() if str(im.get("file_name")) in keep}
        log_once(
            ("coco split", str(ann_file), str(self.split), how),
            logging.INFO,
            "COCO split %r: %d images from %s",
            self.split,
            len(images),
            how,
        )
        return images


@dataclass(frozen=True)
class _Categories:
    """The JSON's categories: class index (None: not in the class list) and name per category id (by :func:`_id`)."""

    to_class: dict[Any, int | None]
    names: dict[Any, str]


def _categories(data: Mapping[str, Any], cls_idx: Mapping[str, int], ids: _NumericIds | None = None) -> _Categories:
    """Map each category of the JSON (by :func:`_id`) to its index in the class list (by name)."""
    cats = _Categories({}, {})
    for c in data.get("categories", []):
        key = ids(c["id"], "categories' id") if ids is not None else _id(c["id"])
        cats.names[key] = str(c["name"])
        cats.to_class[key] = cls_idx.get(str(c["name"]))
    return cats


@dataclass(frozen=True)
class _Images:
    """The JSON's image entries: ``images`` the usable ones by image id; ``shared`` the ids several entries carry
    (each with its ``(position in images, entry)`` list: none of them is used); ``known`` every id of an entry,
    usable or not (an annotation of a skipped image goes with it, not reported again as of an unknown id)."""

    images: dict[Any, dict[str, Any]]
    shared: dict[Any, list[tuple[int, dict[str, Any]]]]
    known: set[Any]


def _images(data: Mapping[str, Any], ann_file: Path, issues: IssueLog, ids: _NumericIds) -> _Images:
    """The JSON's ``images`` by id (:func:`_id`); an entry that is no object, has no usable ``id`` or no
    ``file_name`` is a skipped image, reported naming the JSON and its position (``images[3]``); an id shared by
    several entries is returned in ``shared`` (reported by :func:`_report_shared_ids` once its annotations are
    counted)."""
    by_id: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for k, im in enumerate(data.get("images", [])):
        where = f"images[{k}]"
        if not isinstance(im, dict):
            what = f"{where}: {im!r:.80}"
            issues.report(ann_file, "an image entry that is not an object", action="skip_image", detail=what)
            continue
        if im.get("id") is None:
            issues.report(ann_file, "an image without an 'id'", action="skip_image", detail=f"{where}: {im!r:.120}")
            continue
        key = ids(im["id"], "images' id")
        if not _usable_id(key):
            what = f"{where} 'id' {im['id']!r:.40}"
            issues.report(ann_file, "an image 'id' that is no number or text", action="skip_image", detail=what)
            continue
        by_id.setdefault(key, []).append((k, im))
    images, shared = {}, {}
    for key, entries in by_id.items():
        if len(entries) > 1:
            shared[key] = entries
            continue
        k, im = entries[0]
        if not im.get("file_name"):
            what = f"images[{k}] id {key!r}"
            issues.report(ann_file, "an image without a 'file_name'", action="skip_image", detail=what)
            continue
        images[key] = im
    return _Images(images, shared, set(by_id))


def _report_shared_ids(
    shared: Mapping[Any, Sequence[tuple[int, Mapping[str, Any]]]],
    per_image: Mapping[Any, Sequence[Any]],
    ann_file: Path,
    issues: IssueLog,
) -> None:
    """Each image of an id several image entries carry is a skipped image: its annotations may be of either
    entry (a later entry silently replaced the earlier one and took its boxes); the detail names the id, every
    entry's ``file_name`` and the annotations left out."""
    for key, entries in shared.items():
        named = ", ".join(f"{im.get('file_name')!r} (images[{k}])" for k, im in entries)
        n = len(per_image.get(key, ()))
        for k, im in entries:
            issues.report(
                ann_file,
                "an image id shared by several images",
                action="skip_image",
                detail=f"id {key!r} of {named}: its {n} annotations may be of either; {im.get('file_name')!r} "
                f"(images[{k}]) skipped",
            )


def _annotations_per_image(
    data: Mapping[str, Any],
    images: Mapping[Any, Any],
    found: _Images,
    ann_file: Path,
    issues: IssueLog,
    ids: _NumericIds,
) -> dict[Any, list[dict[str, Any]]]:
    """The annotations of each image of ``images`` and of each id of ``found.shared`` (ids by :func:`_id`); an
    annotation of an image id not in the JSON, or that is no object, is a dropped box, reported; annotation ids
    given twice are noted (the boxes are kept: the id names them, nothing else)."""
    per_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    seen: set[Any] = set()
    repeated: list[Any] = []
    for k, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            what = f"annotations[{k}]: {ann!r:.80}"
            issues.report(ann_file, "an annotation that is not an object", action="drop_box", detail=what)
            continue
        ids(ann.get("category_id"), "annotations' category_id")  # counted for the note; _record compares it
        image_id = ids(ann.get("image_id"), "annotations' image_id")
        ann_id = _id(ann.get("id"))
        if ann_id is not None:
            if ann_id in seen:
                repeated.append(ann_id)
            seen.add(ann_id)
        if image_id not in found.known:
            issues.report(
                ann_file,
                "annotation for an unknown image id",
                action="drop_box",
                detail=f"annotation {ann.get('id')} image_id {ann.get('image_id')!r}",
            )
            continue
        if image_id in images or image_id in found.shared:
            per_image[image_id].append(ann)
    if repeated:
        more = f" ... and {len(set(repeated)) - 5} more" if len(set(repeated)) > 5 else ""
        issues.note(
            ann_file,
            "an annotation id given to several annotations, all kept",
            detail=f"ids {', '.join(map(repr, list(dict.fromkeys(repeated))[:5]))}{more}",
        )
    return per_image


_INTEGER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.0+)?")  # "12", "-3", "12.0"; not "012", "1e3", "12.5"


def _id(value: Any) -> Any:
    """An id as the parser compares it: an integer-valued number (``1.0``) or the text of an integer (``"1"``,
    ``" 1 "``, ``"1.0"``; exactly, at any size: ``"1234567890123456789"``) is that integer (category ids went
    through ``int()``: ``"1"`` annotations matched no category); other text (``"001"``, ``"1e3"``, ``"a7"``) and
    ``None`` stay themselves; a list or an object (no JSON id) becomes a tuple that equals no id."""
    if type(value) is int or value is None:
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        text = value.strip()
        return int(text.split(".")[0]) if _INTEGER_TEXT.fullmatch(text) else value
    if isinstance(value, (list, dict)):
        return ("not an id", repr(value))
    return value


def _usable_id(key: Any) -> bool:
    return isinstance(key, (int, float, str)) and not isinstance(key, bool)


def _id_order(key: Any) -> tuple[int, Any]:
    """Sort key of category ids: numbers in increasing order, then any text ones (by text)."""
    return (0, key) if isinstance(key, (int, float)) and not isinstance(key, bool) else (1, str(key))


class _NumericIds:
    """:func:`_id` counting, per field, the ids it turned into integers (written as text or as decimals), for one
    note per JSON (:meth:`note`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def __call__(self, value: Any, field: str) -> Any:
        key = _id(value)
        if key is not value and type(key) is int:
            self.counts[field] += 1
            self.examples.setdefault(field, repr(value))
        return key

    def note(self, ann_file: Path, issues: IssueLog) -> None:
        if self.counts:
            detail = "; ".join(f"{field}: {n} (e.g. {self.examples[field]})" for field, n in self.counts.items())
            issues.note(ann_file, "ids written as text or decimals, compared as the integers they spell", detail=detail)


def _kind(value: Any) -> str:
    """``value``'s JSON kind in words (``null``, ``a list``, ``text`` ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}
    return next((w for t, w in kinds.items() if isinstance(value, t)), type(value).__name__)


def _check_json(data: Any, path: Path) -> None:
    """ValueError naming ``path`` and what is wrong when the JSON is no COCO object: its top level no object,
    ``images`` / ``annotations`` / ``categories`` present but no list, a category no object or without ``id`` or
    ``name`` (the categories are the classes: a file with a broken one is refused, not guessed)."""
    if not isinstance(data, dict):
        hint = " (a COCO results file?)" if isinstance(data, list) else ""
        raise ValueError(
            f"{path}: not a COCO JSON: its top level is {_kind(data)}{hint}, not an object with 'images', "
            "'annotations' and 'categories'"
        )
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise ValueError(f"{path}: '{key}' is {_kind(data[key])}, not a list")
    for k, c in enumerate(data.get("categories", [])):
        if not isinstance(c, dict):
            raise ValueError(f"{path}: categories[{k}] is {_kind(c)}, not an object with 'id' and 'name'")
        for field in ("id", "name"):
            if c.get(field) is None:
                raise ValueError(f"{path}: categories[{k}] has no '{field}' ({c!r:.120})")
        if not _usable_id(_id(c["id"])):
            raise ValueError(f"{path}: categories[{k}] 'id' {c['id']!r:.40} is no number or text")
    named: dict[Any, tuple[int, str]] = {}
    for k, c in enumerate(data.get("categories", [])):  # one id, two names: which class a box is would be a guess
        first = named.setdefault(_id(c["id"]), (k, str(c["name"])))
        if first[1] != str(c["name"]):
            raise ValueError(
                f"{path}: categories[{first[0]}] and categories[{k}] share the id {c['id']!r} with different names "
                f"({first[1]!r}, {str(c['name'])!r}): which class their boxes are is ambiguous"
            )


def _image_size(im: Mapping[str, Any], image_path: Path, tag: str, issues: IssueLog) -> tuple[int, int] | None:
    """The JSON's width and height, or the image header's when they are missing or 0 (fixed); None: unreadable."""
    return size_or_header(im.get("width"), im.get("height"), image_path, tag, issues)


def _record(
    im: Mapping[str, Any],
    anns: Sequence[Mapping[str, Any]],
    image_dir: Path,
    ann_file: Path,
    categories: _Categories,
    names: Sequence[str],
    issues: IssueLog,
) -> DetectionRecord | None:
    """The record of one JSON image and its annotations (None: image skipped, reported to ``issues``)."""
    file_name = im.get("file_name")
    image_path = image_dir / str(file_name)
    tag = f"{ann_file.name}[{file_name}]"
    if not file_name or not image_path.is_file():
        issues.report(image_path, "missing image file", action="skip_image", detail=f"listed in {ann_file.name}")
        return None
    size = _image_size(im, image_path, tag, issues)
    if size is None:
        return None
    width, height = size

    boxes, labels, crowd = [], [], []
    if not anns:
        issues.note(image_path, "no objects, kept as a negative")
    for ann in anns:
        cat = _id(ann.get("category_id"))
        cls = categories.to_class.get(cat) if cat is not None else None
        if cls is None:
            name = categories.names.get(cat, f"id {ann.get('category_id')}")
            # the annotation's id: each box counted (an identical issue is recorded once)
            issues.report(tag, f"unknown class '{name}'", action="drop_box", detail=f"annotation {ann.get('id')}")
            continue
        bbox = ann.get("bbox")
        try:
            box = [float(v) for v in bbox] if isinstance(bbox, (list, tuple)) and len(bbox) == 4 else None
        except (TypeError, ValueError):  # a value that is no number ([10, "a", 5, 5], null)
            box = None
        if box is None:
            issues.report(tag, "missing or malformed bbox", action="drop_box", detail=str(bbox))
            continue
        boxes.append(box)
        labels.append(cls)
        crowd.append(bool(flag_value(ann.get("iscrowd", 0))))  # "0": no crowd
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    b[:, 2:] += b[:, :2]  # xywh -> xyxy
    b, lab, dif = sanitize_boxes(b, labels, crowd, width, height, tag, issues, names)
    return DetectionRecord(image_path, Path(str(file_name)).stem, width, height, b, lab, dif)
