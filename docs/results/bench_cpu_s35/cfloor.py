"""Batch-1: forward vs predict vs torch floor vs a C decode+NMS floor (one ctypes call)."""
from __future__ import annotations

import ctypes
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


class Det(ctypes.Structure):
    _fields_ = [("x0", ctypes.c_float), ("y0", ctypes.c_float), ("x1", ctypes.c_float), ("y1", ctypes.c_float),
                ("score", ctypes.c_float), ("label", ctypes.c_long)]


def main() -> None:
    ckpt = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    compile_ = len(sys.argv) > 4 and sys.argv[4] == "compile"
    torch.set_num_threads(2)
    det = Detector.from_checkpoint(ckpt, device="cpu", compile=compile_)
    files = sorted(glob.glob("/work/main/data/bccd/JPEGImages/*.jpg"))[:8]
    images = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    net, anchors = det.network, det.module.model.anchors.float()
    num_anchors = anchors.shape[0]
    anchors_np = np.ascontiguousarray(anchors.numpy(), dtype=np.float32)
    x = torch.rand(1, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    buffer = np.empty((SIZE, SIZE, 3), np.uint8)
    pixels = torch.from_numpy(buffer).permute(2, 0, 1).unsqueeze(0)
    fbuf = torch.empty(1, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    lib = ctypes.CDLL(str(Path(__file__).with_name("libregion.so")))
    fn = lib.region_decode_nms
    fn.restype = ctypes.c_int
    P = ctypes.c_void_p
    fn.argtypes = [P, ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, P,
                   ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_int, P, P, P, P, ctypes.c_int]
    lib.to_float.argtypes = [P, P, ctypes.c_long]
    cap = 4096
    work = (Det * cap)()
    out_boxes = torch.empty(cap, 4)
    out_scores = torch.empty(cap)
    out_labels = torch.empty(cap, dtype=torch.long)
    pw, pb, ps, pl, pa = ctypes.addressof(work), out_boxes.data_ptr(), out_scores.data_ptr(), out_labels.data_ptr(), anchors_np.ctypes.data
    pbuf, pfbuf = buffer.ctypes.data, fbuf.data_ptr()

    @torch.no_grad()
    def forward() -> None:
        net(x)

    def predict(image: np.ndarray) -> None:
        det.predict([image], size=SIZE, conf=CONF)

    @torch.no_grad()
    def floor(image: np.ndarray):
        height, width = image.shape[:2]
        cv2.resize(image, (SIZE, SIZE), dst=buffer, interpolation=cv2.INTER_LINEAR)
        raw = net(pixels.float().div_(255).contiguous(memory_format=torch.channels_last))
        _, ch, h, w = raw.shape
        v = raw.view(num_anchors, ch // num_anchors, h * w)
        probs = v[:, 5:].softmax(1).mul_(v[:, 4].sigmoid().unsqueeze(1))
        a, c, cell = torch.nonzero(probs > CONF, as_tuple=True)
        scores, t = probs[a, c, cell], v[a, :4, cell]
        cx = (t[:, 0].sigmoid() + cell % w) * (width / w)
        cy = (t[:, 1].sigmoid() + torch.div(cell, w, rounding_mode="floor")) * (height / h)
        bw, bh = t[:, 2].exp() * anchors[a, 0] * (width / w), t[:, 3].exp() * anchors[a, 1] * (height / h)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        keep = batched_nms(boxes, scores, c, IOU)
        boxes = boxes[keep]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        return boxes, scores[keep], c[keep]

    @torch.no_grad()
    def cfloor(image: np.ndarray):
        height, width = image.shape[:2]
        cv2.resize(image, (SIZE, SIZE), dst=buffer, interpolation=cv2.INTER_LINEAR)
        lib.to_float(pbuf, pfbuf, SIZE * SIZE * 3)
        raw = net(fbuf)
        _, ch, h, w = raw.shape
        s = raw.stride()
        m = fn(raw.data_ptr(), s[1], s[3], num_anchors, ch // num_anchors - 5, h, w, pa, CONF, IOU,
               float(width), float(height), 1000, pb, ps, pl, pw, cap)
        return out_boxes[:m].clone(), out_scores[:m].clone(), out_labels[:m].clone()

    @torch.no_grad()
    def cfloor_tv(image: np.ndarray):
        height, width = image.shape[:2]
        cv2.resize(image, (SIZE, SIZE), dst=buffer, interpolation=cv2.INTER_LINEAR)
        lib.to_float(pbuf, pfbuf, SIZE * SIZE * 3)
        raw = net(fbuf)
        _, ch, h, w = raw.shape
        s = raw.stride()
        m = fn(raw.data_ptr(), s[1], s[3], num_anchors, ch // num_anchors - 5, h, w, pa, CONF, -1.0,
               float(width), float(height), 1000, pb, ps, pl, pw, cap)
        keep = batched_nms(out_boxes[:m], out_scores[:m], out_labels[:m], IOU)
        return out_boxes[keep], out_scores[keep], out_labels[keep]

    for image in images:
        ours = det.predict([image], size=SIZE, conf=CONF)[0]
        for f in (floor, cfloor, cfloor_tv):
            boxes, scores, labels = f(image)
            order = scores.argsort(descending=True, stable=True)
            assert len(ours) == len(scores), (f.__name__, len(ours), len(scores))
            torch.testing.assert_close(boxes[order], ours.boxes, atol=1e-3, rtol=1e-4)
            assert torch.equal(labels[order], ours.labels)
    total = sum(len(det.predict([i], size=SIZE, conf=CONF)[0]) for i in images)
    print(f"same detections on {len(images)} photos ({total} boxes), compile={compile_}")
    names = ("forward", "predict", "floor", "cfloor", "cfloor_tv")
    for repeat in range(repeats):
        for k in range(20):
            forward(), predict(images[k % 8]), floor(images[k % 8]), cfloor(images[k % 8]), cfloor_tv(images[k % 8])
        times = {k: [] for k in names}
        for r in range(rounds):
            image = images[r % 8]
            for name, call, args in (("forward", forward, ()), ("predict", predict, (image,)),
                                     ("floor", floor, (image,)), ("cfloor", cfloor, (image,)), ("cfloor_tv", cfloor_tv, (image,))):
                t0 = time.perf_counter()
                call(*args)
                times[name].append(time.perf_counter() - t0)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(f"run {repeat + 1}: forward {ms['forward']:.2f} ms | " + " | ".join(
            f"{k} {ms[k]:.2f} ({ms['forward'] / ms[k]:.3f})" for k in names[1:]), flush=True)


if __name__ == "__main__":
    main()
