"""End to end (``Detector.predict``) against the bare forward of the network it runs, at batch 1 and 32, measured
both ways: strictly alternating calls (``paired``, as ``bench.py`` before session 42) and alternating blocks of one
untimed and two timed calls of each (``steady``, as ``bench.py`` since).

    CKPT=<a default-model checkpoint> SRC=<a checkout's src> TAG=<label> .venv/bin/python \\
        docs/results/bench_cpu_s42/ab_e2e.py        # from the repository root (it reads data/bccd/JPEGImages)

``SRC`` picks the code (an A/B of two commits in alternating processes); ``RT`` sets the Detector's
``read_threads``. Prints one line per batch: medians in ms and both ratios.
"""

from __future__ import annotations

import glob
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.environ.get("SRC", "src"))

import torch  # noqa: E402

from yolo9000 import Detector  # noqa: E402
from yolo9000.data.image_io import read_image  # noqa: E402
from yolo9000.speed import keep_freed_memory  # noqa: E402


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    keep_freed_memory()
    threads = {"read_threads": int(os.environ["RT"])} if os.environ.get("RT") else {}
    det = Detector.from_checkpoint(os.environ["CKPT"], device="cpu", **threads)
    photos = [read_image(f) for f in sorted(glob.glob("data/bccd/JPEGImages/*.jpg"))[:32]]
    for n in (1, 32):
        batch = photos[:n]
        x = torch.rand(n, 3, 256, 256).contiguous(memory_format=torch.channels_last) * 255  # the folded net's pixels
        net = det.network_for(n)

        def forward(x: torch.Tensor = x, net: torch.nn.Module = net) -> None:
            with torch.no_grad():
                net(x)

        def e2e(batch: list = batch, n: int = n) -> None:
            det.predict(batch, size=256, batch_size=n, conf=0.25)

        paired: tuple[list[float], list[float]] = ([], [])
        steady: tuple[list[float], list[float]] = ([], [])
        for r in range(max(10, 40 // n) + 2):
            a, b = seconds(forward), seconds(e2e)
            forward()  # steady: each timed call follows one of its own
            sa = [seconds(forward) for _ in range(2)]
            e2e()
            sb = [seconds(e2e) for _ in range(2)]
            if r >= 2:  # warm-up rounds
                paired[0].append(a), paired[1].append(b)
                steady[0].extend(sa), steady[1].extend(sb)
        (pf, pe), (sf, se) = ((statistics.median(v) for v in t) for t in (paired, steady))
        print(
            f"{os.environ.get('TAG', '')} n={n} paired fwd {1e3 * pf:.2f} e2e {1e3 * pe:.2f} ratio {pf / pe:.4f} | "
            f"steady fwd {1e3 * sf:.2f} e2e {1e3 * se:.2f} ratio {sf / se:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
