"""Device check (untracked): where Detector.predict's time goes on the GPU, and the NMS methods compared."""
import functools, statistics, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path("src").resolve()))
from hydra import compose, initialize_config_dir
from yolo9000.multirun import register_resolvers
from yolo9000.build import build
import yolo9000.postprocess as pp
from yolo9000 import Detector

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
register_resolvers()
with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base=None):
    cfg = compose("bench_gpu_full", overrides=["data.num_workers=0", "paths.root_dir=."] + sys.argv[2:])
import bench as benchmod  # src/bench.py
cfg = benchmod.bench_config(cfg)
built = build(cfg)
module = built.module.to(dev).eval()
g = np.random.default_rng(0)
imgs = [g.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(64)]

def sync():
    if dev.type == "cuda": torch.cuda.synchronize()

def med(fn, n=10, warm=3):
    for _ in range(warm): fn()
    ts = []
    for _ in range(n):
        sync(); t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3

orig = pp.class_nms
for dtype in (torch.float32, torch.bfloat16):
    det = Detector(module, device=dev, dtype=dtype)
    for n in (1, 64):
        x = torch.rand(n, 3, 416, 416, device=dev)
        if det.channels_last: x = x.contiguous(memory_format=torch.channels_last)
        def fwd():
            with torch.no_grad(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                return det.network(x)
        raw = fwd().float().contiguous()
        t_fwd = med(fwd)
        t_read = med(lambda: det._read(benchmod_ds(det, n), range(n))) if False else None
        from yolo9000.api import _IndexedImages
        ds = _IndexedImages(imgs[:n], 416, transform=det._transforms[False])
        t_read = med(lambda: det._read(ds, range(n)))
        batch = det._read(ds, range(n))
        t_h2d = med(lambda: batch["images"].to(dev))
        for conf in (0.25, 0.005):
            row = []
            for method in ("per_image", "rounds", "matrix"):
                pp.class_nms = functools.partial(orig, method=method)
                t_post = med(lambda: module.predict_raw(raw, (416, 416), batch["transforms"].to(dev), batch["orig_sizes"].to(dev), conf))
                out = module.predict_raw(raw, (416, 416), None, None, conf)
                row.append((method, t_post, [o["scores"].shape[0] for o in out]))
                if method == "matrix":
                    t_e2e = med(lambda: det.predict(imgs[:n], size=416, batch_size=n, conf=conf))
            pp.class_nms = orig
            same = all(r[2] == row[0][2] for r in row)
            print(f"{str(dtype)[6:]:8s} b{n:<3d} conf {conf:<6} fwd {t_fwd:7.2f} ms | read+resize {t_read:6.2f} | h2d {t_h2d:5.2f} | "
                  + " | ".join(f"post[{m}] {t:7.2f}" for m, t, _ in row)
                  + f" | e2e(matrix) {t_e2e:7.2f} | dets/img {sum(row[0][2])/n:.1f} same={same}", flush=True)

# the profile of one batch-1 and one batch-64 predict call (matrix NMS), conf 0.25
from torch.profiler import ProfilerActivity, profile
det = Detector(module, device=dev, dtype=torch.float32)
for n in (1, 64):
    for _ in range(3): det.predict(imgs[:n], size=416, batch_size=n, conf=0.25)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(5): det.predict(imgs[:n], size=416, batch_size=n, conf=0.25)
    print(f"--- predict b{n} x5, by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=50))
