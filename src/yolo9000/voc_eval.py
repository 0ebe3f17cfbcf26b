"""PASCAL VOC devkit detection evaluation: the official ``VOCevaldet`` matching and AP (the VOC2007 11-point AP's
recall levels as darknet's ``reval_voc.py`` computes them by default, the devkit's exact ones as a switch:
:data:`VOC07_LEVELS`).

Boxes are float xyxy pixel coordinates (0-based, continuous). Per image the predictions are ``dict(boxes (N, 4),
scores (N,), labels (N,))`` and the targets ``dict(boxes (M, 4), labels (M,), difficult (M,) bool)``
(``difficult`` optional, default all False).

:func:`voc_ap` evaluates a whole set (either the VOC2007 11-point AP or the VOC2010+ area under the monotone
precision envelope); :class:`VOCMeanAP` accumulates it batch by batch under DDP. Everything here is re-exported by
:mod:`yolo9000.metrics`, where :class:`~yolo9000.metrics.DetectionEvaluator` runs it next to the COCO evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchvision.ops import box_iou

__all__ = ["VOC07_LEVELS", "ShardSync", "VOCMeanAP", "VOCResult", "ap_from_pr", "pairwise_iou", "voc_ap"]

# The VOC2007 11-point AP's recall levels t = 0, 0.1, ..., 1 as each reference computes them (they differ in the last
# bit of 0.6 and 0.7, so a class whose recall reaches exactly 3/5 or 7/10 gains or loses precision / 11 there):
VOC07_LEVELS: dict[str, np.ndarray] = {
    # darknet's scripts/reval_voc.py (py-faster-rcnn's voc_eval.py): np.arange(0., 1.1, 0.1), i.e. k * 0.1, where
    # 0.6 and 0.7 come out a hair above (0.6000000000000001): a recall of exactly 0.6 does not reach that level
    "darknet": np.arange(0.0, 1.1, 0.1),
    # the MATLAB devkit's VOCevaldet.m, t=0:0.1:1: MATLAB builds a range's upper half from its end (1 - k * 0.1),
    # giving 0.6 and 0.7 exactly
    "devkit": np.array([k * 0.1 for k in range(6)] + [1.0 - k * 0.1 for k in range(4, -1, -1)]),
}


def pairwise_iou(boxes1: Tensor, boxes2: Tensor, pixel_plus_one: bool = False) -> Tensor:
    """IoU of every box in ``boxes1`` with every box in ``boxes2`` (float64).

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.
        pixel_plus_one: use the VOC devkit's integer-pixel convention (width = x2 - x1 + 1, and likewise for
            heights and intersections); the default treats coordinates as continuous.

    Returns:
        (N, M) IoU; 0 where both boxes are empty.
    """
    a, b = boxes1.to(torch.float64), boxes2.to(torch.float64)
    if not pixel_plus_one:
        return torch.nan_to_num(box_iou(a, b), nan=0.0)
    wh = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2]) + 1).clamp(
        min=0
    )
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return torch.nan_to_num(inter / (area_a[:, None] + area_b[None, :] - inter), nan=0.0)


def _levels(name: str) -> np.ndarray:
    """The VOC2007 recall levels called ``name`` (ValueError naming the choices)."""
    if name not in VOC07_LEVELS:
        raise ValueError(f"voc07_levels must be one of {sorted(VOC07_LEVELS)}, got {name!r}")
    return VOC07_LEVELS[name]


def ap_from_pr(
    precision: np.ndarray, recall: np.ndarray, use_07_metric: bool = False, voc07_levels: str = "darknet"
) -> float:
    """Average precision from a precision/recall curve, as the VOC devkit computes it.

    Args:
        precision: (D,) precision after each detection in score order.
        recall: (D,) recall after each detection (non-decreasing).
        use_07_metric: VOC2007 11-point interpolation (mean over t in {0, 0.1, ..., 1} of the maximum
            precision at recall >= t, 0 if none); otherwise the VOC2010+ area under the monotone precision
            envelope.
        voc07_levels: the 11 recall levels as ``darknet``'s evaluation script computes them (default) or as the
            MATLAB ``devkit`` does (:data:`VOC07_LEVELS`: they differ at a recall of exactly 0.6 or 0.7).

    Returns:
        AP in [0, 1] (NaN if ``recall`` contains NaN, i.e. the class has no positives).
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if np.isnan(recall).any():
        return float("nan")
    if use_07_metric:
        ap = 0.0
        for t in _levels(voc07_levels):  # 11 recall levels, vectorised over detections
            above = recall >= t
            ap += (precision[above].max() if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


@dataclass
class VOCResult:
    """Per-class VOC evaluation.

    Attributes:
        ap: (C,) AP per class, NaN for classes without (non-difficult) ground truth.
        precision: C arrays (D_c,), precision after each counted detection of class c, by descending score.
        recall: C arrays (D_c,), recall after each counted detection (NaN-filled when npos is 0).
        scores: C arrays (D_c,), the scores of those detections (descending), for choosing thresholds.
        npos: (C,) number of non-difficult ground-truth objects per class.
        use_07_metric: whether ``ap`` is the VOC2007 11-point AP.
        voc07_levels: its recall levels (:data:`VOC07_LEVELS`).

    Detections matched to a difficult object are left out of precision/recall (they are neither TP nor FP).
    """

    ap: np.ndarray
    precision: list[np.ndarray]
    recall: list[np.ndarray]
    scores: list[np.ndarray]
    npos: np.ndarray
    use_07_metric: bool = False
    voc07_levels: str = "darknet"
    extra: dict = field(default_factory=dict)

    @property
    def map(self) -> float:
        """Mean AP over classes that have ground truth (NaN if none do)."""
        valid = ~np.isnan(self.ap)
        return float(self.ap[valid].mean()) if valid.any() else float("nan")


def _empty_boxes(t: Tensor | None) -> Tensor:
    """(N, 4) float64 CPU boxes of ``t`` ((0, 4) when None)."""
    return torch.zeros((0, 4), dtype=torch.float64) if t is None else t.detach().reshape(-1, 4).cpu().double()


def _image_arrays(
    p: Mapping[str, Tensor], t: Mapping[str, Tensor], num_classes: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One image's detections and ground truth on the CPU, checked.

    Returns:
        (det boxes (N, 4) float64, det scores (N,) float64, det labels (N,) long, gt boxes (M, 4) float64,
        gt labels (M,) long, gt difficult (M,) bool).

    Raises:
        ValueError: lengths that disagree within the image, or labels outside [0, ``num_classes``).
    """
    db = _empty_boxes(p.get("boxes"))
    ds = p["scores"].detach().reshape(-1).cpu().double()
    dl = p["labels"].detach().reshape(-1).cpu().long()
    gb = _empty_boxes(t.get("boxes"))
    gl = t["labels"].detach().reshape(-1).cpu().long()
    diff = t.get("difficult")
    gd = torch.zeros_like(gl, dtype=torch.bool) if diff is None else diff.detach().reshape(-1).cpu().bool()
    if not (db.shape[0] == ds.shape[0] == dl.shape[0]) or not (gb.shape[0] == gl.shape[0] == gd.shape[0]):
        raise ValueError("boxes, scores, labels and difficult must have matching lengths per image")
    if ((dl < 0) | (dl >= num_classes)).any() or ((gl < 0) | (gl >= num_classes)).any():
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return db, ds, dl, gb, gl, gd


def _best_matches(
    db: Tensor, dl: Tensor, gb: Tensor, gl: Tensor, pixel_plus_one: bool, gt_offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each detection's ground-truth object of its class with the highest IoU in its image (matched or not).

    Returns:
        (IoU (N,) float64, -inf without an object of its class; that object's index (N,) int, counted from
        ``gt_offset`` (the objects of the earlier images), -1 without one).
    """
    if gb.shape[0] > 0 and db.shape[0] > 0:
        iou = pairwise_iou(db, gb, pixel_plus_one).numpy()
        iou = np.where(dl.numpy()[:, None] == gl.numpy()[None, :], iou, -np.inf)
        j = iou.argmax(axis=1)  # first maximum, like the devkit's strict ">" update
        ov = iou[np.arange(iou.shape[0]), j]
        gidx = np.where(np.isfinite(ov), j + gt_offset, -1)
    else:
        ov = np.full(db.shape[0], -np.inf)
        gidx = np.full(db.shape[0], -1)
    return ov, gidx


def _cat(xs: list[np.ndarray], dtype: type) -> np.ndarray:
    """Concatenation of ``xs`` as ``dtype`` (empty when there is nothing)."""
    return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype=dtype)


@dataclass
class _Matches:
    """Every detection's best match and the ground truth of the whole set, flat over the images.

    Attributes:
        overlap: (D,) IoU of each detection with its best object (-inf without one).
        gt_index: (D,) index of that object into ``gt_labels`` / ``gt_difficult`` (-1 without one).
        det_labels, det_scores: (D,) class and score of each detection.
        gt_labels, gt_difficult: (G,) class and difficult flag of each ground-truth object.
    """

    overlap: np.ndarray
    gt_index: np.ndarray
    det_labels: np.ndarray
    det_scores: np.ndarray
    gt_labels: np.ndarray
    gt_difficult: np.ndarray


def _match_detections(
    preds: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    pixel_plus_one: bool,
) -> _Matches:
    """Check every image and find each detection's best ground-truth object (see :func:`voc_ap`)."""
    ov_all, gidx_all, dlab_all, dscore_all = [], [], [], []
    glab_all, gdiff_all = [], []
    gt_offset = 0
    for p, t in zip(preds, targets, strict=True):  # loop over images; everything inside is vectorised over boxes
        db, ds, dl, gb, gl, gd = _image_arrays(p, t, num_classes)
        ov, gidx = _best_matches(db, dl, gb, gl, pixel_plus_one, gt_offset)
        ov_all.append(ov)
        gidx_all.append(gidx)
        dlab_all.append(dl.numpy())
        dscore_all.append(ds.numpy())
        glab_all.append(gl.numpy())
        gdiff_all.append(gd.numpy())
        gt_offset += gb.shape[0]
    return _Matches(
        overlap=_cat(ov_all, np.float64),
        gt_index=_cat(gidx_all, np.int64),
        det_labels=_cat(dlab_all, np.int64),
        det_scores=_cat(dscore_all, np.float64),
        gt_labels=_cat(glab_all, np.int64),
        gt_difficult=_cat(gdiff_all, bool),
    )


def _class_curve(m: _Matches, c: int, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Precision / recall of class ``c`` after each of its counted detections, by descending score.

    A detection is a TP when it is the first one (in score order) whose best match is a not-difficult object at
    IoU >= ``iou_threshold``; one whose best match at that IoU is difficult is left out; every other is a FP.

    Returns:
        (precision (D_c,), recall (D_c,) (NaN-filled when npos is 0), scores (D_c,), npos).
    """
    npos = int(np.sum((m.gt_labels == c) & ~m.gt_difficult))
    sel = np.nonzero(m.det_labels == c)[0]
    order = sel[np.argsort(-m.det_scores[sel], kind="stable")]
    c_ov, c_gidx = m.overlap[order], m.gt_index[order]
    hit = c_ov >= iou_threshold
    difficult_hit = np.zeros_like(hit)
    difficult_hit[hit] = m.gt_difficult[c_gidx[hit]]
    cand = hit & ~difficult_hit
    tp = np.zeros(order.shape[0], dtype=bool)
    cand_pos = np.nonzero(cand)[0]
    _, first = np.unique(c_gidx[cand_pos], return_index=True)
    tp[cand_pos[first]] = True
    keep = ~difficult_hit
    tp_c = np.cumsum(tp[keep])
    fp_c = np.cumsum(~tp[keep])
    prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
    rec = tp_c / npos if npos > 0 else np.full(tp_c.shape[0], np.nan)
    return prec, rec, m.det_scores[order][keep], npos


def voc_ap(
    preds: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    pixel_plus_one: bool = False,
    voc07_levels: str = "darknet",
) -> VOCResult:
    """PASCAL VOC devkit detection evaluation (``VOCevaldet.m``), per class.

    Per class, detections from all images are sorted by score (stable, descending). Each detection takes the
    ground-truth object of its class in its image with the highest IoU (among all of them, matched or not, as
    the devkit does). If that IoU >= ``iou_threshold``: a difficult object makes the detection ignored
    (neither TP nor FP); otherwise it is a TP if the object is not yet matched, else a FP (duplicate). Below
    the threshold it is a FP. Difficult objects are not counted in the positives. The "first detection of an
    object wins" rule is evaluated vectorised: in score order, a TP is the first detection whose best match is
    that object.

    Args:
        preds: per image ``dict(boxes (N, 4) xyxy, scores (N,), labels (N,))``.
        targets: per image ``dict(boxes (M, 4) xyxy, labels (M,), difficult (M,) bool optional)``.
        num_classes: number of classes C (labels in [0, C)).
        iou_threshold: minimum IoU for a match (VOC: 0.5).
        use_07_metric: VOC2007 11-point AP instead of the VOC2010+ area.
        pixel_plus_one: devkit integer-pixel IoU (see :func:`pairwise_iou`).
        voc07_levels: the 11-point AP's recall levels, ``darknet`` or ``devkit`` (see :func:`ap_from_pr`).

    Returns:
        :class:`VOCResult`.
    """
    _levels(voc07_levels)  # a wrong name raises before any matching
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")
    matches = _match_detections(preds, targets, num_classes, pixel_plus_one)
    aps = np.full(num_classes, np.nan)
    npos = np.zeros(num_classes, dtype=np.int64)
    precisions, recalls, scores = [], [], []
    for c in range(num_classes):  # loop over classes
        prec, rec, c_scores, npos[c] = _class_curve(matches, c, iou_threshold)
        precisions.append(prec)
        recalls.append(rec)
        scores.append(c_scores)
        if npos[c] > 0:
            aps[c] = ap_from_pr(prec, rec, use_07_metric, voc07_levels)
    return VOCResult(
        ap=aps,
        precision=precisions,
        recall=recalls,
        scores=scores,
        npos=npos,
        use_07_metric=use_07_metric,
        voc07_levels=voc07_levels,
    )


class ShardSync:
    """Mixin for a torchmetrics ``Metric`` whose states are all lists: its DDP sync works whatever each rank holds.

    torchmetrics gathers a list state one collective per element (``dist_reduce_fx=None``) or pads a placeholder of
    the metric's dtype for an empty rank (``"cat"``), so ranks with different numbers of images (an unpadded
    evaluation shard: 87 validation images on 2 ranks) or a rank with none issue mismatched collectives and the job
    fails or hangs. Here each rank's lists travel in one ``all_gather_object`` and are joined in rank order (image
    order does not matter to the evaluations).
    """

    _reductions: dict[str, Any]
    device: torch.device

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        group = process_group or self.process_group  # type: ignore[attr-defined]
        local = {name: [t.detach().cpu() for t in getattr(self, name)] for name in self._reductions}
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
        for name in self._reductions:
            setattr(self, name, [t.to(self.device) for rank_states in gathered for t in rank_states[name]])


class VOCMeanAP(ShardSync, Metric):
    """torchmetrics accumulator for :func:`voc_ap` that works under DDP.

    All boxes are kept in flat "cat" states together with per-image counts, so after the cross-process
    gather (which concatenates every state rank by rank) the per-image grouping is recovered by splitting on
    the counts.
    ``compute()`` returns a :class:`VOCResult`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        iou_threshold: float = 0.5,
        use_07_metric: bool = False,
        pixel_plus_one: bool = False,
        voc07_levels: str = "darknet",
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        _levels(voc07_levels)
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.use_07_metric = use_07_metric
        self.pixel_plus_one = pixel_plus_one
        self.voc07_levels = voc07_levels
        # Everything is stored 1-D (boxes flattened), one tensor per batch.
        for name in (
            "det_boxes",
            "det_scores",
            "det_labels",
            "det_counts",
            "gt_boxes",
            "gt_labels",
            "gt_difficult",
            "gt_counts",
        ):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]) -> None:
        """Add a batch: per image prediction and target dicts (see :func:`voc_ap`)."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")
        if len(preds) == 0:
            return
        dev = self.device
        self.det_boxes.append(torch.cat([p["boxes"].detach().reshape(-1).float() for p in preds]).to(dev))
        self.det_scores.append(torch.cat([p["scores"].detach().reshape(-1).float() for p in preds]).to(dev))
        self.det_labels.append(torch.cat([p["labels"].detach().reshape(-1).long() for p in preds]).to(dev))
        self.det_counts.append(torch.tensor([p["labels"].numel() for p in preds], dtype=torch.long, device=dev))
        self.gt_boxes.append(torch.cat([t["boxes"].detach().reshape(-1).float() for t in targets]).to(dev))
        self.gt_labels.append(torch.cat([t["labels"].detach().reshape(-1).long() for t in targets]).to(dev))
        diffs = [
            t["difficult"].detach().reshape(-1).long()
            if t.get("difficult") is not None
            else torch.zeros(t["labels"].numel(), dtype=torch.long)
            for t in targets
        ]
        self.gt_difficult.append(torch.cat([d.to(dev) for d in diffs]))
        self.gt_counts.append(torch.tensor([t["labels"].numel() for t in targets], dtype=torch.long, device=dev))

    def _state(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, list):
            value = dim_zero_cat(value) if value else torch.zeros(0)
        return value.detach().cpu()

    def compute(self) -> VOCResult:
        """Evaluate everything accumulated so far (gathered over processes under DDP)."""
        det_counts = self._state("det_counts").long().tolist()
        gt_counts = self._state("gt_counts").long().tolist()
        det_boxes = self._state("det_boxes").double().reshape(-1, 4).split(det_counts)
        det_scores = self._state("det_scores").double().split(det_counts)
        det_labels = self._state("det_labels").long().split(det_counts)
        gt_boxes = self._state("gt_boxes").double().reshape(-1, 4).split(gt_counts)
        gt_labels = self._state("gt_labels").long().split(gt_counts)
        gt_difficult = self._state("gt_difficult").bool().split(gt_counts)
        preds = [
            {"boxes": b, "scores": s, "labels": lab}
            for b, s, lab in zip(det_boxes, det_scores, det_labels, strict=True)
        ]
        targets = [
            {"boxes": b, "labels": lab, "difficult": d}
            for b, lab, d in zip(gt_boxes, gt_labels, gt_difficult, strict=True)
        ]
        return voc_ap(
            preds,
            targets,
            self.num_classes,
            iou_threshold=self.iou_threshold,
            use_07_metric=self.use_07_metric,
            pixel_plus_one=self.pixel_plus_one,
            voc07_levels=self.voc07_levels,
        )
