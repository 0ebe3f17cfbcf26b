"""Why reading a batch right after a forward pass is slow on a 2-core CPU (session 40, issue 10).

Not part of the library: a measurement record. Resizes the 32 BCCD photos of bench.py's batch-32 row into a reused
uint8 buffer, as ``Detector.predict`` reads a batch (2 threads, OpenCV's bilinear stretch to 256), timed right after
a parallel PyTorch op ("after torch") and after 50 ms idle ("idle"), with 1-4 reading threads.

PyTorch's OpenMP runtime (GNU libgomp in the pip wheels) keeps its worker thread spinning for a while after each
parallel region (``GOMP_SPINCOUNT``, 300,000 spins by default when ``OMP_WAIT_POLICY`` is unset): for those
milliseconds it holds one of the two cores, and the two reading threads share the other. Run it under
``GOMP_SPINCOUNT=30000`` or ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts: libgomp reads them when torch
loads it) to see the read after torch come back to the idle one. ``KEEP=1`` first applies the Detector's
``keep_freed_memory`` (the CPU model's default): without it the op's 134 MB output is unmapped after it, which
takes longer than the spin, so the spin is hidden.

Usage: ``[KEEP=1] [GOMP_SPINCOUNT=...] python docs/results/bench_cpu_s40/spin_read.py``.
"""

from __future__ import annotations

import glob
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo9000.speed import keep_freed_memory


def main() -> None:
    torch.set_num_threads(2)
    if os.environ.get("KEEP"):
        keep_freed_memory()
    root = Path(__file__).resolve().parents[3]
    files = sorted(glob.glob(str(root / "data/bccd/JPEGImages/*.jpg")))[:32]
    images = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    buffer = np.empty((32, 256, 256, 3), np.uint8)
    pools = {k: ThreadPoolExecutor(k) for k in (1, 2, 3, 4)}

    def read(k: int) -> None:
        def part(indices: range) -> None:
            for i in indices:
                cv2.resize(images[i], (256, 256), dst=buffer[i], interpolation=cv2.INTER_LINEAR)

        list(pools[k].map(part, [range(t, 32, k) for t in range(k)]))

    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.rand(32, 64, 128, 128)
    after: dict[int, list[float]] = {k: [] for k in pools}
    idle: dict[int, list[float]] = {k: [] for k in pools}
    for _ in range(30):
        for k in pools:
            with torch.inference_mode():
                conv(x)
            t0 = time.perf_counter()
            read(k)
            after[k].append(time.perf_counter() - t0)
            time.sleep(0.05)
            t0 = time.perf_counter()
            read(k)
            idle[k].append(time.perf_counter() - t0)
    spin = os.environ.get("GOMP_SPINCOUNT", "default")
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"KEEP={os.environ.get('KEEP', '')} GOMP_SPINCOUNT={spin} OMP_WAIT_POLICY={policy}")
    for k in pools:
        a, i = 1e3 * statistics.median(after[k]), 1e3 * statistics.median(idle[k])
        print(f"  {k} reading thread(s): after torch {a:.2f} ms, idle {i:.2f} ms")


if __name__ == "__main__":
    main()
