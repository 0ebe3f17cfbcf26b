"""The YOLOv2 / YOLO9000 region loss, exactly as darknet's ``forward_region_layer`` trains it.

darknet builds a ``delta`` array by assignments (a later write replaces an earlier one); this module builds the
same targets and weights with vectorised scatters ("last writer wins" by truth order) and returns a loss whose
gradient w.r.t. the raw head output equals darknet's (``-delta`` times the sigmoid derivative on tx, ty, to):

* every predictor: ``noobject_scale * 0.5 * sigmoid(to)^2`` unless its box has IoU > ``thresh`` with a truth;
* while ``seen < prior_seen`` (12,800 images): ``prior_scale * 0.5 * |(0.5, 0.5, 0, 0) - (x, y, tw, th)|^2`` on
  every predictor not responsible for a truth (pulls boxes to their prior);
* each truth (in list order) picks cell ``(int(x * W), int(y * H))`` and the anchor of best shape-only IoU (the
  first maximum); the responsible predictor gets ``coord_scale * (2 - w * h) * 0.5 * |target - (x, y, tw, th)|^2``
  (``coord_size_weight=False``: ``coord_scale`` alone, darknet as of the paper, before commit 60e952ba),
  ``object_scale * 0.5 * (IoU - sigmoid(to))^2`` (rescore; target 1 without) and ``class_scale`` times the
  cross-entropy of the softmax (per sibling group along the label's path with a WordTree; with logistic classes,
  darknet's ``softmax=0``, the binary cross-entropy of every class against the predictor's truths' classes);
* classification-only images (YOLO9000): all predictors get the noobject term; the one with the highest
  ``sigmoid(to) * P(label path)`` gets the class loss and no objectness term (darknet) or, with
  ``classonly_objectness="paper"``, an objectness target of at least 0.3.

All sums run over the batch (darknet divides the learning rate by the batch; :class:`RegionLoss` callers divide).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from yolo9000.boxes import (
    ClassActivation,
    Location,
    activate_xy,
    box_iou_cxcywh,
    box_iou_paired,
    check_class_activation,
    decode_boxes,
    encode_xy,
    wh_iou,
    whwh,
)
from yolo9000.wordtree import WordTree, flat_tree

CLASSONLY_MARK = 1e5  # truth rows with x and y above this mark a classification-only image (darknet)


@dataclass
class RegionLossOutput:
    """Loss parts (batch sums, scalars with grad) and detached statistics (darknet's printed ones; None when the
    call asked for none: ``stats=False``)."""

    loss: torch.Tensor
    coord: torch.Tensor
    obj: torch.Tensor
    noobj: torch.Tensor
    cls: torch.Tensor
    num_truths: int
    avg_iou: torch.Tensor | None = None  # mean IoU of the responsible predictor's box with its truth
    recall: torch.Tensor | None = None  # fraction of truths with that IoU > 0.5
    avg_obj: torch.Tensor | None = None  # mean sigmoid(to) of responsible predictors
    avg_anyobj: torch.Tensor | None = None  # mean sigmoid(to) over all predictors
    avg_cat: torch.Tensor | None = None  # mean P(class) of responsible predictors
    per_image: dict[str, torch.Tensor] | None = None  # each term per image, (B,) detached (sums to the term)

    @property
    def terms(self) -> dict[str, torch.Tensor]:
        """The named loss terms (their sum is ``loss``)."""
        return {"coord": self.coord, "obj": self.obj, "noobj": self.noobj, "cls": self.cls}


@dataclass
class _Deltas:
    """One batch's darknet deltas as a gradient (no autograd graph): what :class:`_RegionLossFn` needs.

    Attributes:
        grad: (B, A, 5 + C, H*W) d(loss)/d(raw head output), in the head's channel-plane layout.
        responsible: bool (B, A, H*W), predictors responsible for a truth (their objectness is the ``obj`` term).
        per_image: (4, B) per-image ``coord``, ``obj``, ``noobj``, ``cls`` values.
    """

    grad: torch.Tensor
    responsible: torch.Tensor
    per_image: torch.Tensor


class _RegionLossFn(torch.autograd.Function):
    """The four loss terms (4,) of precomputed deltas: forward returns their values, backward the stored gradient
    scaled per term (coordinate channels by the ``coord`` gradient, objectness by ``obj`` on responsible predictors
    and ``noobj`` elsewhere, class channels by ``cls``). darknet computes its deltas the same way: no graph of
    the dozens of small operations of the assignment is kept."""

    @staticmethod
    def forward(ctx, raw: torch.Tensor, grad: torch.Tensor, responsible: torch.Tensor, terms: torch.Tensor):  # noqa: ANN001, ANN205
        ctx.save_for_backward(grad, responsible)
        ctx.raw_shape, ctx.raw_dtype = raw.shape, raw.dtype
        # the gradient goes back in the head output's own memory layout: an NCHW gradient into an NHWC network
        # (channels_last) would run its whole backward pass on mixed layouts (+3-4 ms of a 300 ms CPU step)
        nhwc = raw.dim() == 4 and not raw.is_contiguous() and raw.is_contiguous(memory_format=torch.channels_last)
        ctx.raw_format = torch.channels_last if nhwc else torch.contiguous_format
        return terms.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # noqa: ANN001, ANN205
        if getattr(ctx, "consumed", False):
            raise RuntimeError("the region loss's gradient is consumed by its first backward; compute the loss again")
        ctx.consumed = True  # the stored gradient is scaled in place (no copy of the head-sized buffer)
        grad, responsible = ctx.saved_tensors
        if not g.is_cuda:  # the usual sum weights every term alike: one product, or none at all
            weights = g.tolist()
            if weights == [1.0] * 4:
                return _as_raw(ctx, grad), None, None, None
            if len(set(weights)) == 1:
                return _as_raw(ctx, grad.mul_(weights[0])), None, None, None
        out = torch.empty_like(grad)
        out[:, :, :4] = grad[:, :, :4] * g[0]
        out[:, :, 4] = grad[:, :, 4] * torch.where(responsible, g[1], g[2])
        out[:, :, 5:] = grad[:, :, 5:] * g[3]
        return _as_raw(ctx, out), None, None, None


def _as_raw(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
    """(B, A, 5 + C, HW) gradient planes -> the head output's shape, dtype and memory layout."""
    return grad.view(ctx.raw_shape).to(dtype=ctx.raw_dtype, memory_format=ctx.raw_format)


class TruthAssignment(NamedTuple):
    """The predictor each truth of a batch trains (darknet's ``forward_region_layer``): the cell of the truth's
    centre, ``(int(x * W), int(y * H))``, and the prior of best shape IoU (``bias_match``), the last truth in list
    order keeping a predictor that several pick. With ``bias_match`` it depends on the truths alone, so the host
    can make it ahead of the forward pass (:meth:`RegionLoss.forward`'s ``assignment``): each ``nonzero`` here
    would otherwise stop a GPU step's host until the network's output is ready, and then launch the loss's kernels
    onto an idle device.

    Attributes (T detection truths, image-major in list order; Bc classification-only images):
        truth_mask: bool (B, M) the detection truths (real rows of images that are not classification-only).
        classonly_img: bool (B,) the classification-only images.
        b_idx, t_idx: long (T,) image and row of each detection truth.
        cell: long (T, 2) its grid cell (column, row); cidx: long (T,) the cell's index (row * W + column).
        best_n: long (T,) its prior.
        loc: long (T,) its predictor's flat index into (B, A, H * W).
        win: long (Tw,) indices into T of the truths whose writes stand (the last one per predictor).
        co_b: long (Bc,) the classification-only images; co_row: long (Bc,) the first classification row of each.
    """

    truth_mask: torch.Tensor
    classonly_img: torch.Tensor
    b_idx: torch.Tensor
    t_idx: torch.Tensor
    cell: torch.Tensor
    cidx: torch.Tensor
    best_n: torch.Tensor
    loc: torch.Tensor
    win: torch.Tensor
    co_b: torch.Tensor
    co_row: torch.Tensor


def assign_truths(
    targets: torch.Tensor,
    target_mask: torch.Tensor,
    anchors: torch.Tensor,
    hw: tuple[int, int],
    pred: torch.Tensor | None = None,
) -> TruthAssignment:
    """The :class:`TruthAssignment` of a batch's truths on a grid of ``hw`` cells, on the truths' device.

    Args:
        targets: (B, M, 5) ``cx, cy, w, h, class`` normalised (a row with cx and cy above 1e5: a
            classification-only image's label); target_mask: (B, M) True for real rows.
        anchors: (A, 2) priors in grid-cell units.
        hw: (H, W) of the grid.
        pred: None (``bias_match``: the prior of best shape IoU with the truth), or the predicted boxes
            (B, A, 4, H*W) normalised cx, cy, w, h: the prior whose predicted shape at the truth's cell fits best
            (darknet's ``bias_match=0``).
    """
    (h, w), dev, f32 = hw, targets.device, torch.float32
    targets = targets.to(f32)
    mask = target_mask.to(dev).bool()
    classonly_row = mask & (targets[..., :2] > CLASSONLY_MARK).all(-1)  # x and y above the mark
    classonly_img = classonly_row.any(1)  # (B,)
    truth_mask = mask & ~classonly_img.unsqueeze(1)  # detection truths, (B, M)
    b_idx, t_idx = torch.nonzero(truth_mask, as_tuple=True)  # row-major: list order
    tb = targets[b_idx, t_idx, :4]  # (T, 4)
    size = whwh(w, h, f32, dev)[:2]  # (W, H)
    cell = torch.minimum((tb[:, :2] * size).long(), whwh(w - 1, h - 1, torch.long, dev)[:2])  # int(x * W), float32
    cidx = cell[:, 1] * w + cell[:, 0]  # (T,)
    anchors = anchors.to(dev, f32)
    if pred is None:  # (T, A) shape IoUs with the priors; first maximum wins (darknet's strict '>')
        best_n = wh_iou(tb[:, 2:], anchors / size).argmax(1)
    else:  # with the predicted shapes at the truth's cell
        best_n = wh_iou(tb[:, None, 2:], pred[b_idx, :, 2:4, cidx]).squeeze(1).argmax(1)
    num_anchors, n_pred = anchors.shape[0], anchors.shape[0] * h * w
    loc = (b_idx * num_anchors + best_n) * (h * w) + cidx  # flat (B, A, HW) predictor index
    order = torch.arange(len(loc), device=dev)  # global truth order (image-major, list order)
    last = torch.full((targets.shape[0] * n_pred,), -1, device=dev, dtype=torch.long)
    last.scatter_reduce_(0, loc, order, "amax")
    win = torch.nonzero(last[loc] == order).squeeze(1)  # the last truth per (image, prior, cell) keeps its writes
    co_b = torch.nonzero(classonly_img).flatten()
    co_row = classonly_row[co_b].float().argmax(1)
    return TruthAssignment(truth_mask, classonly_img, b_idx, t_idx, cell, cidx, best_n, loc, win, co_b, co_row)


class RegionLoss(nn.Module):
    """darknet's region loss (see module docstring). Every constant is a constructor argument (a config key).

    Args:
        num_classes: C (WordTree nodes when ``tree`` is given).
        thresh: no-object IoU threshold (darknet cfg ``thresh``: 0.6; strictly greater is ignored).
        object_scale, noobject_scale, class_scale, coord_scale: the cfg's scales (5, 1, 1, 1).
        prior_scale: weight of the prior-matching term (darknet: 0.01).
        prior_seen: images seen before the prior-matching term stops (darknet: 12,800).
        rescore: objectness target = IoU(pred, truth) (darknet ``rescore=1``) instead of 1.
        bias_match: match truths to anchors by prior shape (darknet ``bias_match=1``); False: by predicted shape.
        location: ``direct`` (sigmoid offsets) or ``offset`` (unconstrained, RPN-style).
        tree: WordTree for hierarchical classes (YOLO9000); None = flat softmax.
        classonly_objectness: ``darknet`` (no objectness term for the chosen predictor) or ``paper`` (target
            max(0.3, current), i.e. "assuming IoU >= .3" as the paper says; darknet as of the paper, d2dece3d).
        coord_size_weight: weight the coordinate term by ``2 - w * h`` (darknet since 60e952ba, 2017-03-26);
            False: ``coord_scale`` alone (darknet as of the paper).
        class_activation: ``softmax`` (darknet ``[region] softmax=1``, every YOLOv2 cfg) or ``logistic``
            (``softmax=0``, darknet's default when the cfg says nothing): independent sigmoids, each class a binary
            target (:meth:`_logistic_class_deltas`). A WordTree always takes its hierarchical softmax (darknet).
    """

    def __init__(
        self,
        num_classes: int,
        thresh: float = 0.6,
        object_scale: float = 5.0,
        noobject_scale: float = 1.0,
        class_scale: float = 1.0,
        coord_scale: float = 1.0,
        prior_scale: float = 0.01,
        prior_seen: int = 12800,
        rescore: bool = True,
        bias_match: bool = True,
        location: Location = "direct",
        tree: WordTree | None = None,
        classonly_objectness: Literal["darknet", "paper"] = "darknet",
        coord_size_weight: bool = True,
        class_activation: ClassActivation = "softmax",
    ) -> None:
        super().__init__()
        if tree is not None and tree.n != num_classes:
            raise ValueError(f"WordTree has {tree.n} nodes but the head predicts {num_classes} classes")
        check_class_activation(class_activation)
        self.class_activation: ClassActivation = "softmax" if tree is not None else class_activation
        self.num_classes = num_classes
        self.thresh, self.rescore, self.bias_match, self.location = thresh, rescore, bias_match, location
        self.object_scale, self.noobject_scale = object_scale, noobject_scale
        self.class_scale, self.coord_scale = class_scale, coord_scale
        self.prior_scale, self.prior_seen = prior_scale, prior_seen
        if classonly_objectness not in ("darknet", "paper"):
            raise ValueError(f"classonly_objectness must be darknet or paper, got {classonly_objectness!r}")
        self.classonly_objectness = classonly_objectness
        self.coord_size_weight = bool(coord_size_weight)
        self.tree = tree if tree is not None else flat_tree(num_classes)
        self.compile_options: dict[str, Any] | None = None  # compile_deltas(): torch.compile keywords, None: eager

    def compile_deltas(self, backend: str = "inductor", mode: str | None = None) -> RegionLoss:
        """Run :meth:`deltas` (the whole loss but its autograd wrapper: no graph is kept) under ``torch.compile``
        with dynamic shapes, so that a batch's truth count, its size and the grid (multi-scale) reuse a few graphs;
        the first calls compile. Its few hundred small operations become a few fused kernels: on a GPU fewer
        launches, on a CPU less dispatch. Training's calls only (a head output that requires grad): evaluation's
        loss stays eager rather than compile graphs for inference tensors. The floats may differ from the eager
        loss's in the last bits (fused arithmetic), not in its rules. Returns the loss itself."""
        self.compile_options = {"backend": backend, "mode": mode}
        return self

    def forward(
        self,
        raw: torch.Tensor,
        targets: torch.Tensor,
        target_mask: torch.Tensor,
        anchors: torch.Tensor,
        seen: int,
        stats: bool = True,
        assignment: TruthAssignment | None = None,
    ) -> RegionLossOutput:
        """darknet's deltas for the batch (:meth:`deltas`, no graph), returned as named terms whose gradient w.r.t.
        ``raw`` is darknet's (``-delta`` times the sigmoid derivative on tx, ty, to).

        Args:
            raw: (B, A * (5 + C), H, W) raw head output.
            targets: (B, M, 5) truths ``cx, cy, w, h, class`` (normalised to the input); a row with cx and cy
                above 1e5 marks a classification-only image labelled with its class.
            target_mask: (B, M) True for real rows.
            anchors: (A, 2) priors in grid-cell units.
            seen: images seen so far, counting this batch (darknet increments before the forward pass).
            stats: also compute darknet's printed statistics (avg IoU, recall, ...; ~20 small ops: a training step
                asks on the steps its loggers write only).
            assignment: :func:`assign_truths` of ``targets`` made ahead (e.g. on the host while the network runs:
                on a GPU the loss then never waits for it); None: made here. With ``bias_match=False`` it depends
                on the predictions and must be None.
        """
        anchors = anchors.to(raw.device, torch.float32)
        bsz, ch, h, w = raw.shape
        if ch != anchors.shape[0] * (5 + self.num_classes):
            raise ValueError(
                f"head output has {ch} channels; {anchors.shape[0]} anchors x (5 + {self.num_classes} classes) "
                f"= {anchors.shape[0] * (5 + self.num_classes)} expected"
            )
        with torch.no_grad():
            # channel planes in NCHW order whatever raw's layout (one copy of an NHWC head output)
            planes = raw.detach().float().reshape(bsz, anchors.shape[0], 5 + self.num_classes, h * w).contiguous()
            if assignment is not None and not self.bias_match:
                raise ValueError("bias_match=False matches truths to the predicted shapes: no assignment ahead")
            if self.compile_options is None or not raw.requires_grad:  # evaluation's loss: eager (no new graphs)
                deltas = self.deltas
            else:  # one graph: the statistics always (fused, they cost next to nothing; no second graph without)
                deltas, stats = functools.partial(_compiled_deltas_fn(**self.compile_options), self), True
            d, numbers = deltas(planes, targets, target_mask, anchors, seen, (h, w), stats, assignment)
        terms = _RegionLossFn.apply(raw, d.grad, d.responsible, d.per_image.sum(1))
        names = ("coord", "obj", "noobj", "cls")
        return RegionLossOutput(
            loss=terms.sum(),
            **{k: terms[i] for i, k in enumerate(names)},
            **numbers,
            per_image={k: d.per_image[i] for i, k in enumerate(names)},
        )

    def deltas(
        self,
        p: torch.Tensor,
        targets: torch.Tensor,
        target_mask: torch.Tensor,
        anchors: torch.Tensor,
        seen: int,
        hw: tuple[int, int],
        stats: bool = True,
        assignment: TruthAssignment | None = None,
    ) -> tuple[_Deltas, dict]:
        """darknet's delta assignment and the loss it implies, in the head's channel-plane layout.

        One function on purpose: the writes follow darknet's order (no-object, prior, responsible truths,
        classification-only images, classes) and later writes replace earlier ones, which reads top to bottom.

        Args:
            p: (B, A, 5 + C, H*W) raw head output as float32 planes (predictor order: anchor, row, column).
            targets, target_mask, anchors, seen: as :meth:`forward`.
            hw: (H, W) of the grid.
            stats: compute the statistics (else only ``num_truths``).
            assignment: :func:`assign_truths` of these truths, on any device (None: made here).
        Returns:
            the :class:`_Deltas` and the statistics of :class:`RegionLossOutput` (avg_iou ... num_truths).
        """
        (h, w), tree = hw, self.tree
        bsz, num_anchors, k_ch, n_cell = p.shape
        dev, f32 = p.device, torch.float32
        n_pred = num_anchors * n_cell  # predictors per image
        direct = self.location == "direct"
        raw_xy, twh = p[:, :, 0:2], p[:, :, 2:4]  # (B, A, 2, HW)
        xy = activate_xy(raw_xy, self.location)
        so = p[:, :, 4].sigmoid()  # (B, A, HW)
        pred = decode_boxes(  # (B, A, 4, HW) normalised cx, cy, w, h
            xy.view(bsz, num_anchors, 2, h, w), twh.view(bsz, num_anchors, 2, h, w), anchors, self.location, 2
        ).view(bsz, num_anchors, 4, n_cell)
        pred_rows = pred.view(bsz * num_anchors, 4, n_cell)

        targets = targets.to(dev, f32)
        if assignment is None:  # the truths' predictors here (with bias_match=False: from the predicted shapes)
            assignment = assign_truths(targets, target_mask, anchors, hw, None if self.bias_match else pred)
        truth_mask, classonly_img, b_idx, t_idx, cell, cidx, best_n, loc, win, co_b, co_row = (
            t.to(dev, non_blocking=True) for t in assignment
        )
        truth_box = targets[..., :4]
        truth_cls = targets[..., 4].long()
        # padding / classification rows become zero-size boxes: no overlap, IoU exactly 0 with every predictor
        # (a scalar, not a constant tensor: a host-to-device copy would wait for the GPU)
        iou_truth = truth_box.where(truth_mask.unsqueeze(-1), 0.0)
        grad = torch.zeros_like(p)  # (B, A, 5 + C, HW)
        g2 = grad.view(bsz * num_anchors, k_ch, n_cell)
        p2 = p.view(bsz * num_anchors, k_ch, n_cell)

        # ---- no-object term: IoU of every predictor's box with every truth of its image --------------------
        # (B, A, M, HW): truths x predictors, the predictors' cells innermost (IoU is symmetric)
        ious = box_iou_cxcywh(iou_truth.unsqueeze(1), pred.transpose(2, 3))
        best_iou = ious.amax(2) if ious.shape[2] else None
        # (classification-only images have no detection truths: every IoU is 0 there, nothing is ignored)
        ignore = best_iou > self.thresh if best_iou is not None else torch.zeros_like(so, dtype=torch.bool)
        obj_weight = torch.where(ignore, 0.0, self.noobject_scale)  # (B, A, HW)
        obj_target = torch.zeros_like(so)

        # ---- responsible predictors (assign_truths: cell, prior, the last truth of each predictor) ----------
        tb = truth_box[b_idx, t_idx]  # (T, 4)
        size = whwh(w, h, f32, dev)[:2]  # (W, H)
        ba = loc // n_cell  # (T,) image-anchor row of p2
        iou_resp = box_iou_paired(pred_rows[ba, :, cidx], tb)  # (T,) IoU of the responsible box
        responsible = torch.zeros(bsz * n_pred, dtype=torch.bool, device=dev)
        responsible[loc] = True

        # ---- coordinates: the prior-matching term on every other predictor of detection images, then the truths -
        coord_img = torch.zeros(bsz, device=dev, dtype=f32)
        if seen < self.prior_seen:
            cw = torch.where(classonly_img, 0.0, self.prior_scale).view(-1, 1, 1, 1) * (~responsible).view(
                bsz, num_anchors, 1, n_cell
            )  # (B, A, 1, HW)
            diff = torch.cat([xy - (0.5 if direct else 0.0), twh], 2)  # (B, A, 4, HW) against (.5, .5, 0, 0)
            coord_img += 0.5 * (cw * diff.square()).sum((1, 2, 3))
            grad[:, :, 0:4] = cw * diff
        # the winners' rows once (indices, not a boolean mask per use): truth, image-anchor row, cell, predictor
        tw, bw, cw_w, loc_w = tb[win], ba[win], cidx[win], loc[win]
        prior = anchors[best_n[win]]  # (Tw, 2)
        t_xy = encode_xy(tw[:, :2] * size - cell[win].to(f32), prior, self.location)
        t_wh = torch.log(tw[:, 2:] * size / prior)
        val = p2[bw, 0:4, cw_w]  # (Tw, 4) raw tx, ty, tw, th of the responsible predictors
        a_xy = activate_xy(val[:, :2], self.location)
        diff = torch.cat([a_xy, val[:, 2:]], 1).sub_(torch.cat([t_xy, t_wh], 1))
        if self.coord_size_weight:
            weight = (self.coord_scale * (2 - tw[:, 2] * tw[:, 3])).unsqueeze(1)  # (Tw, 1)
        else:
            weight = torch.full((len(win), 1), float(self.coord_scale), device=dev)
        coord_img.index_add_(0, b_idx[win], 0.5 * (weight * diff.square()).sum(1))
        d_resp = weight * diff
        if direct:  # d sigmoid: the x, y deltas are on the activated value
            d_resp[:, :2] *= a_xy * (1 - a_xy)
            if seen < self.prior_seen:
                grad[:, :, 0:2] *= xy * (1 - xy)
        g2[bw, 0:4, cw_w] = d_resp
        obj_target.view(-1)[loc_w] = iou_resp[win] if self.rescore else 1.0
        obj_weight.view(-1)[loc_w] = self.object_scale

        # ---- classification-only images: the best predictor for the label, then every class write ----------
        co_label = truth_cls[co_b, co_row]  # (Bc,) each classification-only image's label (its first row)
        logistic = self.class_activation == "logistic"
        if logistic and len(co_b):
            raise ValueError(
                "classification-only images (YOLO9000) need a softmax head over a WordTree; this loss has "
                "class_activation=logistic (darknet's [region] softmax=0)"
            )
        co_loc = self._classonly_predictors(so, p, co_b, co_label, obj_target, obj_weight)
        label = truth_cls[b_idx, t_idx]  # (T,) each detection truth's class
        cat_sum = None  # darknet's "Class" statistic of the logistic classes (their own writes rule)
        if logistic:  # every truth writes, in order (darknet's multi-label rule)
            cls_img, cat_sum = self._logistic_class_deltas(p2, g2, loc, label, n_cell, bsz)
        elif tree.num_groups == 1:  # flat softmax: one write per predictor, the last truth's (winners are unique)
            w_loc, w_label = (
                (loc_w, label[win])
                if not len(co_b)
                else (torch.cat([loc_w, co_loc]), torch.cat([label[win], co_label]))
            )
        else:  # a tree: every truth's path; the dedup keeps the last write per (predictor, sibling group)
            w_loc, w_label = (loc, label) if not len(co_b) else (torch.cat([loc, co_loc]), torch.cat([label, co_label]))
        if not logistic:
            cls_img = self._class_deltas(p2, g2, w_loc, w_label, n_cell, bsz)

        # ---- objectness: one dense term ----------------------------------------------------------------------
        d_obj = so - obj_target
        sq = 0.5 * obj_weight * d_obj.square()
        grad[:, :, 4] = obj_weight * d_obj * so * (1 - so)
        resp = responsible.view_as(so)
        obj_img = (sq * resp).sum((1, 2))
        per_image = torch.stack([coord_img, obj_img, sq.sum((1, 2)) - obj_img, self.class_scale * cls_img])
        if self.class_scale != 1.0:
            grad[:, :, 5:] *= self.class_scale

        # ---- darknet's printed statistics ---------------------------------------------------------------------
        n_t = len(loc)
        deltas = _Deltas(grad=grad, responsible=resp, per_image=per_image)
        if not stats:
            return deltas, {"num_truths": n_t}
        denom = max(n_t, 1)
        if cat_sum is not None:
            p_cls = cat_sum.reshape(1)
        else:
            p_cls = tree.path_prob(tree.softmax(p2[ba, 5:, cidx]), label)  # (T,) P(label)
        # the three means over the truths in one reduction: IoU, recall (IoU > .5), objectness
        means = torch.stack([iou_resp, (iou_resp > 0.5).to(f32), so.view(-1)[loc]]).sum(1).div_(denom)
        # darknet's "Class" also counts each classification-only image's chosen predictor (P(label path) there),
        # and its "No Obj" sums the detection images' predictors over every predictor of the batch
        cat_total, any_obj = p_cls.sum(), so
        if len(co_loc):  # (a batch without classification-only images skips their terms: shapes, no device read)
            p_co = tree.path_prob(tree.softmax(p2[co_loc // n_cell, 5:, co_loc % n_cell]), co_label)  # (Bc,)
            cat_total, any_obj = cat_total + p_co.sum(), so.masked_fill(classonly_img.view(-1, 1, 1), 0.0)
        stats = {
            "avg_iou": means[0],
            "recall": means[1],
            "avg_obj": means[2],
            "avg_anyobj": any_obj.sum() / so.numel(),
            "avg_cat": cat_total / max(n_t + len(co_loc), 1),
            "num_truths": n_t,
        }
        return deltas, stats

    def _classonly_predictors(
        self,
        so: torch.Tensor,
        p: torch.Tensor,
        co_b: torch.Tensor,
        co_label: torch.Tensor,
        obj_target: torch.Tensor,
        obj_weight: torch.Tensor,
    ) -> torch.Tensor:
        """YOLO9000's classification-only images: the predictor with the highest ``sigmoid(to) * P(label path)``
        learns the label (darknet: first classification row of the image); its objectness weight is set in place
        (``darknet``: no term; ``paper``: target max(0.3, current)).

        Args:
            so: (B, A, HW) sigmoid(to); p: (B, A, 5 + C, HW) raw planes; co_b: (Bc,) the classification-only
            images; co_label: (Bc,) their labels. obj_target, obj_weight: (B, A, HW), written in place.
        Returns:
            (Bc,) the flat predictor index of each classification-only image's chosen predictor.
        """
        bsz, num_anchors, n_cell = so.shape
        tree = self.tree
        if not len(co_b):
            return co_b
        cond = tree.softmax(p[co_b, :, 5:].transpose(2, 3))  # (Bc, A, HW, C)
        pcond = tree.path_prob(cond, co_label.view(-1, 1, 1))  # (Bc, A, HW) P(label path)
        score = (so[co_b] * pcond).flatten(1)  # darknet order: anchor, row, column
        co_loc = co_b * (num_anchors * n_cell) + score.argmax(1)
        if self.classonly_objectness == "paper":
            obj_target.view(-1)[co_loc] = torch.clamp(so.reshape(-1)[co_loc], min=0.3)
            obj_weight.view(-1)[co_loc] = self.object_scale
        else:
            obj_weight.view(-1)[co_loc] = 0.0
        return co_loc

    def _logistic_class_deltas(
        self, p2: torch.Tensor, g2: torch.Tensor, loc: torch.Tensor, label: torch.Tensor, n_cell: int, bsz: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """darknet's class deltas of logistic classes (``[region] softmax=0``: ``delta_region_class`` with its
        ``tag``): every truth writes its predictor in list order. A write to a predictor whose class-0 delta is still
        0 sets every class (target one-hot); a later one sets its own class's target to 1 and keeps the others
        (multi-label). So a predictor learns the union of its truths' classes, except where ``sigmoid`` of its
        class-0 logit is exactly 0 or 1 (float32 saturation), where darknet's test sees a zero delta and starts over:
        at 0, from the first truth of class 0 (else the last truth); at 1, from the truth after the last class-0
        truth but the last. The delta is ``target - sigmoid`` on every class, handed back without the sigmoid's
        derivative: the gradient of the binary cross-entropy on the logits, which is the loss returned.

        Args:
            p2, g2: (B * A, 5 + C, HW) raw planes and their gradient (class channels written in place).
            loc: (T,) flat predictor index of every detection truth, in list order; label: (T,) its class.
        Returns:
            (B,) the binary cross-entropy summed per image (before ``class_scale``), and darknet's ``avg_cat`` sum
            (the truth's class output at each write that set every class).
        """
        dev = loc.device
        if not len(loc):
            return p2.new_zeros(bsz), p2.new_zeros(())
        order = torch.sort(loc, stable=True).indices  # by predictor, then list order
        loc_s, lab_s = loc[order], label[order]
        uniq, inv, counts = torch.unique_consecutive(loc_s, return_inverse=True, return_counts=True)
        first = torch.cumsum(counts, 0) - counts  # (U,) position of each predictor's first truth
        pos = torch.arange(len(loc_s), device=dev) - first[inv]  # (T,) place in its predictor's sequence
        last_pos = (counts - 1)[inv]
        ba, cidx = uniq // n_cell, uniq % n_cell
        logits = p2[ba, 5:, cidx]  # (U, C)
        out = logits.sigmoid()
        out0 = out[:, 0][inv]  # (T,) the class-0 output darknet's test reads
        zero = lab_s == 0
        big = torch.full_like(counts, len(loc_s))
        # out0 == 0: the first class-0 truth restarts the set for good (none: every truth restarts it)
        f0 = big.scatter_reduce(0, inv[zero], pos[zero], "amin")[inv].minimum(last_pos)
        # out0 == 1: each truth after a class-0 one restarts it
        before_last = zero & (pos < last_pos)
        z1 = torch.full_like(counts, -1).scatter_reduce(0, inv[before_last], pos[before_last], "amax")[inv]
        prev_zero = torch.zeros_like(zero)
        prev_zero[1:] = zero[:-1] & (pos[1:] > 0)
        keep = torch.where(out0 == 0, pos >= f0, torch.where(out0 == 1, pos > z1, torch.ones_like(zero)))
        restart = torch.where(out0 == 0, pos <= f0, torch.where(out0 == 1, (pos == 0) | prev_zero, pos == 0))
        if self.class_scale == 0:  # every delta is 0: each write starts over, the last truth's class stands
            keep, restart = pos == last_pos, torch.ones_like(zero)
        target = torch.zeros_like(out)
        target[inv[keep], lab_s[keep]] = 1.0
        g2[ba, 5:, cidx] = out - target  # -delta (class_scale applied by the caller)
        bce = (torch.nn.functional.softplus(logits) - target * logits).sum(1)  # (U,)
        cat = out[inv[restart], lab_s[restart]].sum()
        return p2.new_zeros(bsz).index_add_(0, uniq // (g2.shape[0] // bsz * n_cell), bce), cat

    def _class_deltas(
        self, p2: torch.Tensor, g2: torch.Tensor, loc: torch.Tensor, label: torch.Tensor, n_cell: int, bsz: int
    ) -> torch.Tensor:
        """darknet's class deltas: one softmax target per (predictor, sibling group) along each label's path; a
        later write to the same predictor and group replaces an earlier one (truths in order; classification-only
        images never share predictors with detections). Adds the cross-entropy gradient to ``g2`` in place.

        Args:
            p2, g2: (B * A, 5 + C, HW) raw planes and their gradient.
            loc: (K,) flat predictor index of each labelled predictor; label: (K,) its class (tree node). A flat
                softmax needs each predictor once (its last write); a tree takes every write, in truth order.
        Returns:
            (B,) the cross-entropy summed per image (before ``class_scale``).
        """
        tree, dev = self.tree, loc.device
        if tree.num_groups == 1:  # flat softmax: the label is the node, one write per predictor (the caller's)
            ba, cidx = loc // n_cell, loc % n_cell
            logp = torch.log_softmax(p2[ba, 5:, cidx], dim=1)  # (K, C)
            ce = -logp.gather(1, label.unsqueeze(1)).squeeze(1)  # (K,)
            d_ce = logp.exp_()  # softmax - one-hot
            d_ce[torch.arange(len(label), device=dev), label] -= 1
            g2[ba, 5:, cidx] = d_ce  # distinct predictors whose class channels are still 0
            return ce.new_zeros(bsz).index_add_(0, loc // (g2.shape[0] // bsz * n_cell), ce)
        paths = tree.paths.to(dev)[label]  # (K, D)
        k_idx, d_idx = torch.nonzero(paths >= 0, as_tuple=True)
        node = paths[k_idx, d_idx]
        grp = tree.group.to(dev)[node]
        key = loc[k_idx] * tree.num_groups + grp
        uniq, inv = torch.unique(key, return_inverse=True)
        last_w = torch.full((len(uniq),), -1, device=dev, dtype=torch.long).scatter_reduce(0, inv, k_idx, "amax")
        keep = last_w[inv] == k_idx
        w_loc, node, grp = loc[k_idx][keep], node[keep], grp[keep]
        offset, size = tree.group_offset.to(dev)[grp], tree.group_size.to(dev)[grp]
        ba, cidx = w_loc // n_cell, w_loc % n_cell
        logits = p2[ba, 5:, cidx]  # (Kw, C)
        width = int(size.max()) if len(size) else 1
        ar = torch.arange(width, device=dev)
        cols = (offset.unsqueeze(1) + ar).clamp_max(self.num_classes - 1)  # (Kw, width)
        valid = ar < size.unsqueeze(1)
        vals = logits.gather(1, cols).masked_fill(~valid, float("-inf"))
        lse = torch.logsumexp(vals, dim=1, keepdim=True)
        ce = lse.squeeze(1) - logits.gather(1, node.unsqueeze(1)).squeeze(1)  # (Kw,)
        d_ce = (vals - lse).exp() - (cols == node.unsqueeze(1)).float() * valid  # softmax - one-hot, 0 off-group
        k_ch = g2.shape[1]
        flat = (ba.unsqueeze(1) * k_ch + 5 + cols) * n_cell + cidx.unsqueeze(1)  # (Kw, width) into g2
        g2.view(-1).index_add_(0, flat.flatten(), d_ce.flatten())
        return ce.new_zeros(bsz).index_add_(0, w_loc // (g2.shape[0] // bsz * n_cell), ce)


@functools.cache
def _compiled_deltas_fn(backend: str, mode: str | None) -> Callable[..., Any]:
    """``RegionLoss.deltas`` compiled (dynamic shapes), one per backend and mode, shared by every loss instance
    (nothing compiled is stored on a module: copies and pickles of a loss stay plain)."""
    return torch.compile(RegionLoss.deltas, dynamic=True, backend=backend, mode=mode)


def darknet_truth_to_targets(truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """darknet's truth layout (B, N, 5) -> (targets (B, N, 5), mask (B, N)); the list ends at the first x == 0."""
    mask = torch.cumprod((truth[..., 0] != 0).long(), dim=1).bool()
    return truth, mask


def region_loss_darknet(
    output: torch.Tensor,
    truth: torch.Tensor,
    *,
    anchors: Sequence[float] | torch.Tensor,
    num_classes: int,
    seen: int,
    thresh: float = 0.6,
    object_scale: float = 5.0,
    noobject_scale: float = 1.0,
    class_scale: float = 1.0,
    coord_scale: float = 1.0,
    rescore: bool = True,
    tree: WordTree | str | None = None,
    bias_match: bool = True,
    softmax: bool = True,
) -> torch.Tensor:
    """darknet's ``forward_region_layer`` loss in darknet's own terms; returns the batch-summed loss.

    Args:
        output: (B, A * (5 + C), H, W) raw head output.
        truth: (B, N, 5) ``x, y, w, h, class`` normalised centre-size; rows with x == 0 are padding (the list ends
            at the first); x and y > 1e5 mark a classification-only image.
        anchors: flat ``w0, h0, w1, h1, ...`` or (A, 2), grid-cell units.
        tree: a :class:`WordTree` or the path of a darknet tree file (hierarchical softmax), or None.
        bias_match: darknet's ``bias_match`` (match truths to anchors by prior shape; 0: by predicted shape).
        softmax: darknet's ``softmax`` (0: logistic classes; a tree takes its hierarchical softmax either way).
    """
    if not isinstance(output, torch.Tensor):
        output = torch.as_tensor(output, dtype=torch.float32)
    a = torch.as_tensor(anchors, dtype=torch.float32).reshape(-1, 2)
    if isinstance(tree, str):
        tree = WordTree.from_file(tree)
    targets, mask = darknet_truth_to_targets(torch.as_tensor(truth, dtype=torch.float32, device=output.device))
    loss = RegionLoss(
        num_classes,
        thresh=thresh,
        object_scale=object_scale,
        noobject_scale=noobject_scale,
        class_scale=class_scale,
        coord_scale=coord_scale,
        rescore=rescore,
        bias_match=bias_match,
        tree=tree,
        class_activation="softmax" if softmax else "logistic",
    )
    return loss(output, targets, mask, a, seen).loss
