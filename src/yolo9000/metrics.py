"""Detection evaluation: COCO-style mAP via torchmetrics and the exact PASCAL VOC devkit AP.

Boxes are float xyxy pixel coordinates (0-based, continuous) throughout. Per image the predictions are
``dict(boxes (N, 4), scores (N,), labels (N,))`` and the targets ``dict(boxes (M, 4), labels (M,),
difficult (M,) bool)`` (``difficult`` optional, default all False).

Two evaluations run side by side in :class:`DetectionEvaluator`:

* COCO (pycocotools through ``torchmetrics.detection.MeanAveragePrecision``): 101-point interpolated AP at IoU
  0.5, 0.75 and averaged over 0.50:0.05:0.95. VOC ``difficult`` is passed as COCO ``iscrowd``, so detections
  matched to a difficult object are ignored and difficult objects are not counted as positives. (COCO
  matches crowd regions by intersection-over-detection-area and prefers non-crowd matches; this is the
  closest COCO has to VOC's rule, not an identical one.)
* VOC devkit (:func:`voc_ap`): the official ``VOCevaldet`` matching and either the VOC2007 11-point AP or the
  VOC2010+ area under the monotone precision envelope.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from torchmetrics.utilities import dim_zero_cat
from torchvision.ops import box_iou

__all__ = [
    "DetectionEvaluator",
    "VOCMeanAP",
    "VOCResult",
    "ap_from_pr",
    "format_ap_table",
    "pairwise_iou",
    "voc_ap",
]


# ----------------------------------------------------------------------------------------------------
# VOC devkit evaluation
# ----------------------------------------------------------------------------------------------------


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


def ap_from_pr(precision: np.ndarray, recall: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a precision/recall curve, as the VOC devkit computes it.

    Args:
        precision: (D,) precision after each detection in score order.
        recall: (D,) recall after each detection (non-decreasing).
        use_07_metric: VOC2007 11-point interpolation (mean over t in {0, 0.1, ..., 1} of the maximum
            precision at recall >= t, 0 if none); otherwise the VOC2010+ area under the monotone precision
            envelope.

    Returns:
        AP in [0, 1] (NaN if ``recall`` contains NaN, i.e. the class has no positives).
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if np.isnan(recall).any():
        return float("nan")
    if use_07_metric:
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):  # 11 recall levels, vectorised over detections
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

    Detections matched to a difficult object are left out of precision/recall (they are neither TP nor FP).
    """

    ap: np.ndarray
    precision: list[np.ndarray]
    recall: list[np.ndarray]
    scores: list[np.ndarray]
    npos: np.ndarray
    use_07_metric: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def map(self) -> float:
        """Mean AP over classes that have ground truth (NaN if none do)."""
        valid = ~np.isnan(self.ap)
        return float(self.ap[valid].mean()) if valid.any() else float("nan")


def _empty_boxes(t: Tensor | None) -> Tensor:
    return torch.zeros((0, 4), dtype=torch.float64) if t is None else t.detach().reshape(-1, 4).cpu().double()


def voc_ap(
    preds: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    pixel_plus_one: bool = False,
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

    Returns:
        :class:`VOCResult`.
    """
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")

    ov_all, gidx_all, dlab_all, dscore_all = [], [], [], []
    glab_all, gdiff_all = [], []
    gt_offset = 0
    for p, t in zip(preds, targets, strict=True):  # loop over images; everything inside is vectorised over boxes
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
        if gb.shape[0] > 0 and db.shape[0] > 0:
            iou = pairwise_iou(db, gb, pixel_plus_one).numpy()
            iou = np.where(dl.numpy()[:, None] == gl.numpy()[None, :], iou, -np.inf)
            j = iou.argmax(axis=1)  # first maximum, like the devkit's strict ">" update
            ov = iou[np.arange(iou.shape[0]), j]
            gidx = np.where(np.isfinite(ov), j + gt_offset, -1)
        else:
            ov = np.full(db.shape[0], -np.inf)
            gidx = np.full(db.shape[0], -1)
        ov_all.append(ov)
        gidx_all.append(gidx)
        dlab_all.append(dl.numpy())
        dscore_all.append(ds.numpy())
        glab_all.append(gl.numpy())
        gdiff_all.append(gd.numpy())
        gt_offset += gb.shape[0]

    def _cat(xs: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype=dtype)

    ov, gidx = _cat(ov_all, np.float64), _cat(gidx_all, np.int64)
    dlab, dscore = _cat(dlab_all, np.int64), _cat(dscore_all, np.float64)
    glab, gdiff = _cat(glab_all, np.int64), _cat(gdiff_all, bool)

    aps = np.full(num_classes, np.nan)
    npos = np.zeros(num_classes, dtype=np.int64)
    precisions, recalls, scores = [], [], []
    for c in range(num_classes):  # loop over classes
        npos[c] = int(np.sum((glab == c) & ~gdiff))
        sel = np.nonzero(dlab == c)[0]
        order = sel[np.argsort(-dscore[sel], kind="stable")]
        c_ov, c_gidx = ov[order], gidx[order]
        hit = c_ov >= iou_threshold
        difficult_hit = np.zeros_like(hit)
        difficult_hit[hit] = gdiff[c_gidx[hit]]
        cand = hit & ~difficult_hit
        tp = np.zeros(order.shape[0], dtype=bool)
        cand_pos = np.nonzero(cand)[0]
        _, first = np.unique(c_gidx[cand_pos], return_index=True)
        tp[cand_pos[first]] = True
        keep = ~difficult_hit
        tp_c = np.cumsum(tp[keep])
        fp_c = np.cumsum(~tp[keep])
        prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        rec = tp_c / npos[c] if npos[c] > 0 else np.full(tp_c.shape[0], np.nan)
        precisions.append(prec)
        recalls.append(rec)
        scores.append(dscore[order][keep])
        if npos[c] > 0:
            aps[c] = ap_from_pr(prec, rec, use_07_metric)
    return VOCResult(
        ap=aps, precision=precisions, recall=recalls, scores=scores, npos=npos, use_07_metric=use_07_metric
    )


class VOCMeanAP(Metric):
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
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.use_07_metric = use_07_metric
        self.pixel_plus_one = pixel_plus_one
        # Everything is stored 1-D (boxes flattened) so an empty rank's placeholder concatenates cleanly.
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
        )


# ----------------------------------------------------------------------------------------------------
# Combined evaluator
# ----------------------------------------------------------------------------------------------------


def _num(x: Tensor | float) -> float:
    """Python float; torchmetrics' -1 sentinel ("undefined") becomes NaN."""
    v = float(x)
    return float("nan") if v == -1.0 else v


class DetectionEvaluator(nn.Module):
    """COCO-style mAP (torchmetrics + pycocotools) and VOC devkit AP over a whole evaluation set.

    An ``nn.Module`` holding two torchmetrics metrics, so it moves with its LightningModule and both metrics
    sync across processes under DDP when ``compute()`` runs.

    Per-class COCO APs are read from the metric's extended summary, the (T, R, K, A, M) precision array:
    AP@0.5 of class k is ``precision[T=0.5, :, k, area=all, maxDets=last]`` and AP@[.5:.95] is
    ``precision[:, :, k, area=all, maxDets=last]``, each averaged over the entries that are defined (> -1).
    That is exactly what pycocotools' summarize reports for a COCOeval restricted to that one category, since
    COCOeval evaluates and accumulates each category independently. So neither a second metric instance nor
    torchmetrics' ``class_metrics`` (which re-runs COCOeval once per class, doubling the cost) is needed.

    Args:
        class_names: names of the C classes (labels are indices into this list).
        voc07: also report the VOC2007 11-point AP (``voc07_map_50``, per class ``voc07_ap50``).
        max_detections: per-image detection cap of the COCO evaluation (its recall key is ``mar_{max}``).
        backend: torchmetrics' COCO backend, "pycocotools" (default) or "faster_coco_eval".
        pixel_plus_one: VOC devkit integer-pixel IoU for the VOC evaluation.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        voc07: bool = False,
        max_detections: int = 100,
        backend: str = "pycocotools",
        pixel_plus_one: bool = False,
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.voc07 = voc07
        self.max_detections = max_detections
        self.coco = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            class_metrics=False,  # per-class APs come from the extended summary (one COCOeval run, not 1 + C)
            extended_summary=True,
            max_detection_thresholds=[1, 10, max_detections],
            backend=backend,  # type: ignore[arg-type]
        )
        self.coco.warn_on_many_detections = False
        self.voc = VOCMeanAP(num_classes=len(self.class_names), pixel_plus_one=pixel_plus_one)

    def reset(self) -> None:
        """Clear all accumulated predictions and targets."""
        self.coco.reset()
        self.voc.reset()

    @torch.no_grad()
    def update(self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]) -> None:
        """Add a batch of images.

        Args:
            preds: per image ``dict(boxes (N, 4) xyxy pixels, scores (N,), labels (N,) long)``.
            targets: per image ``dict(boxes (M, 4) xyxy pixels, labels (M,) long, difficult (M,) bool)``;
                ``difficult`` may be omitted (all False).
        """
        tm_preds = [
            {
                "boxes": p["boxes"].detach().reshape(-1, 4).float(),
                "scores": p["scores"].detach().reshape(-1).float(),
                "labels": p["labels"].detach().reshape(-1).long(),
            }
            for p in preds
        ]
        tm_targets = []
        for t in targets:
            labels = t["labels"].detach().reshape(-1).long()
            diff = t.get("difficult")
            crowd = torch.zeros_like(labels) if diff is None else diff.detach().reshape(-1).long().to(labels)
            tm_targets.append({"boxes": t["boxes"].detach().reshape(-1, 4).float(), "labels": labels, "iscrowd": crowd})
        self.coco.update(tm_preds, tm_targets)
        self.voc.update(tm_preds, targets)

    def compute(self) -> dict:
        """Evaluate everything accumulated since the last reset.

        Returns:
            dict with
              ``map_50``, ``map`` (IoU .50:.95), ``map_75``, ``mar_{max_detections}``
              (COCO, floats, NaN if undefined),
              ``voc_map_50`` (VOC2010+ area AP), ``voc07_map_50`` (only if ``voc07``),
              ``per_class``: {name: {"ap50", "ap", "voc_ap50", ["voc07_ap50"], "num_gt"}},
              ``pr``: {name: (precision (D,), recall (D,)) numpy arrays from the VOC matching}.
        """
        res = self.coco.compute()
        voc = self.voc.compute()
        out: dict = {
            "map_50": _num(res["map_50"]),
            "map": _num(res["map"]),
            "map_75": _num(res["map_75"]),
            f"mar_{self.max_detections}": _num(res[f"mar_{self.max_detections}"]),
            "voc_map_50": voc.map,
        }
        classes = res["classes"].reshape(-1).tolist()  # sorted ids = COCOeval's category order (K axis)
        precision = res.get("precision")  # (T, R, K, A, M)
        ious = torch.tensor(self.coco.iou_thresholds)
        t50 = int(torch.argmin((ious - 0.5).abs()))
        voc07_aps = np.array([ap_from_pr(p, r, True) for p, r in zip(voc.precision, voc.recall, strict=True)])
        per_class: dict[str, dict[str, float]] = {}
        for c, name in enumerate(self.class_names):
            ap50 = ap = float("nan")
            if c in classes and precision is not None:
                k = classes.index(c)
                p_all = precision[:, :, k, 0, -1]  # (T, R): area "all", largest max-detections
                p50, p_all = p_all[t50][p_all[t50] > -1], p_all[p_all > -1]
                ap50 = float(p50.double().mean()) if p50.numel() else float("nan")
                ap = float(p_all.double().mean()) if p_all.numel() else float("nan")
            entry = {"ap50": ap50, "ap": ap, "voc_ap50": float(voc.ap[c]), "num_gt": int(voc.npos[c])}
            if self.voc07:
                entry["voc07_ap50"] = float(voc07_aps[c])
            per_class[name] = entry
        if self.voc07:
            valid = ~np.isnan(voc07_aps)
            out["voc07_map_50"] = float(voc07_aps[valid].mean()) if valid.any() else float("nan")
        out["per_class"] = per_class
        out["pr"] = {name: (voc.precision[c], voc.recall[c]) for c, name in enumerate(self.class_names)}
        return out


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_ap_table(per_class: Mapping[str, Mapping[str, float]], class_names: Sequence[str]) -> str:
    """Markdown table of per-class AP (from ``DetectionEvaluator.compute()["per_class"]``).

    Columns: class | AP@0.5 | AP@[.5:.95] | #GT, with a final "mean" row (NaN-skipping mean of the APs,
    total #GT).
    Undefined values print as "–".
    """
    lines = ["| class | AP@0.5 | AP@[.5:.95] | #GT |", "|---|---:|---:|---:|"]
    ap50s, aps, total = [], [], 0
    for name in class_names:
        row = per_class.get(name, {})
        ap50, ap, n = row.get("ap50", float("nan")), row.get("ap", float("nan")), int(row.get("num_gt", 0))
        ap50s.append(ap50)
        aps.append(ap)
        total += n
        lines.append(f"| {name} | {_fmt(ap50)} | {_fmt(ap)} | {n} |")

    def _mean(xs: list[float]) -> float:
        vals = [x for x in xs if not math.isnan(x)]
        return sum(vals) / len(vals) if vals else float("nan")

    lines.append(f"| mean | {_fmt(_mean(ap50s))} | {_fmt(_mean(aps))} | {total} |")
    return "\n".join(lines)
