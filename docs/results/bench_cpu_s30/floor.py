"""The least a batch-1 CPU pipeline can do around the network's forward pass, timed against it (issue 10).

Not part of the library: a measurement record. It asks whether issue 10's last CPU target (end to end at batch 1
>= 0.9 of the bare forward) is within reach of *any* pipeline on this machine. Three calls alternate on the same
decoded 640x480 BCCD photos, the median of each is compared:

* ``forward``: the Detector's network alone (batch norms folded, NHWC), a fixed 256x256 float input, as bench.py;
* ``predict``: ``Detector.predict([image], size=256, conf=0.25)`` (the library, every option it has);
* ``floor``: a hand-written minimum for this one case only: OpenCV's bilinear stretch into a reused buffer, one
  uint8 -> float division, the forward, then a decode of the flat softmax head that knows batch 1, direct location
  and no caps (about 25 tensor operations) and torchvision's ``batched_nms``. It returns the same detections as
  ``predict`` (checked before timing).

Usage: ``python docs/results/bench_cpu_s30/floor.py <checkpoint> [rounds] [repeats]``.
"""

from __future__ import annotations

import glob
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms

from yolo9000 import Detector

SIZE, CONF, IOU = 256, 0.25, 0.45


def main() -> None:
    ckpt = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(2)
    det = Detector.from_checkpoint(ckpt, device="cpu")
    root = Path(__file__).resolve().parents[3]
    files = sorted(glob.glob(str(root / "data/bccd/JPEGImages/*.jpg")))[:8]
    images = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    net, anchors = det.network, det.module.model.anchors.float()
    num_anchors = anchors.shape[0]
    x = torch.rand(1, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    buffer = np.empty((SIZE, SIZE, 3), np.uint8)
    pixels = torch.from_numpy(buffer).permute(2, 0, 1).unsqueeze(0)  # (1, 3, S, S) view of the NHWC buffer

    @torch.no_grad()
    def forward() -> None:
        net(x)

    def predict(image: np.ndarray) -> None:
        det.predict([image], size=SIZE, conf=CONF)

    @torch.no_grad()
    def floor(image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = image.shape[:2]
        cv2.resize(image, (SIZE, SIZE), dst=buffer, interpolation=cv2.INTER_LINEAR)
        raw = net(pixels.float().div_(255).contiguous(memory_format=torch.channels_last))
        _, ch, h, w = raw.shape
        v = raw.view(num_anchors, ch // num_anchors, h * w)  # (A, 5 + C, H * W)
        probs = v[:, 5:].softmax(1).mul_(v[:, 4].sigmoid().unsqueeze(1))  # (A, C, H * W)
        a, c, cell = torch.nonzero(probs > CONF, as_tuple=True)
        scores, t = probs[a, c, cell], v[a, :4, cell]  # (M,), (M, 4)
        cx = (t[:, 0].sigmoid() + cell % w) * (width / w)
        cy = (t[:, 1].sigmoid() + torch.div(cell, w, rounding_mode="floor")) * (height / h)
        bw, bh = t[:, 2].exp() * anchors[a, 0] * (width / w), t[:, 3].exp() * anchors[a, 1] * (height / h)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        keep = batched_nms(boxes, scores, c, IOU)
        boxes = boxes[keep]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        return boxes, scores[keep], c[keep]

    for image in images:  # the same detections, or the floor is not a floor of this pipeline
        ours = det.predict([image], size=SIZE, conf=CONF)[0]
        boxes, scores, labels = floor(image)
        order = scores.argsort(descending=True, stable=True)
        assert len(ours) == len(scores), (len(ours), len(scores))
        torch.testing.assert_close(boxes[order], ours.boxes, atol=1e-3, rtol=1e-4)
        assert torch.equal(labels[order], ours.labels)
    total = sum(len(det.predict([i], size=SIZE, conf=CONF)[0]) for i in images)
    print(f"same detections on {len(images)} photos ({total} boxes)")
    for repeat in range(repeats):
        for k in range(20):
            forward(), predict(images[k % 8]), floor(images[k % 8])
        times: dict[str, list[float]] = {"forward": [], "predict": [], "floor": []}
        for r in range(rounds):
            image = images[r % 8]
            for name, call, args in (
                ("forward", forward, ()),
                ("predict", predict, (image,)),
                ("floor", floor, (image,)),
            ):
                t0 = time.perf_counter()
                call(*args)
                times[name].append(time.perf_counter() - t0)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(
            f"run {repeat + 1}: forward {ms['forward']:.2f} ms | predict {ms['predict']:.2f} ms "
            f"({ms['forward'] / ms['predict']:.3f} of the forward's speed) | floor {ms['floor']:.2f} ms "
            f"({ms['forward'] / ms['floor']:.3f})"
        )


if __name__ == "__main__":
    main()
