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
  VOC2010+ area under the monotone precision envelope. It lives in :mod:`yolo9000.voc_eval` (with
  :func:`pairwise_iou`, :func:`ap_from_pr`, :class:`VOCResult` and :class:`VOCMeanAP`) and is re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision

from yolo9000.voc_eval import ShardSync, VOCMeanAP, VOCResult, ap_from_pr, pairwise_iou, voc_ap

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
# Combined evaluator
# ----------------------------------------------------------------------------------------------------


class _ShardedMeanAP(ShardSync, MeanAveragePrecision):
    """torchmetrics' COCO mAP whose DDP sync allows ranks to hold different numbers of images (its states are lists
    with one tensor per image, which torchmetrics gathers one collective per element)."""


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
        voc07_levels: the VOC2007 11-point AP's recall levels, ``darknet`` (its ``reval_voc.py``) or ``devkit``
            (the MATLAB devkit; they differ at a recall of exactly 0.6 or 0.7: ``voc_eval.VOC07_LEVELS``).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        voc07: bool = False,
        max_detections: int = 100,
        backend: str = "pycocotools",
        pixel_plus_one: bool = False,
        voc07_levels: str = "darknet",
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.voc07 = voc07
        self.voc07_levels = voc07_levels
        self.max_detections = max_detections
        self.coco = _ShardedMeanAP(
            box_format="xyxy",
            iou_type="bbox",
            class_metrics=False,  # per-class APs come from the extended summary (one COCOeval run, not 1 + C)
            extended_summary=True,
            max_detection_thresholds=[1, 10, max_detections],
            backend=backend,  # type: ignore[arg-type]
        )
        self.coco.warn_on_many_detections = False
        self.voc = VOCMeanAP(
            num_classes=len(self.class_names), pixel_plus_one=pixel_plus_one, voc07_levels=voc07_levels
        )

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
        voc07_aps = np.array(  # a class without ground truth has no AP (nan: left out of the mean, as voc_map_50)
            [
                ap_from_pr(p, r, True, self.voc07_levels) if n > 0 else float("nan")
                for p, r, n in zip(voc.precision, voc.recall, voc.npos, strict=True)
            ]
        )
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
