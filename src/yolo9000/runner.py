"""What the entry scripts share: environment set-up, building the DataModule/module/trainer from a Hydra config,
resolving k-means anchors, and writing metrics.json."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("yolo9000")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def setup_environment() -> None:
    """Load .env (if any), default W&B to offline and PROJECT_ROOT to the repository root, register the config
    resolvers. Call before Hydra."""
    try:
        from dotenv import load_dotenv

        load_dotenv(PROJECT_ROOT / ".env", override=False)
    except ImportError:  # pragma: no cover - python-dotenv is a dependency
        pass
    os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    from yolo9000.multirun import register_resolvers

    register_resolvers()  # ${tags_with_overrides:...} in conf/logger/wandb.yaml


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group like ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


# Faster R-CNN's 9 hand-picked anchors (the paper's Table 1 "Anchor Boxes [15]"): box sides of 128, 256 and 512
# pixels on a ~600-pixel image, as fractions of the input side, times aspect ratios h:w of 1:2, 1:1 and 2:1.
HANDPICKED_SCALES = (128 / 600, 256 / 600, 512 / 600)
HANDPICKED_RATIOS = (0.5, 1.0, 2.0)


def handpicked_anchors(grid: int) -> list[list[float]]:
    """The 9 hand-picked anchors (3 scales x 3 aspect ratios, equal area per scale) in grid-cell units of a
    ``grid`` x ``grid`` output (input size / 32), ``[w, h]`` pairs, scale-major."""
    s = torch.tensor(HANDPICKED_SCALES, dtype=torch.float64)[:, None]  # (3, 1)
    r = torch.tensor(HANDPICKED_RATIOS, dtype=torch.float64)[None, :]  # (1, 3) h / w
    wh = torch.stack([s / r.sqrt(), s * r.sqrt()], dim=-1).reshape(-1, 2) * grid  # (9, 2)
    return [[round(float(w), 4), round(float(h), 4)] for w, h in wh.tolist()]


def resolve_anchors(cfg: DictConfig, datamodule: Any) -> None:
    """Resolve ``model.net.anchors`` into a list of priors in grid units (stride 32, grid = data.img_size / 32).

    ``kmeans``: k-means on the training boxes, ``model.net.num_anchors`` clusters, distance
    ``model.net.anchors_metric`` (``iou`` = the paper's 1 - IoU, default; ``sse`` = Euclidean, Table 1's
    comparison). ``handpicked``: :func:`handpicked_anchors`. A list is kept. For any priors, their average IoU
    with the training boxes (Table 1's measure) is stored in ``cfg.anchors_avg_iou`` (so in config.yaml).
    """
    net = cfg.model.net
    anchors = net.get("anchors")
    if anchors is None:
        return
    from yolo9000.anchors import avg_iou, kmeans_anchors, to_grid_units

    wh = torch.as_tensor(datamodule.box_sizes("train"), dtype=torch.float32)
    grid = int(cfg.data.img_size) // 32
    if isinstance(anchors, str) and anchors == "kmeans":
        metric = str(net.get("anchors_metric", "iou"))
        res = kmeans_anchors(wh, int(net.num_anchors), metric=metric, seed=int(cfg.seed), restarts=5)  # type: ignore[arg-type]
        grid_anchors = to_grid_units(torch.as_tensor(res.anchors), grid).tolist()
        with open_dict(cfg):
            net.anchors = [[round(float(a), 4), round(float(b), 4)] for a, b in grid_anchors]
        log.info("k-means anchors (k=%d, distance %s): %s", net.num_anchors, metric, net.anchors)
    elif isinstance(anchors, str) and anchors == "handpicked":
        with open_dict(cfg):
            net.anchors = handpicked_anchors(grid)
        log.info("hand-picked anchors (3 scales x 3 aspect ratios): %s", net.anchors)
    elif isinstance(anchors, str):
        raise ValueError(f"model.net.anchors must be a list, null, 'kmeans' or 'handpicked', got {anchors!r}")
    if len(wh):
        with open_dict(cfg):
            cfg.anchors_avg_iou = round(avg_iou(wh, torch.tensor(OmegaConf.to_container(net.anchors)) / grid), 6)
        log.info("average IoU of the anchors with the training boxes: %.4f", cfg.anchors_avg_iou)


def check_config(cfg: DictConfig) -> None:
    """Fail early, with the keys to change, on combinations that cannot train."""
    net = cfg.model.net
    if net.get("head") == "fc":
        grid = int(cfg.data.img_size) // 32
        if net.get("fc_grid") is None:  # null = follow the input size
            with open_dict(cfg):
                net.fc_grid = grid
        if cfg.data.multiscale.enabled:
            raise ValueError("model.net.head=fc needs a fixed input size: set data.multiscale.enabled=false")
        if int(net.fc_grid) != grid:
            raise ValueError(
                f"model.net.fc_grid={net.fc_grid} but data.img_size={cfg.data.img_size} gives a {grid} grid"
            )
    if int(cfg.data.img_size) % 32:
        raise ValueError(f"data.img_size must be a multiple of 32, got {cfg.data.img_size}")


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """Instantiate the DataModule and the detection module (classes from the data, anchors resolved)."""
    check_config(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    resolve_anchors(cfg, datamodule)
    with open_dict(cfg):
        cfg.model.net.num_classes = datamodule.num_classes
        cfg.model.class_names = list(datamodule.class_names)
    module = instantiate_module(cfg)
    module.model_config["eval_size"] = int(cfg.data.img_size)  # detect.py's default input size
    return datamodule, module


def instantiate_module(cfg: DictConfig) -> pl.LightningModule:
    """The detection module from ``cfg.model`` (its ``net`` built first; ``num_anchors`` is config-only)."""
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert isinstance(net_cfg, dict)
    net_cfg.pop("num_anchors", None)
    net_cfg.pop("anchors_metric", None)
    net = hydra.utils.instantiate(net_cfg, _convert_="all")
    module_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(module_cfg, dict)
    module_cfg.pop("net")
    module_cfg.pop("eval_size", None)
    module = hydra.utils.instantiate(module_cfg, model=net, _convert_="all")
    module.model_config = OmegaConf.to_container(cfg.model, resolve=True)  # saved in checkpoints
    return module


def load_module(ckpt_path: str | Path, map_location: str = "cpu") -> pl.LightningModule:
    """Rebuild the detection module saved by training (architecture from the checkpoint's config) and load it."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    model_cfg = ckpt.get("yolo9000_model_config")
    if model_cfg is None:
        raise ValueError(f"{ckpt_path}: not a yolo9000 detection checkpoint (no 'yolo9000_model_config')")
    for key in ("backbone_ckpt", "init_ckpt"):  # the weights come from the state dict below
        if model_cfg.get(key):
            model_cfg[key] = None
    module = instantiate_module(OmegaConf.create({"model": model_cfg}))
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return module


def _plain(v: Any) -> Any:
    """Tensors / arrays / nested containers -> JSON-friendly Python values."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray | np.generic):
        return v.item() if v.size == 1 else v.tolist()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def model_stats(net: torch.nn.Module, size: int) -> dict[str, float]:
    """Learnable parameters and forward GFLOPs (2 x multiply-adds of convs / linears, darknet's convention) for
    one (1, 3, size, size) image."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, size, size, device=device))
    net.train(was_training)
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"params": params, "gflops": counter.get_total_flops() / 1e9, "gflops_input_size": size}


def write_metrics(
    out_dir: Path, results: dict[str, Any], class_names: list[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``metrics.json`` (scalars + per-class AP), ``per_class.md`` (a table) and ``pr_curves.png``.

    Returns what metrics.json holds.
    """
    from yolo9000.metrics import format_ap_table
    from yolo9000.viz import plot_pr_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    out = {k: _plain(v) for k, v in results.items() if k != "pr"}
    out.update(extra or {})
    (out_dir / "metrics.json").write_text(json.dumps(out, indent=2))
    if "per_class" in results:
        rows = results["per_class"]
        if "accuracy" in next(iter(rows.values()), {}):  # classification (ClassifierModule.test_results)
            from yolo9000.modules.classifier import format_accuracy_table

            table = format_accuracy_table(rows, class_names)
        else:
            table = format_ap_table(rows, class_names)
        (out_dir / "per_class.md").write_text(table + "\n")
    if results.get("pr"):
        ap = {c: v.get("ap50", float("nan")) for c, v in results.get("per_class", {}).items()}
        plot_pr_curves(results["pr"], out_dir / "pr_curves.png", ap=ap)
    return out
