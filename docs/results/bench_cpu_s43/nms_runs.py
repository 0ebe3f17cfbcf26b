"""``class_nms`` on the CPU as ``postprocess`` calls it for 32 decoded BCCD photos (a trained default model at 256,
conf 0.25), timed with ``_NMS_RUN`` (candidates of consecutive images sharing one torchvision call) at several
values; 0 is one call an image, as before session 43. Same detections every time (checked).

    CKPT=<a default-model checkpoint> .venv/bin/python docs/results/bench_cpu_s43/nms_runs.py   # repository root
"""

from __future__ import annotations

import glob
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.environ.get("SRC", "src"))

import torch  # noqa: E402

import yolo9000.postprocess as pp  # noqa: E402
from yolo9000 import Detector  # noqa: E402
from yolo9000.data.image_io import read_image  # noqa: E402


def main() -> None:
    det = Detector.from_checkpoint(os.environ["CKPT"], device="cpu")
    photos = [read_image(f) for f in sorted(glob.glob("data/bccd/JPEGImages/*.jpg"))[:32]]
    real = pp.class_nms
    args: dict[str, Any] = {}

    def spy(*a: Any, **k: Any) -> list[torch.Tensor]:
        args["a"] = a
        return real(*a, **k)

    pp.class_nms = spy
    det.predict(photos, size=256, batch_size=32, conf=0.25)
    pp.class_nms = real
    a = args["a"]
    print(f"{a[0].shape[0]} candidates in {a[5]} images")
    ref = None
    for _ in range(3):
        row = []
        for budget in (0, 96, 144, 192, 256, 384):
            pp._NMS_RUN = budget
            kept = [k.tolist() for k in real(*a)]
            ref = ref or kept
            assert kept == ref
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                real(*a)
                times.append(time.perf_counter() - t0)
            row.append(f"{budget}:{statistics.median(times) * 1e3:.3f}")
        print(" ".join(row), "(budget: ms)")


if __name__ == "__main__":
    main()
