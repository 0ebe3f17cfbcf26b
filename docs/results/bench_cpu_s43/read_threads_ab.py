"""``Detector.predict`` at batch 32 with one reading thread against two, on decoded photos (each call right after
a bare forward pass, as ``bench.py`` pairs them) and on their files. One process per setting; alternate them:

    for i in 1 2 3; do for rt in 1 2; do RT=$rt CKPT=<a default-model checkpoint> .venv/bin/python \\
        docs/results/bench_cpu_s43/read_threads_ab.py; done; done     # from the repository root

Prints the medians (ms) of the bare forward, of ``predict`` on the arrays, their ratio, and ``predict`` on the files.
"""

from __future__ import annotations

import glob
import os
import statistics
import sys
import time

sys.path.insert(0, os.environ.get("SRC", "src"))

import torch  # noqa: E402

from yolo9000 import Detector  # noqa: E402
from yolo9000.data.image_io import read_image  # noqa: E402
from yolo9000.speed import keep_freed_memory  # noqa: E402


def main() -> None:
    keep_freed_memory()
    rt = int(os.environ["RT"])
    det = Detector.from_checkpoint(os.environ["CKPT"], device="cpu", read_threads=rt)
    files = sorted(glob.glob("data/bccd/JPEGImages/*.jpg"))[:32]
    photos = [read_image(f) for f in files]
    net = det.network_for(32)
    x = torch.rand(32, 3, 256, 256).contiguous(memory_format=torch.channels_last) * 255
    fwd, arrays, paths = [], [], []
    for r in range(14):
        t0 = time.perf_counter()
        with torch.no_grad():
            net(x)
        t1 = time.perf_counter()
        det.predict(photos, size=256, batch_size=32, conf=0.25)
        t2 = time.perf_counter()
        with torch.no_grad():
            net(x)
        t3 = time.perf_counter()
        det.predict(files, size=256, batch_size=32, conf=0.25)
        t4 = time.perf_counter()
        if r >= 2:  # the first two warm up
            fwd.append(t1 - t0)
            arrays.append(t2 - t1)
            paths.append(t4 - t3)
    f, a, p = (statistics.median(v) * 1e3 for v in (fwd, arrays, paths))
    print(f"RT={rt} fwd {f:.2f} arrays {a:.2f} ratio {f / a:.4f} files {p:.2f}")


if __name__ == "__main__":
    main()
