"""Detection records, the data-problem log and helpers shared by the annotation parsers.

Every problem found in the input data goes through an :class:`IssueLog`: under the ``"error"`` policy a
problem that would lose data raises :class:`DataError` naming the file; under ``"skip"`` it is logged
(logger ``yolo9000.data``) with the file and the reason, and counted for :meth:`IssueLog.summary`.
Problems that are repaired without losing data (a box clipped to the image, a size read from the image
header) are logged and counted as ``fixed`` under both policies.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger("yolo9000.data")

Policy = Literal["error", "skip"]
Action = Literal["skip_image", "drop_box", "fixed"]

_ACTION_LABELS = {"skip_image": "skipped images", "drop_box": "dropped boxes", "fixed": "fixed"}


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


@dataclass(frozen=True)
class Issue:
    """One logged data problem."""

    file: str
    reason: str
    action: Action
    detail: str = ""


class IssueLog:
    """Collects data problems under a policy.

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
        self._warned: Counter[tuple[str, str]] = Counter()

    def report(self, file: str | Path, reason: str, *, action: Action = "skip_image", detail: str = "") -> None:
        """Record a problem that loses data (``action`` says what is lost); raises under ``"error"``."""
        if self.policy == "error" and action != "fixed":
            raise DataError(f"{file}: {reason}" + (f" ({detail})" if detail else ""))
        self._add(Issue(str(file), reason, action, detail))

    def fixed(self, file: str | Path, reason: str, *, detail: str = "") -> None:
        """Record a problem that was repaired without losing data; never raises."""
        self._add(Issue(str(file), reason, "fixed", detail))

    def _add(self, issue: Issue) -> None:
        self.issues.append(issue)
        key = (issue.action, issue.reason)
        self._warned[key] += 1
        n = self._warned[key]
        if n <= self.max_warnings_per_reason:
            what = {"skip_image": "image skipped", "drop_box": "box dropped", "fixed": "fixed"}[issue.action]
            logger.warning(
                "%s: %s%s [%s]", issue.file, issue.reason, f" ({issue.detail})" if issue.detail else "", what
            )
            if n == self.max_warnings_per_reason:
                logger.warning('further "%s" problems are counted but not logged', issue.reason)

    def extend(self, other: IssueLog) -> None:
        """Append the issues of another log (without logging them again)."""
        self.issues.extend(other.issues)

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

    def summary(self) -> str:
        """Short text: ``"N problems: k skipped images, j dropped boxes, f fixed; <reason>: n, ..."``."""
        if not self.issues:
            return "0 problems"
        per_action = Counter(i.action for i in self.issues)
        head = ", ".join(f"{per_action[a]} {_ACTION_LABELS[a]}" for a in _ACTION_LABELS if per_action[a])
        per_reason = "; ".join(
            f"{reason} [{_ACTION_LABELS[action]}]: {n}" for (action, reason), n in sorted(self.counts().items())
        )
        return f"{len(self.issues)} problems: {head} ({per_reason})"


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop degenerate boxes and clip the others to the image, reporting each change.

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

    finite = np.isfinite(boxes).all(axis=1)
    degenerate = finite & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    for k in np.flatnonzero(~finite):
        issues.report(file, "non-finite box", action="drop_box", detail=f"{name(k)} {fmt(boxes[k])}")
    for k in np.flatnonzero(degenerate):
        issues.report(file, "zero-area or inverted box", action="drop_box", detail=f"{name(k)} {fmt(boxes[k])}")
    keep = finite & ~degenerate
    if width is not None and height is not None and width > 0 and height > 0:
        # largest overshoot (pixels) over the four sides; <= 0 when inside
        out = np.stack([-boxes[:, 0], -boxes[:, 1], boxes[:, 2] - width, boxes[:, 3] - height], axis=1).max(1)
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        outside = keep & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
        for k in np.flatnonzero(outside):
            issues.report(file, "box outside the image", action="drop_box", detail=f"{name(k)} {fmt(boxes[k])}")
        keep &= ~outside
        for k in np.flatnonzero(keep & (out > clip_tolerance)):
            issues.fixed(
                file,
                "box outside the image clipped",
                detail=f"{name(k)} {fmt(boxes[k])} -> {fmt(clipped[k])} in {width}x{height}",
            )
        boxes = clipped
    return boxes[keep], labels[keep], difficult[keep]


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


def class_index(class_names: Sequence[str]) -> dict[str, int]:
    """Name -> index mapping; raises on duplicated names."""
    idx = {str(n): k for k, n in enumerate(class_names)}
    if len(idx) != len(class_names):
        raise ValueError(f"duplicated class names in {list(class_names)}")
    return idx
