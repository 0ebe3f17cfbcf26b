"""Split names, split lists and the deterministic hash split shared by the annotation parsers.

Split names (:func:`canonical_split`, :func:`expand_split`), split list files (:func:`read_list_file`: txt lists,
VOC ImageSets, CSVs with a split column) and :func:`hash_split`. Re-exported by :mod:`yolo9000.data.records`, where
they lived first.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from yolo9000.text_io import read_text, text_lines

__all__ = ["SPLIT_ALIASES", "canonical_split", "expand_split", "hash_split", "read_list_file"]


def hash_split(ids: Sequence[str], split: str | None, fractions: Mapping[str, float], seed: int = 0) -> list[str]:
    """Deterministic split of ``ids`` by a stable hash of ``(seed, id)``.

    Each id goes to one named split by comparing its hash, as a number in [0, 1), with the cumulative
    ``fractions`` (in the mapping's order; normalised to sum 1). Adding or removing ids does not move the
    others. ``split`` may be a key of ``fractions``, a ``+``-joined union (``"train+val"``), ``"trainval"``
    (train + val when not a key itself), or None / ``"all"`` (every id). Returns the ids in input order.
    """
    if split is None or split == "all":
        return list(ids)
    names = list(fractions)
    if split in fractions:
        wanted = {split}
    elif split == "trainval":
        wanted = {"train", "val"}
    else:
        wanted = set(split.split("+"))
    unknown = wanted - set(names)
    if unknown:
        raise ValueError(f"split {split!r} not in split fractions {dict(fractions)}")
    w = np.asarray([float(fractions[n]) for n in names], np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {dict(fractions)}")
    edges = np.cumsum(w / w.sum())
    edges[-1] = 1.0
    out = []
    for i in ids:
        h = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest()
        u = int.from_bytes(h, "little") / 2.0**64
        if names[int(np.searchsorted(edges, u, side="right"))] in wanted:
            out.append(i)
    return out


# ------------------------------------------------------------------------------------------------ split lists
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}
_CANONICAL = {a: s for s, aliases in SPLIT_ALIASES.items() for a in aliases}
_FILE_COLUMNS = (
    "filename",
    "file_name",
    "file",
    "image",
    "image_name",
    "image_file",
    "image_path",
    "img",
    "path",
    "image_id",
    "id",
    "name",
)
_SPLIT_COLUMNS = ("split", "subset", "set", "fold", "partition")


def canonical_split(name: str) -> str:
    """``valid`` / ``validation`` -> ``val``, ``training`` -> ``train``, ``testing`` -> ``test`` (case-insensitive);
    other names unchanged."""
    return _CANONICAL.get(str(name).strip().lower(), str(name).strip())


def expand_split(split: str) -> list[str]:
    """The canonical splits a split name stands for: ``"trainval"`` -> train, val; ``"a+b"`` -> a, b."""
    if split == "trainval":
        return ["train", "val"]
    return [canonical_split(s) for s in split.split("+")]


def read_list_file(path: str | Path, split: str | None = None) -> tuple[list[str], bool]:
    """Entries (image ids, file names or paths, as written) of a split list, duplicates dropped, order kept.

    - ``.csv``: the file-name column (a header named ``filename``, ``file_name``, ``file``, ``image``, ``path``,
      ``image_id``, ``id``, ... ; without a known header the first column) and an optional split column (``split``,
      ``subset``, ``set``, ``fold``; without a header a second column holding only split names). With a split
      column and ``split`` given, only its rows are kept (``valid`` = ``val``, ``trainval`` = train + val).
      Several rows per file (one per box) are fine.
    - anything else: one entry per line; blank lines and ``#`` comments skipped; VOC's ``<id> <flag>`` lines
      give the id.

    Returns:
        (entries, filtered): ``filtered`` is True when a split column selected the rows.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        # any editor's encoding (read_text): a BOM (Excel, Notepad) is no header text, UTF-16 (PowerShell) no crash
        table = csv.reader(io.StringIO(read_text(path), newline=""))
        rows = [[c.strip() for c in r] for r in table if any(c.strip() for c in r)]
        if not rows:
            return [], False
        header = [c.lower() for c in rows[0]]
        file_col = next((header.index(c) for c in _FILE_COLUMNS if c in header), None)
        split_col: int | None
        if file_col is not None:
            rows = rows[1:]
            split_col = next((header.index(c) for c in _SPLIT_COLUMNS if c in header), None)
        else:
            file_col = 0
            split_col = 1 if rows and all(len(r) > 1 and canonical_split(r[1]) in SPLIT_ALIASES for r in rows) else None
        if split_col is not None and split not in (None, "all"):
            wanted = set(expand_split(split)) | {split}  # type: ignore[arg-type]
            rows = [r for r in rows if len(r) > split_col and canonical_split(r[split_col]) in wanted]
        entries = [r[file_col] for r in rows if len(r) > file_col and r[file_col]]
        return list(dict.fromkeys(entries)), split_col is not None and split not in (None, "all")
    entries = []
    for line in text_lines(read_text(path)):
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) == 2 and fields[1] in ("-1", "0", "1"):  # VOC ImageSets "<id> <flag>"
            line = fields[0]
        entries.append(line)
    return list(dict.fromkeys(entries)), False
