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
  cross-entropy of the softmax (per sibling group along the label's path with a WordTree);
* classification-only images (YOLO9000): all predictors get the noobject term; the one with the highest
  ``sigmoid(to) * P(label path)`` gets the class loss and no objectness term (darknet) or, with
  ``classonly_objectness="paper"``, an objectness target of at least 0.3.

All sums run over the batch (darknet divides the learning rate by the batch; :class:`RegionLoss` callers divide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from yolo9000.boxes import (
    Location,
    activate_xy,
    box_iou_cxcywh,
    box_iou_paired,
    decode_boxes,
    encode_xy,
    split_region,
    wh_iou,
)
from yolo9000.wordtree import WordTree, flat_tree

CLASSONLY_MARK = 1e5  # truth rows with x and y above this mark a classification-only image (darknet)


@dataclass
class RegionLossOutput:
    """Loss parts (batch sums, scalars with grad) and detached statistics."""

    loss: torch.Tensor
    coord: torch.Tensor
    obj: torch.Tensor
    noobj: torch.Tensor
    cls: torch.Tensor
    avg_iou: torch.Tensor  # mean IoU of the responsible predictor's box with its truth
    recall: torch.Tensor  # fraction of truths with that IoU > 0.5
    avg_obj: torch.Tensor  # mean sigmoid(to) of responsible predictors
    avg_anyobj: torch.Tensor  # mean sigmoid(to) over all predictors
    avg_cat: torch.Tensor  # mean P(class) of responsible predictors
    num_truths: int
    per_image: dict[str, torch.Tensor] | None = None  # each term per image, (B,) detached (sums to the term)

    @property
    def terms(self) -> dict[str, torch.Tensor]:
        """The named loss terms (their sum is ``loss``)."""
        return {"coord": self.coord, "obj": self.obj, "noobj": self.noobj, "cls": self.cls}


@dataclass
class RegionTargets:
    """darknet's assignment for one batch (no gradient): every predictor's targets and weights.

    Attributes:
        coord_target: (B, A, H, W, 4) targets of (x, y, tw, th); coord_weight: (B, A, H, W).
        obj_target, obj_weight: (B, A, H, W) objectness target and weight.
        responsible: bool (B, A, H, W), predictors responsible for a truth (the ``obj`` term; the rest ``noobj``).
        cls_loc: (K,) flat predictor index of each class write; cls_offset, cls_size: (K,) its softmax group;
            cls_node: (K,) the target channel.
        resp_loc: (T,) flat responsible predictor of each detection truth; resp_iou: (T,) its box's IoU with the
            truth; resp_paths: (T, D) the truth's label path (-1 padded) for the statistics.
    """

    coord_target: torch.Tensor
    coord_weight: torch.Tensor
    obj_target: torch.Tensor
    obj_weight: torch.Tensor
    responsible: torch.Tensor
    cls_loc: torch.Tensor
    cls_offset: torch.Tensor
    cls_size: torch.Tensor
    cls_node: torch.Tensor
    resp_loc: torch.Tensor
    resp_iou: torch.Tensor
    resp_paths: torch.Tensor


def _group_cross_entropy(
    logits: torch.Tensor, offset: torch.Tensor, size: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of one softmax group per row.

    Args:
        logits: (K, C) class logits of K predictors.
        offset, size: (K,) the group (a contiguous channel run) each row's softmax covers.
        target: (K,) the target channel (inside the group).
    Returns:
        (K,) ``-log softmax(logits[offset:offset + size])[target - offset]``.
    """
    width = int(size.max()) if len(size) else 1
    ar = torch.arange(width, device=logits.device)
    cols = offset.unsqueeze(1) + ar
    valid = ar < size.unsqueeze(1)
    vals = logits.gather(1, cols.clamp_max(logits.shape[1] - 1))
    vals = vals.masked_fill(~valid, float("-inf"))
    return torch.logsumexp(vals, dim=1) - logits.gather(1, target.unsqueeze(1)).squeeze(1)


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
    ) -> None:
        super().__init__()
        if tree is not None and tree.n != num_classes:
            raise ValueError(f"WordTree has {tree.n} nodes but the head predicts {num_classes} classes")
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

    def forward(
        self,
        raw: torch.Tensor,
        targets: torch.Tensor,
        target_mask: torch.Tensor,
        anchors: torch.Tensor,
        seen: int,
    ) -> RegionLossOutput:
        """Assign targets (no gradient: :meth:`assign`), then compute the named loss terms (:meth:`terms`).

        Args:
            raw: (B, A * (5 + C), H, W) raw head output.
            targets: (B, M, 5) truths ``cx, cy, w, h, class`` (normalised to the input); a row with cx and cy
                above 1e5 marks a classification-only image labelled with its class.
            target_mask: (B, M) True for real rows.
            anchors: (A, 2) priors in grid-cell units.
            seen: images seen so far, counting this batch (darknet increments before the forward pass).
        """
        anchors = anchors.to(raw.device, torch.float32)
        reg = split_region(raw, anchors.shape[0])
        xy = activate_xy(reg.xy, self.location)  # (B, A, H, W, 2)
        obj = reg.obj.sigmoid()  # (B, A, H, W)
        assigned = self.assign(xy, reg.wh, obj, reg.cls, targets, target_mask, anchors, seen)
        per_image = self.terms(xy, reg.wh, obj, reg.cls, assigned)  # (B,) each
        terms = {k: v.sum() for k, v in per_image.items()}
        stats = self.statistics(obj, reg.cls, assigned)
        return RegionLossOutput(
            loss=sum(terms.values()),
            **terms,
            num_truths=len(assigned.resp_loc),
            **stats,
            per_image={k: v.detach() for k, v in per_image.items()},
        )

    @torch.no_grad()
    def assign(
        self,
        xy: torch.Tensor,
        wh: torch.Tensor,
        obj: torch.Tensor,
        cls: torch.Tensor,
        targets: torch.Tensor,
        target_mask: torch.Tensor,
        anchors: torch.Tensor,
        seen: int,
    ) -> RegionTargets:
        """darknet's delta assignment (which predictor learns what, with which weight); no gradient.

        One function on purpose: the writes follow darknet's order (no-object, prior, responsible truths,
        classification-only images, classes) and later writes replace earlier ones, which reads top to bottom.

        Args:
            xy: (B, A, H, W, 2) activated offsets; wh: (B, A, H, W, 2) raw tw, th; obj: (B, A, H, W) sigmoid(to);
            cls: (B, A, H, W, C) class logits (classification-only images pick their predictor with them).
            targets, target_mask, anchors, seen: as :meth:`forward`.
        """
        num_anchors = anchors.shape[0]
        bsz, _, h, w = obj.shape
        dev, f32, tree = obj.device, torch.float32, self.tree
        pred_boxes = decode_boxes(xy.float(), wh.float(), anchors, self.location)

        targets = targets.to(dev, f32)
        mask = target_mask.to(dev).bool()
        classonly_row = mask & (targets[..., 0] > CLASSONLY_MARK) & (targets[..., 1] > CLASSONLY_MARK)
        classonly_img = classonly_row.any(1)  # (B,)
        truth_mask = mask & ~classonly_img.unsqueeze(1)  # detection truths, (B, M)
        truth_box = targets[..., :4]
        truth_cls = targets[..., 4].long()

        # ---- no-object term: IoU of every predictor's box with every truth of its image --------------------
        flat_pred = pred_boxes.view(bsz, -1, 4)  # (B, A*H*W, 4)
        ious = box_iou_cxcywh(flat_pred, truth_box).masked_fill(~truth_mask.unsqueeze(1), 0.0)  # (B, N, M)
        best_iou = ious.amax(2).view(bsz, num_anchors, h, w) if ious.shape[2] else torch.zeros_like(obj)
        obj_weight = torch.full_like(obj, self.noobject_scale, dtype=f32)
        obj_weight = torch.where((best_iou > self.thresh) & ~classonly_img.view(-1, 1, 1, 1), 0.0, obj_weight)
        obj_target = torch.zeros_like(obj, dtype=f32)

        # ---- coordinates: prior-matching term on every predictor of detection images -------------------------
        coord_target = torch.zeros((*obj.shape, 4), device=dev, dtype=f32)
        coord_target[..., :2] = 0.5 if self.location == "direct" else 0.0
        coord_weight = torch.zeros_like(obj, dtype=f32)
        if seen < self.prior_seen:
            coord_weight = torch.where(classonly_img.view(-1, 1, 1, 1), 0.0, self.prior_scale + coord_weight)

        # ---- responsible predictors -------------------------------------------------------------------------
        b_idx, t_idx = torch.nonzero(truth_mask, as_tuple=True)  # row-major: truths in list order per image
        tb = truth_box[b_idx, t_idx]  # (T, 4)
        size = torch.tensor([w, h], device=dev, dtype=f32)
        cell = (tb[:, :2] * size).long()  # int(x * W), float32 maths as darknet
        cell = torch.minimum(cell, torch.tensor([w - 1, h - 1], device=dev))
        ci, cj = cell[:, 0], cell[:, 1]
        if self.bias_match:
            shapes = (anchors / size).unsqueeze(0).expand(len(tb), -1, -1)  # (T, A, 2)
        else:
            shapes = pred_boxes[b_idx, :, cj, ci, 2:]  # (T, A, 2) predicted shapes at the truth's cell
        shape_iou = wh_iou(tb[:, None, 2:], shapes).squeeze(1)  # (T, A)
        best_n = shape_iou.argmax(1)  # first maximum wins, as darknet's strict '>'
        loc = ((b_idx * num_anchors + best_n) * h + cj) * w + ci  # flat (B, A, H, W) index

        order = torch.arange(len(loc), device=dev)  # global truth order (image-major, list order)
        n_loc = bsz * num_anchors * h * w
        last = torch.full((n_loc,), -1, device=dev, dtype=torch.long).scatter_reduce(0, loc, order, "amax")
        winner = last[loc] == order  # the last truth per (image, anchor, cell) keeps its writes

        iou_resp = box_iou_paired(flat_pred.view(-1, 4)[loc], tb)  # (T,) IoU of the responsible box
        prior = anchors[best_n]  # (T, 2)
        offset_in_cell = tb[:, :2] * size - cell.to(f32)
        t_xy = encode_xy(offset_in_cell, prior, self.location)
        t_wh = torch.log(tb[:, 2:] * size / prior)
        wl = loc[winner]
        coord_target.view(-1, 4)[wl] = torch.cat([t_xy, t_wh], 1)[winner]
        size_w = (2 - tb[:, 2] * tb[:, 3]) if self.coord_size_weight else torch.ones_like(tb[:, 2])
        coord_weight.view(-1)[wl] = (self.coord_scale * size_w)[winner]
        obj_target.view(-1)[wl] = (iou_resp if self.rescore else torch.ones_like(iou_resp))[winner]
        obj_weight.view(-1)[wl] = self.object_scale
        responsible = torch.zeros(n_loc, dtype=torch.bool, device=dev)
        responsible[wl] = True

        # ---- classification-only images: the best predictor for the label, then every class write ----------
        co_loc, co_label = self._classonly_predictors(obj, cls, classonly_row, truth_cls, obj_target, obj_weight)
        cls_writes = self._class_writes(torch.cat([loc, co_loc]), torch.cat([truth_cls[b_idx, t_idx], co_label]))
        return RegionTargets(
            coord_target=coord_target,
            coord_weight=coord_weight,
            obj_target=obj_target,
            obj_weight=obj_weight,
            responsible=responsible.view_as(obj),
            **cls_writes,
            resp_loc=loc,
            resp_iou=iou_resp,
            resp_paths=tree.paths.to(dev)[truth_cls[b_idx, t_idx]],
        )

    def _classonly_predictors(
        self,
        obj: torch.Tensor,
        cls: torch.Tensor,
        classonly_row: torch.Tensor,
        truth_cls: torch.Tensor,
        obj_target: torch.Tensor,
        obj_weight: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """YOLO9000's classification-only images: the predictor with the highest ``sigmoid(to) * P(label path)``
        learns the label (darknet: first classification row of the image); its objectness weight is set in place
        (``darknet``: no term; ``paper``: target max(0.3, current)).

        Args:
            obj: (B, A, H, W); cls: (B, A, H, W, C); classonly_row: bool (B, M); truth_cls: (B, M).
            obj_target, obj_weight: (B, A, H, W), written in place.
        Returns:
            (flat predictor index (Bc,), label (Bc,)) of the classification-only images.
        """
        bsz, num_anchors, h, w = obj.shape
        dev, tree = obj.device, self.tree
        co_b = torch.nonzero(classonly_row.any(1)).flatten()
        if not len(co_b):
            return co_b.new_empty(0), co_b.new_empty(0)
        first_row = classonly_row[co_b].float().argmax(1)
        co_label = truth_cls[co_b, first_row]
        cond = tree.softmax(cls[co_b].float())  # (Bc, A, H, W, C)
        path = tree.paths[co_label.cpu()].to(dev)  # (Bc, D)
        d = path.shape[1]
        pcond = torch.where(
            path.view(-1, 1, 1, 1, d) >= 0,
            cond.gather(-1, path.clamp_min(0).view(-1, 1, 1, 1, d).expand(*cond.shape[:-1], -1)),
            torch.ones((), device=dev),
        ).prod(-1)  # (Bc, A, H, W)
        score = (obj[co_b].float() * pcond).flatten(1)  # darknet order: anchor, row, column
        co_loc = co_b * (num_anchors * h * w) + score.argmax(1)
        if self.classonly_objectness == "paper":
            obj_target.view(-1)[co_loc] = torch.clamp(obj.reshape(-1)[co_loc].float(), min=0.3)
            obj_weight.view(-1)[co_loc] = self.object_scale
        else:
            obj_weight.view(-1)[co_loc] = 0.0
        return co_loc, co_label

    def _class_writes(self, loc: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """darknet's class deltas: one softmax target per (predictor, sibling group) along each label's path; a
        later write to the same predictor and group replaces an earlier one (truths in order; classification-only
        images never share predictors with detections).

        Args:
            loc: (K,) flat predictor index of each labelled predictor; label: (K,) its class (tree node).
        Returns:
            ``cls_loc``, ``cls_offset``, ``cls_size``, ``cls_node`` of :class:`RegionTargets`.
        """
        tree, dev = self.tree, loc.device
        paths = tree.paths.to(dev)[label]  # (K, D)
        k_idx, d_idx = torch.nonzero(paths >= 0, as_tuple=True)
        node = paths[k_idx, d_idx]
        grp = tree.group.to(dev)[node]
        key = loc[k_idx] * tree.num_groups + grp
        uniq, inv = torch.unique(key, return_inverse=True)
        last_w = torch.full((len(uniq),), -1, device=dev, dtype=torch.long).scatter_reduce(0, inv, k_idx, "amax")
        keep = last_w[inv] == k_idx
        g_keep = grp[keep]
        return {
            "cls_loc": loc[k_idx][keep],
            "cls_offset": tree.group_offset.to(dev)[g_keep],
            "cls_size": tree.group_size.to(dev)[g_keep],
            "cls_node": node[keep],
        }

    def terms(
        self, xy: torch.Tensor, wh: torch.Tensor, obj: torch.Tensor, cls: torch.Tensor, t: RegionTargets
    ) -> dict[str, torch.Tensor]:
        """The named loss terms per image ((B,) each, with gradient; the loss is their total) for assigned targets
        ``t``: ``coord`` (responsible predictors and the prior-matching term), ``obj`` (responsible predictors),
        ``noobj`` (the others), ``cls`` (one softmax cross-entropy per class write). Shapes as :meth:`assign`."""
        bsz = obj.shape[0]
        diff = torch.cat([xy, wh], dim=-1).float() - t.coord_target
        coord = 0.5 * (t.coord_weight.unsqueeze(-1) * diff.square()).reshape(bsz, -1).sum(1)
        obj_sq = 0.5 * t.obj_weight * (t.obj_target - obj.float()).square()
        resp = t.responsible.to(obj_sq.dtype)
        cls_flat = cls.reshape(-1, self.num_classes)  # (B*A*H*W, C)
        ce = _group_cross_entropy(cls_flat[t.cls_loc].float(), t.cls_offset, t.cls_size, t.cls_node)  # (K,)
        per_pred = obj[0].numel()  # predictors per image
        cls_img = ce.new_zeros(bsz).index_add(0, t.cls_loc // per_pred, ce)
        return {
            "coord": coord,
            "obj": (obj_sq * resp).reshape(bsz, -1).sum(1),
            "noobj": (obj_sq * (1 - resp)).reshape(bsz, -1).sum(1),
            "cls": self.class_scale * cls_img,
        }

    @torch.no_grad()
    def statistics(self, obj: torch.Tensor, cls: torch.Tensor, t: RegionTargets) -> dict[str, torch.Tensor]:
        """darknet's printed training statistics: avg IoU, recall, avg obj, avg anyobj, avg cat."""
        loc, paths = t.resp_loc, t.resp_paths
        n_t = len(loc)
        denom = max(n_t, 1)
        if n_t:
            cond = self.tree.softmax(cls.reshape(-1, self.num_classes)[loc].float())
            p_cls = cond.gather(1, paths.clamp_min(0)).where(paths >= 0, 1.0).prod(1)
        else:
            p_cls = obj.new_zeros(0)
        return {
            "avg_iou": t.resp_iou.sum() / denom,
            "recall": (t.resp_iou > 0.5).float().sum() / denom,
            "avg_obj": obj.detach().reshape(-1)[loc].float().sum() / denom,
            "avg_anyobj": obj.detach().float().mean(),
            "avg_cat": p_cls.sum() / denom,
        }


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
) -> torch.Tensor:
    """darknet's ``forward_region_layer`` loss in darknet's own terms; returns the batch-summed loss.

    Args:
        output: (B, A * (5 + C), H, W) raw head output.
        truth: (B, N, 5) ``x, y, w, h, class`` normalised centre-size; rows with x == 0 are padding (the list ends
            at the first); x and y > 1e5 mark a classification-only image.
        anchors: flat ``w0, h0, w1, h1, ...`` or (A, 2), grid-cell units.
        tree: a :class:`WordTree` or the path of a darknet tree file (hierarchical softmax), or None.
        bias_match: darknet's ``bias_match`` (match truths to anchors by prior shape; 0: by predicted shape).
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
    )
    return loss(output, targets, mask, a, seen).loss
