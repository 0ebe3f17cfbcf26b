"""YOLO txt parser: one ``<image>.txt`` per image with lines ``cls cx cy w h`` normalised to [0, 1].

Layouts: ultralytics (``images/{train,val}/`` + ``labels/{train,val}/`` with a ``data.yaml`` holding ``names`` and
the ``train`` / ``val`` / ``test`` folders or lists), Roboflow exports (``train/images``, ``valid/images``), darknet's
(an ``obj.data`` file naming the ``train`` / ``valid`` lists and the ``names`` file, labels beside the images), list
files (``train.txt``), or a flat ``images/`` + ``labels/`` split by hash. Every split decision is logged.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yolo9000.darknet.cfg import read_names
from yolo9000.text_io import read_text, text_lines

from .image_io import IMAGE_SUFFIXES, images_under
from .records import DetectionRecord, IssueLog, header_size, sanitize_boxes
from .splits import SPLIT_ALIASES, canonical_split, expand_split, hash_split, read_list_file
from .voc import DEFAULT_SPLIT_FRACTIONS, log_once, train_val_fractions
from .yolo_labels import keypoint_values, label_boxes, label_file_for, label_path_for, read_label_rows

logger = logging.getLogger("yolo9000.data")

_SPLIT_NAMES = "_darknet.labels"  # a names file in each split folder (Roboflow's "YOLO Darknet" export)
# names files tried in the root when nothing else names the classes, then _SPLIT_NAMES in the split folders
NAMES_FILES = ("classes.names", "classes.txt", "obj.names", "labels/classes.txt", _SPLIT_NAMES)
_NOT_LABELS = {"classes", "obj", "names", "labels", "notes", "readme"}  # .txt stems in label folders that aren't labels


def _split_of_folder(name: str) -> str | None:
    """``train`` / ``train2017`` / ``valid`` / ``val_2012`` ... -> the canonical split; None for other names."""
    s = canonical_split(re.sub(r"[\d_\-.]+$", "", name))
    return s if s in SPLIT_ALIASES else None


@dataclass
class _Source:
    """Images of one split, the folders they were listed from (for the orphan-label check) and where from."""

    images: list[Path]
    folders: list[Path] = field(default_factory=list)
    description: str = ""


class YOLOTxtParser:
    """Parse a YOLO / darknet txt dataset.

    Image list of a split, first match wins (the choice is logged):
      1. ``list_file``: one image path per line (relative to the list's folder or ``root``), darknet's ``train.txt``;
      2. a dataset yaml (ultralytics ``data.yaml``: ``yaml_file``, else the only ``*.yaml`` in ``root`` with
         ``names`` or ``train``): its ``train`` / ``val`` / ``test`` entries (a folder of images, a txt list of
         images, or a list of those) relative to its ``path`` (itself relative to the yaml's folder, or absolute;
         else the yaml's folder);
      3. a darknet data file (``data_file``, else the only ``*.data`` file in ``root``, e.g. ``obj.data``): its
         ``train`` / ``valid`` / ``test`` lists, relative to the folder darknet ran in (the first of the file's
         folder, its parent and ``root`` that holds them), as are the image paths inside them;
      4. split folders: ``images/<split>/`` or ``<split>/images/`` (``valid`` = ``val``; ``train2017`` = ``train``),
         else ``<split>/`` holding its images with their labels beside them (Roboflow's "YOLO Darknet" export);
      5. every image under ``root/<images_dir>/`` (no ``images/`` folder: the root's own images, LabelImg's
         layout), split by hash (``split_fractions``, ``split_seed``).
    In 2 to 4, a missing test split is the val split, and a missing val split a hash share of train (both
    logged): a split never mixes images of another. ``None`` / ``"all"`` takes every image under ``images_dir``.

    Labels: :func:`label_path_for` (``.../images/x.jpg`` -> ``.../labels/x.txt``), else ``x.txt`` beside the image
    (:func:`label_file_for`). A pose dataset's lines (its yaml's ``kpt_shape``) give their boxes. A missing or empty
    label file is a negative image (noted); a label file without an image is reported (``skip_file``). Polygon
    (segment) lines become their bounding box (fixed). The image size comes from the image header (PIL, no decoding).

    Args:
        root: dataset root (or the dataset yaml itself: its folder becomes the root).
        split: split name (see above; ``trainval`` / ``a+b``: a union).
        list_file: optional list file.
        images_dir: images folder under ``root`` (None: ``images``).
        names_file: class names, one per line (relative to ``root``); None: the class list given, else the yaml's
            ``names``, else the data file's ``names`` file, else ``classes.names`` / ``classes.txt`` / ``obj.names``
            / ``_darknet.labels`` when present (the last in the root or a split folder).
        class_names: class list (normally given by the data module).
        split_fractions, split_seed: the hash split (default train/val/test = 0.7/0.15/0.15).
        yaml_file: ultralytics dataset yaml (relative to ``root``); None: discovered in ``root``.
        data_file: darknet data file (``obj.data``, relative to ``root``); None: discovered in ``root``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        list_file: str | Path | None = None,
        images_dir: str | None = "images",
        names_file: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int | None = 0,
        yaml_file: str | Path | None = None,
        data_file: str | Path | None = None,
    ) -> None:
        root = Path(root)
        if root.suffix.lower() in (".yaml", ".yml") and yaml_file is None:
            root, yaml_file = root.parent, root
        if root.suffix.lower() == ".data" and data_file is None and root.is_file():
            root, data_file = root.parent, root
        self.root = root
        self.split = split
        self.list_file = self.root / list_file if list_file is not None else None
        self.images_dir = self.root / (images_dir if images_dir is not None else "images")
        self.names_file = self.root / names_file if names_file is not None else None
        self.yaml_file = self.root / yaml_file if yaml_file is not None else None
        self.data_file = self.root / data_file if data_file is not None else None
        self._data: tuple[Path, dict[str, str], Path] | None | bool = False  # False: not looked for yet
        self._data_moved = False  # the data file's paths lose their first folder (darknet_data)
        self.class_names = list(class_names) if class_names is not None else None
        self.split_fractions = {
            canonical_split(k): float(v) for k, v in (split_fractions or DEFAULT_SPLIT_FRACTIONS).items()
        }
        self.split_seed = int(split_seed or 0)
        self._yaml: tuple[Path, dict[str, Any]] | None | bool = False  # False: not looked for yet
        self._source: _Source | None = None

    def __repr__(self) -> str:
        return f"YOLOTxtParser(root={str(self.root)!r}, split={self.split!r})"

    # ------------------------------------------------------------------------------------------- yaml
    def dataset_yaml(self) -> tuple[Path, dict[str, Any]] | None:
        """(path, content) of the dataset yaml: ``yaml_file``, else the one found in ``root``; None without."""
        if self._yaml is not False:
            return self._yaml  # type: ignore[return-value]
        path = self.yaml_file
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"dataset yaml not found: {path} (data.yaml_file)")
        elif self.root.is_dir():
            found = [p for p in sorted(self.root.glob("*.y*ml")) if p.suffix in (".yaml", ".yml") and _is_dataset(p)]
            if len(found) > 1:
                preferred = [p for p in found if p.stem in ("data", "dataset")]
                if len(preferred) != 1:
                    raise ValueError(
                        f"several dataset yaml files in {self.root}: {', '.join(p.name for p in found)}; set "
                        "data.yaml_file to the one to use"
                    )
                found = preferred
            path = found[0] if found else None
            if path is not None:
                log_once(("yaml", str(path)), logging.INFO, "%s: dataset yaml found: %s", self.root, path)
        if path is None:
            self._yaml = None
            return None
        try:
            content = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(content, dict):
            raise ValueError(f"{path}: a dataset yaml must be a mapping (names, path, train, val, test)")
        self._yaml = (path, content)
        return self._yaml

    def _yaml_names(self) -> list[str] | None:
        y = self.dataset_yaml()
        if y is None or y[1].get("names") is None:
            return None
        path, content = y
        names = content["names"]
        if isinstance(names, Mapping):
            try:
                by_id = {int(k): str(v) for k, v in names.items()}
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: names keys must be class ids (0, 1, ...): {e}") from e
            top = max(by_id, default=-1)
            missing = [i for i in range(top + 1) if i not in by_id]
            if missing or min(by_id, default=0) < 0:
                shown = ", ".join(map(str, missing[:10])) + (
                    f", ... ({len(missing)} in all)" if len(missing) > 10 else ""
                )
                raise ValueError(
                    f"{path}: names must map every class id 0..{top} to a name (the ids a label file's first "
                    f"column holds); " + (f"missing {shown}" if missing else f"negative ids {sorted(by_id)[:10]}")
                )
            out = [by_id[i] for i in range(len(by_id))]
        elif isinstance(names, (list, tuple)):
            out = [str(n) for n in names]
        else:
            raise ValueError(f"{path}: names must be a list or an {{id: name}} mapping, got {type(names).__name__}")
        if content.get("nc") is not None and int(content["nc"]) != len(out):
            log_once(
                ("nc", str(path)),
                logging.WARNING,
                "%s: nc=%s but %d names; using the names",
                path,
                content["nc"],
                len(out),
            )
        return out

    def _keypoints(self) -> int:
        """Values after the box on a label line of a pose dataset (its yaml's ``kpt_shape``); 0 without."""
        y = self.dataset_yaml()
        if y is None or y[1].get("kpt_shape") is None:
            return 0
        values = keypoint_values(y[1]["kpt_shape"], y[0])
        log_once(("kpt", str(y[0])), logging.INFO, "%s: pose labels (kpt_shape): the boxes read", y[0])
        return values

    # ------------------------------------------------------------------------------------- darknet .data
    def darknet_data(self) -> tuple[Path, dict[str, str], Path] | None:
        """(path, ``key = value`` entries, base folder) of darknet's data file: ``data_file``, else the only
        ``*.data`` file in ``root``; None without (or when a dataset yaml is there: it decides). The base is the
        folder its relative paths start from (darknet's working folder): the first of the file's folder, its
        parent and ``root`` where its ``train`` list exists."""
        if self._data is not False:
            return self._data  # type: ignore[return-value]
        path = self.data_file
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"darknet data file not found: {path} (data.data_file)")
        elif self.root.is_dir() and self.dataset_yaml() is None:
            found = sorted(p for p in self.root.glob("*.data") if p.is_file())
            if len(found) > 1:
                raise ValueError(
                    f"several darknet data files in {self.root}: {', '.join(p.name for p in found)}; set "
                    "data.data_file to the one to use"
                )
            path = found[0] if found else None
        if path is None:
            self._data = None
            return None
        entries: dict[str, str] = {}
        for n, line in enumerate(text_lines(read_text(path)), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{path}:{n}: not a 'key = value' line: {line!r}")
            entries[key.strip().lower()] = value.strip()
        if not entries.get("train"):
            raise ValueError(f"{path}: no 'train = <list of images>' entry (darknet data file)")
        bases = list(dict.fromkeys([path.parent, path.parent.parent, self.root]))
        base = next((b for b in bases if (b / entries["train"]).is_file()), None)
        self._data_moved = False
        if base is None and Path(entries["train"]).is_absolute():
            base = path.parent
        if base is None and _strip_first(path.parent, entries["train"]).is_file():
            # the contents of darknet's data/ folder elsewhere (CVAT's "YOLO 1.1" export: train = data/train.txt
            # beside obj.data, images listed as data/obj_train_data/...): paths lose their first folder
            base, self._data_moved = path.parent, True
            log_once(
                ("darknet moved", str(path)),
                logging.INFO,
                "%s: its paths (train = %s) name darknet's %s/ folder, which is the file's own folder here",
                path,
                entries["train"],
                Path(entries["train"]).parts[0],
            )
        if base is None:
            raise FileNotFoundError(
                f"{path}: train = {entries['train']} not found (looked in {', '.join(str(b) for b in bases)}, and "
                f"for {_strip_first(path.parent, entries['train'])}); darknet's paths are relative to the folder it "
                "ran in: set data.root to that folder"
            )
        self._data = (path, entries, base)
        return self._data

    def _data_path(self, value: str) -> Path:
        """A path of the data file or of its lists: absolute, or under its base (darknet's folder); in a moved
        export (:meth:`darknet_data`) without its first folder when not there."""
        _, _, base = self.darknet_data()  # type: ignore[misc]
        p = base / value
        if self._data_moved and not p.exists():
            return _strip_first(base, value)
        return p

    def _data_names(self) -> list[str] | None:
        d = self.darknet_data()
        if d is None or not d[1].get("names"):
            return None
        path, entries, _ = d
        names_path = self._data_path(entries["names"])
        if not names_path.is_file():
            raise FileNotFoundError(f"{path}: names = {entries['names']} not found (looked for {names_path})")
        names = read_names(names_path)
        if entries.get("classes") and entries["classes"].isdigit() and int(entries["classes"]) != len(names):
            logger.warning(
                "%s: classes=%s but %d names in %s; using the names", path, entries["classes"], len(names), names_path
            )
        return names

    def _data_splits(self, path: Path, entries: dict[str, str], base: Path) -> dict[str, _Source]:
        out: dict[str, _Source] = {}
        for split, keys in (("train", ("train",)), ("val", ("valid", "val")), ("test", ("test",))):
            key = next((k for k in keys if entries.get(k)), None)
            if key is None:
                continue
            list_path = self._data_path(entries[key])
            if not list_path.is_file():
                raise FileNotFoundError(f"{path}: {key} = {entries[key]} not found (looked for {list_path})")
            images = self._read_list(list_path, base, moved=self._data_moved)
            out[split] = _Source(images, [], f"list {list_path} ({path.name} {key} =)")
        return out

    def discover_class_names(self) -> list[str] | None:
        """Given class names, else the dataset's own (:meth:`dataset_names`)."""
        if self.class_names is not None:
            return self.class_names
        return self.dataset_names()

    def dataset_names(self) -> list[str] | None:
        """The dataset's own class names, which its label files' class ids index: ``names_file``, else the dataset
        yaml's ``names``, else a names file found in ``root`` (:data:`NAMES_FILES`), else a split folder's
        ``_darknet.labels`` (train's first); None without any. FileNotFoundError for a root that does not exist."""
        if not self.root.exists():  # a wrong data.root said as such (it read as "no class_names")
            raise FileNotFoundError(f"dataset root not found: {self.root} (data.root)")
        if self.names_file is not None:
            if not self.names_file.is_file():
                raise FileNotFoundError(f"class names file not found: {self.names_file} (data.names_file)")
            return read_names(self.names_file)
        names = self._data_names() or self._yaml_names()
        if names:
            return names
        for name in NAMES_FILES:
            if (self.root / name).is_file():
                log_once(("names", str(self.root)), logging.INFO, "%s: class names from %s", self.root, name)
                return read_names(self.root / name)
        order = {"train": 0, "val": 1, "test": 2}  # Roboflow's "YOLO Darknet" export: one in each split folder
        found = [p for p in self.root.glob(f"*/{_SPLIT_NAMES}") if _split_of_folder(p.parent.name)]
        for path in sorted(found, key=lambda p: (order.get(str(_split_of_folder(p.parent.name)), 3), p)):
            log_once(("names", str(self.root)), logging.INFO, "%s: class names from %s", self.root, path)
            return read_names(path)
        return None

    # ------------------------------------------------------------------------------------------ splits
    def _resolve(self, base: Path, value: str, yaml_path: Path) -> Path:
        """A yaml entry -> path: absolute, or under ``base``; ``../x`` missing there: ``base/x`` (ultralytics)."""
        p = Path(value)
        if p.is_absolute():
            return p
        cands = [base / p]
        if value.startswith("../"):
            cands.append(base / value[3:])  # Roboflow exports write ../train/images next to the yaml
        cands += [yaml_path.parent / p, self.root / p]
        return next((c for c in cands if c.exists()), cands[0])

    def _read_list(self, list_path: Path, base: Path | None = None, moved: bool = False) -> list[Path]:
        """Image paths of a list file: absolute, or relative to the list's folder, ``base`` or ``root`` (``moved``:
        also under ``base`` without their first folder, see :meth:`darknet_data`)."""
        out = []
        for entry in read_list_file(list_path)[0]:
            p = Path(entry)
            if p.is_absolute():
                out.append(p)
                continue
            rel = entry[2:] if entry.startswith("./") else entry
            cands = [list_path.parent / rel, *([base / rel] if base is not None else []), self.root / rel]
            if moved and base is not None:
                cands.append(_strip_first(base, rel))
            out.append(next((c for c in cands if c.exists()), cands[0]))
        return out

    def _yaml_splits(self, path: Path, content: dict[str, Any]) -> dict[str, _Source]:
        base = path.parent
        if content.get("path"):
            p = Path(str(content["path"]))
            cands = [p] if p.is_absolute() else [path.parent / p, self.root / p]
            found = next((c for c in cands if c.is_dir()), None)
            if found is None:
                log_once(
                    ("yaml path", str(path)),
                    logging.WARNING,
                    "%s: path: %s not found; its train/val/test entries are taken relative to %s",
                    path,
                    content["path"],
                    path.parent,
                )
            base = found or path.parent
        out: dict[str, _Source] = {}
        for split, aliases in SPLIT_ALIASES.items():
            key = next((k for k in aliases if content.get(k)), None)
            if key is None:
                continue
            values = content[key] if isinstance(content[key], list) else [content[key]]
            src = _Source([], [], "")
            parts = []
            for v in values:
                p = self._resolve(base, str(v), path)
                if p.is_dir():
                    src.images += images_under(p)
                    src.folders.append(p)
                    parts.append(f"folder {p}")
                elif p.is_file():
                    src.images += self._read_list(p, base)
                    parts.append(f"list {p}")
                elif split == "test" and len(values) == 1:  # Roboflow's yaml names test/ even when none was exported
                    log_once(
                        ("yaml test missing", str(path)),
                        logging.WARNING,
                        "%s: %s: %s not found (looked for %s): no test split",
                        path,
                        key,
                        v,
                        p,
                    )
                    break
                else:
                    raise FileNotFoundError(
                        f"{path}: {key}: {v} not found (looked for {p}); fix the yaml or set data.yaml_file"
                    )
            if not parts:  # a test entry that is not there
                continue
            src.description = f"{' + '.join(parts)} ({path.name} {key}:)"
            out[split] = src
        return out

    def _folder_splits(self) -> dict[str, _Source]:
        out: dict[str, _Source] = {}
        cands = []
        if self.images_dir.is_dir():
            cands += [(d, d.name) for d in sorted(self.images_dir.iterdir()) if d.is_dir()]
        if self.root.is_dir():
            cands += [(d / "images", d.name) for d in sorted(self.root.iterdir()) if (d / "images").is_dir()]
            flat = self.images_dir.is_dir() or _has_images(self.root)  # images/ or the root's own: a hash split
            if not cands and not flat:  # <split>/ holding its images and labels (Roboflow's "YOLO Darknet" export)
                cands += [(d, d.name) for d in sorted(self.root.iterdir()) if _split_of_folder(d.name) and _labelled(d)]
        for folder, name in cands:
            split = _split_of_folder(name)
            if split is None:
                log_once(
                    ("not a split", str(folder)),
                    logging.WARNING,
                    "%s: folder %s is not named like a split (train, val, valid, test, train2017, ...): ignored",
                    self.root,
                    folder,
                )
                continue
            src = out.setdefault(split, _Source([], [], ""))
            src.images += images_under(folder)
            src.folders.append(folder)
            src.description = " + ".join(f"folder {f}" for f in src.folders)
        return out

    def _hash_share(self, src: _Source, split: str) -> _Source:
        """The ``split`` ("train" or "val") share of a train source split by hash when there is no val split."""
        fractions = train_val_fractions(self.split_fractions)
        by_key = {_key(p, self.root): p for p in src.images}
        keys = hash_split(list(by_key), split, fractions, self.split_seed)
        what = f"hash share of {src.description} (no val split; fractions {fractions}, seed {self.split_seed})"
        return _Source([by_key[k] for k in keys], src.folders, what)

    def _pick(self) -> _Source:
        split = self.split
        if self.list_file is not None:
            return _Source(self._read_list(self.list_file), [], f"list file {self.list_file}")
        if split in (None, "all"):
            if not self.images_dir.is_dir():
                raise FileNotFoundError(f"YOLO images folder not found: {self.images_dir}")
            return _Source(images_under(self.images_dir), [self.images_dir], f"every image under {self.images_dir}")
        assert split is not None
        d = self.darknet_data()  # None when a dataset yaml decides (unless data_file is given)
        y = self.dataset_yaml() if d is None else None
        if y is not None:
            avail, origin = self._yaml_splits(*y), str(y[0])
        elif d is not None:
            avail, origin = self._data_splits(*d), str(d[0])
        else:
            avail, origin = self._folder_splits(), f"the split folders of {self.root}"
        if not avail:
            if not self.images_dir.is_dir() and self.images_dir == self.root / "images" and _has_images(self.root):
                log_once(  # LabelImg's YOLO layout: every image with its .txt beside it in one folder
                    ("flat", str(self.root)),
                    logging.INFO,
                    "%s: no images/ folder: the images in the root itself (labels beside them)",
                    self.root,
                )
                self.images_dir = self.root
            if not self.images_dir.is_dir():
                raise FileNotFoundError(
                    f"YOLO images folder not found: {self.images_dir} (and no dataset yaml, no images/<split>/ or "
                    f"<split>/images/ folders in {self.root}); set data.root, data.yaml_file or the parser's images_dir"
                )
            images = images_under(self.images_dir)
            by_key = {p.relative_to(self.images_dir).as_posix(): p for p in images}
            s = split if split in self.split_fractions else "+".join(expand_split(split))
            if s == "test" and not self.split_fractions.get("test"):
                log_once(("test=val hash", str(self.root)), logging.WARNING, "%s: no test share: test = val", self.root)
                s = "val"
            keys = hash_split(list(by_key), s, self.split_fractions, self.split_seed)
            return _Source(
                [by_key[k] for k in keys],
                [self.images_dir],
                f"hash split of the {len(images)} images under {self.images_dir} (no dataset yaml and no split "
                f"folders; fractions {self.split_fractions}, seed {self.split_seed})",
            )
        out = _Source([], [], "")
        parts = [canonical_split(split)] if canonical_split(split) in avail else expand_split(split)
        descriptions = []
        for s in parts:
            if s == "test" and "test" not in avail:
                src = avail["val"] if "val" in avail else self._hash_share(self._need(avail, "train", origin), "val")
                log_once(
                    ("test=val", origin),
                    logging.WARNING,
                    "%s: no test split: test uses the val images (%s)",
                    origin,
                    src.description,
                )
                src = _Source(src.images, src.folders, f"the val split, {src.description}")
            elif s in ("train", "val") and "val" not in avail:
                src = self._hash_share(self._need(avail, "train", origin), s)
            else:
                src = self._need(avail, s, origin)
            out.images += src.images
            out.folders += src.folders
            descriptions.append(src.description)
        out.description = " + ".join(descriptions)
        return out

    @staticmethod
    def _need(avail: dict[str, _Source], split: str, origin: str) -> _Source:
        if split not in avail:
            raise ValueError(f"no {split!r} split in {origin} (found: {', '.join(sorted(avail)) or 'none'})")
        return avail[split]

    def image_paths(self) -> list[Path]:
        """Images of the split (the decision is logged once)."""
        if self._source is None:
            self._source = self._pick()
            log_once(
                ("split", str(self.root), str(self.split), self._source.description),
                logging.INFO,
                "%s: split %r: %d images from %s",
                self.root,
                self.split,
                len(self._source.images),
                self._source.description,
            )
        return self._source.images

    # ------------------------------------------------------------------------------------------- parse
    def parse(self, class_names: Sequence[str] | None = None, issues: IssueLog | None = None) -> list[DetectionRecord]:
        """Parse the split; problems go to ``issues`` (default: ``"error"`` log)."""
        names = list(class_names) if class_names is not None else self.discover_class_names()
        if not names:
            raise ValueError(
                f"YOLOTxtParser needs class names: set data.class_names, data.names_file, or a dataset yaml with "
                f"names in {self.root}"
            )
        issues = issues if issues is not None else IssueLog("error")
        own = None
        if class_names is not None or self.class_names is not None:  # given: do the dataset's own names differ?
            try:
                own = self.dataset_names()
            except FileNotFoundError:  # a names_file that is not there: the given names stand alone, as before
                own = None
        index_map = _class_index_map(own, names, self.root)
        records = []
        labelled: dict[Path, Path] = {}  # label file -> the first image it labels
        keypoints = self._keypoints()
        for image_path in self.image_paths():
            label = label_file_for(image_path)
            first = labelled.setdefault(label, image_path)
            if first != image_path and label.is_file():  # a.jpg and a.png: one a.txt for both
                issues.note(
                    image_path,
                    "shares its label file with another image (same name, another suffix): both get its boxes",
                    detail=f"{label} labels {first} too",
                )
            rec = self._parse_one(image_path, label, names, issues, index_map, own, keypoints)
            if rec is not None:
                records.append(rec)
        self._report_orphans(issues)
        return records

    def _report_orphans(self, issues: IssueLog) -> None:
        """Label files in the label folders of this split's image folders that belong to no image."""
        assert self._source is not None
        for folder in dict.fromkeys(self._source.folders):
            labels_dir = label_path_for(folder / "x.jpg").parent
            if labels_dir == folder or not labels_dir.is_dir():
                continue
            expected = {label_path_for(p) for p in images_under(folder)}
            for txt in sorted(labels_dir.rglob("*.txt")):
                hidden = any(part.startswith(".") for part in txt.relative_to(labels_dir).parts)  # macOS's ._x.txt
                if txt not in expected and txt.stem.lower() not in _NOT_LABELS and not hidden:
                    issues.report(
                        txt,
                        "label file without an image",
                        action="skip_file",
                        detail=_no_image(txt, labels_dir, folder),
                    )

    def _parse_one(
        self,
        image_path: Path,
        label_path: Path,
        names: Sequence[str],
        issues: IssueLog,
        index_map: np.ndarray | None = None,
        own: Sequence[str] | None = None,
        keypoints: int = 0,
    ) -> DetectionRecord | None:
        """One image and its label file (:func:`label_file_for`; None: image skipped, reported to ``issues``);
        ``index_map`` (the dataset's
        class id -> index into ``names``, -1: not among them) when the dataset's own names ``own`` differ;
        ``keypoints``: values after each box of a pose dataset's lines (:func:`read_label_rows`)."""
        size = header_size(image_path, issues)
        if size is None:
            return None
        width, height = size
        num = len(names) if index_map is None else len(index_map)
        rows = read_label_rows(label_path, image_path, num, issues, keypoints)
        if index_map is not None and own is not None:  # the dataset's ids -> the run's classes, by name
            kept = []
            for row in rows:
                new_id = int(index_map[int(row[0])])
                if new_id < 0:
                    issues.report(label_path, f"unknown class '{own[int(row[0])]}'", action="drop_box")
                else:
                    kept.append([float(new_id), *row[1:]])
            rows = kept
        boxes, labels = label_boxes(rows, width, height)
        b, lab, dif = sanitize_boxes(
            boxes, labels, np.zeros(len(labels), bool), width, height, label_path, issues, names
        )
        return DetectionRecord(image_path, image_path.stem, width, height, b, lab, dif)


def _class_index_map(own: Sequence[str] | None, names: Sequence[str], root: Path) -> np.ndarray | None:
    """The dataset's class id -> index into the run's ``names`` when the dataset names its classes (``own``) and
    ``names`` is another list sharing names with it: by name, as COCO's categories (a reordered list kept the
    dataset's ids and renamed every box's class; -1: a class the run leaves out, its boxes dropped). None where the
    ids index ``names`` as they are: the same list, no names of the dataset's own, or no name in common (a list
    renaming the ids, e.g. of numbers-only names)."""
    if not own or list(own) == list(names):
        return None
    where = {n: i for i, n in enumerate(names)}
    if not any(n in where for n in own):
        log_once(("rename", str(root)), logging.INFO, "%s: data.class_names rename the dataset's ids %s", root, own)
        return None
    log_once(
        ("remap", str(root)),
        logging.WARNING,
        "%s: the dataset names its classes %s; data.class_names %s takes them by name (boxes of classes not listed "
        "are dropped)",
        root,
        list(own),
        list(names),
    )
    return np.array([where.get(n, -1) for n in own], dtype=np.int64)


def _no_image(txt: Path, labels_dir: Path, folder: Path) -> str:
    """Why the label file ``txt`` (under ``labels_dir``) has no image in ``folder``: none of its name, or one of a
    format not read (named, with the formats that are)."""
    rel = txt.relative_to(labels_dir)
    where = folder / rel.parent
    others = sorted(  # a file of the label's name in a format not read (a hidden one, macOS's ._x.jpg, is none)
        p
        for p in where.glob(f"{glob.escape(rel.stem)}.*")
        if p.suffix.lower() not in (*IMAGE_SUFFIXES, ".txt", ".xml", ".json") and not p.name.startswith(".")
    )
    if others:
        return (
            f"{others[0]} is there, but {others[0].suffix} files are not read as images "
            f"(read: {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return f"no image in {folder}"


def _labelled(folder: Path) -> bool:
    """Whether ``folder`` holds images with labels beside them (or a ``_darknet.labels``): a split folder of
    Roboflow's "YOLO Darknet" export, not a folder of pictures beside a dataset (``test/`` to try detect.py on)."""
    if not _has_images(folder):
        return False
    return (folder / _SPLIT_NAMES).is_file() or any(p.suffix == ".txt" and p.is_file() for p in folder.iterdir())


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` holds image files itself (not only in subfolders)."""
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.iterdir())


def _strip_first(base: Path, value: str) -> Path:
    """``base`` / ``value`` without its first folder (``data/train.txt`` -> ``base/train.txt``)."""
    parts = Path(value).parts
    return base.joinpath(*parts[1:]) if len(parts) > 1 else base / value


def _key(p: Path, root: Path) -> str:
    """Stable hash key of an image: its path relative to ``root`` (the file name when outside)."""
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.name


def _is_dataset(path: Path) -> bool:
    """A yaml with ``names`` or ``train`` at the top level (an ultralytics dataset yaml)."""
    try:
        content = yaml.safe_load(read_text(path))
    except OSError:
        return False
    except yaml.YAMLError as e:  # a dataset yaml with a typo was passed over without a word
        log_once(("bad yaml", str(path)), logging.WARNING, "%s: not read as a dataset yaml: %s", path, e)
        return False
    return isinstance(content, dict) and ("names" in content or "train" in content)
