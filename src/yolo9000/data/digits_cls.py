"""Single MNIST digits as classification data over the digit WordTree (``data=digits_cls``): the CPU stand-in for
the paper's WordTree1k classifier (``experiment=wordtree_digits``).

The vendored digits (``data/mnist5k``) are written once as 28 x 28 RGB PNGs in the ImageFolder layout
``<cache_dir>/cls-<hash>/<split>/<tree node name>/<split>_<mnist row>.png`` (the hash covers every parameter and
the CSV's bytes; written to a temporary folder and renamed, so DDP ranks may race), and read by
:class:`~yolo9000.data.imagefolder.ClassificationDataModule` with the tree's 13 node names as the class list, so a
label is a tree node (``yolo9000.data.digits``: digit -> {even, odd} -> the ten digits) and the head has one output
per node.

Rows as :func:`yolo9000.data.digits.mnist_pools` splits them (``split_seed`` = the detection data's ``seed``): train
from the training rows, val and test from the two halves of the held-out rows, the same held-out digits as the
detection canvases of ``data=digits``. A ``coarse_fraction`` of the training images is labelled with the parity node
only ("even" / "odd", as ImageNet labels some images with an internal WordTree node); val and test hold digit labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .digits import (
    CSV_NAME,
    DATA_ROOT,
    DIGIT_NODES,
    EVEN_NODE,
    ODD_NODE,
    ROOT_NODE,
    TREE_NAMES,
    load_mnist,
    mnist_pools,
    node_labels,
    publish_folder,
)
from .imagefolder import ClassificationDataModule

logger = logging.getLogger("yolo9000.data")

__all__ = ["DigitsClassificationDataModule", "build_digit_folder"]

VERSION = 1  # bump when the written images change for the same parameters
_COARSE_STREAM = 5  # rng stream of the coarse labels (yolo9000.data.digits uses 1-4 for its splits)


def build_digit_folder(
    root: str | Path = DATA_ROOT,
    cache_dir: str | Path | None = None,
    split_seed: int = 0,
    heldout_fraction: float = 0.2,
    coarse_fraction: float = 0.0,
) -> Path:
    """The ImageFolder of single digits (module docstring), written on first use.

    Args:
        root: folder holding ``mnist_5k.csv.gz``.
        cache_dir: where the folder goes (default ``<root>/generated``, git-ignored).
        split_seed: seed of the train / held-out split of the MNIST rows (:func:`~yolo9000.data.digits.mnist_pools`).
        heldout_fraction: fraction of the rows held out for val + test.
        coarse_fraction: fraction of the training images labelled with their parity node instead of the digit.
    Returns:
        the folder, holding ``train``, ``val``, ``test`` and ``manifest.json`` (parameters and images per label).
    """
    if not 0.0 <= coarse_fraction <= 1.0:
        raise ValueError(f"coarse_fraction must be in [0, 1], got {coarse_fraction}")
    root = Path(root)
    csv = root / CSV_NAME
    images, digits = load_mnist(csv)
    params = {
        "version": VERSION,
        "csv_sha256": hashlib.sha256(csv.read_bytes()).hexdigest()[:16],
        "split_seed": int(split_seed),
        "heldout_fraction": float(heldout_fraction),
        "coarse_fraction": float(coarse_fraction),
    }
    key = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=6).hexdigest()
    cache = Path(cache_dir) if cache_dir is not None else root / "generated"
    out = cache / f"cls-{key}"
    if (out / "manifest.json").is_file():
        return out
    pools = mnist_pools(len(digits), int(split_seed), float(heldout_fraction))
    train = pools["train"]
    coarse = np.zeros(len(train), bool)
    rng = np.random.default_rng([int(split_seed), _COARSE_STREAM])
    coarse[rng.permutation(len(train))[: round(coarse_fraction * len(train))]] = True
    nodes = {
        "train": node_labels(digits[train], coarse),
        "val": np.asarray(DIGIT_NODES)[digits[pools["val"]]],
        "test": np.asarray(DIGIT_NODES)[digits[pools["test"]]],
    }
    logger.info("writing %d single digits into %s", len(digits), out)

    def write(tmp: Path) -> None:
        counts: dict[str, dict[str, int]] = {}
        for split, node in nodes.items():
            counts[split] = {}
            for row, label in zip(pools[split].tolist(), node.tolist(), strict=True):
                name = TREE_NAMES[label]
                folder = tmp / split / name
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{split}_{row:05d}.png"
                if not cv2.imwrite(str(path), np.repeat(images[row][:, :, None], 3, axis=2)):
                    raise OSError(f"could not write {path}")
                counts[split][name] = counts[split].get(name, 0) + 1
        (tmp / "manifest.json").write_text(json.dumps({"params": params, "images": counts}, indent=1) + "\n")

    publish_folder(out, write)
    return out


class DigitsClassificationDataModule(ClassificationDataModule):
    """Single-digit classification over the digit tree's 13 nodes (module docstring): labels are tree nodes.

    Args:
        root: folder holding the vendored MNIST CSV (``data/mnist5k``).
        cache_dir, split_seed, heldout_fraction, coarse_fraction: :func:`build_digit_folder`.
        **kwargs: :class:`~yolo9000.data.imagefolder.ClassificationDataModule` keys (batch_size, img_size, augment,
            num_workers, max_images, seed, ...); the splits and the class list are this module's.
    """

    def __init__(
        self,
        root: str | Path = DATA_ROOT,
        cache_dir: str | Path | None = None,
        split_seed: int = 0,
        heldout_fraction: float = 0.2,
        coarse_fraction: float = 0.0,
        **kwargs: Any,
    ) -> None:
        fixed = {"train_split", "val_split", "test_split", "class_names", "class_file", "build_from", "crops"}
        if fixed & set(kwargs):
            raise ValueError(f"DigitsClassificationDataModule sets {sorted(fixed & set(kwargs))} itself")
        super().__init__(str(root), "train", "val", "test", class_names=list(TREE_NAMES), **kwargs)
        self.source = Path(root)
        self.folder_args = {
            "cache_dir": cache_dir,
            "split_seed": split_seed,
            "heldout_fraction": heldout_fraction,
            "coarse_fraction": coarse_fraction,
        }
        self._folder: Path | None = None

    def expected_empty_classes(self, split: str) -> set[str]:
        """The root ("digit") is never a label; the parity nodes are training labels only (``coarse_fraction``)."""
        parity = {TREE_NAMES[EVEN_NODE], TREE_NAMES[ODD_NODE]}
        coarse = split == "train" and float(self.folder_args["coarse_fraction"]) > 0
        return {TREE_NAMES[ROOT_NODE]} | (set() if coarse else parity)

    def prepare_data(self) -> None:
        """Write the digit folder unless it exists (idempotent); ``root`` becomes it."""
        if self._folder is None:
            self._folder = build_digit_folder(self.source, **self.folder_args)
            self.root = self._folder

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # every rank: finds the folder rank 0 wrote (or writes it, atomically)
        super().setup(stage)
