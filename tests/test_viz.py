"""Tests for the pictures (yolo9000.viz): valid PNGs of the expected size, boxes drawn where they belong."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import ImageReadMode, decode_image

from yolo9000.anchors import anchor_sweep, kmeans_anchors
from yolo9000.viz import (
    draw_detections,
    plot_anchor_clusters,
    plot_kmeans_curve,
    plot_pr_curves,
    save_image,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_draw_detections_changes_pixels_on_outline_only() -> None:
    img = torch.full((3, 120, 160), 40, dtype=torch.uint8)
    boxes = torch.tensor([[40.0, 50.0, 100.0, 100.0]])
    out = draw_detections(img, boxes, torch.tensor([1]), torch.tensor([0.87]), ["RBC", "WBC"])
    assert out.shape == img.shape and out.dtype == torch.uint8
    assert torch.equal(img, torch.full((3, 120, 160), 40, dtype=torch.uint8))  # input untouched
    changed = (out != img).any(dim=0)
    # the outline: left/right edges and the bottom edge are drawn
    assert changed[60:95, 40].all() and changed[60:95, 100].all()
    assert changed[100, 45:95].all()
    # the interior stays untouched (caption sits at the top of the box) and so does everything far away
    assert not changed[75:95, 50:90].any()
    far = changed.clone()
    far[30:110, 30:115] = False  # box, its line width and the caption area above/inside the top-left corner
    assert not far.any()
    # prediction colour differs per class
    out0 = draw_detections(img, boxes, torch.tensor([0]), None, ["RBC", "WBC"])
    assert not torch.equal(out0[:, 75, 40], out[:, 75, 40])


def test_drawings_scale_with_the_image() -> None:
    """Lines and captions grow with the image (2 px / 12 pt per 640 pixels of the longer side): on a 3200 x 2400
    photo a fixed 2 px box edge was too thin to see at a viewer's size; a 640 x 480 one keeps 2 px."""

    def edge_width(h: int, w: int) -> int:
        img = torch.full((3, h, w), 40, dtype=torch.uint8)
        box = torch.tensor([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]])
        out = draw_detections(img, box, torch.tensor([0]), torch.tensor([0.9]), ["a"])
        row = (out != img).any(dim=0)[h // 2]  # across the left and right edges, below the caption
        return int(row[: w // 2].sum())

    assert edge_width(480, 640) == 2 and edge_width(2400, 3200) == 10


def test_draw_detections_gt_white_and_float_input() -> None:
    img = torch.zeros(3, 64, 64)
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    out = draw_detections(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None, ["a"], gt_boxes=gt)
    assert out.dtype == torch.uint8
    assert out[:, 20, 10].tolist() == [255, 255, 255]
    assert out[:, 20, 20].tolist() == [0, 0, 0]
    # boxes partly outside the image are clipped instead of failing
    out2 = draw_detections(out, torch.tensor([[-5.0, 50.0, 80.0, 90.0]]), torch.tensor([0]), torch.tensor([0.5]), ["a"])
    assert (out2 != out).any()


def test_save_image_roundtrip(tmp_path: Path) -> None:
    img = torch.randint(0, 256, (3, 17, 23), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    path = save_image(img, tmp_path / "sub" / "x.png")
    assert _png_size(path) == (23, 17)
    back = decode_image(str(path), mode=ImageReadMode.RGB)
    assert torch.equal(back, img)
    smooth = torch.zeros(3, 16, 24, dtype=torch.uint8)
    smooth[0] = 200
    jpg = save_image(smooth, tmp_path / "x.jpg")
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG SOI marker
    back = decode_image(str(jpg), mode=ImageReadMode.RGB)
    assert back.shape == (3, 16, 24)
    assert (back.int() - smooth.int()).abs().max() <= 8
    with pytest.raises(ValueError, match="suffix"):
        save_image(img, tmp_path / "x.bmp")


def test_plot_anchor_clusters(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    wh = torch.rand(300, 2, generator=g, dtype=torch.float64) * 0.8 + 0.05
    res = kmeans_anchors(wh, 5)
    path = plot_anchor_clusters(wh, res.anchors, tmp_path / "clusters.png", figsize=(8, 4), dpi=50)
    assert _png_size(path) == (400, 200)
    arr = decode_image(str(path)).numpy()
    assert arr.std() > 5  # not a blank image
    path2 = plot_anchor_clusters(wh.numpy(), res.anchors.numpy(), tmp_path / "c2.png", assignments=res.assignments)
    assert _png_size(path2) == (1000, 500)


def test_plot_kmeans_curve(tmp_path: Path) -> None:
    wh = torch.rand(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.05
    iou = anchor_sweep(wh, range(1, 5))
    sse = [(r.k, r.avg_iou) for r in anchor_sweep(wh, range(1, 5), metric="sse")]
    path = plot_kmeans_curve({"IoU": iou, "SSE": sse}, tmp_path / "curve.png", figsize=(5, 4), dpi=80)
    assert _png_size(path) == (400, 320)


@pytest.mark.parametrize("with_ap", [False, True])
def test_plot_pr_curves(tmp_path: Path, with_ap: bool) -> None:
    pr = {
        "RBC": (np.array([1.0, 0.5, 2 / 3]), np.array([1 / 3, 1 / 3, 2 / 3])),
        "WBC": (torch.tensor([1.0, 1.0]), torch.tensor([0.5, 1.0])),
        "Platelets": (np.array([]), np.array([])),
    }
    ap = {"RBC": 0.55, "WBC": 1.0} if with_ap else None
    path = plot_pr_curves(pr, tmp_path / "pr.png", ap=ap, figsize=(6, 5), dpi=50)
    assert _png_size(path) == (300, 250)
