"""Speed numbers: `python src/bench.py` prints the cost of a training step split into forward, region loss (with
target assignment) and backward, inference FPS, decode + NMS per image (and its share of the forward pass, also
for untrained heads of other class counts: the worst case) and DataLoader throughput. Benchmarks print; tests
never time.

The model is built exactly as training builds it (:func:`yolo9000.build.build`, as src/train.py: classes from the
data, priors resolved), with random weights.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from yolo9000.build import build, instantiate_module
from yolo9000.environment import setup_environment
from yolo9000.speed import timeit

setup_environment()


def time_postprocess(
    module: Any, x: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor], b: DictConfig
) -> dict[str, float]:
    """Eval forward pass and decode + NMS (``module.predict_raw``, the module's thresholds) on the batch ``x``
    (B, 3, S, S): seconds per batch of each, ms per image and share of the forward pass of decode + NMS, and the
    detections per image it returned."""
    device = x.device
    module.eval()
    with torch.no_grad():
        t_fwd = timeit(lambda: forward(x), b.steps, b.warmup, device)
        raw = forward(x).float()
        hw = tuple(x.shape[-2:])
        t_post = timeit(lambda: module.predict_raw(raw, hw, None, None), b.steps, b.warmup, device)
        dets = module.predict_raw(raw, hw, None, None)
    return {
        "forward_s": t_fwd,
        "postprocess_s": t_post,
        "ms_per_img": 1000 * t_post / x.shape[0],
        "share_of_forward": t_post / t_fwd,
        "dets_per_img": sum(len(d["scores"]) for d in dets) / x.shape[0],
    }


@dataclass
class _Bench:
    """What every measurement uses: the built module, its network (``fwd``: compiled when asked), the loss, the
    synthetic batch and the autocast context."""

    module: Any
    net: Any
    crit: Any
    fwd: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    amp: torch.autocast
    device: torch.device

    def forward(
        self, images: torch.Tensor | None = None, model: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``model`` (default ``fwd``) on ``images`` (default the batch ``x``) under autocast."""
        with self.amp:
            return (self.fwd if model is None else model)(self.x if images is None else images)


def _setup(cfg: DictConfig) -> tuple[Any, _Bench]:
    """The data module and the model as train.py builds them, and a random batch of ``bench.batch_size`` images
    with ``bench.num_boxes`` boxes each (seed 0)."""
    b = cfg.bench
    device = torch.device(b.device)
    built = build(cfg)  # what train.py builds
    datamodule, module = built.datamodule, built.module.to(device)
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
    return datamodule, _Bench(module, net, crit, fwd, x, targets, mask, amp, device)


def time_training(s: _Bench, b: DictConfig) -> dict[str, Any]:
    """Training step (forward + loss + backward + SGD step), forward pass, loss forward + backward on a fixed
    output, and eval-mode inference: the training half of the printed table."""
    net, crit, device = s.net, s.crit, s.device
    opt = torch.optim.SGD(net.parameters(), lr=1e-6)
    raw = s.forward().detach().float().requires_grad_(True)

    def loss_only() -> None:
        crit(raw, s.targets, s.mask, net.anchors, seen=100000).loss.backward()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with s.amp:
            out = s.fwd(s.x)
        crit(out.float(), s.targets, s.mask, net.anchors, seen=100000).loss.backward()
        opt.step()

    net.train()
    t_fwd = timeit(s.forward, b.steps, b.warmup, device)
    t_loss = timeit(loss_only, b.steps, b.warmup, device)
    t_step = timeit(step, b.steps, b.warmup, device)
    net.eval()
    with torch.no_grad():
        t_inf = timeit(s.forward, b.steps, b.warmup, device)
    return {
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


def time_heads(s: _Bench, b: DictConfig) -> dict[str, float]:
    """Decode + NMS (:func:`time_postprocess`) of the built head and of untrained heads with
    ``bench.worst_case_classes`` classes: ``postprocess_<head>_{conf,ms_per_img,share_of_forward,dets_per_img}``."""
    heads = [(f"{s.net.num_classes}cls", s.module)]
    for num_classes in b.worst_case_classes or []:
        wc = worst_case_module(s.module.model_config, int(num_classes), float(b.worst_case_conf))
        heads.append((f"{num_classes}cls_untrained", wc.to(s.device)))
    res: dict[str, float] = {}
    for name, m in heads:
        model = m.model.to(memory_format=torch.channels_last) if b.channels_last else m.model
        p = time_postprocess(m, s.x, lambda images, model=model: s.forward(images, model), b)
        res[f"postprocess_{name}_conf"] = float(m.hparams.conf_thresh)
        res[f"postprocess_{name}_ms_per_img"] = p["ms_per_img"]
        res[f"postprocess_{name}_share_of_forward"] = p["share_of_forward"]
        res[f"postprocess_{name}_dets_per_img"] = p["dets_per_img"]
    return res


def time_loader(datamodule: Any, b: DictConfig) -> dict[str, float]:
    """Training DataLoader throughput over ``bench.loader_batches`` batches after the first: ``loader_img_per_s``."""
    loader = datamodule.train_dataloader()
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(min(int(b.loader_batches), len(loader) - 1)):
        n += next(it)["images"].shape[0]
    return {"loader_img_per_s": n / (time.perf_counter() - t0)}


def _report(res: dict[str, Any], out: Path) -> None:
    """Print ``res`` as a right-aligned ``key: value`` table and write it to ``out`` (bench.json)."""
    width = max(map(len, res))
    for k, v in res.items():
        print(f"{k:>{width}}: {v:.4g}" if isinstance(v, float) else f"{k:>{width}}: {v}")
    out.write_text(json.dumps(res, indent=2))


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench.yaml")
def main(cfg: DictConfig) -> None:
    b = cfg.bench
    if b.threads:
        torch.set_num_threads(int(b.threads))
    datamodule, s = _setup(cfg)
    res = time_training(s, b)
    if b.postprocess:
        res.update(time_heads(s, b))
    if b.data_loader:
        res.update(time_loader(datamodule, b))
    _report(res, Path(cfg.paths.output_dir) / "bench.json")


def worst_case_module(model_config: dict[str, Any], num_classes: int, conf_thresh: float) -> Any:
    """The built detector (its resolved ``model_config``) with a ``num_classes`` head, random weights and
    ``conf_thresh``: an untrained network scores nearly every (box, class) pair above darknet's 0.005, the
    slowest decode + NMS."""
    mc = copy.deepcopy(model_config)
    mc["net"]["num_classes"] = num_classes
    mc.update(class_names=None, backbone_ckpt=None, conf_thresh=conf_thresh)
    return instantiate_module(mc)


if __name__ == "__main__":
    main()
