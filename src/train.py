"""Train a YOLOv2 detector, then test the best checkpoint.

python src/train.py                                 # embedded default: BCCD on the CPU, minutes
python src/train.py data=voc model=yolov2 trainer=gpu
python src/train.py experiment=ablation_anchors -m  # a sweep
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import traceback
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from yolo9000.build import build, instantiate_list
from yolo9000.callbacks.speed import SpeedMonitor
from yolo9000.environment import provenance, setup_environment
from yolo9000.loggers import ResumableWandbLogger
from yolo9000.multirun import end_distributed, prepare_ddp_relaunch
from yolo9000.results import format_group_table, group_means, model_stats, write_metrics

log = logging.getLogger("yolo9000.train")
setup_environment()
_TRAINER: pl.Trainer | None = None  # the current job's trainer (did SIGTERM stop it?)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Run one job; a failure is recorded in ``<run dir>/failed.json`` (sweep summaries mark the row) and
    re-raised (Hydra's multirun goes on with the other jobs)."""
    prepare_ddp_relaunch()  # -m with strategy=ddp: ranks > 0 re-run this job, not the sweep
    try:
        return run(cfg)
    except SIGTERMException as e:  # Lightning stops at a batch end on SIGTERM with a SystemExit of status 0
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        log.warning("stopped by SIGTERM; %s holds the state to continue from: resume=%s", last, cfg.paths.output_dir)
        raise SystemExit(143) from e  # 128 + SIGTERM, as a shell reports a process it terminated
    except ResumeRefused:
        raise  # the run's folder holds a finished or resumable run: no failed.json there
    except Exception as e:
        if _TRAINER is not None and _TRAINER.received_sigterm:
            # SLURM requeued the job (SIGUSR1: hpc checkpoint written, then SIGTERM to every process of the job);
            # an error while the batch finished (a dead worker or W&B service) is no failure of the job
            log.warning(
                "stopped by SIGTERM after a requeue (%s: %s); the job resumes from its checkpoint", type(e).__name__, e
            )
            raise SystemExit(143) from e
        out_dir = Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "failed.json").write_text(
            json.dumps({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}, indent=2)
        )
        import wandb

        if wandb.run is not None:  # never let the next job of a multirun log into this run
            with contextlib.suppress(Exception):  # a lost W&B service must not hide the real error
                wandb.finish(exit_code=1)
        raise
    finally:
        end_distributed()  # -m: the next job's DDP needs a fresh process group


def resume_checkpoint(cfg: DictConfig, out_dir: Path) -> str | None:
    """The checkpoint training starts from: ``ckpt_path`` when given; else, when the run folder already holds
    checkpoints (``resume=<run>``, a requeued SLURM job), the newest of ``checkpoints/last.ckpt`` and Lightning's
    ``hpc_ckpt_<n>.ckpt``; else none (a fresh run)."""
    if cfg.get("resume") and not Path(cfg.resume).is_dir():
        raise FileNotFoundError(f"resume={cfg.resume}: no such run folder")
    if cfg.ckpt_path:
        return str(cfg.ckpt_path)
    found = [p for p in [out_dir / "checkpoints" / "last.ckpt", *out_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    if not found:
        if cfg.get("resume"):
            raise FileNotFoundError(f"resume={cfg.resume}: no checkpoints/last.ckpt or hpc_ckpt_*.ckpt to continue")
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("resuming the run in %s from %s", out_dir, newest)
    return str(newest)


# the keys that say which images and labels a run trains on (the rest of the data block may change on resume)
_DATA_KEYS = ("_target_", "root", "class_names", "yaml_file", "names_file", "ann_files", "image_dir", "ann_dir")
_DATA_KEYS += ("split_files", "split_fractions", "split_seed", "max_images", "train", "val", "test")
LAUNCH_FILE = "launch_overrides.txt"  # the command-line overrides a run folder was started with (never rewritten)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config container as {dotted key: leaf value}."""
    if not isinstance(d, dict) or not d:
        return {prefix.rstrip("."): d}
    return {k: v for key, val in d.items() for k, v in _flat(val, f"{prefix}{key}.").items()}


class ResumeRefused(ValueError):
    """``resume=<run>`` with other data than the run's: nothing is written into the run's folder."""


def check_resume_config(cfg: DictConfig, out_dir: Path) -> None:
    """A run continued in its folder (``resume=<run>``) must go on with the data it was trained on.

    Hydra composes ``resume=<run>`` with the defaults plus what is on this command line, so a resume without the
    run's ``data=...`` overrides would train on the default data (BCCD), with its classes in its order. Compares
    the run's ``config.yaml`` (resolved, as this job's) with this job's config: a difference in the dataset keys
    raises ValueError naming every one and the overrides the run was started with (``launch_overrides.txt``);
    other differences are logged as a warning (the weights, optimizer and schedule states come from the
    checkpoint: a changed ``model.lr`` does not apply; a longer ``trainer.max_epochs`` does)."""
    saved = out_dir / "config.yaml"
    if not saved.is_file():
        return
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    new = OmegaConf.to_container(cfg, resolve=True)
    old_data, new_data = old.get("data") or {}, new.get("data") or {}  # type: ignore[union-attr]
    diff = [
        f"data.{k}: {old_data.get(k)!r} (the run) vs {new_data.get(k)!r} (now)"
        for k in _DATA_KEYS
        if old_data.get(k) != new_data.get(k)
    ]  # type: ignore[union-attr]
    if diff:
        launch = out_dir / LAUNCH_FILE
        started = f"python src/train.py {launch.read_text().strip()} resume={out_dir}" if launch.is_file() else None
        raise ResumeRefused(
            f"resume={out_dir}: this job's data differs from the run's ({saved}):\n  "
            + "\n  ".join(diff)
            + "\npass the run's data overrides again"
            + (f": {started}" if started else " (data=... data.root=...)")
        )
    flat_old, flat_new = _flat(old), _flat(new)
    skip = ("resume", "ckpt_path", "paths.", "logger.")  # the loggers' run names and groups change on every start
    changed = [
        f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}"
        for k in sorted(set(flat_old) | set(flat_new))
        if not k.startswith(skip) and flat_old.get(k) != flat_new.get(k)
    ]
    if changed:
        log.warning(
            "resume=%s: %d setting(s) differ from the run's %s (the weights, optimizer and schedule states come from "
            "the checkpoint; this job's config is written to config_resumed.yaml):\n  %s",
            out_dir,
            len(changed),
            saved,
            "\n  ".join(changed[:20]) + (f"\n  ... {len(changed) - 20} more" if len(changed) > 20 else ""),
        )


def check_required(cfg: DictConfig) -> None:
    """The keys an experiment lists under ``required`` (finetune_448: ``model.init_ckpt``) must be set: a ``???``
    in an experiment file is lost when OmegaConf merges it over the model group's ``null``."""
    for key in cfg.get("required") or []:
        if OmegaConf.select(cfg, key) in (None, "", "???"):
            raise ValueError(f"{key} is required by this experiment: add {key}=<path> to the command line")


def check_checkpoint_classes(ckpt_file: str | Path, class_names: list[str]) -> None:
    """Raise when a checkpoint was trained on other classes (or another order) than the composed data's: its
    weights would be tested / trained further with every label meaning another class."""
    import torch

    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False)
    saved = (ckpt.get("hyper_parameters") or {}).get("class_names")
    if saved is not None and list(saved) != list(class_names):
        raise ValueError(
            f"{ckpt_file} was trained on the classes {list(saved)[:10]}, the data has {class_names[:10]}: pass the "
            "data overrides of the run that wrote it (its launch_overrides.txt), or data.class_names=<its list>"
        )


def finished_result(cfg: DictConfig, out_dir: Path) -> float | None:
    """The headline test value of a run folder that already holds this job's finished result (its metrics.json,
    trained to the same ``trainer.max_epochs`` / ``max_steps``), else None. A sweep re-run into its folder, or a
    requeued job that had finished, then leaves the result as it is (resuming it would test again without the
    training's records); raise ``trainer.max_epochs`` to train such a run further."""
    metrics_file, saved = out_dir / "metrics.json", out_dir / "config.yaml"
    if not (metrics_file.is_file() and saved.is_file()):
        return None
    before = OmegaConf.load(saved).get("trainer") or {}
    if any(before.get(k, -1) != cfg.trainer.get(k, -1) for k in ("max_epochs", "max_steps")):
        return None
    metrics = json.loads(metrics_file.read_text())
    key = str(metrics.get("headline_metric", "map_50"))
    log.info("%s already holds this job's finished run (%s): not run again", out_dir, metrics_file.name)
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


def run(cfg: DictConfig) -> float | None:
    """Train + test; returns the test value of the module's monitored metric (mAP@0.5 for detection), the sweep
    objective."""
    global _TRAINER
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    start_ckpt = resume_checkpoint(cfg, out_dir) if cfg.train else None
    resumed = start_ckpt is not None and Path(start_ckpt).parent in (out_dir, out_dir / "checkpoints")
    if resumed:
        check_resume_config(cfg, out_dir)
        done = finished_result(cfg, out_dir)
        if done is not None:
            return done
    check_required(cfg)
    build_cfg = cfg
    if start_ckpt is not None:  # the weights come from the checkpoint: the run's starting weights need not exist
        starts = {k: None for k in ("init_ckpt", "backbone_ckpt") if cfg.model.get(k)}
        build_cfg = OmegaConf.merge(cfg, {"model": starts}) if starts else cfg  # a copy: cfg stays as composed
    (out_dir / "failed.json").unlink(missing_ok=True)  # a restarted job starts clean
    launch = out_dir / LAUNCH_FILE
    if start_ckpt is None and HydraConfig.initialized() and not launch.is_file():
        launch.write_text(" ".join(shlex.quote(o) for o in HydraConfig.get().overrides.task) + "\n")
    built = build(build_cfg)
    datamodule, module = built.datamodule, built.module
    for ckpt_file in {c for c in (start_ckpt, None if cfg.train else cfg.get("ckpt_path")) if c}:
        check_checkpoint_classes(ckpt_file, list(built.info.class_names))
    (out_dir / "build.json").write_text(json.dumps(built.info.as_dict(), indent=2))
    record = "config_resumed.yaml" if resumed and (out_dir / "config.yaml").is_file() else "config.yaml"
    (out_dir / record).write_text(OmegaConf.to_yaml(cfg, resolve=True))  # the run's config.yaml stays its record
    loggers = instantiate_list(cfg.get("logger"))
    callbacks = instantiate_list(cfg.get("callbacks"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    _TRAINER = trainer
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    if cfg.train:
        trainer.fit(module, datamodule=datamodule, ckpt_path=start_ckpt)
    metrics = None
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or cfg.ckpt_path
        if not ckpt:
            log.warning("no best checkpoint (did validation run?): testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
        if trainer.is_global_zero:
            extra = {"headline_metric": module.monitor.split("/", 1)[1]}  # the data's benchmark metric (its key)
            extra |= {"provenance": provenance()}  # command, commit, machine
            extra |= {"checkpoint": ckpt, "seen": int(getattr(module, "seen", 0))}
            extra |= model_stats(module.model, int(cfg.data.img_size))
            if built.info.anchors_avg_iou is not None:
                extra["anchors_avg_iou"] = built.info.anchors_avg_iou
            groups = OmegaConf.to_container(cfg.metric_groups, resolve=True) if cfg.get("metric_groups") else {}
            extra |= group_means(module.test_results.get("per_class", {}), groups)  # type: ignore[arg-type]
            for cb in callbacks:
                if isinstance(cb, SpeedMonitor):
                    extra |= cb.summary()
            extra |= datamodule.data_report()  # data_issues (text), data_problems (every file), augmentation
            metrics = write_metrics(out_dir, module.test_results, module.class_names, extra)
            if (out_dir / "per_class.md").is_file():
                log.info("per-class results (test):\n%s", (out_dir / "per_class.md").read_text())
            if groups:
                table = format_group_table(module.test_results.get("per_class", {}), groups)  # type: ignore[arg-type]
                (out_dir / "groups.md").write_text(table + "\n")
                log.info("metric groups (test):\n%s", table)
            key = module.monitor.split("/", 1)[1]
            log.info("test %s %.4f -> %s", key, metrics[key], out_dir / "metrics.json")
    summary = {f"test/{k}": v for k, v in (metrics or {}).items() if isinstance(v, float)}
    for lg in loggers:  # one finished W&B run per job (multirun jobs never merge)
        if isinstance(lg, ResumableWandbLogger):
            lg.finish(summary=summary)
        elif isinstance(lg, WandbLogger) and trainer.is_global_zero:
            lg.experiment.summary.update(summary)
            lg.experiment.finish()
    return None if metrics is None else float(metrics[module.monitor.split("/", 1)[1]])


if __name__ == "__main__":
    main()
