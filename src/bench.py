"""Speed numbers: `python src/bench.py` prints the cost of a training step split into forward, region loss (with
target assignment) and backward, inference FPS, and DataLoader throughput. Benchmarks print; tests never time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from yolo9000.runner import instantiate_module, setup_environment

setup_environment()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, steps: int, warmup: int, device: torch.device) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench.yaml")
def main(cfg: DictConfig) -> None:
    b = cfg.bench
    if b.threads:
        torch.set_num_threads(int(b.threads))
    device = torch.device(b.device)
    with open_dict(cfg):
        if OmegaConf.is_missing(cfg.model.net, "num_classes"):
            cfg.model.net.num_classes = len(cfg.data.class_names)
        cfg.model.class_names = list(cfg.data.class_names)
    module = instantiate_module(cfg).to(device)
    net, crit = module.model, module.criterion
    if b.channels_last:
        net = net.to(memory_format=torch.channels_last)
    fwd = torch.compile(net) if b.compile else net
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b.batch_size, 3, b.size, b.size, generator=g).to(device)
    if b.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wh = torch.rand(b.batch_size, b.num_boxes, 2, generator=g) * 0.2 + 0.05
    xy = torch.rand(b.batch_size, b.num_boxes, 2, generator=g) * 0.8 + 0.1
    cls = torch.randint(0, net.num_classes, (b.batch_size, b.num_boxes, 1), generator=g).float()
    targets = torch.cat([xy, wh, cls], -1).to(device)
    mask = torch.ones(b.batch_size, b.num_boxes, dtype=torch.bool, device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(b.amp))
    opt = torch.optim.SGD(net.parameters(), lr=1e-6)

    def forward():  # noqa: ANN202
        with amp:
            return fwd(x)

    raw = forward().detach().float().requires_grad_(True)

    def loss_only() -> None:
        crit(raw, targets, mask, net.anchors, seen=100000).loss.backward()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            out = fwd(x)
        crit(out.float(), targets, mask, net.anchors, seen=100000).loss.backward()
        opt.step()

    net.train()
    t_fwd = _timeit(forward, b.steps, b.warmup, device)
    t_loss = _timeit(loss_only, b.steps, b.warmup, device)
    t_step = _timeit(step, b.steps, b.warmup, device)
    net.eval()
    with torch.no_grad():
        t_inf = _timeit(forward, b.steps, b.warmup, device)
    res = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "batch": int(b.batch_size),
        "size": int(b.size),
        "params": sum(p.numel() for p in net.parameters()),
        "train_step_s": t_step,
        "train_img_per_s": b.batch_size / t_step,
        "forward_s": t_fwd,
        "loss_fwd_bwd_s": t_loss,
        "loss_share_of_step": t_loss / t_step,
        "inference_fps": b.batch_size / t_inf,
    }
    if b.data_loader:
        dm = hydra.utils.instantiate(cfg.data)
        dm.setup("fit")
        loader = dm.train_dataloader()
        it = iter(loader)
        next(it)
        t0, n = time.perf_counter(), 0
        for _ in range(min(8, len(loader) - 1)):
            n += next(it)["images"].shape[0]
        res["loader_img_per_s"] = n / (time.perf_counter() - t0)
    for k, v in res.items():
        print(f"{k:>20}: {v:.4g}" if isinstance(v, float) else f"{k:>20}: {v}")
    out = Path(cfg.paths.output_dir) / "bench.json"
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
