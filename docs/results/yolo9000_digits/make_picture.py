"""The README's picture of YOLO9000_digits: held-out test canvases with detected digits that never had a box.

    python docs/results/yolo9000_digits/make_picture.py <run>/checkpoints/<best>.ckpt [out.png]

Detections at score >= 0.2 (obj * P(digit), the run's eval_map) through the predict API; ground truth in white.
Picks the first test canvases where a digit 5-9 is detected with its right name (IoU >= 0.5).
"""

from __future__ import annotations

import sys

import torch
from torchvision.ops import box_iou
from torchvision.utils import make_grid

from yolo9000 import Detector
from yolo9000.data.digits import DigitsParser
from yolo9000.data.image_io import read_image
from yolo9000.data.records import IssueLog
from yolo9000.viz import draw_detections, save_image

UNSEEN = {"5", "6", "7", "8", "9"}


def main(ckpt: str, out: str = "docs/results/yolo9000_digits/unseen.png", n: int = 6) -> None:
    det = Detector.from_checkpoint(ckpt, device="cpu")
    records = DigitsParser("test", 300).parse(None, IssueLog("skip"))
    names = det.module.class_names
    tiles = []
    for rec, res in zip(records, det.predict([r.image_path for r in records], conf=0.2, size=128), strict=True):
        gt = torch.as_tensor(rec.boxes)
        gt_names = [names[int(lab)] for lab in rec.labels]
        if not len(res.boxes):
            continue
        iou = box_iou(res.boxes, gt)  # (N, M)
        hit = any(
            res.names[i] in UNSEEN and res.names[i] == gt_names[int(iou[i].argmax())] and float(iou[i].max()) >= 0.5
            for i in range(len(res.boxes))
        )
        if hit:
            img = torch.from_numpy(read_image(rec.image_path)).permute(2, 0, 1)
            big = torch.nn.functional.interpolate(img[None].float(), scale_factor=2, mode="nearest")[0].byte()
            tiles.append(draw_detections(big, res.boxes * 2, res.labels, res.scores, names, gt_boxes=gt * 2))
        if len(tiles) == n:
            break
    save_image(make_grid(tiles, nrow=3, padding=4, pad_value=255), out)
    print(f"{len(tiles)} canvases -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
