"""Run a trained detector on an image or a folder: `python src/detect.py ckpt_path=<ckpt> source=<path>`.

A thin CLI over ``trainer.predict`` (:meth:`DetectorModule.predict_step`: the eval transform resizes, the module
decodes, the transform maps the boxes back to the image).

Writes annotated images into <run>/detections/ and every detection into <run>/detections.json (boxes xyxy in
original image pixels, class name, score; unreadable inputs under "failed"). Exits with status 1, naming the
inputs, when none could be read; unreadable inputs among readable ones are listed and skipped.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from yolo9000.checkpoints import load_module, module_settings
from yolo9000.data.image_io import read_image
from yolo9000.data.predict import ImageFilesDataset, PredictCollate, list_images
from yolo9000.environment import setup_environment
from yolo9000.models import STRIDE
from yolo9000.viz import draw_detections, save_image

log = logging.getLogger("yolo9000.detect")
setup_environment()


@hydra.main(version_base="1.3", config_path="../conf", config_name="detect.yaml")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.output_dir)
    module = load_module(
        cfg.ckpt_path,
        **module_settings(cfg, "conf_thresh", "nms_thresh", "pre_nms_topk", "tree_decode", "tree_thresh", "eval_map"),
    )
    size = int(cfg.img_size or module.hparams.get("eval_size", 416))
    if size % STRIDE:
        raise ValueError(f"img_size must be a multiple of {STRIDE}, got {size}")
    files = list_images(cfg.source)
    loader = DataLoader(
        ImageFilesDataset(files, size, letterbox=bool(cfg.letterbox)),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        collate_fn=PredictCollate(),
    )
    accelerator = {"cuda": "gpu"}.get(str(cfg.device), str(cfg.device))
    trainer = pl.Trainer(
        accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False
    )
    outputs = trainer.predict(module, dataloaders=loader) or []
    results = [det for out in outputs for det in out["detections"]]
    failed = [f for out in outputs for f in out["failed"]]
    records = []
    for det in results:
        img = read_image(det["path"])
        boxes = [[round(float(v), 2) for v in b] for b in det["boxes"].tolist()]
        dets = [
            {"box": b, "class": n, "score": round(float(s), 4)}
            for b, n, s in zip(boxes, det["names"], det["scores"].tolist(), strict=True)
        ]
        records.append({"file": det["path"], "width": img.shape[1], "height": img.shape[0], "detections": dets})
        log.info("%s: %s", det["path"], detection_line(dets))
        if cfg.draw:
            drawn = draw_detections(
                torch.from_numpy(img).permute(2, 0, 1), det["boxes"], det["labels"], det["scores"], module.class_names
            )
            save_image(drawn, out_dir / "detections" / f"{Path(det['path']).stem}.jpg")
    (out_dir / "detections.json").write_text(json.dumps({"images": records, "failed": failed}, indent=2))
    if not records:
        msg = f"no input could be read: none of the {len(failed)} image file(s) of {cfg.source}:\n"
        msg += unreadable_list(failed)
        log.error(msg)
        sys.exit(f"detect.py: {msg}")  # exit status 1
    if failed:
        log.warning("%d of %d inputs unreadable (skipped):\n%s", len(failed), len(files), unreadable_list(failed))
    n = sum(len(r["detections"]) for r in records)
    log.info("%d detections in %d images (%d unreadable) -> %s", n, len(records), len(failed), out_dir)


def detection_line(dets: list[dict[str, object]], limit: int = 10) -> str:
    """``dog 0.82, bicycle 0.64, ...`` (the first ``limit`` detections, highest score first), as darknet prints
    ``dog: 82%`` per box; ``nothing above the threshold`` when empty."""
    if not dets:
        return "nothing above the threshold"
    text = ", ".join(f"{d['class']} {float(d['score']):.2f}" for d in dets[:limit])  # type: ignore[arg-type]
    return text + (f" (+{len(dets) - limit} more)" if len(dets) > limit else "")


def unreadable_list(failed: list[dict[str, str]], limit: int = 20) -> str:
    """One ``  <file>: <reason>`` line per unreadable input (the first ``limit``, then how many more)."""
    lines = [f"  {f['file']}: {f['reason']}" for f in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more (all in detections.json)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
