"""Digits: the data of the CPU-sized YOLO9000 experiment (``experiment=yolo9000_digits``, issue 9), made from the
5,000 real MNIST digits vendored at ``data/mnist5k`` (see its SOURCE.md).

The paper's point, in miniature: a detector trained jointly on detection data that boxes only some classes
(here the digits 0-4; like COCO, some boxes name only a coarse class, "even" / "odd", as COCO says "dog" where
ImageNet names the breed) and on classification data of all classes (all ten digits) should detect the classes it
never saw boxed (5-9) through the WordTree.

WordTree (darknet tree file ``data/mnist5k/digits.tree``, names ``digits.names``; siblings are consecutive)::

    node  id     name   parent          node  id     name   parent
    0     digit  digit  -1 (root)       8     one    1      2 (odd)
    1     even   even   0               9     three  3      2
    2     odd    odd    0               10    five   5      2
    3     zero   0      1 (even)        11    seven  7      2
    4     two    2      1               12    nine   9      2
    5     four   4      1
    6     six    6      1
    7     eight  8      1

Sibling groups: {digit}, {even, odd}, {0, 2, 4, 6, 8}, {1, 3, 5, 7, 9}. ``DIGIT_NODES[d]`` is the node of digit ``d``,
``PARITY_NODES[d]`` the node of its parity.

Splits (:class:`DigitsParser`), all deterministic functions of :class:`DigitsConfig` (``seed`` included):

- ``train``: detection canvases with digits 0-4 only (``train_digits``); a ``coarse_fraction`` of the boxes is
  labelled with the parity node instead of the digit node;
- ``classification``: one centred digit per canvas, all ten digits (balanced), labelled with the digit node (the
  record's one box is the digit's ink box; the joint stream uses only its label);
- ``val`` / ``test``: held-out detection canvases with all ten digits, labelled with the digit node.

The MNIST rows are split once (``heldout_fraction``): ``train`` and ``classification`` draw from the rest, ``val``
and ``test`` from one half each of the held-out rows. A canvas is ``canvas_size`` square RGB (white ink on black),
with ``min_digits`` - ``max_digits`` digits whose ink's longer side is ``digit_min`` - ``digit_max`` pixels, at least
``gap`` pixels apart. A box is the exact bounding box of its digit's ink (pixels >= ``ink_threshold`` after scaling;
fainter pixels are set to 0, so the box is tight around the canvas's nonzero pixels).

Images are written once as PNG under ``<cache_dir>/<split>-<hash of every generation parameter>/`` with a
``manifest.json`` (boxes, labels and each box's true digit under ``digits``), written to a temporary folder and
renamed (DDP ranks may race); later runs read the manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yolo9000.wordtree import WordTree

from .records import DetectionRecord, IssueLog

logger = logging.getLogger("yolo9000.data")

__all__ = [
    "DEFAULT_COUNTS",
    "DIGIT_NODES",
    "EVEN_NODE",
    "ODD_NODE",
    "PARITY_NODES",
    "ROOT_NODE",
    "TREE_IDS",
    "TREE_NAMES",
    "TREE_PARENTS",
    "DigitsConfig",
    "DigitsParser",
    "build_split",
    "digit_glyph",
    "digit_tree",
    "load_digit_tree",
    "load_mnist",
    "mnist_pools",
    "write_digit_tree",
]

DATA_ROOT = Path(__file__).resolve().parents[3] / "data" / "mnist5k"
CSV_NAME = "mnist_5k.csv.gz"
GENERATOR_VERSION = 1  # bump when the generated images change for the same parameters

# (darknet id, display name, parent node)
_TREE: tuple[tuple[str, str, int], ...] = (
    ("digit", "digit", -1),
    ("even", "even", 0),
    ("odd", "odd", 0),
    *((w, str(d), 1) for d, w in ((0, "zero"), (2, "two"), (4, "four"), (6, "six"), (8, "eight"))),
    *((w, str(d), 2) for d, w in ((1, "one"), (3, "three"), (5, "five"), (7, "seven"), (9, "nine"))),
)
TREE_IDS: tuple[str, ...] = tuple(t[0] for t in _TREE)
TREE_NAMES: tuple[str, ...] = tuple(t[1] for t in _TREE)
TREE_PARENTS: tuple[int, ...] = tuple(t[2] for t in _TREE)
ROOT_NODE, EVEN_NODE, ODD_NODE = 0, 1, 2
DIGIT_NODES: tuple[int, ...] = tuple(TREE_NAMES.index(str(d)) for d in range(10))  # node of digit d
PARITY_NODES: tuple[int, ...] = tuple(EVEN_NODE if d % 2 == 0 else ODD_NODE for d in range(10))  # parity of d

SPLITS = ("train", "classification", "val", "test")
DEFAULT_COUNTS = {"train": 800, "classification": 2000, "val": 150, "test": 300}  # images per split
_SPLIT_STREAM = {"train": 1, "classification": 2, "val": 3, "test": 4}  # rng stream of each split


# ------------------------------------------------------------------------------------------------ tree
def digit_tree() -> WordTree:
    """The digit WordTree (13 nodes, layout in the module docstring)."""
    return WordTree(TREE_PARENTS, TREE_NAMES)


def write_digit_tree(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``digits.tree`` (darknet ``<id> <parent index>``) and ``digits.names`` (one name a line) into
    ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tree, names = out_dir / "digits.tree", out_dir / "digits.names"
    tree.write_text("".join(f"{i} {p}\n" for i, p in zip(TREE_IDS, TREE_PARENTS, strict=True)))
    names.write_text("".join(f"{n}\n" for n in TREE_NAMES))
    return tree, names


def load_digit_tree(root: str | Path = DATA_ROOT) -> WordTree:
    """The digit WordTree read from ``root/digits.tree`` and ``root/digits.names`` (the vendored files)."""
    root = Path(root)
    return WordTree.from_file(root / "digits.tree", root / "digits.names")


# ----------------------------------------------------------------------------------------------- MNIST
@lru_cache(maxsize=4)
def _read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as f:
        text = f.read()
    flat = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",")  # text mode: fast
    if flat.size % 785:
        raise ValueError(f"{path}: {flat.size} values, not rows of 785 (784 pixels + label)")
    rows = flat.reshape(-1, 785)
    images = rows[:, :784].clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = rows[:, 784].astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels outside 0..9")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The vendored MNIST digits: (images uint8 (N, 28, 28) white on black, labels int64 (N,)), read-only, cached.

    Args:
        path: the gzip'd CSV (default: ``data/mnist5k/mnist_5k.csv.gz``).
    """
    path = Path(path) if path is not None else DATA_ROOT / CSV_NAME
    if not path.is_file():
        raise FileNotFoundError(f"MNIST CSV not found: {path}")
    return _read_csv(str(path.resolve()))


def mnist_pools(n: int, seed: int, heldout_fraction: float) -> dict[str, np.ndarray]:
    """Disjoint MNIST row indices per use: ``train`` (train and classification splits), ``val``, ``test`` (the two
    halves of the ``heldout_fraction`` held-out rows). Each int64 (k,), a pure function of the arguments."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    perm = np.random.default_rng([int(seed), 0xD161]).permutation(n)
    n_held = max(2, round(heldout_fraction * n))
    held = perm[:n_held]
    return {"train": np.sort(perm[n_held:]), "val": np.sort(held[: n_held // 2]), "test": np.sort(held[n_held // 2 :])}


def digit_glyph(image: np.ndarray, size: int, threshold: int) -> np.ndarray:
    """A digit scaled so that its ink's longer side is ``size`` pixels, cropped to its ink.

    Args:
        image: uint8 (28, 28) white on black.
        size: longer side of the ink after scaling (pixels).
        threshold: pixels under it are background (set to 0), before and after scaling.
    Returns:
        uint8 (h, w) with ink (nonzero pixels) on its first and last row and column.
    """
    ys, xs = np.nonzero(image >= threshold)
    if not len(ys):
        raise ValueError("digit image without ink")
    crop = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = size / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    g = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR if scale >= 1 else cv2.INTER_AREA)
    g = np.where(g >= threshold, g, 0).astype(np.uint8)
    ys, xs = np.nonzero(g)
    if not len(ys):  # a faint digit scaled down to nothing: one ink pixel
        return np.full((1, 1), max(threshold, 1), np.uint8)
    return np.ascontiguousarray(g[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DigitsConfig:
    """Generation parameters shared by every split (module docstring); all of them enter the cache hash."""

    seed: int = 0
    canvas_size: int = 128
    digit_min: int = 20
    digit_max: int = 48
    min_digits: int = 2
    max_digits: int = 5
    gap: int = 2
    train_digits: tuple[int, ...] = (0, 1, 2, 3, 4)
    coarse_fraction: float = 0.3
    heldout_fraction: float = 0.2
    ink_threshold: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.digit_min <= self.digit_max <= self.canvas_size:
            raise ValueError(f"need 1 <= digit_min <= digit_max <= canvas_size, got {self}")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self}")
        if not 0.0 <= self.coarse_fraction <= 1.0:
            raise ValueError(f"coarse_fraction must be in [0, 1], got {self.coarse_fraction}")
        if not self.train_digits or any(not 0 <= d <= 9 for d in self.train_digits):
            raise ValueError(f"train_digits must be digits 0..9, got {self.train_digits}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | DigitsConfig | None) -> DigitsConfig:
        if isinstance(m, DigitsConfig):
            return m
        m = dict(m or {})
        unknown = set(m) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown digits keys {sorted(unknown)}")
        if "train_digits" in m:
            m["train_digits"] = tuple(int(d) for d in m["train_digits"])
        return cls(**m)


# ------------------------------------------------------------------------------------------ generation
def _cycle(items: Sequence[int] | np.ndarray, rng: np.random.Generator) -> Iterator[int]:
    """Endless draws from ``items`` (non-empty): reshuffled permutations one after the other (each once a pass)."""
    while True:
        yield from rng.permutation(np.asarray(items)).tolist()


def _draws(digits: Sequence[int], pool: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
    """MNIST rows of ``pool`` with classes balanced over ``digits`` (classes and rows cycled)."""
    classes = _cycle(list(digits), rng)
    rows = {d: _cycle(pool[labels[pool] == d], rng) for d in digits}
    while True:
        yield next(rows[next(classes)])


def _canvas(
    draws: Iterator[int], images: np.ndarray, labels: np.ndarray, cfg: DigitsConfig, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One canvas with ``n`` digits (fewer when one does not fit after 100 tries; ``n == 0``: one centred digit):
    (image uint8 (S, S), boxes float32 (k, 4) xyxy pixels, digits int64 (k,))."""
    s, gap = cfg.canvas_size, cfg.gap
    canvas = np.zeros((s, s), np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    digits: list[int] = []
    for _ in range(max(n, 1)):
        row = next(draws)
        g = digit_glyph(images[row], int(rng.integers(cfg.digit_min, cfg.digit_max + 1)), cfg.ink_threshold)
        h, w = g.shape
        for _try in range(100):
            if n == 0:
                x, y = (s - w) // 2, (s - h) // 2
            else:
                x, y = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
            if all(
                x >= bx1 + gap or bx0 >= x + w + gap or y >= by1 + gap or by0 >= y + h + gap
                for bx0, by0, bx1, by1 in boxes
            ):
                canvas[y : y + h, x : x + w] = g
                boxes.append((x, y, x + w, y + h))
                digits.append(int(labels[row]))
                break
    return canvas, np.array(boxes, np.float32).reshape(-1, 4), np.array(digits, np.int64)


def _generate(split: str, n: int, cfg: DigitsConfig, images: np.ndarray, labels: np.ndarray) -> Iterator[dict]:
    """The ``n`` images of ``split``: dicts with image uint8 (S, S), boxes float32 (k, 4) xyxy pixels, digits int64
    (k,) true digits, coarse bool (k,) (labelled with the parity node)."""
    rng = np.random.default_rng([cfg.seed, _SPLIT_STREAM[split]])
    pools = mnist_pools(len(labels), cfg.seed, cfg.heldout_fraction)
    pool = pools["train" if split in ("train", "classification") else split]
    allowed = cfg.train_digits if split == "train" else tuple(range(10))
    draws = _draws(sorted(set(allowed)), pool, labels, rng)
    lo, hi = cfg.min_digits, cfg.max_digits
    canvases = [
        _canvas(draws, images, labels, cfg, rng, 0 if split == "classification" else int(rng.integers(lo, hi + 1)))
        for _ in range(n)
    ]
    n_boxes = sum(len(c[2]) for c in canvases)
    coarse = np.zeros(n_boxes, bool)
    if split == "train":  # exactly round(coarse_fraction * boxes) boxes get the parity label
        coarse[rng.permutation(n_boxes)[: round(cfg.coarse_fraction * n_boxes)]] = True
    start = 0
    for img, boxes, digits in canvases:
        yield {"image": img, "boxes": boxes, "digits": digits, "coarse": coarse[start : start + len(digits)]}
        start += len(digits)


def node_labels(digits: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Tree nodes of boxes: the parity node where ``coarse``, else the digit node. (k,) -> (k,) int64."""
    return np.where(coarse, np.asarray(PARITY_NODES)[digits], np.asarray(DIGIT_NODES)[digits]).astype(np.int64)


def publish_folder(out: Path, write: Callable[[Path], None]) -> None:
    """Create the folder ``out`` atomically: ``write`` fills a fresh temporary sibling (it must create it and
    leave a ``manifest.json``), which is then renamed to ``out``; when another process (a DDP rank) finished first,
    its folder is kept. The temporary folder never survives."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: keep its folder
            if not (out / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_params(split: str, n: int, cfg: DigitsConfig, csv_path: Path) -> dict[str, Any]:
    """Every parameter the images of a split depend on (their hash names the cache folder)."""
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()[:16]
    cfg_d = asdict(cfg)
    cfg_d["train_digits"] = list(cfg.train_digits)
    return {"version": GENERATOR_VERSION, "csv_sha256": digest, "split": split, "num_images": n, **cfg_d}


def _write_split(out: Path, split: str, n: int, cfg: DigitsConfig, csv_path: Path, params: dict[str, Any]) -> None:
    """Generate a split into ``out`` (a fresh folder): PNGs + ``manifest.json``."""
    images, labels = load_mnist(csv_path)
    out.mkdir(parents=True)
    entries = []
    for i, item in enumerate(_generate(split, n, cfg, images, labels)):
        name = f"{split}_{i:05d}.png"
        rgb = np.repeat(item["image"][:, :, None], 3, axis=2)
        if not cv2.imwrite(str(out / name), rgb):
            raise OSError(f"could not write {out / name}")
        entries.append(
            {
                "file": name,
                "boxes": item["boxes"].astype(int).tolist(),
                "labels": node_labels(item["digits"], item["coarse"]).tolist(),
                "digits": item["digits"].tolist(),
            }
        )
    manifest = {"params": params, "tree": list(TREE_NAMES), "records": entries}
    (out / "manifest.json").write_text(json.dumps(manifest) + "\n")


def build_split(
    split: str,
    num_images: int | None = None,
    config: DigitsConfig | Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    csv_path: str | Path | None = None,
) -> list[DetectionRecord]:
    """The records of a split, generated on first use into ``<cache_dir>/<split>-<hash>/``.

    Args:
        split: ``train`` | ``classification`` | ``val`` | ``test``.
        num_images: images of the split (None: :data:`DEFAULT_COUNTS`).
        config: :class:`DigitsConfig` or a mapping of its fields.
        cache_dir: where generated splits live (default ``data/mnist5k/generated``, gitignored).
        csv_path: the MNIST CSV (default: the vendored one).
    Returns:
        :class:`DetectionRecord` per image: boxes float32 (k, 4) xyxy pixels of the ink, labels int64 (k,) tree node
        indices (``train``: the parity node for the coarse boxes; else the digit node), difficult all False.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {SPLITS}")
    cfg = DigitsConfig.from_mapping(config)
    n = int(num_images) if num_images is not None else DEFAULT_COUNTS[split]
    csv = Path(csv_path) if csv_path is not None else DATA_ROOT / CSV_NAME
    cache = Path(cache_dir) if cache_dir is not None else DATA_ROOT / "generated"
    params = split_params(split, n, cfg, csv)
    key = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=6).hexdigest()
    out = cache / f"{split}-{key}"
    if not (out / "manifest.json").is_file():
        logger.info("generating %d digits %s images into %s", n, split, out)
        publish_folder(out, lambda tmp: _write_split(tmp, split, n, cfg, csv, params))
    manifest = json.loads((out / "manifest.json").read_text())
    s = cfg.canvas_size
    return [
        DetectionRecord(
            image_path=out / e["file"],
            image_id=Path(e["file"]).stem,
            width=s,
            height=s,
            boxes=np.asarray(e["boxes"], np.float32).reshape(-1, 4),
            labels=np.asarray(e["labels"], np.int64),
            difficult=np.zeros(len(e["labels"]), bool),
        )
        for e in manifest["records"]
    ]


class DigitsParser:
    """A digits split as an annotation parser (the :class:`~yolo9000.data.datamodule.AnnotationParser` protocol:
    usable as ``data.train`` / ``val`` / ``test`` / ``classification`` with ``_target_``).

    Args:
        split: ``train`` | ``classification`` | ``val`` | ``test`` (module docstring).
        num_images: images of the split (None: :data:`DEFAULT_COUNTS`).
        root: folder with ``mnist_5k.csv.gz`` and the tree files (default ``data/mnist5k``).
        cache_dir: generated splits (default ``<root>/generated``).
        **config: :class:`DigitsConfig` keys (seed, canvas_size, digit_min, digit_max, min_digits, max_digits, gap,
            train_digits, coarse_fraction, heldout_fraction, ink_threshold).
    """

    def __init__(
        self,
        split: str,
        num_images: int | None = None,
        root: str | Path | None = None,
        cache_dir: str | Path | None = None,
        **config: Any,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown digits split {split!r}; expected one of {SPLITS}")
        self.split = split
        self.num_images = num_images
        self.root = Path(root) if root is not None else DATA_ROOT
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root / "generated"
        self.config = DigitsConfig.from_mapping(config)

    def __repr__(self) -> str:
        return f"DigitsParser({self.split!r}, num_images={self.num_images}, cache_dir={str(self.cache_dir)!r})"

    def discover_class_names(self) -> list[str]:
        """The tree's node names (class index = tree node)."""
        return list(TREE_NAMES)

    def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]:
        """Records of the split (generated on first use). ``class_names`` other than the tree's node names are
        matched by name (a missing node raises ValueError)."""
        records = build_split(self.split, self.num_images, self.config, self.cache_dir, self.root / CSV_NAME)
        if class_names is None or list(class_names) == list(TREE_NAMES):
            return records
        names = [str(c) for c in class_names]
        missing = [n for n in TREE_NAMES if n not in names]
        if missing:
            raise ValueError(f"class_names lack the digit tree nodes {missing}; use {list(TREE_NAMES)}")
        remap = np.array([names.index(n) for n in TREE_NAMES], np.int64)
        for r in records:
            r.labels = remap[r.labels]
        return records
