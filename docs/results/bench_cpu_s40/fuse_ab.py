"""The Detector's fused inference layers against the same network unfused (session 40, issue 10).

Not part of the library: a measurement record. Two Detectors of one checkpoint on the CPU, ``fuse=True`` (its
default: conv + leaky ReLU pairs as one oneDNN call, 2 x 2 pools as two maxima) and ``fuse=False``, alternate
(ABBA) the bare forward pass of the network each runs at that batch (``network_for``: the fused sibling from two
images on) and ``predict`` on the same decoded BCCD photos at each batch size; the medians are printed with the
end-to-end / forward ratio bench.py judges.

Usage: ``python docs/results/bench_cpu_s40/fuse_ab.py <checkpoint> [batch ...]`` (default batches 32 4 1).
"""

from __future__ import annotations

import glob
import statistics
import sys
import time
from pathlib import Path

import cv2
import torch

from yolo9000 import Detector


def main() -> None:
    ckpt = sys.argv[1]
    batches = [int(b) for b in sys.argv[2:]] or [32, 4, 1]
    torch.set_num_threads(2)
    fused = Detector.from_checkpoint(ckpt, device="cpu")
    apart = Detector(fused.module, device="cpu", fuse=False)
    root = Path(__file__).resolve().parents[3]
    files = sorted(glob.glob(str(root / "data/bccd/JPEGImages/*.jpg")))[:32]
    images = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files]
    print(f"fused layers: {fused.fused_layers}")
    for b in batches:
        x = torch.rand(b, 3, 256, 256).mul(255).contiguous(memory_format=torch.channels_last)
        batch, net_fused, net_apart = images[:b], fused.network_for(b), apart.network_for(b)
        calls = {
            "forward fused": lambda x=x, net=net_fused: net(x),
            "forward apart": lambda x=x, net=net_apart: net(x),
            "predict fused": lambda batch=batch, b=b: fused.predict(batch, size=256, batch_size=b, conf=0.25),
            "predict apart": lambda batch=batch, b=b: apart.predict(batch, size=256, batch_size=b, conf=0.25),
        }
        times: dict[str, list[float]] = {k: [] for k in calls}
        with torch.inference_mode():
            for call in calls.values():
                call()
        for r in range(max(16, 400 // b)):
            for name in list(calls) if r % 2 == 0 else list(calls)[::-1]:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    calls[name]()
                    times[name].append(time.perf_counter() - t0)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(
            f"batch {b}: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
            + f" | end to end / forward: fused {ms['forward fused'] / ms['predict fused']:.3f}, "
            f"apart {ms['forward apart'] / ms['predict apart']:.3f}"
        )


if __name__ == "__main__":
    main()
