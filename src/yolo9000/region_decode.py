"""darknet's region-layer decode, box for box as darknet computes it (``get_region_detections``), before NMS.

Mirrors pjreddie/darknet (region_layer.c, tree.c, current HEAD):

* ``forward_region_layer`` at inference: logistic on tx, ty and the objectness, softmax on the classes
  (``softmax_tree``: per sibling group with a WordTree; ``softmax=0`` without a tree: logistic);
* ``get_region_box``: bx = (col + sigmoid(tx)) / W, by = (row + sigmoid(ty)) / H, bw = exp(tw) * anchor_w / W,
  bh = exp(th) * anchor_h / H;
* ``get_region_detections``: objectness = sigmoid(to) if above ``thresh`` else 0; class probabilities as
  :func:`region_detections_darknet` says;
* ``hierarchy_predictions`` (only_leaves=0) and ``hierarchy_top_prediction``: :meth:`WordTree.absolute` and
  :meth:`WordTree.top_down`;
* ``correct_region_boxes``: :func:`correct_region_boxes` (letterbox geometry back to the image).

Not mirrored: the ``l.batch == 2`` flipped-image averaging of ``get_region_detections`` (darknet's test-time
flip, off in every cfg), ``background`` and ``mask`` layers (no YOLOv2 cfg uses them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from yolo9000.boxes import decode_boxes, split_region
from yolo9000.models import STRIDE
from yolo9000.wordtree import WordTree

TreeDecode = Literal["darknet", "paper"]


def check_tree_decode(tree_decode: str) -> None:
    """Refuse a ``tree_decode`` that is neither ``darknet`` nor ``paper`` (ValueError naming it)."""
    if tree_decode not in ("darknet", "paper"):
        raise ValueError(f"tree_decode must be 'darknet' or 'paper', got {tree_decode!r}")


def correct_region_boxes(
    boxes: torch.Tensor,
    net_size: tuple[int, int],
    image_size: tuple[int, int] | torch.Tensor,
    relative: bool = True,
) -> torch.Tensor:
    """darknet ``correct_region_boxes``: boxes relative to the letterboxed network input -> relative to the image.

    The image (w, h) was resized into the net (net_w, net_h) keeping its aspect: if ``net_w / w < net_h / h``
    (float32, as darknet) then new_w = net_w, new_h = (h * net_w) // w (C integer division), else new_h = net_h,
    new_w = (w * net_h) // h. Then x = (x - (net_w - new_w) / 2 / net_w) / (new_w / net_w), w *= net_w / new_w
    (y, h alike); with ``relative=False`` x, w are multiplied by the image width and y, h by its height.

    Args:
        boxes: (B, N, 4) (x, y, w, h) centre-size boxes relative to the network input.
        net_size: (net_h, net_w) in pixels.
        image_size: (im_h, im_w) for all images, or a (B, 2) tensor of (im_h, im_w) per image.
    Returns:
        (B, N, 4) boxes in the image (relative, or pixels with ``relative=False``), boxes' dtype.
    """
    net_h, net_w = (int(v) for v in net_size)
    im = torch.as_tensor(image_size, dtype=torch.long).reshape(-1, 2).to(boxes.device)  # (B or 1, 2)
    im_h, im_w = im[:, 0], im[:, 1]
    wide = (net_w / im_w.float()) < (net_h / im_h.float())  # (B,) float32 compare, as darknet
    new_w = torch.where(wide, torch.full_like(im_w, net_w), (im_w * net_h) // im_h)
    new_h = torch.where(wide, (im_h * net_w) // im_w, torch.full_like(im_h, net_h))
    f64 = torch.float64
    new = torch.stack([new_w, new_h], -1).to(f64)  # (B, 2)
    net = torch.tensor([net_w, net_h], dtype=f64, device=boxes.device)
    # darknet: b.x = (b.x - (netw - new_w)/2./netw) / ((float)new_w/netw) in double, stored as float;
    # b.w *= (float)netw/new_w in float
    off = (net - new) / 2.0 / net
    shrink = (new / net).float().to(f64)
    grow = (net / new).float()
    xy = ((boxes[..., :2].to(f64) - off.unsqueeze(1)) / shrink.unsqueeze(1)).to(boxes.dtype)
    wh = (boxes[..., 2:].float() * grow.unsqueeze(1)).to(boxes.dtype)
    out = torch.cat([xy, wh], -1)
    if not relative:
        size = torch.stack([im_w, im_h, im_w, im_h], -1).to(boxes.dtype).unsqueeze(1)  # (B, 1, 4)
        out = out * size
    return out


def as_map(map: Sequence[int] | torch.Tensor | str | Path | None, tree: WordTree) -> torch.Tensor | None:
    """A map (node index per class) as a (K,) LongTensor checked against ``tree``; a path is a darknet map file."""
    if map is None:
        return None
    if isinstance(map, str | Path):
        return tree.read_map(map)
    nodes = torch.as_tensor(map, dtype=torch.long).flatten().cpu()
    bad = torch.nonzero((nodes < 0) | (nodes >= tree.n)).flatten().tolist()
    if bad:
        raise ValueError(f"map entries {bad[:10]} (values {nodes[bad[:10]].tolist()}) out of range 0..{tree.n - 1}")
    return nodes


def region_detections_darknet(
    output: torch.Tensor,
    *,
    anchors: torch.Tensor | Sequence[float],
    num_classes: int,
    thresh: float,
    tree: WordTree | str | Path | None = None,
    tree_thresh: float = 0.5,
    map: Sequence[int] | torch.Tensor | str | Path | None = None,
    net_size: tuple[int, int] | None = None,
    image_size: tuple[int, int] | torch.Tensor | None = None,
    relative: bool = True,
    tree_decode: TreeDecode = "darknet",
    softmax: bool = True,
) -> dict[str, torch.Tensor]:
    """darknet ``get_region_detections`` (+ ``correct_region_boxes``) on a raw head output: every box, no NMS.

    Boxes are in darknet's order: index = anchor * H * W + row * W + col (N = A * H * W).

    Class probabilities ``prob``:

    * no tree (flat softmax): ``objectness * P(class)`` where the box's objectness is nonzero and the product is
      above ``thresh``, else 0 (``softmax=False``, darknet's ``softmax=0``: ``sigmoid`` of each class logit for
      ``P(class)``);
    * a tree with a ``map`` (either ``tree_decode``): class j scores ``sigmoid(to) * P_abs(map[j])`` where above
      ``thresh``, else 0 (P_abs: ``hierarchy_predictions``, absolute probabilities; darknet loops over 200 map
      entries whatever the map's length, here every entry of ``map``);
    * a tree, ``tree_decode="darknet"`` (darknet's code, the default): ``hierarchy_top_prediction`` over the
      *absolute* probabilities (its running product multiplies absolute values again, so it stops higher in the
      tree than the paper's descent), and the node reached scores the objectness alone: ``prob[node] =
      sigmoid(to)`` if above ``thresh``;
    * a tree, ``tree_decode="paper"`` (paper Section 3, this project's :func:`yolo9000.postprocess.tree_candidates`):
      the same descent over *conditional* probabilities (running product = path probability), and the node
      reached scores ``sigmoid(to) * P_abs(node)`` where the objectness and that product are above ``thresh``.

    Args:
        output: (B, A * (5 + C), H, W) raw head output (per anchor tx, ty, tw, th, to, C class logits).
        anchors: (A, 2) priors in grid cells (or darknet's flat ``anchors`` list of 2 A numbers).
        num_classes: C (the tree's node count with a tree).
        thresh: darknet's ``thresh`` (strictly above passes).
        tree: a :class:`WordTree` or a darknet tree file; None = flat softmax.
        tree_thresh: threshold of the top-down descent.
        map: class -> tree node (K,) (sequence, tensor or darknet map file); needs a tree.
        net_size: (net_h, net_w) of the network input; None = 32 x the grid (stride 32).
        image_size: (im_h, im_w) or (B, 2) per image; None = the net size (boxes stay net-relative).
        relative: boxes relative to the image (darknet's relative=1), else image pixels.
        tree_decode: "darknet" or "paper", see above.
        softmax: darknet's ``[region] softmax`` (False: logistic classes; a tree takes its softmax either way).
    Returns:
        dict with ``bbox`` (B, N, 4) centre x, y, w, h; ``objectness`` (B, N) (0 where not above ``thresh``);
        ``prob`` (B, N, C), or (B, N, K) with a map; with a tree and no map also ``node`` (B, N) int64, the node
        each box's descent reached (its only nonzero ``prob`` entry, when there is one).
    """
    check_tree_decode(tree_decode)
    if isinstance(tree, str | Path):
        tree = WordTree.from_file(tree)
    if tree is not None and tree.n != num_classes:
        raise ValueError(f"WordTree has {tree.n} nodes but num_classes is {num_classes}")
    if map is not None and tree is None:
        raise ValueError("map needs a tree (darknet applies a map to WordTree heads only)")
    prior = torch.as_tensor(anchors, dtype=torch.float32).reshape(-1, 2).to(output.device)
    bsz, ch, h, w = output.shape
    if ch != prior.shape[0] * (5 + num_classes):
        raise ValueError(f"head output has {ch} channels, not {prior.shape[0]} anchors x (5 + {num_classes})")
    reg = split_region(output.float(), prior.shape[0])
    boxes = decode_boxes(reg.xy.sigmoid(), reg.wh, prior, "direct").reshape(bsz, -1, 4)  # (B, N, 4)
    net_size = net_size if net_size is not None else (STRIDE * h, STRIDE * w)
    image_size = image_size if image_size is not None else net_size
    bbox = correct_region_boxes(boxes, net_size, image_size, relative)
    scale = reg.obj.sigmoid().reshape(bsz, -1)  # (B, N) darknet's `scale`
    objectness = torch.where(scale > thresh, scale, torch.zeros_like(scale))
    logits = reg.cls.reshape(bsz, -1, num_classes)  # (B, N, C)
    out = {"bbox": bbox, "objectness": objectness}
    if tree is None:
        p = scale.unsqueeze(-1) * (logits.softmax(-1) if softmax else logits.sigmoid())
        keep = (objectness.unsqueeze(-1) != 0) & (p > thresh)
        out["prob"] = torch.where(keep, p, torch.zeros_like(p))
        return out
    out.update(_tree_probs(logits, scale, tree, thresh, tree_thresh, as_map(map, tree), tree_decode))
    return out


def _tree_probs(
    logits: torch.Tensor,
    scale: torch.Tensor,
    tree: WordTree,
    thresh: float,
    tree_thresh: float,
    nodes: torch.Tensor | None,
    tree_decode: TreeDecode,
) -> dict[str, torch.Tensor]:
    """The WordTree branch of :func:`region_detections_darknet`.

    Args:
        logits: (B, N, n) node logits; scale: (B, N) objectness; nodes: (K,) map or None.
    Returns:
        ``prob`` (B, N, K) with a map; else ``prob`` (B, N, n) and ``node`` (B, N).
    """
    bsz, num, n = logits.shape
    cond = tree.softmax(logits.reshape(-1, n))  # (B * N, n) P(node | parent): softmax_tree
    absolute = tree.absolute(cond)  # hierarchy_predictions(only_leaves=0)
    if nodes is not None:
        p = scale.unsqueeze(-1) * absolute.index_select(1, nodes.to(logits.device)).reshape(bsz, num, -1)
        return {"prob": torch.where(p > thresh, p, torch.zeros_like(p))}
    zero = torch.zeros_like(scale)
    if tree_decode == "darknet":
        node = tree.top_down(absolute, tree_thresh).reshape(bsz, num)  # hierarchy_top_prediction(absolute)
        value = torch.where(scale > thresh, scale, zero)
    else:
        node = tree.top_down(cond, tree_thresh).reshape(bsz, num)  # descent by path probability
        p = scale * absolute.gather(1, node.reshape(-1, 1)).reshape(bsz, num)
        value = torch.where((scale > thresh) & (p > thresh), p, zero)
    prob = logits.new_zeros(bsz, num, n).scatter_(-1, node.unsqueeze(-1), value.unsqueeze(-1))
    return {"prob": prob, "node": node}
