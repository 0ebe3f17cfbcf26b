"""Dimension clusters: `python src/anchors.py [data=...] [k=5]`.

k-means on the training boxes with the paper's 1 - IoU distance and, for comparison, Euclidean SSE; prints the
average IoU for k = 1..9 (the paper's Table 1 / Figure 2), plots it, and writes the anchors in grid-cell units
ready to paste into a config (``model.priors.anchors``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from yolo9000.anchors import anchor_sweep, distinct_shapes, format_anchors, output_grid, resolve_priors, to_grid_units
from yolo9000.data.resize import check_input_size, size_text
from yolo9000.environment import hint_unknown_overrides, hydra_flags_first, log_to_job_log, setup_environment
from yolo9000.models import STRIDE
from yolo9000.viz import plot_anchor_clusters, plot_kmeans_curve

log = logging.getLogger("yolo9000.anchors")
setup_environment()


def data_name(cfg: DictConfig) -> str:
    """The data the boxes came from, for the plots' titles: its root folder's name (``bccd``), else ``data``."""
    root = cfg.data.get("root") if "data" in cfg else None
    return (Path(str(root)).name or "data") if root else "data"


@hydra.main(version_base="1.3", config_path="../conf", config_name="anchors.yaml")
def main(cfg: DictConfig) -> None:
    log_to_job_log()
    out_dir = Path(cfg.paths.output_dir)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    wh = torch.as_tensor(dm.box_sizes(cfg.split), dtype=torch.float64)
    log.info("%d boxes from the %s split", len(wh), cfg.split)
    distinct = distinct_shapes(wh)
    ks = [int(k) for k in cfg.ks if int(k) <= distinct]  # k-means needs k distinct shapes: a small split has fewer
    if len(ks) < len(cfg.ks):
        log.warning(
            "the %s split has %d distinct box shapes: ks %s left out of the table (k-means needs k of them)",
            cfg.split,
            distinct,
            [int(k) for k in cfg.ks if int(k) > distinct],
        )
    big = cfg.get("max_boxes")  # training's model.priors.max_boxes
    runs = {
        m: anchor_sweep(wh, ks, metric=m, seed=cfg.seed, restarts=cfg.restarts, max_boxes=big) for m in ("iou", "sse")
    }

    table = Table(title=f"Average IoU of the priors ({len(wh)} boxes)")
    table.add_column("k", justify="right")
    table.add_column("cluster IoU (1 - IoU)", justify="right")
    table.add_column("cluster SSE", justify="right")
    for i, k in enumerate(ks):
        table.add_row(str(k), f"{100 * runs['iou'][i].avg_iou:.1f}", f"{100 * runs['sse'][i].avg_iou:.1f}")
    Console().print(table)

    h, w = check_input_size(OmegaConf.to_container(cfg.img_size) if OmegaConf.is_config(cfg.img_size) else cfg.img_size)
    grid = output_grid(h, w, STRIDE)  # (grid_w, grid_h): a rectangle's cells per side
    grid_text = str(grid) if isinstance(grid, int) else f"{grid[0]} x {grid[1]} (columns x rows)"
    # the anchors written out are those training computes (model.priors.anchors=kmeans, the same seed): the one
    # k-means call of resolve_priors, not the sweep's (its restarts and warm starts may settle elsewhere)
    chosen = resolve_priors(
        "kmeans", wh, grid, k=int(cfg.k), metric="iou", seed=int(cfg.seed), max_boxes=big, k_key="k"
    )
    anchors = torch.tensor(chosen.anchors, dtype=torch.float32)
    lines = [
        f"# k-means (1 - IoU), k={cfg.k}, avg IoU {chosen.avg_iou:.4f}, grid {grid_text} "
        f"(input {size_text((h, w))}), seed {cfg.seed}"
        + (
            f": what train.py model.priors.anchors=kmeans seed={cfg.seed} computes on this split"
            if cfg.split == "train"
            else f", on the {cfg.split} split's boxes (train.py computes its priors on the training split)"
        ),
        f"# darknet: anchors = {format_anchors(anchors)}",
        "anchors: [" + ", ".join(f"[{w:.4f}, {h:.4f}]" for w, h in anchors.tolist()) + "]",
    ]
    (out_dir / "anchors.yaml").write_text("\n".join(lines) + "\n")
    csv = ["k,avg_iou_iou,avg_iou_sse"] + [
        f"{k},{runs['iou'][i].avg_iou:.6f},{runs['sse'][i].avg_iou:.6f}" for i, k in enumerate(ks)
    ]
    (out_dir / "avg_iou.csv").write_text("\n".join(csv) + "\n")
    boxes = f"{data_name(cfg)}, {cfg.split} split: {len(wh)} boxes"
    plot_kmeans_curve(
        {"k-means, distance 1 - IoU": runs["iou"], "k-means, Euclidean (SSE)": runs["sse"]},
        out_dir / "kmeans_avg_iou.png",
        title=boxes,
    )
    cells = to_grid_units(torch.ones(2, dtype=torch.float64), grid)  # (2,) cells per unit of width, of height
    plot_anchor_clusters(
        wh,
        anchors.double() / cells,
        out_dir / "anchor_clusters.png",
        title=f"{boxes}; k-means (1 - IoU), k={cfg.k}, seed {cfg.seed}: avg IoU {chosen.avg_iou:.3f}",
        unit="image",
    )
    print("\n".join(lines))
    log.info("avg IoU of the chosen anchors on the %s boxes: %.4f; outputs in %s", cfg.split, chosen.avg_iou, out_dir)


if __name__ == "__main__":
    sys.argv = hydra_flags_first(sys.argv)  # overrides may follow -m
    with hint_unknown_overrides("anchors.yaml"):  # a typo'd key: "did you mean ...?" under Hydra's message
        main()
