"""Train a YOLOv2 detector, then test the best checkpoint.

python src/train.py                                 # embedded default: BCCD on the CPU, minutes
python src/train.py data=voc model=yolov2 trainer=gpu
python src/train.py experiment=ablation_anchors -m  # a sweep
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from yolo9000.runner import build, instantiate_list, setup_environment, write_metrics

log = logging.getLogger("yolo9000.train")
setup_environment()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Train + test; returns the test mAP@0.5 (the sweep objective)."""
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    datamodule, module = build(cfg)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    loggers = instantiate_list(cfg.get("logger"))
    callbacks = instantiate_list(cfg.get("callbacks"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = None
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or cfg.ckpt_path
        if not ckpt:
            log.warning("no best checkpoint (did validation run?): testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
        if trainer.is_global_zero:
            metrics = write_metrics(
                out_dir,
                module.test_results,
                module.class_names,
                {"checkpoint": ckpt, "seen": int(module.seen), "data_issues": datamodule.issue_summary()},
            )
            log.info("per-class AP (test):\n%s", (out_dir / "per_class.md").read_text())
            log.info(
                "test mAP@0.5 %.4f  mAP@[.5:.95] %.4f  -> %s",
                metrics["map_50"],
                metrics["map"],
                out_dir / "metrics.json",
            )
    for lg in loggers:  # one finished W&B run per job (multirun jobs never merge)
        if isinstance(lg, WandbLogger) and trainer.is_global_zero:
            if metrics:
                lg.experiment.summary.update({f"test/{k}": v for k, v in metrics.items() if isinstance(v, float)})
            lg.experiment.finish()
    return None if metrics is None else float(metrics["map_50"])


if __name__ == "__main__":
    main()
