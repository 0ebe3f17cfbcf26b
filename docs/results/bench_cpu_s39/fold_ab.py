"""A/B of the Detector's input scale folded into its first conv (session 39's default) against the division by 255
of the uint8 batch (before): two Detectors of one checkpoint, batch norms folded in both; ``predict`` of the same
decoded BCCD photos alternating (ABBA) with a bare forward of the same network. Prints the median ms of each and
end to end / forward.

    python docs/results/bench_cpu_s39/fold_ab.py <last.ckpt> [rounds]
"""

from __future__ import annotations

import glob
import statistics
import sys
import time

import torch

from yolo9000 import Detector
from yolo9000.data.image_io import read_image

ckpt, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40
folded = Detector.from_checkpoint(ckpt, device="cpu")
divided = Detector.from_checkpoint(ckpt, device="cpu")
conv = divided.network.input_conv()
with torch.no_grad():
    conv.weight.mul_(255.0)  # back to the [0, 1] input: predict divides the uint8 batch again
del divided.network.folded_input_scale
assert getattr(folded.network, "folded_input_scale", None) and not hasattr(divided.network, "folded_input_scale")
images = [read_image(f) for f in sorted(glob.glob("data/bccd/JPEGImages/*.jpg"))[:32]]
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for n in (1, 32):
    batch = images[:n]
    a = folded.predict(batch, size=256, batch_size=n, conf=0.25)
    b = divided.predict(batch, size=256, batch_size=n, conf=0.25)
    same = all(len(x) == len(y) and torch.allclose(x.boxes, y.boxes, atol=1e-3) for x, y in zip(a, b, strict=True))
    x = torch.rand(n, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    times: dict[str, tuple[list[float], list[float]]] = {"folded": ([], []), "divided": ([], [])}
    reps = rounds if n > 1 else rounds * 10
    for r in range(reps + 2):
        order = ("folded", "divided") if r % 2 else ("divided", "folded")
        for name in order:
            det = folded if name == "folded" else divided
            with torch.inference_mode():
                t0 = time.perf_counter()
                det.network(x)
                t1 = time.perf_counter()
            det.predict(batch, size=256, batch_size=n, conf=0.25)
            t2 = time.perf_counter()
            if r >= 2:
                times[name][0].append(t1 - t0)
                times[name][1].append(t2 - t1)
    for name, (fwd, end) in times.items():
        f, e = statistics.median(fwd), statistics.median(end)
        print(f"batch {n:2d} {name:8s} forward {1e3 * f:7.2f} ms  predict {1e3 * e:7.2f} ms  ratio {f / e:.3f}")
    print(f"batch {n:2d} same detections: {same} ({sum(len(d) for d in a) / n:.1f} an image)")
