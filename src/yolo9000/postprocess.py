"""From raw head output to detections: decode, confidence threshold, top-k candidates, class-aware NMS, map back.

The cost is bounded whatever the network, class count and threshold. darknet scores every (box, class) pair, and
an untrained or early network at darknet's evaluation threshold (0.005) passes nearly all of them (13 x 13 x 5
boxes x 80 classes = 67,600 per image), whose per-class NMS took over a second per image. Here:

* each image keeps its ``pre_nms_topk`` highest-scoring candidates (darknet has no such cap; it changes nothing
  while fewer candidates pass the threshold, nor when more do unless one of the ``max_det`` detections kept
  after NMS ranked below the top ``pre_nms_topk`` before it);
* NMS runs for all classes at once: boxes of each (image, class) group are moved into their own coordinate
  range, so one class-agnostic NMS call is per-class NMS; it stops at the candidates that already give
  ``max_det`` detections (greedy NMS decides a box from higher-scored ones only, so this is exact).

Only the images of a batch are looped over (on the CPU, one NMS call per few images is cheaper than one per batch,
whose cost grows with the square of its candidates); a batch on a GPU runs the greedy NMS of all its images at once
as matrix products (:func:`class_nms`'s ``matrix``).

darknet's own per-box decode (``get_region_detections``: every box, its letterbox correction, darknet's WordTree
descent) is :func:`region_detections_darknet` (:mod:`yolo9000.region_decode`, re-exported here).
"""

from __future__ import annotations

import itertools
import numbers
from typing import Literal, NamedTuple

import torch
from torchvision.ops import nms

from yolo9000.boxes import ClassActivation, Location, cxcywh_to_xyxy_pixels, decode_boxes_at, split_region
from yolo9000.data.resize import boxes_to_original
from yolo9000.region_decode import TreeDecode, check_tree_decode
from yolo9000.region_decode import region_detections_darknet as region_detections_darknet
from yolo9000.wordtree import WordTree

_FAR = 1e7  # box coordinates (pixels) beyond this are clamped for the NMS offsets (a diverging network's)
_WIDE = 256  # rows of at least this many times pre_nms_topk (box, class) pairs skip the full top-k
_WIDE_MAX = 16  # ... unless more than this many times pre_nms_topk pairs per row reach the bound (ties)
_SORTED = 4  # more than this many times pre_nms_topk candidates a row: a top-k of each row, not a sort of them all
_LANES = 16  # classes: fewer take the softmax across the (H, W) planes (too few for the vector lanes), more along them


@torch.no_grad()
def postprocess(
    raw: torch.Tensor,
    anchors: torch.Tensor,
    input_hw: tuple[int, int],
    transforms: torch.Tensor | None = None,
    orig_sizes: torch.Tensor | None = None,
    *,
    location: Location = "direct",
    conf_thresh: float = 0.005,
    nms_thresh: float = 0.45,
    max_det: int | None = 300,
    pre_nms_topk: int | None = 1000,
    tree: WordTree | None = None,
    tree_thresh: float = 0.5,
    tree_decode: TreeDecode = "darknet",
    tree_map: torch.Tensor | None = None,
    class_activation: ClassActivation = "softmax",
) -> list[dict[str, torch.Tensor]]:
    """darknet's ``get_region_boxes`` + ``do_nms_sort``: every (box, class) pair whose score
    ``sigmoid(to) * P(class)`` exceeds ``conf_thresh`` is a candidate; NMS runs per class and image. ``P(class)``:
    the softmax of the class logits, or with ``class_activation="logistic"`` (darknet ``[region] softmax=0``) the
    sigmoid of each.

    With a WordTree (:func:`tree_candidates`, the same choices as :func:`region_detections_darknet`):

    * with ``tree_map`` (darknet's ``map``: the evaluated label set as tree nodes) every (box, mapped node) pair
      is scored ``obj * P_abs(node)``, as flat classes; ``tree_decode`` plays no part;
    * ``tree_decode="darknet"`` (default): each box gets the node of darknet's ``hierarchy_top_prediction`` over
      absolute probabilities and is scored with its objectness alone;
    * ``tree_decode="paper"``: the paper's top-down descent on the path probability, scored ``obj * P(node)``.

    Args:
        raw: (B, A * (5 + C), H, W) raw head output.
        anchors: (A, 2) priors, grid-cell units.
        input_hw: (height, width) of the network input in pixels.
        transforms: (B, 4) ``(scale_x, scale_y, pad_x, pad_y)`` of the eval transform; None = identity.
        orig_sizes: (B, 2) original (h, w) to clip boxes to; None = no clipping.
        conf_thresh: minimum score of a candidate (strictly above).
        nms_thresh: IoU above which a lower-scored box of the same class and image is suppressed.
        max_det: detections kept per image (the highest scores after NMS); None = all (darknet: no cap).
        pre_nms_topk: candidates kept per image before NMS (the highest scores); None or 0 = all (darknet).
        tree: WordTree of a hierarchical head (YOLO9000); None = flat softmax.
        tree_thresh: threshold of the top-down descent.
        tree_decode: ``darknet`` or ``paper`` (see above).
        tree_map: (K,) tree node of each reported class; labels are then node indices of ``tree_map``'s nodes.
    Returns:
        per image a dict with ``boxes`` (N, 4) xyxy in original pixels, ``scores`` (N,) sorted in decreasing
        order, ``labels`` (N,) int64 (class, or tree node with a tree); N <= max_det.
    """
    reg = split_region(raw.float(), anchors.shape[0])
    bsz = raw.shape[0]
    obj = reg.obj.sigmoid()  # (B, A, H, W)
    if tree is None:
        cand = flat_candidates(obj, reg.cls, conf_thresh, pre_nms_topk, class_activation)
    else:
        cand = tree_candidates(obj, reg.cls, tree, conf_thresh, tree_thresh, pre_nms_topk, tree_decode, tree_map)
    if not len(cand.score):  # nothing above the threshold: no decode, no NMS
        empty = cand.score.new_zeros(0)
        return [{"boxes": empty.view(0, 4), "scores": empty, "labels": cand.label} for _ in range(bsz)]
    # only the candidates' boxes are decoded, then mapped to input pixels and through the eval transform's inverse
    # (it owns the geometry): (M, 4) xyxy original pixels
    boxes = cxcywh_to_xyxy_pixels(decode_boxes_at(reg, cand.image, cand.box, anchors, location), input_hw)
    if transforms is not None:
        boxes = boxes_to_original(boxes.unsqueeze(1), _rows(transforms.to(boxes.device), cand.image))[:, 0]
    cap = int(max_det) if max_det is not None else len(cand.score)  # None: every candidate may stay
    # NMS on the unclipped boxes, as darknet's do_nms_sort (it clips only when drawing / printing the kept boxes)
    keep = class_nms(boxes, cand.score, cand.image, cand.label, nms_thresh, bsz, cap)
    if orig_sizes is not None:
        limit = _rows(orig_sizes.to(boxes.device, boxes.dtype), cand.image).flip(-1).repeat(1, 2)  # (M, 4) w h w h
        boxes = torch.minimum(boxes.clamp_min(0), limit)
    if bsz == 1:
        return [{"boxes": boxes[keep[0]], "scores": cand.score[keep[0]], "labels": cand.label[keep[0]]}]
    # every image's kept rows gathered at once and split (views): 3 gathers a batch, not 3 an image (GPU launches)
    kept, counts = torch.cat(keep), [len(k) for k in keep]
    parts = [t[kept].split(counts) for t in (boxes, cand.score, cand.label)]
    return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(*parts, strict=True)]


def check_decode_settings(max_det: int | None = None, **thresholds: float | None) -> None:
    """Refuse decode settings no detection can satisfy: each of ``thresholds`` (named as the caller's argument,
    e.g. ``conf_thresh=2.0``) outside [0, 1] (nan too), a negative ``max_det`` (ValueError); a threshold that is no
    number (``"0.3"``, True), a ``max_det`` that is no whole number (2.5, True) (TypeError). None values are not
    checked."""
    for name, value in thresholds.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= float(value) <= 1.0:  # nan fails too
            raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    if max_det is not None:
        if isinstance(max_det, bool) or not isinstance(max_det, numbers.Integral):
            raise TypeError(f"max_det must be a whole number >= 0 (or None: no cap), got {max_det!r}")
        if max_det < 0:
            raise ValueError(f"max_det must be >= 0, got {max_det!r}")


def average_outputs(
    raws: torch.Tensor,
    num_anchors: int,
    *,
    location: Location = "direct",
    class_activation: ClassActivation = "softmax",
    tree: WordTree | None = None,
) -> torch.Tensor:
    """darknet demo's ``mean_arrays`` over the region layer's outputs of several frames: the mean of the activated
    outputs (the logistic of x and y (direct location), of the objectness and of logistic classes; the softmax of the
    classes, per sibling group with a WordTree; w and h as they are), given back as raw outputs that
    :func:`postprocess` decodes to that mean (the logit of a mean probability; the log of a mean softmax, whose
    softmax is that mean again).

    Args:
        raws: (K, A * (5 + C), H, W) the head outputs of K frames (one input size).
    Returns:
        (1, A * (5 + C), H, W) raw outputs of their mean.
    """
    if raws.shape[0] == 1:
        return raws
    reg = split_region(raws.float(), num_anchors)
    out = torch.empty_like(raws[:1], dtype=torch.float32)
    mean = split_region(out, num_anchors)
    xy = reg.xy.sigmoid().mean(0, keepdim=True).logit() if location == "direct" else reg.xy.mean(0, keepdim=True)
    mean.xy.copy_(xy)
    mean.wh.copy_(reg.wh.mean(0, keepdim=True))
    mean.obj.copy_(reg.obj.sigmoid().mean(0, keepdim=True).logit())
    if tree is not None:
        probs = tree.softmax(reg.cls)
    elif class_activation == "logistic":
        probs = reg.cls.sigmoid()
    else:
        probs = reg.cls.softmax(-1)
    mean_probs = probs.mean(0, keepdim=True)
    mean.cls.copy_(mean_probs.logit() if tree is None and class_activation == "logistic" else mean_probs.log())
    return out


class Candidates(NamedTuple):
    """The (box, class) pairs that go on to NMS, grouped by image and in decreasing score order within an image;
    each (M,): ``image`` index, ``box`` index into the image's N = A * H * W boxes (anchor-major, then row, then
    column), ``label`` (class, or tree node), ``score``."""

    image: torch.Tensor
    box: torch.Tensor
    label: torch.Tensor
    score: torch.Tensor


def _rows(per_image: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B, k) per-image rows -> the row of each candidate's image, (M, k); one image: its (1, k) row as it is
    (it broadcasts)."""
    return per_image if per_image.shape[0] == 1 else per_image[image]


def select_candidates(
    scores: torch.Tensor, conf_thresh: float, pre_nms_topk: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The entries scoring above ``conf_thresh``, at most ``pre_nms_topk`` per row (the highest; None or 0: all).

    Few candidates (a trained head at a detection threshold) are found by the threshold and sorted; many (an
    untrained head, or darknet's 0.005 evaluation threshold: up to every (box, class) pair) by a top-k of each
    row first (:func:`_top_candidates`), so the sort never exceeds ``_SORTED`` x ``pre_nms_topk`` entries a row.
    Equal scores keep their index order (a top-k's order of ties is unspecified: either is a valid ranking).

    Args:
        scores: (B, M) scores (-inf or nan: never a candidate).
    Returns:
        row (P,), index into M (P,), score (P,): by row, then by decreasing score.
    """
    bsz = scores.shape[0]
    above = scores > conf_thresh
    many = pre_nms_topk and scores.numel() > _SORTED * pre_nms_topk * bsz  # else never too many
    if many and int(above.count_nonzero()) > _SORTED * pre_nms_topk * bsz:  # counted, not listed
        inf = float("inf")  # a nan would take a top-k slot (top-k ranks it highest): -inf never does
        top, idx = _top_candidates(scores.nan_to_num(-inf, inf, -inf), conf_thresh, pre_nms_topk)  # (B, K)
        image, rank = torch.nonzero(top > conf_thresh, as_tuple=True)  # by row, then rank
        return image, idx[image, rank], top[image, rank]
    image, index = torch.nonzero(above, as_tuple=True)
    image, index, s = _sort_by_row(image, index, scores[image, index], bsz)
    if pre_nms_topk and len(s) > pre_nms_topk:
        sel = _rank_in_row(image, bsz) < pre_nms_topk
        image, index, s = image[sel], index[sel], s[sel]
    return image, index, s


def _sort_by_row(
    row: torch.Tensor, index: torch.Tensor, score: torch.Tensor, bsz: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P,) entries of ``bsz`` rows -> the same entries by row, then by decreasing score (stable: equal scores keep
    their order)."""
    score, order = torch.sort(score, descending=True, stable=True)
    if bsz > 1:
        by_row = torch.sort(row[order], stable=True).indices
        order, score = order[by_row], score[by_row]
    return row[order], index[order], score


def _rank_in_row(row: torch.Tensor, bsz: int) -> torch.Tensor:
    """(P,) rank of each entry within its row, for entries grouped by row (:func:`_sort_by_row`)."""
    counts = torch.bincount(row, minlength=bsz)
    return torch.arange(len(row), device=row.device) - (torch.cumsum(counts, 0) - counts)[row]


def _top_candidates(scores: torch.Tensor, conf_thresh: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest scores per row, those not above ``conf_thresh`` as -inf.

    A candidate (above the threshold) outranks every non-candidate, so the top-k of the unmasked scores holds
    the same candidates as the top-k of the candidates: no masking pass over all (box, class) pairs. Wide rows
    (a 9418-class head: 8 M pairs per image) skip the full top-k: see :func:`_top_candidates_wide`.

    Args:
        scores: (B, M) scores (-inf = never a candidate).
    Returns:
        scores (B, K) in decreasing order and their indices (B, K) into M, K = min(k, M).
    """
    k = min(scores.shape[1], k)
    if scores.shape[1] >= _WIDE * k:
        found = _top_candidates_wide(scores, conf_thresh, k)
        if found is not None:
            return found
    top, idx = scores.topk(k, dim=1)
    return top.masked_fill(~(top > conf_thresh), float("-inf")), idx


def _top_candidates_wide(scores: torch.Tensor, conf_thresh: float, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`_top_candidates` for rows much longer than ``k``, without a top-k over the whole rows.

    Cut each row into ``2 k`` disjoint chunks: the k-th highest chunk maximum is a score of k different pairs,
    so at most the row's k-th highest score. Only the pairs at or above it (and above ``conf_thresh``) are
    ranked: about k of them for an untrained head (a row's noise), few for a trained one. Rows where they are
    too many (ties, a near-constant head) return None: the caller runs the plain top-k.

    Args:
        scores: (B, M) scores, M >= 2 k.
    Returns:
        as :func:`_top_candidates` with K = k, or None.
    """
    bsz, width = scores.shape
    chunks = 2 * k
    chunk_max = scores[:, : chunks * (width // chunks)].view(bsz, chunks, -1).amax(2)  # (B, 2k)
    kth = chunk_max.topk(k, dim=1).values[:, -1]  # (B,) <= each row's k-th highest score
    cut = torch.maximum(torch.nextafter(kth, kth.new_tensor(float("-inf"))), kth.new_tensor(conf_thresh))
    b_idx, j_idx = torch.nonzero(scores > cut.unsqueeze(1), as_tuple=True)  # (P,) each
    if len(b_idx) > _WIDE_MAX * k * bsz:
        return None
    b_idx, j_idx, s = _sort_by_row(b_idx, j_idx, scores[b_idx, j_idx], bsz)
    rank = _rank_in_row(b_idx, bsz)
    sel = rank < k
    top = scores.new_full((bsz, k), float("-inf"))
    idx = torch.zeros((bsz, k), dtype=torch.long, device=scores.device)
    top[b_idx[sel], rank[sel]] = s[sel]
    idx[b_idx[sel], rank[sel]] = j_idx[sel]
    return top, idx


def flat_candidates(
    obj: torch.Tensor,
    logits: torch.Tensor,
    conf_thresh: float,
    pre_nms_topk: int | None,
    class_activation: ClassActivation = "softmax",
) -> Candidates:
    """The (box, class) pairs scoring ``obj * softmax(logits)`` (``logistic``: ``obj * sigmoid(logits)``) above
    ``conf_thresh``, the ``pre_nms_topk`` highest per image (:func:`select_candidates`).

    Args:
        obj: (B, A, H, W) objectness (after the sigmoid).
        logits: (B, A, H, W, C) class logits.
    Returns:
        :class:`Candidates` (M,) each, labels the classes.
    """
    num_classes = logits.shape[-1]
    if class_activation == "logistic":
        scores = logits.sigmoid().mul_(obj.unsqueeze(-1)).flatten(1)  # (B, N * C)
    elif num_classes < _LANES:  # the softmax over the head's own (B, A, C, H, W) planes: up to 6x faster at 3
        planes = logits.permute(0, 1, 4, 2, 3).softmax(2).mul_(obj.unsqueeze(2))
        scores = planes.permute(0, 1, 3, 4, 2).reshape(obj.shape[0], -1)  # (B, N * C)
    else:  # along the classes, laid out contiguously first (3.5x faster at 80 and batch 16)
        scores = logits.contiguous().softmax(-1).mul_(obj.unsqueeze(-1)).flatten(1)  # (B, N * C)
    image, idx, s = select_candidates(scores, conf_thresh, pre_nms_topk)
    return Candidates(image, idx // num_classes, idx % num_classes, s)


def tree_candidates(
    obj: torch.Tensor,
    logits: torch.Tensor,
    tree: WordTree,
    conf_thresh: float,
    tree_thresh: float,
    pre_nms_topk: int | None,
    tree_decode: TreeDecode = "darknet",
    tree_map: torch.Tensor | None = None,
) -> Candidates:
    """WordTree candidates of boxes with ``obj > conf_thresh``, the ``pre_nms_topk`` highest per image.

    * ``tree_map`` given: every (box, mapped node) pair scored ``obj * P_abs(node)`` (darknet with a ``map``);
    * ``tree_decode="darknet"``: one node per box, darknet's descent over absolute probabilities, scored
      ``obj`` (``region_detections_darknet(tree_decode="darknet")``);
    * ``tree_decode="paper"``: one node per box, the descent on the path probability, scored ``obj * P(node)``
      (``region_detections_darknet(tree_decode="paper")``).

    Only the rows of boxes above ``conf_thresh`` go through the tree softmax (bounded work at 9418 nodes).

    Args:
        obj: (B, A, H, W) objectness (after the sigmoid).
        logits: (B, A, H, W, n) logits of the n tree nodes.
        tree_map: (K,) node indices, or None.
    Returns:
        :class:`Candidates` (M,) each, labels the tree nodes.
    """
    check_tree_decode(tree_decode)
    b_idx, a_idx, h_idx, w_idx = torch.nonzero(obj > conf_thresh, as_tuple=True)  # (M,) each
    cond = tree.softmax(logits[b_idx, a_idx, h_idx, w_idx])  # (M, n) P(node | parent), only the rows needed
    obj = obj.flatten(1)  # (B, N)
    n_idx = (a_idx * logits.shape[2] + h_idx) * logits.shape[3] + w_idx
    s_obj = obj[b_idx, n_idx]  # (M,)
    if tree_map is not None:
        nodes = tree_map.to(obj.device)
        p = tree.absolute(cond).index_select(1, nodes) * s_obj.unsqueeze(1)  # (M, K)
        dense = obj.new_full((obj.shape[0], obj.shape[1], len(nodes)), float("-inf"))  # (B, N, K)
        dense[b_idx, n_idx] = p
        image, idx, score = select_candidates(dense.flatten(1), conf_thresh, pre_nms_topk)
        return Candidates(image, idx // len(nodes), nodes[idx % len(nodes)], score)
    if tree_decode == "darknet":
        node = tree.top_down(tree.absolute(cond), tree_thresh)  # (M,) hierarchy_top_prediction(absolute)
        s = s_obj
    else:
        node = tree.top_down(cond, tree_thresh)  # (M,) descent on the path probability
        s = s_obj * tree.path_prob(cond, node)  # obj * P(node)
    dense = torch.full_like(obj, float("-inf"))  # (B, N)
    dense[b_idx, n_idx] = s
    labels = torch.zeros(obj.shape, dtype=torch.long, device=obj.device)
    labels[b_idx, n_idx] = node
    image, idx, score = select_candidates(dense, conf_thresh, pre_nms_topk)
    return Candidates(image, idx, labels[image, idx], score)


NmsMethod = Literal["per_image", "rounds", "matrix"]
_NMS_RUN = 192  # candidates: consecutive images of at most this many together share one CPU NMS call
_MATRIX_MAX = 2048  # matrix NMS for images of at most this many candidates (a (K, K) IoU matrix each), else rounds
_MATRIX_PAIRS = 1 << 23  # (image, candidate, candidate) triples per chunk of images (~0.5 GB of temporaries)
_MATRIX_MIN_IMAGES = 4  # fewer images on a GPU: per_image (a batch of 1: 2.3 ms against matrix's 3.1 on an H200)
DecodeOn = Literal["auto", "device", "host"]


def decode_device(device: torch.device, num_images: int, decode_on: DecodeOn = "auto") -> torch.device:
    """Where decode + NMS of a batch of ``num_images`` run after a forward pass on ``device``: ``device``,
    ``host`` (the head output copied back: a few dozen KB an image), or ``auto``: on the host for batches of fewer
    than 4 images after a GPU forward pass, where the GPU would run one NMS per image as a hundred-odd small kernels
    with host syncs (2.3 ms for one image on an H200, beside a 2.6 ms forward pass; a host decodes a trained head's
    image in a few tenths of a millisecond), on the device for larger batches (one batched NMS: ``matrix``)."""
    if decode_on not in ("auto", "device", "host"):
        raise ValueError(f"decode_on must be auto, device or host, got {decode_on!r}")
    if device.type == "cpu" or decode_on == "device":
        return device
    if decode_on == "host" or num_images < _MATRIX_MIN_IMAGES:
        return torch.device("cpu")
    return device


def class_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image: torch.Tensor,
    label: torch.Tensor,
    iou_thresh: float,
    num_images: int,
    max_det: int,
    method: NmsMethod | None = None,
) -> list[torch.Tensor]:
    """Greedy NMS per (image, class) group, the first ``max_det`` kept boxes of each image; no loop over classes.

    Three ways to the same result (up to the order of equal scores):

    * ``per_image`` (the CPU's): torchvision NMS calls in which every (image, class) group is moved into its own
      coordinate range (offset ``group * span``, in float64 so that offsets of up to images x classes groups keep
      sub-pixel precision), where boxes of other groups never overlap it: one class-agnostic call is per-group NMS
      (torchvision's ``batched_nms`` trick, without the per-class loop it falls back to for large inputs). The CPU
      kernel costs candidates x kept boxes per call, plus a fixed ~20 us: consecutive images of at most
      ``_NMS_RUN`` candidates together share one call (this function on 32 trained BCCD images of ~45: 0.71-0.79 ms
      against 1.12-1.23 with a call each); a larger image runs alone, where greedy NMS, which decides a box from
      the higher-scored boxes only, finishes an image whose ``m`` best candidates already keep ``max_det`` boxes:
      the call first takes ``2 * max_det`` candidates and widens (x4) only for images that keep fewer.
    * ``rounds``: the same, one call per round over every unfinished image (few launches and host syncs). Its cost
      grows with the square of the batch's candidates (torchvision's CUDA kernel builds an all-pairs mask and
      scans it on the host: 103 ms for 64 images of ~350 detections on an H200).
    * ``matrix`` (CUDA's, for images of at most 2048 candidates): the greedy result as the fixed point of
      ``keep[j] = no kept higher-scored box of j's class overlaps j by more than iou_thresh`` over each image's
      (K, K) IoU matrix (Cluster-NMS, Zheng et al. 2020): every image of a chunk at once, one pass per step of
      the longest suppression chain (a few), each a batched product. The equations are triangular (box j depends
      on boxes before it), so their one solution is greedy NMS's, reached after at most K passes.

    Args:
        boxes: (M, 4) xyxy candidates, grouped by image and in decreasing score order within each image (as
            :func:`postprocess` makes them); scores (M,); image (M,) image index; label (M,) class.
        method: one of the above; None = by the device: ``per_image`` on the CPU and for fewer than 4 images,
            else ``matrix`` (``rounds`` where an image has more than 2048 candidates).
    Returns:
        per image the kept indices into M, in decreasing score order, at most ``max_det``.
    """
    empty = image.new_zeros(0)
    if boxes.shape[0] == 0 or max_det <= 0:
        return [empty] * num_images
    # a diverging network's inf / nan sizes: clamped so that the group offsets stay finite
    b64 = boxes.double().nan_to_num(0.0).clamp(-_FAR, _FAR)
    if num_images == 1:  # one image (batch-1 inference): every candidate is its own (no count to read back)
        n_img, starts = [len(image)], image.new_zeros(1)
    else:
        counts = torch.bincount(image, minlength=num_images)
        starts = torch.cumsum(counts, 0) - counts
        n_img = counts.tolist()  # the one host sync of the counts
    first = [0, *itertools.accumulate(n_img[:-1])]  # each image's first row
    if method is None:  # an H200, 3 classes, ~220-350 candidates an image: batch 1 per_image 2.3 ms, matrix 3.1,
        #                  rounds 3.4; batch 64 per_image 28 ms, matrix 12-21, rounds 38-103
        method = "per_image" if boxes.device.type == "cpu" or num_images < _MATRIX_MIN_IMAGES else "matrix"
    if method not in ("per_image", "rounds", "matrix"):
        raise ValueError(f"class_nms: method must be per_image, rounds or matrix, got {method!r}")
    if method == "matrix":
        if max(n_img) <= _MATRIX_MAX:
            return _matrix_nms(b64, image, label, starts, max(n_img), iou_thresh, num_images, max_det)
        method = "rounds"
    lo, hi = torch.aminmax(b64)
    group = label if num_images == 1 else image * (int(label.max()) + 1) + label
    shifted = (b64 - lo).add_((group * (hi - lo + 1)).unsqueeze(1))  # (M, 4)
    s64 = scores.double()
    out = [empty] * num_images
    m = 2 * max_det
    if method == "per_image":  # bounded by the batch size: a few NMS calls an image, or one for a run of images
        runs = _nms_runs(n_img, _NMS_RUN)
        shared: list[torch.Tensor] = []  # the kept rows of the runs of several images, indices into M
        for b0, b1 in runs:
            if b1 - b0 > 1:  # every candidate of these images in one call (their groups never overlap)
                lo_row, hi_row = first[b0], first[b1 - 1] + n_img[b1 - 1]
                shared.append(nms(shifted[lo_row:hi_row], s64[lo_row:hi_row], iou_thresh).add_(lo_row))
                continue
            n, mb, box_b, score_b = n_img[b0], m, shifted[first[b0] :], s64[first[b0] :]
            while n:
                keep = nms(box_b[:mb], score_b[:mb], iou_thresh) if mb < n else nms(box_b[:n], score_b[:n], iou_thresh)
                if len(keep) >= max_det or mb >= n:
                    keep = keep[:max_det] if len(keep) > max_det else keep
                    out[b0] = keep.add_(first[b0]) if first[b0] else keep  # indices into M
                    break
                mb *= 4
        if shared:  # rows ascending: by image, each image's in score order (all its candidates were in the call)
            kept = torch.cat(shared).sort().values
            by_image = kept.split(torch.bincount(image[kept], minlength=num_images).tolist())
            for b0, b1 in runs:
                if b1 - b0 > 1:
                    out[b0:b1] = [k[:max_det] if len(k) > max_det else k for k in by_image[b0:b1]]
        return out
    rank = torch.arange(len(image), device=image.device) - starts[image]
    pending = [b for b in range(num_images) if n_img[b]]
    while pending:  # one NMS call per round over every unfinished image
        todo = torch.zeros(num_images, dtype=torch.bool, device=image.device)
        todo[pending] = True
        idx = torch.nonzero(todo[image] & (rank < m)).flatten()
        keep = idx[nms(shifted[idx], s64[idx], iou_thresh)]  # decreasing score
        firsts = _first_per_image(keep, image[keep], num_images, max_det)
        kept = torch.bincount(image[keep], minlength=num_images).tolist()
        for b in pending:
            out[b] = firsts[b]
        pending = [b for b in pending if kept[b] < max_det and m < n_img[b]]
        m *= 4
    return out


def _matrix_nms(
    boxes: torch.Tensor,
    image: torch.Tensor,
    label: torch.Tensor,
    starts: torch.Tensor,
    slots: int,
    iou_thresh: float,
    num_images: int,
    max_det: int,
) -> list[torch.Tensor]:
    """:func:`class_nms`'s ``matrix`` method. ``boxes`` (M, 4) float64 xyxy, ``image`` / ``label`` (M,), grouped by
    image in decreasing score order; ``starts`` (num_images,) each image's first row; ``slots`` (K) the most
    candidates of an image. Returns per image the kept indices into M (score order), at most ``max_det``."""
    dev = boxes.device
    slot = torch.arange(len(image), device=dev) - starts[image]  # (M,) rank within its image
    padded = boxes.new_zeros(num_images, slots, 4)
    padded[image, slot] = boxes
    cls = label.new_full((num_images, slots), -1)  # -1: an empty slot
    cls[image, slot] = label
    keep = torch.zeros(num_images, slots, dtype=torch.bool, device=dev)
    earlier = torch.ones(slots, slots, dtype=torch.bool, device=dev).triu_(1)  # (i, j): i scored above j
    chunk = max(1, _MATRIX_PAIRS // (slots * slots))
    for c0 in range(0, num_images, chunk):
        bx, lab = padded[c0 : c0 + chunk], cls[c0 : c0 + chunk]  # (C, K, 4), (C, K)
        area = (bx[..., 2] - bx[..., 0]) * (bx[..., 3] - bx[..., 1])  # (C, K)
        wh = torch.minimum(bx[:, :, None, 2:], bx[:, None, :, 2:]) - torch.maximum(
            bx[:, :, None, :2], bx[:, None, :, :2]
        )
        inter = wh.clamp_min_(0).prod(-1)  # (C, K, K)
        iou = inter / (area[:, :, None] + area[:, None, :] - inter)  # as torchvision's kernel (0 / 0: nan, no overlap)
        # (C, K, K) 1 where the higher-scored i of j's class overlaps j beyond the threshold
        hits = ((iou > iou_thresh) & earlier & (lab[:, :, None] == lab[:, None, :])).to(torch.float32)
        del wh, inter, iou
        valid = lab >= 0  # (C, K)
        cur = valid
        for _ in range(slots):  # the longest suppression chain: a few passes in practice, K at most
            nxt = valid & (torch.bmm(cur.to(torch.float32).unsqueeze(1), hits).squeeze(1) == 0)
            if torch.equal(nxt, cur):
                break
            cur = nxt
        keep[c0 : c0 + chunk] = cur
    ranked = keep & (keep.cumsum(1) <= max_det)  # the first max_det kept of each image
    b_idx, s_idx = torch.nonzero(ranked, as_tuple=True)  # by image, then slot (score order)
    return list(torch.split(starts[b_idx] + s_idx, torch.bincount(b_idx, minlength=num_images).tolist()))


def _nms_runs(counts: list[int], budget: int) -> list[tuple[int, int]]:
    """Images ``b0 .. b1 - 1`` whose NMS runs as one call: consecutive images of at most ``budget`` candidates
    together (an image of more runs alone, in the widening windows of :func:`class_nms`)."""
    runs: list[tuple[int, int]] = []
    total = budget + 1  # no open run
    for b, n in enumerate(counts):
        if n > budget:
            runs.append((b, b + 1))
            total = budget + 1
        elif total + n <= budget:
            runs[-1] = (runs[-1][0], b + 1)
            total += n
        else:
            runs.append((b, b + 1))
            total = n
    return runs


def _first_per_image(keep: torch.Tensor, image: torch.Tensor, num_images: int, max_det: int) -> list[torch.Tensor]:
    """Split ``keep`` (K,) (score order) by ``image`` (K,), the first ``max_det`` of each image."""
    order = torch.sort(image, stable=True).indices  # grouped by image, score order kept within each
    counts = torch.bincount(image, minlength=num_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(keep), device=keep.device) - starts[image[order]]
    sel = order[rank < max_det]
    return list(torch.split(keep[sel], counts.clamp_max(max_det).tolist()))
