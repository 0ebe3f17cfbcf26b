"""Why the batch-1 pipeline around the forward pass costs more than its parts timed alone (issue 10), session 31.

Not part of the library: a measurement record. On the default model's trained checkpoint and one decoded BCCD photo
at 256, it times the decode + NMS of one stored head output three ways, each alone (in a loop) and right after
something else ran:

* ``predict_raw``: the library's decode + NMS (``DetectorModule.predict_raw``, every option it has);
* ``torch floor``: the least the default head needs in torch (session 30's ``floor.py`` decode, ``batched_nms``);
* ``numpy floor``: the same in numpy, torchvision's ``nms`` on the result (same detections, checked).

Before each timed call: nothing, the network's forward pass, a 9 ms sleep, or 9 ms of busy Python.

Usage: ``python docs/results/bench_cpu_s31/after_forward.py <checkpoint> [calls]``.
"""

from __future__ import annotations

import glob
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms, nms

from yolo9000 import Detector
from yolo9000.api import _IndexedImages

SIZE, CONF, IOU = 256, 0.25, 0.45


def main() -> None:
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    det = Detector.from_checkpoint(sys.argv[1], device="cpu")
    root = Path(__file__).resolve().parents[3]
    image = cv2.cvtColor(cv2.imread(sorted(glob.glob(str(root / "data/bccd/JPEGImages/*.jpg")))[0]), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    batch = det._read(_IndexedImages([image], (SIZE, SIZE), transform=det._transforms[False]), range(1))
    raw = det._forward(batch["images"]).clone()  # (1, A * (5 + C), 8, 8)
    anchors = det.module.model.anchors.float()
    num_anchors, anchors_np = anchors.shape[0], anchors.numpy()
    _, ch, h, w = raw.shape

    def library() -> None:
        det.module.predict_raw(raw, (SIZE, SIZE), batch["transforms"], batch["orig_sizes"], CONF, None, None)

    def torch_floor() -> tuple[torch.Tensor, torch.Tensor]:
        v = raw.view(num_anchors, ch // num_anchors, h * w)  # (A, 5 + C, H * W)
        probs = v[:, 5:].softmax(1).mul_(v[:, 4].sigmoid().unsqueeze(1))  # (A, C, H * W)
        a, c, cell = torch.nonzero(probs > CONF, as_tuple=True)
        scores, t = probs[a, c, cell], v[a, :4, cell]  # (M,), (M, 4)
        cx = (t[:, 0].sigmoid() + cell % w) * (width / w)
        cy = (t[:, 1].sigmoid() + torch.div(cell, w, rounding_mode="floor")) * (height / h)
        bw, bh = t[:, 2].exp() * anchors[a, 0] * (width / w), t[:, 3].exp() * anchors[a, 1] * (height / h)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        keep = batched_nms(boxes, scores, c, IOU)
        return boxes[keep], scores[keep]

    def numpy_floor() -> tuple[np.ndarray, np.ndarray]:
        v = raw.numpy().reshape(num_anchors, ch // num_anchors, h * w)
        e = np.exp(v[:, 5:] - v[:, 5:].max(1, keepdims=True))
        probs = e / (e.sum(1, keepdims=True) * (1 + np.exp(-v[:, 4:5])))  # (A, C, H * W)
        a, c, cell = np.nonzero(probs > CONF)
        scores = probs[a, c, cell]
        order = np.argsort(-scores, kind="stable")
        a, c, cell, scores = a[order], c[order], cell[order], scores[order]
        t = v[a, :4, cell]
        cx = (1 / (1 + np.exp(-t[:, 0])) + cell % w) * (width / w)
        cy = (1 / (1 + np.exp(-t[:, 1])) + cell // w) * (height / h)
        bw = np.exp(t[:, 2]) * anchors_np[a, 0] * (width / w)
        bh = np.exp(t[:, 3]) * anchors_np[a, 1] * (height / h)
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
        shifted = boxes + (c * (boxes.max() - boxes.min() + 1))[:, None].astype(np.float32)
        keep = nms(torch.from_numpy(shifted), torch.from_numpy(scores), IOU).numpy()
        return boxes[keep], scores[keep]

    (tb, ts), (nb, ns) = torch_floor(), numpy_floor()
    assert len(ts) == len(ns) and np.allclose(tb.numpy()[ts.argsort(descending=True)], nb, atol=1e-3)

    def busy() -> None:
        end = time.perf_counter() + 0.009
        while time.perf_counter() < end:
            pass

    before: dict[str, Callable[[], object]] = {
        "alone": lambda: None,
        "after forward": lambda: det._forward(batch["images"]),
        "after 9 ms sleep": lambda: time.sleep(0.009),
        "after 9 ms busy Python": busy,
    }
    print(f"{len(ns)} detections; ms per call (median of {calls})")
    for name, fn in (("predict_raw", library), ("torch floor", torch_floor), ("numpy floor", numpy_floor)):
        for _ in range(30):
            fn()
        cells = []
        for label, pre in before.items():
            times = []
            for _ in range(calls):
                pre()
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            cells.append(f"{label} {1e3 * statistics.median(times):.3f}")
        print(f"{name:12s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
