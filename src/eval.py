"""Evaluate a trained detector: `python src/eval.py ckpt_path=<ckpt> [data=...] [split=val]`.

Writes metrics.json (mAP@0.5, mAP@[.5:.95], per-class AP) and per_class.md into the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from yolo9000.callbacks.predictions import PredictionImages
from yolo9000.metrics import DetectionEvaluator
from yolo9000.modules.detector import DetectorModule
from yolo9000.runner import instantiate_list, load_module, setup_environment, write_metrics

log = logging.getLogger("yolo9000.eval")
setup_environment()


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> float:
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    module = load_module(cfg.ckpt_path)
    if not isinstance(module, DetectorModule):
        raise ValueError(
            f"{cfg.ckpt_path} holds a {type(module).__name__}; eval.py evaluates detectors. For a classifier run "
            "`python src/train.py experiment=pretrain_darknet19 train=false ckpt_path=<ckpt>`"
        )
    for key in ("conf_thresh", "nms_thresh"):
        if cfg.get(key) is not None:
            module.hparams[key] = float(cfg[key])
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    if list(datamodule.class_names) != list(module.class_names):
        raise ValueError(
            f"the checkpoint was trained on classes {module.class_names} but data={cfg.data.get('name', '?')} has "
            f"{list(datamodule.class_names)}"
        )
    voc07 = module.hparams.voc07 if cfg.voc07 is None else bool(cfg.voc07)
    module.test_eval = DetectionEvaluator(module.class_names, voc07=voc07, max_detections=module.hparams.max_det)
    callbacks = [PredictionImages(cfg.draw, cfg.score_thresh)] if cfg.draw else []
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_list(cfg.get("logger")), callbacks=callbacks
    )
    loader = datamodule.val_dataloader() if cfg.split == "val" else datamodule.test_dataloader()
    trainer.test(module, dataloaders=loader)
    metrics = write_metrics(
        out_dir,
        module.test_results,
        module.class_names,
        {"checkpoint": str(cfg.ckpt_path), "split": cfg.split, "data_issues": datamodule.issue_summary()},
    )
    log.info("per-class AP (%s):\n%s", cfg.split, (out_dir / "per_class.md").read_text())
    log.info("mAP@0.5 %.4f  mAP@[.5:.95] %.4f -> %s", metrics["map_50"], metrics["map"], out_dir / "metrics.json")
    return float(metrics["map_50"])


if __name__ == "__main__":
    main()
