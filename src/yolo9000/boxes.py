"""Box maths: the region layout, decode/encode of YOLOv2 boxes, IoU helpers torchvision lacks, mapping back.

Conventions: normalised centre-size boxes (cx, cy, w, h) in [0, 1] of the network input; pixel boxes are xyxy.
Anchors (priors) are (w, h) in grid-cell units (darknet's ``anchors``), stride 32.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import torch

Location = Literal["direct", "offset"]
ClassActivation = Literal["softmax", "logistic"]  # darknet [region] softmax=1 | softmax=0 (independent sigmoids)
CLASS_ACTIVATIONS = ("softmax", "logistic")


def check_class_activation(class_activation: str) -> None:
    """``softmax`` (darknet ``[region] softmax=1``) or ``logistic`` (``softmax=0``); anything else is refused."""
    if class_activation not in CLASS_ACTIVATIONS:
        raise ValueError(f"class_activation must be one of {CLASS_ACTIVATIONS}, got {class_activation!r}")


class Region(NamedTuple):
    """Views of the raw head output, each (B, A, H, W[, k]): raw ``xy`` (k=2), raw ``wh`` (k=2), raw objectness
    ``obj`` and class logits ``cls`` (k=C)."""

    xy: torch.Tensor
    wh: torch.Tensor
    obj: torch.Tensor
    cls: torch.Tensor


def split_region(raw: torch.Tensor, num_anchors: int) -> Region:
    """The one place that reads darknet's region layout.

    Args:
        raw: (B, A * (5 + C), H, W) head output; per anchor a block ``tx, ty, tw, th, to, c_1..c_C``.
    Returns:
        :class:`Region` of channel-last views: xy, wh (B, A, H, W, 2); obj (B, A, H, W); cls (B, A, H, W, C).
    """
    b, ch, h, w = raw.shape
    if ch % num_anchors:
        raise ValueError(f"head output has {ch} channels, not a multiple of {num_anchors} anchors")
    v = raw.view(b, num_anchors, ch // num_anchors, h, w).permute(0, 1, 3, 4, 2)  # (B, A, H, W, 5 + C)
    return Region(v[..., 0:2], v[..., 2:4], v[..., 4], v[..., 5:])


def cell_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(H, W, 2) cell indices (i = column, j = row) as float32 (cached per grid and device: do not modify)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if torch.compiler.is_compiling():  # traced into the graph (the sizes may be symbolic; dynamo skips caches)
        return _grid(h, w, device)
    return _cell_grid(int(h), int(w), device)


@functools.lru_cache(maxsize=64)
def _cell_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # an ordinary tensor even when first asked for under inference mode
        return _grid(h, w, device)


def _grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    j, i = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([i, j], dim=-1)


def activate_xy(raw_xy: torch.Tensor, location: Location) -> torch.Tensor:
    """Raw (..., 2) -> the xy quantity the loss compares: sigmoid (direct, in-cell offset) or identity (offset)."""
    return raw_xy.sigmoid() if location == "direct" else raw_xy


def decode_boxes(
    xy: torch.Tensor,
    raw_wh: torch.Tensor,
    anchors: torch.Tensor,
    location: Location = "direct",
    coord_dim: int = -1,
) -> torch.Tensor:
    """Decode YOLOv2 boxes (paper eq. for b_x, b_y, b_w, b_h; darknet ``get_region_box``).

    direct: bx = (i + sigmoid(tx)) / W, bw = exp(tw) * anchor_w / W.
    offset: bx = (i + 0.5 + tx * anchor_w) / W (RPN-style, unconstrained), bw as direct.

    Args:
        xy: (B, A, H, W, 2) activated xy (:func:`activate_xy`); with ``coord_dim=2`` the head's own plane
            layout (B, A, 2, H, W).
        raw_wh: raw tw, th, shaped as ``xy``.
        anchors: (A, 2) priors in grid-cell units.
        coord_dim: the axis of the coordinates: -1 (channel-last) or 2 (planes).
    Returns:
        (B, A, H, W, 4) normalised (cx, cy, w, h); (B, A, 4, H, W) with ``coord_dim=2``.
    """
    if coord_dim not in (-1, 2):
        raise ValueError(f"coord_dim must be -1 or 2, got {coord_dim}")
    h, w = xy.shape[2:4] if coord_dim == -1 else xy.shape[3:5]
    size = whwh(w, h, xy.dtype, xy.device)
    prior = anchors.to(xy.dtype).view(1, -1, 1, 1, 2)
    grid = cell_grid(h, w, xy.device).to(xy.dtype)
    if coord_dim == 2:  # the same arithmetic with the coordinate axis moved
        size, prior, grid = size.view(4, 1, 1), prior.view(1, -1, 2, 1, 1), grid.permute(2, 0, 1)
    return _decode(xy, raw_wh, grid, prior, size, location, coord_dim)


def decode_boxes_at(
    reg: Region, image: torch.Tensor, box: torch.Tensor, anchors: torch.Tensor, location: Location = "direct"
) -> torch.Tensor:
    """:func:`decode_boxes` of chosen boxes only (the candidates left after a score threshold): the same floats.

    Args:
        reg: :func:`split_region` of the head output (B, A * (5 + C), H, W).
        image: (M,) image index of each box.
        box: (M,) box index into the image's N = A * H * W boxes (anchor-major, then row, then column).
        anchors: (A, 2) priors in grid-cell units.
    Returns:
        (M, 4) normalised (cx, cy, w, h).
    """
    h, w = reg.obj.shape[2:4]
    a, cell = box // (h * w), box % (h * w)
    rows = (image, a, cell)  # into (B, A, H * W, k) views of the planes: no row / column split needed
    xy = activate_xy(reg.xy.flatten(2, 3)[rows], location)  # (M, 2)
    grid = cell_grid(h, w, xy.device).view(-1, 2)[cell]  # (M, 2) column i, row j
    size = whwh(w, h, xy.dtype, xy.device)
    return _decode(xy, reg.wh.flatten(2, 3)[rows], grid, anchors.to(xy)[a], size, location, -1)


def whwh(w: int, h: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(4,) ``(w, h, w, h)`` as a tensor (cached per size, dtype and device: do not modify)."""
    if torch.compiler.is_compiling():  # traced into the graph (the sizes may be symbolic; dynamo skips caches)
        return torch.tensor([w, h, w, h], dtype=dtype, device=device)
    return _sizes_cached(int(w), int(h), dtype, torch.device(device))


@functools.lru_cache(maxsize=64)
def _sizes_cached(w: int, h: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # an ordinary tensor even when first asked for under inference mode
        return torch.tensor([w, h, w, h], dtype=dtype, device=device)


def _decode(
    xy: torch.Tensor,
    raw_wh: torch.Tensor,
    grid: torch.Tensor,
    prior: torch.Tensor,
    size: torch.Tensor,
    location: Location,
    coord_dim: int,
) -> torch.Tensor:
    """The decode arithmetic; ``grid`` (cell i, j), ``prior`` (anchor w, h) and ``size`` (W, H, W, H) broadcast
    against ``xy`` / ``raw_wh``, whose ``coord_dim`` axis holds the coordinates."""
    if torch.compiler.is_compiling():  # the same arithmetic without out= into views (dynamo cannot trace those)
        centre = grid + xy if location == "direct" else (grid + 0.5) + xy * prior
        return torch.cat([centre, raw_wh.exp() * prior], coord_dim) / size
    shape = list(xy.shape)
    shape[coord_dim] = 4
    out = xy.new_empty(shape)  # written in place (no concatenation): the same floats, fewer passes
    centre, wh = out.narrow(coord_dim, 0, 2), out.narrow(coord_dim, 2, 2)
    if location == "direct":
        torch.add(grid, xy, out=centre)
    else:
        torch.add(grid + 0.5, xy * prior, out=centre)
    # exp on a contiguous copy: PyTorch's CPU exp is vectorised only there (3x faster than on the strided planes)
    e = raw_wh.exp() if raw_wh.is_contiguous() else raw_wh.contiguous().exp_()
    torch.mul(e, prior, out=wh)
    return out.div_(size)  # (i + x) / W, exp(tw) * anchor_w / W


def encode_xy(offset_in_cell: torch.Tensor, prior: torch.Tensor, location: Location) -> torch.Tensor:
    """Target for the xy output given the truth centre's offset from the cell corner (in cells, (..., 2))."""
    return offset_in_cell if location == "direct" else (offset_in_cell - 0.5) / prior


def box_iou_cxcywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of centre-size boxes with batch broadcasting, in darknet's arithmetic (``box_iou``).

    Args:
        a: (..., N, 4), b: (..., M, 4) (cx, cy, w, h).
    Returns:
        (..., N, M).
    """
    # (4, ..., N, 1) and (4, ..., 1, M): x and y as contiguous planes, the corners computed once per box
    return _iou_planes(a.movedim(-1, 0).unsqueeze(-1), b.movedim(-1, 0).unsqueeze(-2))


def box_iou_paired(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of centre-size boxes: (..., 4) x (..., 4) -> (...) (:func:`box_iou_cxcywh`'s arithmetic)."""
    return _iou_planes(a.movedim(-1, 0), b.movedim(-1, 0))


def _iou_planes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of centre-size boxes given as coordinate planes (4, ...) (cx, cy, w, h) that broadcast together."""
    (_, _, aw, ah), (_, _, bw, bh) = a.unbind(0), b.unbind(0)
    half_a, half_b = a[2:4] * 0.5, b[2:4] * 0.5  # (2, ...): w / 2 exactly
    (lo_ax, lo_ay), (hi_ax, hi_ay) = (a[0:2] - half_a).unbind(0), (a[0:2] + half_a).unbind(0)
    (lo_bx, lo_by), (hi_bx, hi_by) = (b[0:2] - half_b).unbind(0), (b[0:2] + half_b).unbind(0)
    # the overlaps in x and y apart, the product in place (15 % faster on the loss's (B, A, M, HW) pairs than one
    # overlap over stacked (2, ...) planes); darknet: the intersection is 0 when either overlap is negative
    inter = torch.minimum(hi_ax, hi_bx).sub_(torch.maximum(lo_ax, lo_bx)).clamp_min_(0)
    inter.mul_(torch.minimum(hi_ay, hi_by).sub_(torch.maximum(lo_ay, lo_by)).clamp_min_(0))
    union = aw * ah + bw * bh
    return inter.div_(union.sub_(inter).clamp_min_(1e-12))


def wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """Shape-only IoU of boxes aligned at a common centre (paper's 1 - IoU k-means distance; anchor matching).

    Args:
        wh1: (..., N, 2), wh2: (..., K, 2) widths and heights.
    Returns:
        (..., N, K).
    """
    (aw, ah), (bw, bh) = wh1.unsqueeze(-2).unbind(-1), wh2.unsqueeze(-3).unbind(-1)
    inter = torch.minimum(aw, bw) * torch.minimum(ah, bh)
    return inter / (aw * ah + bw * bh - inter).clamp_min(1e-12)


def cxcywh_to_xyxy_pixels(boxes: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """Normalised (cx, cy, w, h) on the network input -> xyxy pixels of the network input.

    Args:
        boxes: (..., 4) normalised centre-size boxes.
        input_hw: (H, W) of the network input in pixels.
    Returns:
        (..., 4) xyxy in input pixels (the transform maps them back to the image:
        :func:`yolo9000.data.resize.boxes_to_original`).
    """
    h, w = input_hw
    b = boxes * whwh(w, h, boxes.dtype, boxes.device)
    centre, half = b[..., :2], b[..., 2:] * 0.5  # bw / 2 exactly
    return torch.cat([centre - half, centre + half], dim=-1)  # cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
