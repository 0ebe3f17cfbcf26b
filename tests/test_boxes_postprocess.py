"""Box decode / IoU / mapping back, and the decode + NMS pipeline, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from yolo9000.boxes import box_iou_cxcywh, cxcywh_to_pixels, decode_boxes, wh_iou
from yolo9000.postprocess import postprocess


def test_decode_direct_hand_computed() -> None:
    xy = torch.full((1, 1, 2, 2, 2), 0.25)
    wh = torch.zeros(1, 1, 2, 2, 2)
    wh[..., 0] = math.log(2.0)
    boxes = decode_boxes(xy, wh, torch.tensor([[1.0, 0.5]]), "direct")
    # cell (i=1, j=0): bx = (1 + .25) / 2, by = (0 + .25) / 2, bw = 2 * 1 / 2, bh = 1 * .5 / 2
    torch.testing.assert_close(boxes[0, 0, 0, 1], torch.tensor([0.625, 0.125, 1.0, 0.25]))
    off = decode_boxes(
        torch.full((1, 1, 2, 2, 2), 0.5), torch.zeros(1, 1, 2, 2, 2), torch.tensor([[2.0, 2.0]]), "offset"
    )
    # offset: bx = (i + .5 + tx * prior) / W = (1 + .5 + 1) / 2
    assert off[0, 0, 0, 1, 0].item() == pytest.approx(1.25)


def test_iou_matches_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(7, 4, generator=g) * 0.5 + 0.1
    b = torch.rand(5, 4, generator=g) * 0.5 + 0.1
    ours = box_iou_cxcywh(a, b)
    ref = box_iou(box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy"))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert wh_iou(torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 4.0]])).item() == pytest.approx(1 / 3)


def test_map_back_to_original_pixels() -> None:
    # letterbox a 200x100 (w x h) image into 64x64: scale .32, pad_y = (64 - 32) / 2 = 16
    t = torch.tensor([[0.32, 0.32, 0.0, 16.0]])
    box = torch.tensor([[[0.5, 0.5, 0.5, 0.25]]])  # net pixels: centre (32, 32), 32 x 16 -> xyxy 16,24,48,40
    out = cxcywh_to_pixels(box, (64, 64), t)
    torch.testing.assert_close(out[0, 0], torch.tensor([50.0, 25.0, 150.0, 75.0]))


def _raw_with_box(num_classes: int = 2) -> torch.Tensor:
    raw = torch.full((1, 2 * (5 + num_classes), 2, 2), -10.0)  # 2 anchors, everything unlikely
    raw[0, 0:4, 0, 0] = 0.0  # anchor 0, cell (0, 0): centre (.25, .25), size prior
    raw[0, 4, 0, 0] = 10.0  # confident
    raw[0, 5, 0, 0] = 10.0  # class 0
    raw[0, 7:11, 0, 0] = 0.0  # anchor 1 same cell: same centre, prior 2 -> different size
    raw[0, 11, 0, 0] = 10.0
    raw[0, 12, 0, 0] = 10.0
    return raw


def test_postprocess_decodes_and_suppresses() -> None:
    anchors = torch.tensor([[1.0, 1.0], [1.1, 1.1]])
    dets = postprocess(_raw_with_box(), anchors, (64, 64), conf_thresh=0.3, nms_thresh=0.45)[0]
    # the two boxes (32 px and 35.2 px squares on the same centre, IoU .826) are one detection after NMS
    assert len(dets["boxes"]) == 1
    torch.testing.assert_close(dets["boxes"][0], torch.tensor([0.0, 0.0, 32.0, 32.0]), atol=1e-3, rtol=0)
    assert dets["labels"].tolist() == [0]
    # different classes are not suppressed against each other (class-aware NMS)
    raw = _raw_with_box()
    raw[0, 12, 0, 0], raw[0, 13, 0, 0] = -10.0, 10.0
    dets = postprocess(raw, anchors, (64, 64), conf_thresh=0.3)[0]
    assert sorted(dets["labels"].tolist()) == [0, 1]
