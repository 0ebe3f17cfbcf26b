"""Detector(compile=True) against the eager Detector on the same photos, calls alternating (session 30): the forward
pass and predict end to end, ms per image at batch 1 and 32, and the first call of each shape (a compile, or a load
from torch's on-disk cache). Usage: ``python docs/results/bench_cpu_s30/compile_ab.py <checkpoint>``."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2
import torch

from yolo9000 import Detector


def main() -> None:
    torch.set_num_threads(2)
    eager = Detector.from_checkpoint(sys.argv[1], device="cpu")
    comp = Detector.from_checkpoint(sys.argv[1], device="cpu", compile=True)
    files = sorted((Path(__file__).resolve().parents[3] / "data/bccd/JPEGImages").glob("*.jpg"))[:32]
    imgs = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    for bs in (1, 32):
        t0 = time.perf_counter()
        comp.predict(imgs[:bs], size=256, batch_size=bs)
        print(f"b{bs} first call {time.perf_counter() - t0:.1f} s")
    for bs, rounds in ((1, 300), (32, 16)):
        x = torch.rand(bs, 3, 256, 256).contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {"fe": [], "pe": [], "fc": [], "pc": []}
        for r in range(rounds):
            batch = [imgs[(r * bs + k) % 32] for k in range(bs)]
            for key, det in (("e", eager), ("c", comp)):
                with torch.no_grad():
                    t0 = time.perf_counter()
                    det.network(x)
                    t1 = time.perf_counter()
                det.predict(batch, size=256, batch_size=bs)
                t2 = time.perf_counter()
                times["f" + key].append(t1 - t0)
                times["p" + key].append(t2 - t1)
        m = {k: statistics.median(v) * 1e3 / bs for k, v in times.items()}
        print(
            f"b{bs} ms/img: forward eager {m['fe']:.2f} compiled {m['fc']:.2f} ({m['fe'] / m['fc']:.3f}x) | "
            f"predict eager {m['pe']:.2f} compiled {m['pc']:.2f} ({m['pe'] / m['pc']:.3f}x) | "
            f"e2e/fwd eager {m['fe'] / m['pe']:.3f} compiled {m['fc'] / m['pc']:.3f}"
        )


if __name__ == "__main__":
    main()
