"""Label sets mapped into a WordTree: the data side of YOLO9000 at full scale (``experiment=yolo9000``).

The joint stream (:mod:`yolo9000.data.joint`) wants every label as a tree node index. Two parsers put existing data
there, both following the :class:`~yolo9000.data.datamodule.AnnotationParser` protocol:

* :class:`TreeLabels` wraps any detection parser (COCO JSON, VOC XML, YOLO txt): its own class names go into the
  tree by a darknet map file (``coco9k.map``: one node a class, in the label set's order) or by WordNet id / name
  (:meth:`~yolo9000.wordtree.WordTree.map_labels`); the records' labels become node indices.
* :class:`ImageListParser` reads a list of classification images (darknet's ``train.list`` of ImageNet files): the
  label of an image is the tree node whose WordNet id appears in its path, as darknet finds a classifier's label by
  searching the path for each label string (``fill_truth``); here the last ``n########`` of the path that is a node
  of the tree (folder ``n02084071/`` or file ``n02084071_123.JPEG``).

Both report the tree's node names as the class names, so a run's classes are the tree's nodes.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolo9000.text_io import read_text, text_lines
from yolo9000.wordtree import WordTree

from .records import DetectionRecord, IssueLog
from .splits import read_list_file
from .voc import log_once

logger = logging.getLogger("yolo9000.data")

__all__ = ["ImageListParser", "TreeLabels", "load_tree"]

# a WordNet id: n and 8 digits, not inside a word or a longer number (a dated folder "run20240115" holds none)
WNID = re.compile(r"(?<![A-Za-z0-9])n\d{8}(?!\d)")
# COCO's official category names where darknet's coco.names (the order of coco9k.map) spells them otherwise
COCO_NAMES_IN_DARKNET = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa", "tv": "tvmonitor"}


def _name_key(name: str) -> str:
    """A class name compared without case, spaces, underscores or hyphens (``potted plant`` = ``pottedplant``)."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def map_by_name(classes: Sequence[str], map_names: Sequence[str], nodes: np.ndarray, what: str) -> np.ndarray:
    """(C,) tree node of each of ``classes``, matched by name to ``map_names`` (the label set a darknet map is
    written for, ``nodes`` (K,) its nodes in that order): case, spaces, underscores and hyphens aside, COCO's
    official names for darknet's spellings (:data:`COCO_NAMES_IN_DARKNET`). A subset, or another order, of the
    label set maps right; a class it does not name raises ValueError naming every such class and ``what``."""
    if len(map_names) != len(nodes):
        raise ValueError(f"{what}: {len(map_names)} names for {len(nodes)} map entries")
    pos = {_name_key(n): i for i, n in enumerate(map_names)}
    for official, darknet in COCO_NAMES_IN_DARKNET.items():
        if _name_key(darknet) in pos:
            pos.setdefault(_name_key(official), pos[_name_key(darknet)])
    found = [pos.get(_name_key(c)) for c in classes]
    missing = [c for c, i in zip(classes, found, strict=True) if i is None]
    if missing:
        raise ValueError(
            f"{what}: {len(missing)} classes of the data are not in the map's label set: {missing[:20]} (its "
            f"names: {list(map_names)[:10]}...): a map places a fixed label set (COCO's 80) in the tree; other "
            "classes go in by WordNet id or node name (map_file: null)"
        )
    return nodes[np.asarray(found, dtype=np.int64)]


def load_tree(
    tree: str | Path | WordTree, names_file: str | Path | None = None, labels_file: str | Path | None = None
) -> WordTree:
    """A WordTree given as one, or as darknet files (tree, optional names and WordNet-id labels files)."""
    return tree if isinstance(tree, WordTree) else WordTree.from_file(tree, names_file, labels_file)


def _to_class_names(records: list[DetectionRecord], tree: WordTree, class_names: Sequence[str] | None, what: str):
    """Records labelled with tree nodes, re-indexed to ``class_names`` when that is not the tree's own name list."""
    if class_names is None or list(class_names) == tree.names:
        return records
    if len(class_names) != tree.n:
        raise ValueError(f"{what}: class_names has {len(class_names)} entries, the WordTree {tree.n} nodes")
    raise ValueError(f"{what}: class_names must be the WordTree's node names in tree order (data.class_names: null)")


class TreeLabels:
    """A detection parser whose labels are mapped into a WordTree (COCO's 80 classes into the 9k tree).

    Args:
        parser: the wrapped parser (``COCOParser``, ``VOCParser``, ``YOLOTxtParser``, ...); parsed with its own
            class names (``discover_class_names``).
        tree: darknet tree file (or a WordTree); ``names_file`` / ``labels_file``: its names and WordNet ids.
        map_file: darknet map file, one tree node per class of its label set (``coco9k.map``: COCO's 80 in
            category-id order); None = each class looked up by WordNet id, then by unique node name.
        map_names: the map's label set, one name a line in the map's order (``coco.names`` for ``coco9k.map``):
            each class of ``parser`` is matched to it by name (:func:`map_by_name`), so a subset of COCO's classes
            or another category numbering maps right; None: by position (the parser's classes must be the map's,
            in its order).
    """

    def __init__(
        self,
        parser: Any,
        tree: str | Path | WordTree,
        names_file: str | Path | None = None,
        labels_file: str | Path | None = None,
        map_file: str | Path | None = None,
        map_names: str | Path | None = None,
    ) -> None:
        self.parser = parser
        self.tree = load_tree(tree, names_file, labels_file)
        self.map_file = map_file
        self.map_names = map_names

    def __repr__(self) -> str:
        return f"TreeLabels({self.parser!r}, nodes={self.tree.n}, map_file={self.map_file!r})"

    def discover_class_names(self) -> list[str]:
        """The tree's node names (class index = node)."""
        return list(self.tree.names)

    def node_of_class(self) -> np.ndarray:
        """(C,) tree node of each class of the wrapped parser."""
        names = self.parser.discover_class_names()
        if not names:
            raise ValueError(f"{self.parser!r}: no class names to map into the WordTree")
        if self.map_file is not None and self.map_names is not None:
            listed = [ln.strip() for ln in text_lines(read_text(self.map_names))]
            nodes = self.tree.read_map(self.map_file).numpy()
            nodes = map_by_name(list(names), [n for n in listed if n], nodes, f"{self.map_file} ({self.map_names})")
        else:
            nodes = self.tree.map_labels(list(names), self.map_file).numpy()
        pairs = ", ".join(f"{c} -> {self.tree.names[int(n)]}" for c, n in list(zip(names, nodes, strict=True))[:20])
        how = (
            "by position in the map (map_names: by name)"
            if self.map_file is not None and self.map_names is None
            else "by name"
        )
        log_once(("tree labels", repr(self)), logging.INFO, "%s: classes into the tree %s: %s", self.parser, how, pairs)
        return nodes

    def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]:
        """The wrapped parser's records with node labels (an internal node where the data names a coarse class)."""
        nodes = self.node_of_class()
        records = self.parser.parse(self.parser.discover_class_names(), issues)
        for r in records:
            r.labels = nodes[r.labels]
        return _to_class_names(records, self.tree, class_names, repr(self))


class ImageListParser:
    """Classification images from a list file (one path a line, relative to ``root`` or the list's folder), each
    labelled with the tree node whose WordNet id is in its path (the last such ``n########``); a path without any
    such id by the folder holding it, named as a node (a name the tree holds once): ``RBC/x.jpg``.

    An image whose path names no node of the tree is skipped and reported (``issues``), naming the file and the
    list line.

    Args:
        list_file: text list (``#`` comments and blank lines skipped) or CSV with a file column (see
            :func:`~yolo9000.data.splits.read_list_file`).
        tree, names_file, labels_file: the WordTree (darknet files); its labels file holds the WordNet ids.
        root: folder that relative paths start from (default: the list file's folder).
    """

    def __init__(
        self,
        list_file: str | Path,
        tree: str | Path | WordTree,
        names_file: str | Path | None = None,
        labels_file: str | Path | None = None,
        root: str | Path | None = None,
    ) -> None:
        self.list_file = Path(list_file)
        self.tree = load_tree(tree, names_file, labels_file)
        self.root = Path(root) if root is not None else self.list_file.parent

    def __repr__(self) -> str:
        return f"ImageListParser({str(self.list_file)!r}, nodes={self.tree.n})"

    def discover_class_names(self) -> list[str]:
        return list(self.tree.names)

    def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]:
        """One record a listed image, ``labels = [node]`` (its one box a placeholder: never used for training)."""
        if not self.list_file.is_file():
            raise FileNotFoundError(f"classification list not found: {self.list_file}")
        entries, _ = read_list_file(self.list_file)
        node_of = {w: i for i, w in reversed(list(enumerate(self.tree.wnids)))}
        counts = Counter(self.tree.names)
        # unique node names, in Unicode's composed form (a folder copied from macOS has its name decomposed)
        by_name = {unicodedata.normalize("NFC", n): i for i, n in enumerate(self.tree.names) if counts[n] == 1}
        records: list[DetectionRecord] = []
        for line_no, entry in enumerate(entries, 1):
            if "\\" in entry and "/" not in entry:  # a list written on Windows: train\n01440764\x.jpg
                entry = entry.replace("\\", "/")
            path = Path(entry) if Path(entry).is_absolute() else self.root / entry
            ids = WNID.findall(entry)
            node = next((node_of[w] for w in reversed(ids) if w in node_of), None)
            known = list(dict.fromkeys(w for w in ids if w in node_of))
            if len(known) > 1:  # darknet's fill_truth: "Too many or too few labels" (and every match set)
                issues.note(
                    path,
                    "several WordTree nodes' WordNet ids in the path: the last one labels it",
                    detail=f"{self.list_file} entry {line_no}: {', '.join(known)}",
                )
            if node is None and not ids:  # no id at all: the folder holding it named as a node (<class>/<image>)
                node = by_name.get(unicodedata.normalize("NFC", Path(entry).parent.name))
            if node is None:
                folder = Path(entry).parent.name
                if not ids and counts[folder] > 1:  # a name several nodes hold: which one is meant is unknown
                    reason = "its folder's name is held by several WordTree nodes"
                    detail = f"{self.list_file} entry {line_no}: {folder!r} is nodes {_nodes_named(self.tree, folder)}"
                    detail += "; name the folder by the node's n######## id"
                else:
                    reason = "no WordTree node's WordNet id or name in the path"
                    detail = f"{self.list_file} entry {line_no}: a folder named as a node, or the node's n######## id"
                issues.report(path, reason, action="skip_image", detail=detail)
                continue
            # the joint stream reads labels[0] only; the box is a placeholder (the image's size is unknown here)
            records.append(
                DetectionRecord(path, f"{path.stem}_{line_no}", None, None, [[0.0, 0.0, 1.0, 1.0]], [node], [False])
            )
        logger.info("%s: %d classification images labelled with WordTree nodes", self.list_file, len(records))
        return _to_class_names(records, self.tree, class_names, repr(self))


def _nodes_named(tree: WordTree, name: str) -> list[int]:
    """The indices of the tree's nodes named ``name``."""
    return [i for i, n in enumerate(tree.names) if n == name]
