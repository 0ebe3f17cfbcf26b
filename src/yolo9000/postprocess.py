"""From raw head output to detections: decode, confidence threshold, class-aware NMS (torchvision), map back."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from yolo9000.boxes import Location, activate_xy, cxcywh_to_pixels, decode_boxes, split_region
from yolo9000.wordtree import WordTree


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
    max_det: int = 300,
    tree: WordTree | None = None,
    tree_thresh: float = 0.5,
) -> list[dict[str, torch.Tensor]]:
    """darknet's ``get_region_boxes`` + ``do_nms_sort``: every (box, class) pair whose score
    ``sigmoid(to) * P(class)`` exceeds ``conf_thresh`` is a candidate; NMS runs per class.

    With a WordTree each box gets one label, darknet's top-down decode (``tree_thresh``), scored with its
    absolute path probability.

    Args:
        raw: (B, A * (5 + C), H, W) raw head output.
        anchors: (A, 2) priors, grid-cell units.
        input_hw: (height, width) of the network input in pixels.
        transforms: (B, 4) ``(scale_x, scale_y, pad_x, pad_y)`` of the eval transform; None = identity.
        orig_sizes: (B, 2) original (h, w) to clip boxes to; None = no clipping.
    Returns:
        per image a dict with ``boxes`` (N, 4) xyxy in original pixels, ``scores`` (N,), ``labels`` (N,).
    """
    reg = split_region(raw.float(), anchors.shape[0])
    bsz = raw.shape[0]
    boxes = decode_boxes(activate_xy(reg.xy, location), reg.wh, anchors.to(raw.device), location)
    if transforms is None:
        transforms = raw.new_tensor([1.0, 1.0, 0.0, 0.0]).expand(bsz, 4)
    boxes = cxcywh_to_pixels(boxes.reshape(bsz, -1, 4), input_hw, transforms)  # (B, N, 4)
    if orig_sizes is not None:
        hw = orig_sizes.to(boxes.device, boxes.dtype)
        limit = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], -1).unsqueeze(1)
        boxes = torch.minimum(boxes.clamp_min(0), limit)
    obj = reg.obj.sigmoid().reshape(bsz, -1)  # (B, N)
    logits = reg.cls.reshape(bsz, obj.shape[1], -1)  # (B, N, C)
    if tree is None:
        scores = obj.unsqueeze(-1) * logits.softmax(-1)  # (B, N, C)
        b_idx, n_idx, c_idx = torch.nonzero(scores > conf_thresh, as_tuple=True)
        s = scores[b_idx, n_idx, c_idx]
    else:
        cond = tree.softmax(logits)
        keep = obj > conf_thresh
        b_idx, n_idx = torch.nonzero(keep, as_tuple=True)
        c_idx = tree.top_down(cond[b_idx, n_idx], tree_thresh)
        s = obj[b_idx, n_idx] * tree.absolute(cond[b_idx, n_idx]).gather(1, c_idx.unsqueeze(1)).squeeze(1)
        ok = s > conf_thresh
        b_idx, n_idx, c_idx, s = b_idx[ok], n_idx[ok], c_idx[ok], s[ok]
    cand = boxes[b_idx, n_idx]
    num_classes = logits.shape[-1]
    keep = batched_nms(cand, s, b_idx * num_classes + c_idx, nms_thresh)  # sorted by score
    out = []
    for i in range(bsz):  # split per image (the NMS above ran once for the whole batch)
        k = keep[b_idx[keep] == i][:max_det]
        out.append({"boxes": cand[k], "scores": s[k], "labels": c_idx[k]})
    return out
