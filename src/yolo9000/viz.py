"""Pictures: detections drawn on images, anchor clusters (paper Figure 2), k-means curves, PR curves.

Plots are made with ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot global state, no display
needed); predicted boxes are drawn with ``torchvision.utils.draw_bounding_boxes``, ground truth dashed with PIL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps, font_manager
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.io import write_jpeg, write_png
from torchvision.utils import draw_bounding_boxes

__all__ = [
    "class_colors",
    "draw_detections",
    "plot_anchor_clusters",
    "plot_kmeans_curve",
    "plot_pr_curves",
    "save_image",
]


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours (0-255) per class, from matplotlib's tab10/tab20 palettes."""
    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return [tuple(int(255 * v) for v in cmap(i % cmap.N)[:3]) for i in range(num_classes)]  # type: ignore[misc]


def _font() -> str | None:
    """Path of a TrueType font shipped with matplotlib (DejaVu Sans), or None for PIL's default."""
    try:
        return font_manager.findfont("DejaVu Sans", fallback_to_default=True)
    except Exception:  # pragma: no cover - matplotlib always ships DejaVu
        return None


def _clip_boxes(boxes: Tensor, h: int, w: int) -> Tensor:
    """(N, 4) xyxy clipped into the image, with x2 >= x1 and y2 >= y1 (draw_bounding_boxes requires it)."""
    b = boxes.detach().reshape(-1, 4).float().cpu().clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, w - 1)
    b[:, 1::2] = b[:, 1::2].clamp(0, h - 1)
    b[:, 2] = torch.maximum(b[:, 2], b[:, 0])
    b[:, 3] = torch.maximum(b[:, 3], b[:, 1])
    return b


def draw_detections(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor | None,
    class_names: Sequence[str],
    gt_boxes: Tensor | None = None,
    width: int | None = None,
    font_size: int | None = None,
    gt_labels: Tensor | None = None,
) -> Tensor:
    """Draw predicted boxes (solid, coloured per class, captioned "name 0.87" at the top left) and optional ground
    truth (dashed, in its class's colour, its class name small at the bottom left, in the colour on black).

    A missed object is its dashed box with no solid box of the same colour on it; the ground truth's captions sit at
    the other corner from the predictions' and are smaller, so a BCCD image's dozen or more cells stay readable.

    Args:
        image: (3, H, W) uint8 RGB (float in [0, 1] is accepted and converted).
        boxes: (N, 4) xyxy pixel boxes of the predictions.
        labels: (N,) class indices.
        scores: (N,) confidences, or None for captions without a score.
        class_names: names indexed by label.
        gt_boxes: (M, 4) xyxy ground-truth boxes drawn first (under the predictions), dashed, or None.
        gt_labels: (M,) class indices of ``gt_boxes``: each drawn in its class's colour, captioned with its name;
            None: white and uncaptioned.
        width: line width of prediction boxes in pixels; None: 2 per 640 pixels of the image's longer side (2 on a
            VOC / BCCD photo, 12 on a 4000 x 3000 one: readable at the size a viewer shows it).
        font_size: caption font size of the predictions; None: 12 per 640 pixels of the longer side. The ground
            truth's are three quarters of it (9 on a BCCD image), its lines half the predictions' width (at least 1).

    Returns:
        (3, H, W) uint8 image with the drawings (the input is not modified).
    """
    img = image.detach().cpu()
    if img.dtype != torch.uint8:
        img = (img.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(img.shape)}")
    h, w = img.shape[1:]
    scale = max(1, round(max(h, w) / 640))
    width = 2 * scale if width is None else width
    font_size = 12 * scale if font_size is None else font_size
    font = _font()
    palette = class_colors(max(len(class_names), 1))

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    if gt_boxes is not None and gt_boxes.numel() > 0:
        gt = _clip_boxes(gt_boxes, h, w)
        if gt_labels is not None:
            gt_l = gt_labels.detach().reshape(-1).long().cpu().tolist()
            if len(gt_l) != gt.shape[0]:
                raise ValueError(f"{gt.shape[0]} ground-truth boxes but {len(gt_l)} labels")
            gt_colors, gt_names = [palette[c % len(palette)] for c in gt_l], [name(c) for c in gt_l]
        else:
            gt_colors, gt_names = [(255, 255, 255)] * gt.shape[0], None
        img = _draw_dashed_boxes(
            img, gt, gt_colors, gt_names, width=max(1, width // 2), font=font, font_size=max(6, round(0.75 * font_size))
        )
    if boxes.numel() == 0:
        return img
    labels_l = labels.detach().reshape(-1).long().cpu().tolist()
    colors = [palette[c % len(palette)] for c in labels_l]
    names = [name(c) for c in labels_l]
    if scores is not None:
        captions = [
            f"{n} {s:.2f}" for n, s in zip(names, scores.detach().reshape(-1).float().cpu().tolist(), strict=True)
        ]
    else:
        captions = names
    return draw_bounding_boxes(
        img,
        _clip_boxes(boxes, h, w),
        labels=captions,
        colors=colors,
        width=width,
        font=font,
        font_size=font_size if font is not None else None,
        label_colors="black",
        fill_labels=True,
    )


def _dashes(a: float, b: float, dash: float, gap: float) -> list[tuple[float, float]]:
    """The drawn pieces of a dashed line from ``a`` to ``b`` (one coordinate): dashes of ``dash`` pixels with
    ``gap`` between them, the last one ending at ``b`` (a corner is always drawn)."""
    if b - a <= dash:
        return [(a, b)]
    out, t = [], a
    while t < b:
        out.append((t, min(t + dash, b)))
        t += dash + gap
    if out[-1][1] < b:
        out.append((max(b - dash, out[-1][1]), b))
    return out


def _draw_dashed_boxes(
    img: Tensor,
    boxes: Tensor,
    colors: Sequence[tuple[int, int, int]],
    captions: Sequence[str] | None,
    width: int = 1,
    font: str | None = None,
    font_size: int = 9,
) -> Tensor:
    """Dashed outlines (dashes of 4 line widths, at least 4 px, gaps of 3) of ``boxes`` in ``colors``, each
    captioned (``captions``, or none) inside its bottom-left corner in its colour on black.

    Args:
        img: (3, H, W) uint8 RGB.
        boxes: (M, 4) xyxy pixels (clipped to the image).
        colors: M RGB triples; captions: M strings, or None.
    Returns:
        (3, H, W) uint8 copy with the drawings.
    """
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
    draw = ImageDraw.Draw(pil)
    dash, gap = max(4, 4 * width), max(3, 3 * width)
    try:
        pil_font = ImageFont.truetype(font, font_size) if font else ImageFont.load_default()
    except OSError:  # pragma: no cover - matplotlib's DejaVu is a TrueType font
        pil_font = ImageFont.load_default()
    for i, ((x1, y1, x2, y2), color) in enumerate(zip(boxes.tolist(), colors, strict=True)):
        for a, b in _dashes(x1, x2, dash, gap):  # top and bottom edges
            for y in (y1, y2):
                draw.line([(a, y), (b, y)], fill=tuple(color), width=width)
        for a, b in _dashes(y1, y2, dash, gap):  # left and right edges
            for x in (x1, x2):
                draw.line([(x, a), (x, b)], fill=tuple(color), width=width)
        if captions:
            left, top, right, bottom = draw.textbbox((0, 0), captions[i], font=pil_font)
            tx, ty = x1 + width, max(0.0, y2 - width - (bottom - top) - 2)
            draw.rectangle([tx, ty, tx + right - left + 2, ty + bottom - top + 2], fill=(0, 0, 0))
            draw.text((tx + 1 - left, ty + 1 - top), captions[i], fill=tuple(color), font=pil_font)
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)


def save_image(t: Tensor, path: str | Path, jpeg_quality: int = 90) -> Path:
    """Write a (3, H, W) uint8 (or float in [0, 1]) RGB tensor, creating parent directories.

    The format follows the suffix: ``.png`` (lossless) or ``.jpg``/``.jpeg`` (``jpeg_quality``).
    """
    img = t.detach().cpu()
    if img.dtype != torch.uint8:
        img = (img.float().clamp(0, 1) * 255).round().to(torch.uint8)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"unsupported image suffix {path.suffix!r}; use .png, .jpg or .jpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        write_png(img, str(path))
    else:
        write_jpeg(img, str(path), quality=jpeg_quality)
    return path


def _save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")  # no bbox_inches: the size is figsize * dpi exactly
    return path


def plot_anchor_clusters(
    wh: Tensor | np.ndarray,
    anchors: Tensor | np.ndarray,
    path: str | Path,
    assignments: Tensor | np.ndarray | None = None,
    title: str | None = None,
    unit: str | None = None,
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Box shapes and their k-means centroids, after the paper's Figure 2 (right).

    Left: scatter of box (w, h) coloured by cluster, centroids as black crosses. Right: the anchors drawn as
    rectangles sharing one centre, in the unit of ``wh`` (normalised sizes give the paper's picture).

    Args:
        wh: (N, 2) box (w, h).
        anchors: (K, 2) anchor (w, h), same unit.
        path: output PNG.
        assignments: (N,) cluster index per box; by default the anchor of highest shape IoU.
        title: figure title.
        unit: the unit of ``wh`` in the axis labels, "image" for sizes as fractions of the image's width and
            height ("box width (fraction of image width)"); None: no unit named.
        figsize, dpi: output size is ``figsize * dpi`` pixels.
    """
    from yolo9000.anchors import shape_iou

    wh_t = torch.as_tensor(wh).double().reshape(-1, 2)
    an_t = torch.as_tensor(anchors).double().reshape(-1, 2)
    if assignments is None:
        assignments = shape_iou(wh_t, an_t).argmax(dim=1)
    assign = torch.as_tensor(assignments).reshape(-1).numpy()
    palette = np.array(class_colors(an_t.shape[0]), dtype=np.float64) / 255.0
    w, h = wh_t.numpy().T
    fig = Figure(figsize=figsize, dpi=dpi)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(w, h, s=6, c=palette[assign % len(palette)], alpha=0.6, linewidths=0)
    ax1.scatter(an_t[:, 0], an_t[:, 1], marker="x", s=80, c="black", linewidths=2, label="centroids")
    if unit == "image":
        ax1.set_xlabel("box width (fraction of image width)")
        ax1.set_ylabel("box height (fraction of image height)")
    else:
        ax1.set_xlabel("box width" + (f" ({unit})" if unit else ""))
        ax1.set_ylabel("box height" + (f" ({unit})" if unit else ""))
    ax1.legend(loc="upper left")
    ax1.set_title(f"{len(w)} boxes, k = {an_t.shape[0]}")
    extent = float(max(an_t.max(), 1e-9))
    for i, (aw, ah) in enumerate(an_t.tolist()):
        color = palette[i % len(palette)]
        ax2.add_patch(Rectangle((-aw / 2, -ah / 2), aw, ah, fill=False, edgecolor=color, linewidth=2))
    lim = 0.55 * extent
    ax2.set_xlim(-lim, lim)
    ax2.set_ylim(-lim, lim)
    ax2.set_aspect("equal")
    ax2.set_title("anchors (common centre, same scale on both axes)")
    ax2.set_xticks([])
    ax2.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_figure(fig, path)


def _k_iou_pairs(points: Sequence) -> tuple[list[int], list[float]]:
    """Accept (k, avg_iou) pairs or objects with ``.k`` and ``.avg_iou`` (KMeansResult)."""
    ks, ious = [], []
    for p in points:
        k, v = (p.k, p.avg_iou) if hasattr(p, "avg_iou") else p
        ks.append(int(k))
        ious.append(float(v))
    return ks, ious


def plot_kmeans_curve(
    results: Mapping[str, Sequence],
    path: str | Path,
    figsize: tuple[float, float] = (5.0, 4.0),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Average IoU against the number of clusters k, one line per metric (the paper's Figure 2, left).

    Args:
        results: {label: [(k, avg_iou), ...]} (or lists of KMeansResult), e.g. {"iou": ..., "sse": ...}.
        path: output PNG.
        figsize, dpi: output size is ``figsize * dpi`` pixels.
        title: the axes' title (which boxes: data, split, count).
    """
    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.subplots()
    for label, points in results.items():
        ks, ious = _k_iou_pairs(points)
        ax.plot(ks, ious, marker="o", label=label)
    ax.set_xlabel("# clusters (k)")
    ax.set_ylabel("avg IoU of a box with its closest centroid")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save_figure(fig, path)


def pr_classes_shown(has_data: Mapping[str, bool], ap: Mapping[str, float] | None, max_curves: int) -> list[str]:
    """The classes :func:`plot_pr_curves` draws: all of them up to ``max_curves``; beyond (a WordTree head), the
    ``max_curves`` with data (test boxes or detections) of highest ``ap``, in that order."""
    if len(has_data) <= max_curves:
        return list(has_data)
    with_data = [n for n, ok in has_data.items() if ok]
    return sorted(with_data, key=lambda n: -float(np.nan_to_num((ap or {}).get(n, 0.0))))[:max_curves]


def plot_pr_curves(
    pr: Mapping[str, tuple[np.ndarray | Tensor, np.ndarray | Tensor]],
    path: str | Path,
    ap: Mapping[str, float] | None = None,
    figsize: tuple[float, float] = (8.0, 5.0),
    dpi: int = 100,
    max_curves: int = 20,
    title: str | None = None,
) -> Path:
    """Precision-recall curves, one per class; more than ``max_curves`` classes (a WordTree head): the
    ``max_curves`` best (by ``ap``) of those with data, the rest counted in the title.

    Args:
        pr: {class_name: (precision (D,), recall (D,))}, e.g. ``DetectionEvaluator.compute()["pr"]``.
        path: output PNG.
        ap: optional {class_name: AP} shown in the legend.
        figsize, dpi: output size is ``figsize * dpi`` pixels.
        title: what was evaluated (split, input size, mAP; :func:`yolo9000.results.pr_title`), the title's first
            line.
    """
    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.subplots()
    palette = np.array(class_colors(max(len(pr), 1)), dtype=np.float64) / 255.0
    curves = {name: [np.asarray(v, dtype=np.float64).reshape(-1) for v in pr_] for name, pr_ in pr.items()}
    has_data = {n: c[0].size > 0 and not np.isnan(c[1]).all() for n, c in curves.items()}
    shown = pr_classes_shown(has_data, ap, max_curves)
    lines = [title] if title else []
    if len(shown) < len(curves):
        n_data = sum(has_data.values())
        left = n_data - len(shown)
        lines.append(
            f"{len(shown)} of {len(curves)} classes"
            + (f" ({left} more with data)" if left else "")
            + f"; {len(curves) - n_data} without test boxes or detections not drawn"
        )
    if lines:
        ax.set_title("\n".join(lines), fontsize=8)
    colour_of = {name: i for i, name in enumerate(curves)}  # a class keeps its colour whichever are drawn
    for name in shown:
        i = colour_of[name]
        p, r = curves[name]
        label = name if ap is None or name not in ap else f"{name} (AP {ap[name]:.3f})"
        if not has_data[name]:
            ax.plot([], [], color=palette[i], label=f"{label} (no data)")
            continue
        ax.plot(np.concatenate([[0.0], r]), np.concatenate([[p[0]], p]), color=palette[i], label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    # beside the axes, not on them: a weak model's curves run along the bottom, where a legend inside would cover
    # them (lower left hid all three of an epoch-1 BCCD run's)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)
