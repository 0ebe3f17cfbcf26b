"""Default OpenMP spin against a short one, in separate processes (session 40): is predict any faster?

Not part of the library: a measurement record. Run alternately with and without ``GOMP_SPINCOUNT=30000`` (set
before Python starts), it prints the bare forward and ``predict`` medians at batch 1 and 32 (paired, as bench.py)
and a training step's (forward + backward + SGD, batch 16). ``spin_process_pairs_2.txt`` holds six alternations;
``spin_process_pairs_1.txt`` five of an earlier version without the training row.

Usage: ``[GOMP_SPINCOUNT=30000] python docs/results/bench_cpu_s40/spin_pairs.py <checkpoint>``.
"""

from __future__ import annotations

import glob
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import torch

from yolo9000 import Detector


def main() -> None:
    torch.set_num_threads(2)
    det = Detector.from_checkpoint(sys.argv[1], device="cpu")
    root = Path(__file__).resolve().parents[3]
    files = sorted(glob.glob(str(root / "data/bccd/JPEGImages/*.jpg")))[:32]
    images = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    out = [os.environ.get("GOMP_SPINCOUNT", "default")]
    for b, n in [(1, 200), (32, 20)]:
        x = torch.rand(b, 3, 256, 256).contiguous(memory_format=torch.channels_last)
        forwards, predicts = [], []
        for i in range(n + 5):
            with torch.inference_mode():
                t0 = time.perf_counter()
                det.network_for(b)(x)
                f = time.perf_counter() - t0
            t0 = time.perf_counter()
            det.predict(images[:b], size=256, conf=0.25, batch_size=b)
            p = time.perf_counter() - t0
            if i >= 5:
                forwards.append(f)
                predicts.append(p)
        f, p = statistics.median(forwards), statistics.median(predicts)
        out.append(f"b{b}: fwd {1e3 * f:.2f} predict {1e3 * p:.2f} ratio {f / p:.3f}")
    model = det.module.model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.rand(16, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    steps = []
    for _ in range(25):
        t0 = time.perf_counter()
        opt.zero_grad()
        model(x).float().square().mean().backward()
        opt.step()
        steps.append(time.perf_counter() - t0)
    out.append(f"train b16 {1e3 * statistics.median(steps[5:]):.1f}")
    print(" | ".join(out), flush=True)


if __name__ == "__main__":
    main()
