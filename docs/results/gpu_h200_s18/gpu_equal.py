"""Device check (untracked): the GPU Detector (batch NMS as matrix products, batch 1 per image) against the CPU one."""
import copy, glob, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path("src").resolve()))
from hydra import compose, initialize_config_dir
from yolo9000.multirun import register_resolvers
from yolo9000.build import build
from yolo9000 import Detector
import bench as benchmod

register_resolvers()
with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base=None):
    cfg = compose("bench_gpu_full", overrides=["data.num_workers=0", "paths.root_dir=."] + sys.argv[1:])
cfg = benchmod.bench_config(cfg)
torch.manual_seed(0)
module = build(cfg).module.eval()
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
files = sorted(glob.glob("data/bccd/JPEGImages/*.jpg"))[:32]
cpu = Detector(copy.deepcopy(module), device="cpu", channels_last=False)
dev = "cuda" if torch.cuda.is_available() else "cpu"
gpu = Detector(copy.deepcopy(module), device=dev, channels_last=False)
for conf in (0.25, 0.005):
    ref = cpu.predict(files, size=416, batch_size=32, conf=conf)
    for bs in (32, 1):
        t = time.perf_counter()
        got = gpu.predict(files, size=416, batch_size=bs, conf=conf)
        dt = time.perf_counter() - t
        same_n = sum(len(a.scores) == len(b.scores) for a, b in zip(ref, got))
        exact, box_err, score_err, total = 0, 0.0, 0.0, 0
        for a, b in zip(ref, got):
            total += len(a.scores)
            if len(a.scores) == len(b.scores) and torch.equal(a.labels, b.labels):
                exact += 1
                if len(a.scores):
                    box_err = max(box_err, float((a.boxes - b.boxes).abs().max()))
                    score_err = max(score_err, float((a.scores - b.scores).abs().max()))
        print(f"conf {conf} batch {bs:2d} on {dev}: {total / len(ref):.1f} dets/img; images with the same count "
              f"{same_n}/{len(ref)}, same labels in order {exact}/{len(ref)}; max |box diff| {box_err:.2e} px, "
              f"max |score diff| {score_err:.2e}; {dt * 1e3:.0f} ms", flush=True)
