"""The decode fused into the compiled graph, timed against the compiled forward (issue 10's batch-1 CPU target).

Not part of the library: a measurement record. Session 31 found that the small decode + NMS calls after the forward
pass run 1.7-2.3x slower than in a loop (cold caches). This asks whether putting the decode inside the network's
``torch.compile`` graph (uint8 -> float, the forward, the flat softmax and direct location of every box, a static
top-k of all (box, class) scores: one compiled call) leaves less around the forward. Calls alternate on the same
decoded 640x480 BCCD photos:

* ``forward``: the Detector's folded NHWC network compiled (static graph), a fixed 256x256 float input;
* ``fused``: OpenCV's stretch into a reused buffer, the compiled graph above, the prefix above the threshold, one
  torchvision ``batched_nms``, the clip (checked to return ``predict``'s detections first);
* ``predict``: the eager library ``Detector.predict`` for reference.

Then the phases of ``fused`` right after a forward, and the three compiled calls in a steady loop.

Usage: ``python docs/results/bench_cpu_s32/fused.py <checkpoint> [rounds] [cpp]`` (``cpp``: inductor's cpp_wrapper).
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


def main() -> None:  # noqa: PLR0915 - a linear measurement script
    ckpt = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    opts: dict = {"dynamic": False}
    if len(sys.argv) > 3 and sys.argv[3] == "cpp":
        opts["options"] = {"cpp_wrapper": True}
    torch.set_num_threads(2)
    det = Detector.from_checkpoint(ckpt, device="cpu")
    root = Path(__file__).resolve().parents[3]
    files = sorted(glob.glob(str(root / "data/bccd/JPEGImages/*.jpg")))[:8]
    images = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    net, anchors = det.network, det.module.model.anchors.float()
    num_anchors = anchors.shape[0]
    cnet = torch.compile(net, **opts)
    x = torch.rand(1, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    buffer = np.empty((SIZE, SIZE, 3), np.uint8)
    pixels = torch.from_numpy(buffer).permute(2, 0, 1).unsqueeze(0)  # (1, 3, S, S) view of the NHWC buffer

    def dense(px: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 (1, 3, S, S), (2,) pixels per cell -> all A*H*W*C scores sorted, their boxes (., 4), classes."""
        raw = net(px.to(torch.float32, memory_format=torch.channels_last) / 255).float()
        _, ch, h, w = raw.shape
        v = raw.view(num_anchors, ch // num_anchors, h * w)  # (A, 5 + C, H * W)
        probs = v[:, 5:].softmax(1) * v[:, 4].sigmoid().unsqueeze(1)  # (A, C, H * W)
        cell = torch.arange(h * w)
        cx = (v[:, 0].sigmoid() + cell % w) * scale[0]
        cy = (v[:, 1].sigmoid() + cell // w) * scale[1]
        bw = v[:, 2].exp() * anchors[:, 0:1] * scale[0]
        bh = v[:, 3].exp() * anchors[:, 1:2] * scale[1]
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)  # (A, H * W, 4)
        num_classes = probs.shape[1]
        top, idx = probs.permute(0, 2, 1).reshape(-1).topk(probs.numel())
        return top, boxes.reshape(-1, 4)[idx // num_classes], idx % num_classes

    cdense = torch.compile(dense, **opts)

    def forward() -> None:
        cnet(x)

    def fused(image: np.ndarray, phases: list[float] | None = None) -> tuple[torch.Tensor, ...]:
        t = [time.perf_counter()]
        height, width = image.shape[:2]
        cv2.resize(image, (SIZE, SIZE), dst=buffer, interpolation=cv2.INTER_LINEAR)
        t.append(time.perf_counter())
        top, boxes, labels = cdense(pixels, torch.tensor([width / (SIZE // 32), height / (SIZE // 32)]))
        t.append(time.perf_counter())
        n = int((top > CONF).sum())
        top, boxes, labels = top[:n], boxes[:n], labels[:n]
        t.append(time.perf_counter())
        keep = batched_nms(boxes, top, labels, IOU)
        t.append(time.perf_counter())
        boxes = boxes[keep]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        out = boxes, top[keep], labels[keep]
        t.append(time.perf_counter())
        if phases is not None:
            phases.extend(np.diff(t))
        return out

    def predict(image: np.ndarray) -> None:
        det.predict([image], size=SIZE, conf=CONF)

    with torch.no_grad():
        for image in images:  # the same detections, or it is not this pipeline
            ours = det.predict([image], size=SIZE, conf=CONF)[0]
            boxes, scores, _ = fused(image)
            assert len(ours) == len(scores), (len(ours), len(scores))
            torch.testing.assert_close(boxes, ours.boxes, atol=1e-3, rtol=1e-4)
        print("same detections")
        for repeat in range(3):
            for k in range(20):
                forward(), fused(images[k % 8]), predict(images[k % 8])
            times: dict[str, list[float]] = {"forward": [], "fused": [], "predict": []}
            for r in range(rounds):
                image = images[r % 8]
                for name, call, args in (
                    ("forward", forward, ()),
                    ("fused", fused, (image,)),
                    ("predict", predict, (image,)),
                ):
                    t0 = time.perf_counter()
                    call(*args)
                    times[name].append(time.perf_counter() - t0)
            ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            print(
                f"run {repeat}: forward(compiled) {ms['forward']:.2f} | fused {ms['fused']:.2f} "
                f"({ms['forward'] / ms['fused']:.3f}) | predict(eager) {ms['predict']:.2f} "
                f"({ms['forward'] / ms['predict']:.3f})"
            )
        rows = []
        for r in range(rounds):
            forward()
            rows.append([])
            fused(images[r % 8], rows[-1])
        med = np.median(np.array(rows), 0) * 1e3
        names = ("resize", "graph", "count/slice", "nms", "gather/clip")
        print(" ".join(f"{n} {m:.3f}" for n, m in zip(names, med, strict=True)))
        xf = pixels.float().div(255).contiguous(memory_format=torch.channels_last)
        scale = torch.tensor([640 / 8, 480 / 8])
        for _ in range(2):
            loop: dict[str, list[float]] = {"cnet(xf)": [], "cdense(pixels)": [], "cnet(pixels.float)": []}
            for _ in range(rounds):
                for name, call in (
                    ("cnet(xf)", lambda: cnet(xf)),
                    ("cdense(pixels)", lambda: cdense(pixels, scale)),
                    (
                        "cnet(pixels.float)",
                        lambda: cnet(pixels.to(torch.float32, memory_format=torch.channels_last) / 255),
                    ),
                ):
                    t0 = time.perf_counter()
                    call()
                    loop[name].append(time.perf_counter() - t0)
            print({k: round(1e3 * statistics.median(v), 3) for k, v in loop.items()})


if __name__ == "__main__":
    main()
