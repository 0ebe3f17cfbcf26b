"""Detection records, the data-problem log and helpers shared by the annotation parsers.

Every problem found in the input data goes through an :class:`IssueLog`: under the ``"error"`` policy a
problem that would lose data raises :class:`DataError` naming the file; under ``"skip"`` it is logged
(logger ``yolo9000.data``) with the file and the reason, and counted for :meth:`IssueLog.summary`.
Problems that are repaired without losing data (a box clipped to the image, a size read from the image
header, an RGBA image converted to RGB) are logged and counted as ``fixed`` under both policies; things kept as
they are but worth knowing (an image without objects kept as a negative) as ``note``.

Split lists (:func:`read_list_file`), split names (:func:`canonical_split`, :func:`expand_split`) and
:func:`hash_split` live in :mod:`yolo9000.data.splits` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import numpy as np

from yolo9000.text_io import write_text

# re-exported: the parsers imported them from here before they moved to splits.py
from .splits import SPLIT_ALIASES, canonical_split, expand_split, hash_split, read_list_file  # noqa: F401

logger = logging.getLogger("yolo9000.data")

Policy = Literal["error", "skip"]
Action = Literal["skip_image", "skip_file", "drop_box", "fixed", "note"]

_ACTION_LABELS = {
    "skip_image": "skipped images",
    "skip_file": "ignored files",
    "drop_box": "dropped boxes",
    "fixed": "fixed",
    "note": "notes",
}
_ACTION_WORDS = {
    "skip_image": "image skipped",
    "skip_file": "file ignored",
    "drop_box": "box dropped",
    "fixed": "fixed",
    "note": "kept",
}
_LOSSY = ("skip_image", "skip_file", "drop_box")


MAX_FILES = 100  # files listed per reason in metrics.json's data_problems (data_issues.txt lists them all)


class DataError(RuntimeError):
    """A problem in the input data under the ``on_error: error`` policy; the message starts with the file."""


@dataclass
class DetectionRecord:
    """One annotated image.

    Attributes:
        image_path: path of the image file.
        image_id: file stem, unique within a split.
        width, height: image size in pixels (from the annotation or the image header).
        boxes: float32 (N, 4) xyxy, 0-based continuous pixel coordinates, inside the image.
        labels: int64 (N,) class indices.
        difficult: bool (N,) VOC ``difficult`` / COCO ``iscrowd`` flags.
    """

    image_path: Path
    image_id: str
    width: int | None
    height: int | None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, bool).reshape(-1)
        if not len(self.boxes) == len(self.labels) == len(self.difficult):
            raise ValueError(
                f"{self.image_path}: boxes {self.boxes.shape}, labels {self.labels.shape} and "
                f"difficult {self.difficult.shape} disagree"
            )


class PackedStrings:
    """Strings (or paths) packed into one byte array and offsets: no Python object per string (a forked worker's
    reads change no reference count, so the pages stay shared). ``[i]`` decodes string ``i`` (file names exactly,
    via :func:`os.fsencode` / :func:`os.fsdecode`)."""

    def __init__(self, strings: Sequence[str | os.PathLike[str]]) -> None:
        encoded = [os.fsencode(x) for x in strings]
        self.offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int64)
        self.blob = np.frombuffer(b"".join(encoded), np.uint8)

    def __getitem__(self, i: int) -> str:
        return os.fsdecode(self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes())


T = TypeVar("T")


class PackedSequence(Sequence[T]):
    """A read-only sequence whose items the subclass builds when read (``_item(i)``, ``0 <= i < len``) from the
    arrays it holds: ``[i]`` (negative indices too) builds item ``i``, ``[a:b]`` a list of items."""

    def _item(self, i: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        n = len(self)
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(n))]
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"record {index} of {n}")
        return self._item(i)


class PackedRecords(PackedSequence[DetectionRecord]):
    """:class:`DetectionRecord` s held in a few flat arrays (paths and ids as bytes, sizes, every box, label and flag
    concatenated with per-image offsets), each record built when read (copies: a reader may change it freely).

    A list of records is ~1 KB of Python objects an image (COCO 2017: ~300 MB; a YOLO9000 classification list of
    a million images: ~1 GB) that every forked DataLoader worker slowly copies by touching reference counts; these
    arrays stay shared. ``boxes`` / ``labels`` / ``difficult`` / ``box_offsets`` / ``sizes`` give whole-dataset
    views without building records.
    """

    def __init__(self, records: Sequence[DetectionRecord]) -> None:
        self._paths = PackedStrings([r.image_path for r in records])
        self._ids = PackedStrings([r.image_id for r in records])
        self.sizes = np.array([[-1 if r.width is None else r.width, -1 if r.height is None else r.height]
                               for r in records], np.int64).reshape(-1, 2)  # fmt: skip  # (N, 2) w, h; -1: unknown
        self.box_offsets = np.cumsum([0, *(len(r.boxes) for r in records)], dtype=np.int64)  # (N + 1,)
        self.boxes = np.concatenate([r.boxes for r in records]) if records else np.zeros((0, 4), np.float32)
        self.labels = np.concatenate([r.labels for r in records]) if records else np.zeros((0,), np.int64)
        self.difficult = np.concatenate([r.difficult for r in records]) if records else np.zeros((0,), bool)

    def __len__(self) -> int:
        return len(self.sizes)

    def _item(self, i: int) -> DetectionRecord:
        a, b = self.box_offsets[i], self.box_offsets[i + 1]
        w, h = (int(v) for v in self.sizes[i])
        return DetectionRecord(
            Path(self._paths[i]),
            self._ids[i],
            None if w < 0 else w,
            None if h < 0 else h,
            self.boxes[a:b].copy(),
            self.labels[a:b].copy(),
            self.difficult[a:b].copy(),
        )

    def image_path(self, i: int) -> Path:
        """Record ``i``'s image path alone."""
        return Path(self._paths[i])


class ChainedRecords(PackedSequence[DetectionRecord]):
    """Several :class:`PackedRecords` read as one sequence, in order (a joint dataset's detection and classification
    images), nothing copied: ``labels`` and ``image_path`` as theirs."""

    def __init__(self, parts: Sequence[PackedRecords]) -> None:
        self.parts = list(parts)
        self._starts = np.cumsum([0, *(len(p) for p in self.parts)], dtype=np.int64)  # (P + 1,)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, i: int) -> tuple[PackedRecords, int]:
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.parts[k], i - int(self._starts[k])

    def _item(self, i: int) -> DetectionRecord:
        part, j = self._locate(i)
        return part[j]

    @property
    def labels(self) -> np.ndarray:
        """int64 (M,): every box's label, part after part."""
        return np.concatenate([p.labels for p in self.parts]) if self.parts else np.zeros(0, np.int64)

    @property
    def difficult(self) -> np.ndarray:
        """bool (M,): every box's difficult / crowd flag, part after part."""
        return np.concatenate([p.difficult for p in self.parts]) if self.parts else np.zeros(0, bool)

    def image_path(self, i: int) -> Path:
        """Record ``i``'s image path alone."""
        part, j = self._locate(i)
        return part.image_path(j)


def image_paths(records: Sequence[DetectionRecord]) -> list[Path]:
    """The image path of every record of ``records`` (packed records: without building them)."""
    if isinstance(records, PackedRecords | ChainedRecords):
        return [records.image_path(i) for i in range(len(records))]
    return [r.image_path for r in records]


def box_labels(records: Sequence[DetectionRecord], trained: bool = False) -> np.ndarray:
    """int64 (M,): the label of every box of ``records``, in order (packed records: without building them);
    ``trained``: of the boxes that are not difficult / crowd only (those a run trains on, darknet's rule)."""
    if not len(records):
        return np.zeros(0, np.int64)
    packed = isinstance(records, PackedRecords | ChainedRecords)
    labels = records.labels if packed else np.concatenate([r.labels for r in records]).astype(np.int64)
    if not trained:
        return labels
    difficult = records.difficult if packed else np.concatenate([np.asarray(r.difficult, bool) for r in records])
    return labels[~difficult]


@dataclass(frozen=True)
class Issue:
    """One logged data problem (or note)."""

    file: str
    reason: str
    action: Action
    detail: str = ""


class IssueLog:
    """Collects data problems under a policy.

    Actions: ``skip_image`` (an image left out), ``skip_file`` (another file left out, e.g. a label file without
    an image), ``drop_box`` (one box left out), ``fixed`` (repaired or converted without losing data) and ``note``
    (kept as is but worth knowing, e.g. an image without objects kept as a negative). Only the first three lose
    data: they raise under ``"error"``. An issue identical to one already recorded (same file, reason, action and
    detail; e.g. the same image failing again next epoch, or a split parsed twice) is recorded and logged once.

    Args:
        policy: ``"error"`` raises :class:`DataError` on any problem that loses data; ``"skip"`` logs and
            counts it and lets the caller skip the image / drop the box.
        max_warnings_per_reason: log at most this many warnings per (action, reason); all are counted.
    """

    def __init__(self, policy: Policy = "error", max_warnings_per_reason: int = 20) -> None:
        if policy not in ("error", "skip"):
            raise ValueError(f"on_error policy must be 'error' or 'skip', got {policy!r}")
        self.policy: Policy = policy
        self.max_warnings_per_reason = max_warnings_per_reason
        self.issues: list[Issue] = []
        self._seen: set[Issue] = set()
        self._warned: Counter[tuple[str, str]] = Counter()

    def report(self, file: str | Path, reason: str, *, action: Action = "skip_image", detail: str = "") -> None:
        """Record a problem; raises under ``"error"`` when ``action`` loses data (not ``fixed`` / ``note``)."""
        if self.policy == "error" and action in _LOSSY:
            raise DataError(f"{file}: {reason}" + (f" ({detail})" if detail else ""))
        self.add(Issue(str(file), reason, action, detail))

    def fixed(self, file: str | Path, reason: str, *, detail: str = "") -> None:
        """Record a problem that was repaired (or a conversion) without losing data; never raises."""
        self.add(Issue(str(file), reason, "fixed", detail))

    def note(self, file: str | Path, reason: str, *, detail: str = "") -> None:
        """Record something kept as is but worth knowing (e.g. a negative image); never raises."""
        self.add(Issue(str(file), reason, "note", detail))

    def add(self, issue: Issue, log: bool = True) -> bool:
        """Record an issue (never raises); returns False when an identical one was already recorded."""
        if issue in self._seen:
            return False
        self._seen.add(issue)
        self.issues.append(issue)
        key = (issue.action, issue.reason)
        self._warned[key] += 1
        n = self._warned[key]
        if log and n <= self.max_warnings_per_reason:
            logger.log(
                logging.INFO if issue.action == "note" else logging.WARNING,
                "%s: %s%s [%s]",
                issue.file,
                issue.reason,
                f" ({issue.detail})" if issue.detail else "",
                _ACTION_WORDS[issue.action],
            )
            if n == self.max_warnings_per_reason:
                logger.warning(
                    'further "%s" issues are counted but not logged (all are in the data summary)', issue.reason
                )
        return True

    def extend(self, other: IssueLog) -> None:
        """Append the issues of another log (without logging them again)."""
        for i in other.issues:
            self.add(i, log=False)

    def __len__(self) -> int:
        return len(self.issues)

    def counts(self) -> Counter[tuple[str, str]]:
        """Number of issues per (action, reason)."""
        return Counter((i.action, i.reason) for i in self.issues)

    def count(self, action: Action | None = None, reason: str | None = None) -> int:
        """Number of issues matching an action and / or a reason (substring)."""
        return sum(
            1 for i in self.issues if (action is None or i.action == action) and (reason is None or reason in i.reason)
        )

    def files(self, action: Action | None = None, reason: str | None = None) -> list[str]:
        """Files (in order of first report, each once) of the issues matching an action and / or a reason."""
        out = (
            i.file
            for i in self.issues
            if (action is None or i.action == action) and (reason is None or reason in i.reason)
        )
        return list(dict.fromkeys(out))

    def _head(self) -> str:
        problems = [i for i in self.issues if i.action != "note"]
        n_notes = len(self.issues) - len(problems)
        per_action = Counter(i.action for i in problems)
        head = ", ".join(f"{per_action[a]} {_ACTION_LABELS[a]}" for a in _ACTION_LABELS if per_action[a])
        return f"{len(problems)} problems" + (f": {head}" if head else "") + (f"; {n_notes} notes" if n_notes else "")

    def _groups(self) -> dict[tuple[str, str], list[Issue]]:
        groups: dict[tuple[str, str], list[Issue]] = {}
        for i in self.issues:
            groups.setdefault((i.action, i.reason), []).append(i)
        order = list(_ACTION_LABELS)
        return dict(sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])))

    def summary(self, max_files: int | None = 3, see: str | Path | None = None) -> str:
        """Readable summary: a head line ``"N problems: k skipped images, j dropped boxes, f fixed"`` (plus the
        number of notes), then one line per (reason, action) with its count and files::

            3 problems: 1 skipped images, 2 fixed; 1 notes
              - corrupt or unreadable image [skipped images]: 1 (JPEGImages/a.jpg)
              - RGBA converted to RGB [fixed]: 2 (JPEGImages/b.png, JPEGImages/c.png)
              - no objects, kept as a negative [notes]: 1 (Annotations/d.xml)

        Args:
            max_files: name at most this many files per line (shown as their last two path parts), then
                ``"... and N more"``; None names them all.
            see: where the full list is (added to truncated lines as ``", see <see>"``).
        """
        text = self._head()
        for (action, reason), group in self._groups().items():
            files = list(dict.fromkeys(i.file for i in group))
            shown = files if max_files is None else files[:max_files]
            names = ", ".join(_short(f) for f in shown)
            if len(shown) < len(files):
                names += f" ... and {len(files) - len(shown)} more" + (f", see {see}" if see else "")
            where = f" in {len(files)} files" if len(files) != len(group) else ""
            text += f"\n  - {reason} [{_ACTION_LABELS[action]}]: {len(group)}{where} ({names})"
        return text

    def report_dict(self, max_files: int | None = MAX_FILES) -> dict[str, dict[str, Any]]:
        """Every (reason, action) with its count and its files: ``{reason: {"action": "skipped images", "count": n,
        "files": [...]}}`` (the key gets `` [<action>]`` appended when a reason has several actions); past
        ``max_files`` files a reason lists the first ones and ``files_left_out`` counts the others (the full report,
        ``data_issues.txt``, lists every one: a full-scale dataset's thousands of notes made metrics.json megabytes).
        """
        groups = self._groups()
        reasons = Counter(r for _, r in groups)
        out: dict[str, dict[str, Any]] = {}
        for (action, reason), group in groups.items():
            key = reason if reasons[reason] == 1 else f"{reason} [{_ACTION_LABELS[action]}]"
            files = list(dict.fromkeys(i.file for i in group))
            out[key] = {"action": _ACTION_LABELS[action], "count": len(group), "files": files[:max_files]}
            if max_files is not None and len(files) > max_files:
                out[key]["files_left_out"] = len(files) - max_files
        return out

    def full_text(self) -> str:
        """Every issue on its own line (``file: reason (detail) [action]``), grouped by reason."""
        lines = [self._head(), ""]
        for (action, reason), group in self._groups().items():
            lines.append(f"{reason} [{_ACTION_LABELS[action]}]: {len(group)}")
            lines += [f"  {i.file}" + (f" ({i.detail})" if i.detail else "") for i in group]
        return "\n".join(lines) + "\n"


def _short(file: str) -> str:
    """The last two parts of a path (``Annotations/x.xml``), or the text itself when it is not a path."""
    parts = Path(file).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else file


def sanitize_boxes(
    boxes: np.ndarray,
    labels: np.ndarray,
    difficult: np.ndarray,
    width: int | None,
    height: int | None,
    file: str | Path,
    issues: IssueLog,
    class_names: Sequence[str] | None = None,
    clip_tolerance: float = 1.0,
    places: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop degenerate boxes and clip the others to the image, reporting each change (with the box's place in the
    file: ``places[k]``, e.g. ``object 4``; default ``box k of N``, so that two identical bad boxes are two issues).

    Args:
        boxes: float (N, 4) xyxy pixel boxes, 0-based continuous coordinates.
        labels: int (N,); difficult: bool (N,).
        width, height: image size; None skips the clipping.
        clip_tolerance: boxes sticking out by more than this many pixels are logged as fixed.

    Returns:
        (boxes float32 (M, 4), labels int64 (M,), difficult bool (M,)) with M <= N.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    difficult = np.asarray(difficult, bool).reshape(-1)

    def name(k: int) -> str:
        lab = int(labels[k])
        return class_names[lab] if class_names is not None and 0 <= lab < len(class_names) else str(lab)

    def fmt(b: np.ndarray) -> str:
        return "(" + ", ".join(f"{v:g}" for v in b.tolist()) + ")"

    def which(k: int) -> str:  # the box's place in the file: two identical bad boxes are two issues
        return f"{name(k)} {fmt(boxes[k])}, " + (places[k] if places is not None else f"box {k + 1} of {len(boxes)}")

    finite = np.isfinite(boxes).all(axis=1)
    degenerate = finite & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    for k in np.flatnonzero(~finite):
        issues.report(file, "non-finite box", action="drop_box", detail=which(k))
    for k in np.flatnonzero(degenerate):
        issues.report(file, "zero-area or inverted box", action="drop_box", detail=which(k))
    keep = finite & ~degenerate
    if width is not None and height is not None and width > 0 and height > 0:
        # largest overshoot (pixels) over the four sides; <= 0 when inside
        out = np.stack([-boxes[:, 0], -boxes[:, 1], boxes[:, 2] - width, boxes[:, 3] - height], axis=1).max(1)
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        outside = keep & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
        for k in np.flatnonzero(outside):
            issues.report(file, "box outside the image", action="drop_box", detail=which(k))
        keep &= ~outside
        for k in np.flatnonzero(keep & (out > clip_tolerance)):
            issues.fixed(
                file,
                "box outside the image clipped",
                detail=f"{name(k)} {fmt(boxes[k])} -> {fmt(clipped[k])} in {width}x{height}",
            )
        boxes = clipped
    return boxes[keep], labels[keep], difficult[keep]


def flag_value(value: Any) -> bool | None:
    """A yes / no field as annotation tools write it (VOC's ``<difficult>``, COCO's ``iscrowd``): a number (not 0:
    yes), a bool, ``true`` / ``yes`` / ``false`` / ``no`` in any case, null or empty text (no); None for anything
    else (text is not true by being text: ``"0"`` is no)."""
    if value is None or isinstance(value, bool | int | float):
        return bool(value) if value == value else None  # nan: unreadable
    word = str(value).strip().lower()
    if word in ("", "true", "yes", "false", "no"):
        return word in ("true", "yes")
    try:
        number = float(word)
    except ValueError:
        return None
    return None if number != number else number != 0


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off while a parser builds millions of small objects that hold no cycles
    (rows, boxes): its collections, run every few hundred allocations over everything alive, took most of a
    500k-row box table's parse (3.4 s, 1.2 s without them, on a 2-core VM). Put back as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def class_index(class_names: Sequence[str]) -> dict[str, int]:
    """Name -> index mapping; raises on duplicated names."""
    idx = {str(n): k for k, n in enumerate(class_names)}
    if len(idx) != len(class_names):
        seen: dict[str, int] = {}
        twice = [
            f"{n!r} (classes {seen[str(n)]} and {k})"
            for k, n in enumerate(class_names)
            if seen.setdefault(str(n), k) != k
        ]
        raise ValueError(
            f"duplicated class names: {', '.join(twice[:5])} in {list(class_names)[:20]} (a line twice in a class "
            "file, or one folder name in two Unicode forms: macOS writes decomposed ones)"
        )
    composed = {unicodedata.normalize("NFC", n): k for n, k in idx.items()}
    if len(composed) != len(idx):  # 'café' composed and decomposed (macOS writes folder names decomposed)
        pairs = [n for n in idx if unicodedata.normalize("NFC", n) != n]
        raise ValueError(
            f"class names {pairs[:5]} and their composed forms are both in the class list: the same name in two "
            "Unicode forms (a folder copied from macOS keeps the decomposed one); rename one"
        )
    return idx


def parse_class_names(parser: Any, class_names: Sequence[str] | None) -> tuple[list[str], dict[str, int]]:
    """The class list a parser's ``parse`` runs with (``class_names``, else its ``discover_class_names()``) and its
    :func:`class_index`; ValueError naming the parser and its ``root`` when there is none."""
    names = list(class_names) if class_names is not None else parser.discover_class_names()
    if not names:
        raise ValueError(
            f"{type(parser).__name__} found no class in {parser.root}: set data.class_names or data.names_file"
        )
    return names, class_index(names)


# ---------------------------------------------------------------------------------------------- the report file
def write_issue_report(path: str | Path, issues: IssueLog, extra: Mapping[str, Any] | None = None) -> None:
    """Write every issue (:meth:`IssueLog.full_text`) and ``extra`` statistics (one ``key: value`` a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = issues.full_text()
    if extra:
        text += "\n" + "".join(f"{k}: {v}\n" for k, v in extra.items())
    write_text(path, text)  # a file name that is not UTF-8 escaped, not a crash


def header_size(image_path: Path, issues: IssueLog, detail: str = "") -> tuple[int, int] | None:
    """The image header's (width, height); None, reported as a skipped image (``detail``: where it was named), for a
    missing file or an unreadable header."""
    from .image_io import ImageDecodeError, image_size

    if not image_path.is_file():
        issues.report(image_path, "missing image file", action="skip_image", detail=detail)
        return None
    try:
        return image_size(image_path)
    except ImageDecodeError as e:
        issues.report(image_path, e.reason, action="skip_image", detail=e.detail)
        return None


def size_or_header(
    width: Any, height: Any, image_path: Path, file: str | Path, issues: IssueLog, field: str = "size"
) -> tuple[int, int] | None:
    """An annotation's image size, or the image header's when it is missing or 0 (logged as fixed, naming the
    annotation ``file`` and its ``field``); None, reported as a skipped image, when the header is unreadable too."""
    if width and height and int(width) > 0 and int(height) > 0:
        return int(width), int(height)
    from .image_io import ImageDecodeError, image_size

    try:
        w, h = image_size(image_path)
    except ImageDecodeError as e:
        issues.report(file, "missing size and unreadable image", action="skip_image", detail=e.detail)
        return None
    issues.fixed(file, f"missing or 0x0 {field}, size read from the image header", detail=f"{w}x{h}")
    return int(w), int(h)
