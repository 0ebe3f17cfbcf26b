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
    class_colors,
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


def test_ground_truth_dashed_in_its_class_colour_and_named_predictions_solid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ground truth was drawn 1 px white without a name: which class a picture missed could not be read. Now each
    truth box is dashed in its class's colour with its class name (small: three quarters of the predictions'
    caption size, half their line width), the predictions solid with "name score"."""
    import yolo9000.viz as viz

    solid: list[dict] = []
    dashed: list[dict] = []
    real_solid, real_dashed = viz.draw_bounding_boxes, viz._draw_dashed_boxes

    def record_solid(img: torch.Tensor, boxes: torch.Tensor, **kw: object) -> torch.Tensor:
        solid.append({"boxes": boxes.tolist(), **kw})
        return real_solid(img, boxes, **kw)

    def record_dashed(img: torch.Tensor, boxes: torch.Tensor, colors: list, captions: list | None, **kw: object):
        dashed.append({"boxes": boxes.tolist(), "colors": colors, "captions": captions, **kw})
        return real_dashed(img, boxes, colors, captions, **kw)

    monkeypatch.setattr(viz, "draw_bounding_boxes", record_solid)
    monkeypatch.setattr(viz, "_draw_dashed_boxes", record_dashed)
    img = torch.full((3, 480, 640), 40, dtype=torch.uint8)  # a BCCD image's size
    names = ["RBC", "WBC", "Platelets"]
    gt = torch.tensor([[10.0, 10.0, 100.0, 90.0], [200.0, 150.0, 330.0, 300.0], [400.0, 40.0, 440.0, 80.0]])
    pred = torch.tensor([[205.0, 155.0, 325.0, 290.0]])
    gt_labels = torch.tensor([0, 1, 2])
    draw_detections(img, pred, torch.tensor([1]), torch.tensor([0.87]), names, gt_boxes=gt, gt_labels=gt_labels)
    palette = class_colors(3)
    ((truth,), (preds,)) = dashed, solid  # no white solid call for the truth any more
    assert truth["boxes"] == gt.tolist() and truth["colors"] == palette
    assert truth["captions"] == ["RBC", "WBC", "Platelets"]
    assert truth["width"] == 1 and truth["font_size"] == 9  # predictions: 2 px, 12 pt
    assert preds["boxes"] == pred.tolist() and preds["labels"] == ["WBC 0.87"] and preds["colors"] == [palette[1]]
    assert preds["width"] == 2 and preds["font_size"] == 12
    # 20+ cells: one dashed call, every box captioned with its own class
    many = torch.tensor([[20.0 * i, 10.0, 20.0 * i + 18, 40.0] for i in range(24)])
    draw_detections(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None, names, gt_boxes=many,
                    gt_labels=torch.arange(24) % 3)  # fmt: skip
    assert dashed[-1]["captions"] == ["RBC", "WBC", "Platelets"] * 8 and len(solid) == 1
    # no labels given (the digits picture): white, uncaptioned, still dashed
    draw_detections(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None, names, gt_boxes=gt[:1])
    assert dashed[-1]["colors"] == [(255, 255, 255)] and dashed[-1]["captions"] is None
    with pytest.raises(ValueError, match="3 ground-truth boxes but 2 labels"):
        draw_detections(img, pred, torch.tensor([1]), None, names, gt_boxes=gt, gt_labels=torch.tensor([0, 1]))


def test_ground_truth_outline_is_dashed_with_its_name_inside_and_float_input() -> None:
    """The drawn truth: its edges alternate dash and gap (corners drawn), its name's caption sits inside the box's
    bottom-left corner in the class's colour, the interior elsewhere is untouched."""
    from yolo9000.viz import _dashes

    assert _dashes(0.0, 20.0, 4, 3) == [(0.0, 4.0), (7.0, 11.0), (14.0, 18.0), (18.0, 20.0)]
    assert _dashes(0.0, 3.0, 4, 3) == [(0.0, 3.0)]
    img = torch.zeros(3, 96, 128)
    gt = torch.tensor([[10.0, 10.0, 110.0, 80.0]])
    out = draw_detections(img, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None, ["a", "b"],
                          gt_boxes=gt, gt_labels=torch.tensor([1]))  # fmt: skip
    assert out.dtype == torch.uint8
    orange = torch.tensor(class_colors(2)[1], dtype=torch.uint8)
    top = out[:, 10, 10:111].T  # the top edge's pixels
    on = (top == orange).all(dim=1)
    assert on[:5].all() and not on[5:7].any() and on[7:12].all() and on[-1]  # dash, gap, dash ... corner
    assert (out[:, 12:60, 40:100] == 0).all()  # inside, away from the caption: untouched
    caption = out[:, 60:80, 11:40].int()  # the name "b" (antialiased): near the class's colour at its strongest
    assert ((caption - orange.int()[:, None, None]).abs() <= 30).all(dim=0).any()
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
