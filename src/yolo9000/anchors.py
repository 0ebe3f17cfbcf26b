"""Dimension clusters (YOLOv2 paper, Section 2 "Dimension Clusters", Figure 2, Table 1).

YOLOv2 picks its anchor (prior) shapes by running k-means over the (w, h) of the training boxes with the
distance ``d(box, centroid) = 1 - IoU(box, centroid)``, where the IoU only compares shapes: both boxes are
placed at a common centre. Plain Euclidean (SSE) k-means is provided for the paper's comparison.

All box sizes here are positive ``(w, h)`` pairs in any consistent unit (usually normalised to [0, 1] by the
image size); :func:`to_grid_units` converts normalised anchors into darknet's grid-cell units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from yolo9000.boxes import wh_iou

__all__ = [
    "HANDPICKED_RATIOS",
    "HANDPICKED_SCALES",
    "KMeansResult",
    "Priors",
    "anchor_sweep",
    "avg_iou",
    "distinct_shapes",
    "format_anchors",
    "handpicked_anchors",
    "kmeans_anchors",
    "resolve_priors",
    "shape_iou",
    "to_grid_units",
]

Metric = Literal["iou", "sse"]
Init = Literal["kmeans++", "random"]


@dataclass
class KMeansResult:
    """Outcome of one k-means clustering of box shapes.

    Attributes:
        anchors: (k, 2) centroid (w, h), sorted by area (ascending), in the unit of the input.
        avg_iou: mean over boxes of the best shape IoU with any anchor (the paper's "Avg IOU").
        assignments: (N,) long, index into ``anchors`` of each box's cluster (nearest under ``metric``).
        k: number of clusters.
        metric: "iou" (distance 1 - IoU) or "sse" (squared Euclidean distance).
        objective: the quantity the run minimised: mean (1 - IoU) for "iou", sum of squared errors for "sse".
        n_iter: Lloyd iterations of the winning restart.
    """

    anchors: Tensor
    avg_iou: float
    assignments: Tensor
    k: int
    metric: str
    objective: float
    n_iter: int


def _as_wh(wh: Tensor | np.ndarray) -> Tensor:
    """Validate box sizes and return them as a float64 (N, 2) tensor on the CPU."""
    t = torch.as_tensor(wh).detach().to("cpu", torch.float64)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"expected box sizes of shape (N, 2), got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("no boxes given")
    if not torch.isfinite(t).all():
        raise ValueError("box sizes must be finite")
    if (t <= 0).any():
        n_bad = int((t <= 0).any(dim=1).sum())
        raise ValueError(f"{n_bad} box(es) have zero or negative width/height; drop them before clustering")
    return t


def shape_iou(wh: Tensor, centroids: Tensor) -> Tensor:
    """Shape-only IoU of every box (N, 2) with every centroid (K, 2), both at a common centre -> (N, K).

    The box maths lives in :func:`yolo9000.boxes.wh_iou`; this adds the dtype/device alignment k-means needs.
    """
    return wh_iou(wh, centroids.to(wh))


def _distance(wh: Tensor, centroids: Tensor, metric: Metric) -> Tensor:
    """(N, K) k-means distance: 1 - shape IoU, or squared Euclidean distance in (w, h)."""
    if metric == "iou":
        return 1.0 - shape_iou(wh, centroids)
    return torch.cdist(wh, centroids.to(wh)).square()


def _objective(dist: Tensor, metric: Metric) -> float:
    """Objective of the nearest-centroid assignment of (N, K) distances (lower is better)."""
    best = dist.min(dim=1).values
    return float(best.mean() if metric == "iou" else best.sum())


def _init_centroids(uniq: Tensor, k: int, metric: Metric, init: Init, gen: torch.Generator) -> Tensor:
    """Pick k distinct initial centroids among the (U, 2) distinct box shapes."""
    if init == "random":
        return uniq[torch.randperm(uniq.shape[0], generator=gen)[:k]].clone()
    if init != "kmeans++":
        raise ValueError(f"unknown init {init!r}; expected 'kmeans++', 'random' or a (k, 2) tensor")
    first = int(torch.randint(uniq.shape[0], (1,), generator=gen))
    centroids = uniq[first : first + 1].clone()
    nearest = _distance(uniq, centroids, metric)[:, 0]
    for _ in range(1, k):  # loop over clusters, each step vectorised over boxes
        weights = nearest.clamp_min(0).square()
        if float(weights.sum()) <= 0:  # cannot happen for distinct shapes, guard anyway
            weights = torch.ones_like(weights)
        nxt = int(torch.multinomial(weights, 1, generator=gen))
        centroids = torch.cat([centroids, uniq[nxt : nxt + 1]])
        nearest = torch.minimum(nearest, _distance(uniq, uniq[nxt : nxt + 1], metric)[:, 0])
    return centroids


def _update(wh: Tensor, assign: Tensor, centroids: Tensor, update: Literal["mean", "median"]) -> Tensor:
    """New (k, 2) centroids from the assignment; empty clusters keep their old centroid (fixed later)."""
    k = centroids.shape[0]
    counts = torch.bincount(assign, minlength=k)
    if update == "mean":
        sums = torch.zeros_like(centroids).index_add_(0, assign, wh)
        new = sums / counts.clamp_min(1)[:, None].to(wh)
    else:
        new = centroids.clone()
        for j in torch.nonzero(counts).flatten().tolist():  # loop over clusters, not boxes
            new[j] = wh[assign == j].median(dim=0).values
    return torch.where((counts > 0)[:, None], new, centroids)


def _lloyd(
    wh: Tensor,
    centroids: Tensor,
    metric: Metric,
    max_iter: int,
    update: Literal["mean", "median"],
) -> tuple[Tensor, float, int]:
    """Lloyd iterations; returns the best centroids seen (by objective), that objective and the iterations."""
    dist = _distance(wh, centroids, metric)
    assign = dist.argmin(dim=1)
    best, best_obj = centroids.clone(), _objective(dist, metric)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        centroids = _update(wh, assign, centroids, update)
        dist = _distance(wh, centroids, metric)
        new_assign = dist.argmin(dim=1)
        # Re-seed empty clusters with the box farthest from its centroid (keeps exactly k clusters).
        counts = torch.bincount(new_assign, minlength=centroids.shape[0])
        for j in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.gather(1, new_assign[:, None]).squeeze(1).argmax())
            centroids[j] = wh[far]
            dist = _distance(wh, centroids, metric)
            new_assign = dist.argmin(dim=1)
        obj = _objective(dist, metric)
        if obj < best_obj:
            best, best_obj = centroids.clone(), obj
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return best, best_obj, n_iter


def kmeans_anchors(
    wh: Tensor | np.ndarray,
    k: int,
    metric: Metric = "iou",
    seed: int = 0,
    max_iter: int = 300,
    init: Init | Tensor = "kmeans++",
    update: Literal["mean", "median"] = "mean",
    restarts: int = 1,
    max_boxes: int | None = None,
) -> KMeansResult:
    """Cluster box shapes into ``k`` anchors.

    Lloyd's algorithm with the paper's distance ``1 - IoU`` (``metric="iou"``) or squared Euclidean distance
    (``metric="sse"``). The update step takes the mean of the cluster's (w, h) as darknet and the paper do
    (``update="median"`` is an option for the IoU metric). Iteration stops when assignments stop changing or
    after ``max_iter`` steps; the best centroids seen under the run's own objective are kept. With
    ``restarts > 1`` the best of several initialisations (by that objective) is returned.

    Args:
        wh: (N, 2) positive box (w, h).
        k: number of anchors, 1 <= k <= number of distinct box shapes.
        metric: "iou" or "sse".
        seed: seed of the torch generator used for initialisation (results are deterministic for a seed).
        max_iter: maximum Lloyd iterations per restart.
        init: "kmeans++" (D² sampling under ``metric``), "random" (k distinct boxes), or a (k, 2) tensor of
            initial centroids (used for the first restart only; later restarts use "kmeans++").
        update: "mean" (paper/darknet) or "median".
        restarts: number of initialisations.
        max_boxes: more boxes than this (COCO's 860k: ~100 s of restarts on 2 cores): the restarts cluster a
            sample of ``max_boxes`` of them (drawn with ``seed``), and Lloyd's iterations on all the boxes refine
            the best; None: every restart on all the boxes.

    Returns:
        :class:`KMeansResult`: anchors (k, 2) sorted by area, assignments (N,) consistent with that order.

    Raises:
        ValueError: bad shapes, zero/negative/non-finite sizes, k outside [1, distinct shapes], bad options.
    """
    boxes = _as_wh(wh)
    if metric not in ("iou", "sse"):
        raise ValueError(f"unknown metric {metric!r}; expected 'iou' or 'sse'")
    if update not in ("mean", "median"):
        raise ValueError(f"unknown update {update!r}; expected 'mean' or 'median'")
    if restarts < 1 or max_iter < 1:
        raise ValueError("restarts and max_iter must be >= 1")
    if max_boxes is not None and boxes.shape[0] > max_boxes >= k:  # the restarts on a sample, refined on all
        pick = torch.randperm(boxes.shape[0], generator=torch.Generator().manual_seed(seed))[:max_boxes]
        sample = kmeans_anchors(boxes[pick], k, metric, seed, max_iter, init, update, restarts)
        return kmeans_anchors(boxes, k, metric, seed, max_iter, sample.anchors, update, 1)
    uniq = torch.unique(boxes, dim=0)
    if not 1 <= k <= uniq.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of distinct box shapes ({uniq.shape[0]})")
    gen = torch.Generator().manual_seed(seed)

    best: tuple[Tensor, float, int] | None = None
    for r in range(restarts):
        if isinstance(init, Tensor) or isinstance(init, np.ndarray):
            if r == 0:
                start = torch.as_tensor(init).to(torch.float64).clone()
                if start.shape != (k, 2) or (start <= 0).any():
                    raise ValueError(f"initial centroids must be a positive ({k}, 2) tensor")
            else:
                start = _init_centroids(uniq, k, metric, "kmeans++", gen)
        else:
            start = _init_centroids(uniq, k, metric, init, gen)
        run = _lloyd(boxes, start, metric, max_iter, update)
        if best is None or run[1] < best[1]:
            best = run
    assert best is not None
    centroids, obj, n_iter = best
    centroids = centroids[torch.argsort(centroids[:, 0] * centroids[:, 1], stable=True)]
    assignments = _distance(boxes, centroids, metric).argmin(dim=1)
    return KMeansResult(
        anchors=centroids,
        avg_iou=avg_iou(boxes, centroids),
        assignments=assignments,
        k=k,
        metric=metric,
        objective=obj,
        n_iter=n_iter,
    )


def avg_iou(wh: Tensor | np.ndarray, anchors: Tensor | np.ndarray) -> float:
    """Mean over boxes of the best shape IoU with any anchor.

    Args:
        wh: (N, 2) positive box (w, h).
        anchors: (K, 2) anchor (w, h) in the same unit.

    Returns:
        The average IoU in [0, 1].
    """
    boxes = _as_wh(wh)
    return float(shape_iou(boxes, torch.as_tensor(anchors).to(boxes)).max(dim=1).values.mean())


def anchor_sweep(
    wh: Tensor | np.ndarray,
    ks: Iterable[int] = range(1, 10),
    metric: Metric = "iou",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    **kwargs: object,
) -> list[KMeansResult]:
    """Run :func:`kmeans_anchors` for every k in ``ks`` (data for the paper's Figure 2, left).

    With ``warm_start`` (and ks increasing by one), each k gets one extra candidate initialisation made of the
    previous k's anchors plus one kmeans++ pick; since the best iterate is kept, the IoU metric's average IoU
    is then non-decreasing in k.

    Args:
        wh: (N, 2) positive box (w, h).
        ks: cluster counts to try.
        metric: "iou" or "sse".
        seed: base seed (k-th run uses ``seed + k``).
        restarts: random restarts per k.
        warm_start: also try the previous solution plus one centroid as an initialisation.
        **kwargs: forwarded to :func:`kmeans_anchors` (``max_iter``, ``init``, ``update``).

    Returns:
        One :class:`KMeansResult` per k, in the order of ``ks``.
    """
    boxes = _as_wh(wh)
    uniq = torch.unique(boxes, dim=0)
    results: list[KMeansResult] = []
    for k in ks:
        res = kmeans_anchors(boxes, k, metric=metric, seed=seed + k, restarts=restarts, **kwargs)  # type: ignore[arg-type]
        prev = results[-1] if results else None
        if warm_start and prev is not None and prev.k == k - 1:
            gen = torch.Generator().manual_seed(seed + 1000 + k)
            nearest = _distance(uniq, prev.anchors, metric).min(dim=1).values.clamp_min(0).square()
            if float(nearest.sum()) > 0:
                nxt = int(torch.multinomial(nearest, 1, generator=gen))
                start = torch.cat([prev.anchors, uniq[nxt : nxt + 1]])
                opts = {key: v for key, v in kwargs.items() if key != "init"}
                warm = kmeans_anchors(boxes, k, metric=metric, init=start, **opts)  # type: ignore[arg-type]
                if warm.objective < res.objective:
                    res = warm
        results.append(res)
    return results


def output_grid(height: int, width: int, stride: int = 32) -> int | tuple[int, int]:
    """The anchors' unit for an input of ``height`` x ``width``: the output grid's side (square), else its
    (grid_w, grid_h) (the ``grid`` of :func:`to_grid_units` and :func:`resolve_priors`)."""
    return height // stride if height == width else (width // stride, height // stride)


def to_grid_units(anchors_normalised: Tensor, grid: int | tuple[int, int]) -> Tensor:
    """Convert anchors normalised to the image size into darknet's grid-cell units.

    Args:
        anchors_normalised: (K, 2) (w, h) as fractions of the network input.
        grid: output grid size (13 for a 416 input), or (grid_w, grid_h).

    Returns:
        (K, 2) anchors in cells: w · grid_w, h · grid_h.
    """
    gw, gh = (grid, grid) if isinstance(grid, int) else grid
    return anchors_normalised * torch.tensor([gw, gh], dtype=anchors_normalised.dtype)


def format_anchors(anchors: Tensor | np.ndarray, decimals: int = 2) -> str:
    """Format (K, 2) anchors darknet-style, e.g. ``"1.32,1.73, 3.19,4.01"``, ready to paste into a config."""
    a = torch.as_tensor(anchors).reshape(-1, 2).tolist()
    return ", ".join(f"{w:.{decimals}f},{h:.{decimals}f}" for w, h in a)


# Faster R-CNN's 9 hand-picked anchors (the paper's Table 1 "Anchor Boxes [15]"): box sides of 128, 256 and 512
# pixels on a ~600-pixel image, as fractions of the input side, times aspect ratios h:w of 1:2, 1:1 and 2:1.
HANDPICKED_SCALES = (128 / 600, 256 / 600, 512 / 600)
HANDPICKED_RATIOS = (0.5, 1.0, 2.0)


def handpicked_anchors(grid: int | tuple[int, int]) -> list[list[float]]:
    """The 9 hand-picked anchors (3 scales x 3 aspect ratios, equal area per scale) in grid-cell units of a
    ``grid`` x ``grid`` output (input size / stride; or (grid_w, grid_h): fractions of each side, as
    :func:`to_grid_units`), ``[w, h]`` pairs, scale-major."""
    s = torch.tensor(HANDPICKED_SCALES, dtype=torch.float64)[:, None]  # (3, 1)
    r = torch.tensor(HANDPICKED_RATIOS, dtype=torch.float64)[None, :]  # (1, 3) h / w
    wh = to_grid_units(torch.stack([s / r.sqrt(), s * r.sqrt()], dim=-1).reshape(-1, 2), grid)  # (9, 2)
    return [[round(float(w), 4), round(float(h), 4)] for w, h in wh.tolist()]


@dataclass(frozen=True)
class Priors:
    """Resolved dimension priors.

    Attributes:
        anchors: (A, 2) ``[w, h]`` in grid-cell units, or None (no anchors: YOLOv1-style predictors).
        avg_iou: their average shape IoU with the training boxes (Table 1's measure); None without anchors or
            boxes.
        source: ``list`` | ``kmeans`` | ``handpicked`` | ``none``.
    """

    anchors: list[list[float]] | None
    avg_iou: float | None
    source: str


def distinct_shapes(box_wh: Tensor) -> int:
    """How many different (w, h) shapes the (N, 2) boxes hold: k-means' largest ``k``."""
    return int(torch.unique(_as_wh(box_wh), dim=0).shape[0]) if len(box_wh) else 0


def resolve_priors(
    spec: str | Iterable[Iterable[float]] | None,
    box_wh: Tensor | np.ndarray,
    grid: int | tuple[int, int],
    k: int = 5,
    metric: Metric = "iou",
    seed: int = 0,
    restarts: int = 5,
    max_boxes: int | None = None,
    k_key: str = "model.priors.k",
) -> Priors:
    """The one place a prior spec becomes anchors.

    Args:
        spec: a list of ``[w, h]`` in grid cells (kept), None (no anchors), ``"kmeans"`` (k-means on ``box_wh``
            with ``k`` clusters and ``metric``: ``iou`` = the paper's 1 - IoU, ``sse`` = Euclidean, Table 1's
            comparison) or ``"handpicked"`` (:func:`handpicked_anchors`).
        box_wh: (N, 2) training box sizes normalised by their image size.
        grid: output grid side (input size / stride), or (grid_w, grid_h) of a rectangular input: the unit of
            the anchors (a box's normalised width in cells of the grid's width, its height in those of its height;
            the shape IoU of k-means is the same in either unit).
        k, metric, seed, restarts, max_boxes: k-means settings (:func:`kmeans_anchors`).
        k_key: the config key of ``k``, named when it exceeds the distinct box shapes.
    """
    wh = _as_wh(box_wh) if len(box_wh) else torch.zeros(0, 2, dtype=torch.float64)
    if spec is None:
        return Priors(None, None, "none")
    if isinstance(spec, str):
        if spec == "kmeans":
            if not len(wh):
                raise ValueError("anchors=kmeans needs training boxes, the training split has none")
            distinct = distinct_shapes(wh)
            if not 1 <= int(k) <= distinct:
                raise ValueError(
                    f"{k_key}={k}: k-means needs 1 <= k <= the {distinct} distinct box shapes of the "
                    f"training split ({len(wh)} boxes); set a smaller {k_key} (or train on more images)"
                )
            res = kmeans_anchors(wh, int(k), metric=metric, seed=int(seed), restarts=restarts, max_boxes=max_boxes)
            anchors = [[round(float(a), 4), round(float(b), 4)] for a, b in to_grid_units(res.anchors, grid).tolist()]
            source = "kmeans"
        elif spec == "handpicked":
            anchors, source = handpicked_anchors(grid), "handpicked"
        else:
            raise ValueError(
                f"model.priors.anchors must be a list of [w, h], null, 'kmeans' or 'handpicked', got {spec!r}"
            )
    else:
        anchors = [[float(a), float(b)] for a, b in spec]
        source = "list"
    cells = torch.tensor(anchors, dtype=torch.float64).reshape(-1, 2)
    iou = round(avg_iou(wh, cells / to_grid_units(torch.ones(2, dtype=torch.float64), grid)), 6) if len(wh) else None
    return Priors(anchors, iou, source)
