"""Session 38: Detector.predict with detect_batch / _forward under torch.inference_mode (new) against no_grad (old),
alternating ABBA in one process, each beside a bare forward; run from the repository root: python
docs/results/bench_cpu_s38/inference_mode_ab.py <batch>. The checkpoint path is session 36's trained default run."""
import sys, time, glob, statistics, contextlib
sys.path.insert(0, "/work/main/src")
import torch
from yolo9000 import Detector
import yolo9000.api as api
from yolo9000.data.image_io import read_image
n = int(sys.argv[1])
det = Detector.from_checkpoint("/work/main/outputs/train/2026-12-07_02-18-00_1993/checkpoints/last.ckpt", device="cpu")
files = sorted(glob.glob("/work/main/data/bccd/JPEGImages/*.jpg"))
imgs = [read_image(files[i % len(files)]) for i in range(n)]
x = torch.rand(n, 3, 256, 256).contiguous(memory_format=torch.channels_last)
net = det.network
new_db = det.detect_batch
new_fw = det._forward
old_db = torch.no_grad()(api.Detector.detect_batch.__wrapped__.__get__(det))
old_fw = torch.no_grad()(api.Detector._forward.__wrapped__.__get__(det))
def use(new):
    det.detect_batch = new_db if new else old_db
    det._forward = new_fw if new else old_fw
def fwd():
    with torch.no_grad(): net(x)
T = {"old": [], "new": [], "fwd_old": [], "fwd_new": []}
for r in range(max(12, 400 // n)):
    order = ["old", "new"] if r % 2 else ["new", "old"]
    for k in order:
        use(k == "new")
        t = time.perf_counter(); fwd(); T["fwd_" + k].append(time.perf_counter() - t)
        t = time.perf_counter(); det.predict(imgs, size=256, batch_size=n, conf=0.25); T[k].append(time.perf_counter() - t)
m = {k: 1e3 * statistics.median(v) for k, v in T.items()}
print(f"b{n}", {k: round(v, 3) for k, v in m.items()}, "ratio old", round(m["fwd_old"] / m["old"], 3), "new", round(m["fwd_new"] / m["new"], 3))
