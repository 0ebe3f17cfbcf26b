"""Train a YOLOv2 detector, then test the best checkpoint.

python src/train.py                                 # embedded default: BCCD on the CPU, minutes
python src/train.py data=voc model=yolov2 trainer=gpu
python src/train.py experiment=ablation_anchors -m  # a sweep
"""

# ruff: noqa: E402  (SIGTERM's handler of the imports goes in before them: see _sigterm_while_importing)
from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _sigterm_while_importing(signum: int, frame: Any) -> None:
    """SIGTERM while train.py's imports run (torch, Lightning: seconds, more on a cluster's shared file system) killed
    the process with no word (status -15): it ends with a line and 143 as later in the start. Nothing is written yet
    and no child started: the process ends here, so that no ``except`` inside a library's import can swallow it."""
    print(
        "stopped by SIGTERM while starting (importing): nothing was trained: the same command starts it",
        file=sys.stderr,
        flush=True,
    )
    os._exit(143)


if __name__ == "__main__" and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _sigterm_while_importing)  # _arm_sigterm replaces it once the imports are done

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from yolo9000.build import build, instantiate_list
from yolo9000.callbacks.checkpointing import LastCheckpoint
from yolo9000.callbacks.speed import SpeedMonitor
from yolo9000.callbacks.sweep_summary import local_sweep_dir, write_sweep_summary
from yolo9000.environment import (
    FILE_ONLY,
    concise_exit,
    hint_unknown_overrides,
    hydra_flags_first,
    log_failure,
    log_to_job_log,
    provenance,
    setup_environment,
)
from yolo9000.loggers import ResumableWandbLogger
from yolo9000.multirun import (
    drop_resumed_record,
    end_distributed,
    prepare_ddp_relaunch,
    retire_ddp_children,
    task_overrides,
)
from yolo9000.results import (
    check_metric_groups,
    evaluated_on,
    format_group_table,
    format_metric_table,
    group_means,
    model_stats,
    table_for_log,
    write_metrics,
)
from yolo9000.run_folder import (
    LAUNCH_FILE,
    LOCK_FILE,
    ResumeRefused,
    RunFolderBusy,
    check_checkpoint_classes,
    check_required,
    check_resume_config,
    check_resume_progress,
    check_resume_world,
    check_same_job,
    check_start_weights,
    finished_result,
    launching_process,
    lock_run_folder,
    release_run_folder,
    resume_checkpoint,
    resume_folder,
    run_of,
    saved_at_text,
)
from yolo9000.text_io import write_text

log = logging.getLogger("yolo9000.train")
setup_environment()
_TRAINER: pl.Trainer | None = None  # the current job's trainer (did SIGTERM stop it?)
_CTRL_C = False  # Ctrl-C asked the current fit to stop at its batch end
_ARMED_PID = -1  # the process whose SIGTERM raises _TerminatedWhileStarting (see _arm_sigterm)
_TRAINED = False  # the current job's fit has returned: a SIGTERM outside Lightning's handling now stops its test


class _TerminatedWhileStarting(BaseException):
    """SIGTERM before Lightning's fit or test took the signal (config composition, data setup, model build): a
    BaseException, so that no ``except Exception`` on the way records it as a failure of the code it stopped."""


def _sigterm_while_starting(signum: int, frame: Any) -> None:
    """SIGTERM's handler outside the fit and test: raises :class:`_TerminatedWhileStarting` in the process that
    armed it; a forked child (a pool worker of the data setup) that inherited it ends as SIGTERM's default ends it.
    Composed into Lightning's handler (during fit and test) it does nothing, in any process: a DataLoader worker
    forked with Lightning's handler in place keeps running until its start ignores SIGTERM (``worker_init``)."""
    if signal.getsignal(signal.SIGTERM) is not _sigterm_while_starting:
        # composed into the handler Lightning registered for its fit or test (which stays armed underneath, from
        # the fit's data setup until Lightning takes the signal): Lightning's stop at the batch end, nothing here
        return
    if os.getpid() != _ARMED_PID:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise _TerminatedWhileStarting


def _arm_sigterm() -> bool:
    """From here until :func:`_disarm_sigterm`, SIGTERM raises :class:`_TerminatedWhileStarting` (the run ends with a
    line and exit status 143, not silently). Only over SIGTERM's default handler and in the main thread (a handler
    someone else installed, or an ignored SIGTERM, stays). Returns whether the handler is in place."""
    global _ARMED_PID
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _sigterm_while_starting:
        return True
    if current is not signal.SIG_DFL and current is not _sigterm_while_importing:
        return False
    _ARMED_PID = os.getpid()
    signal.signal(signal.SIGTERM, _sigterm_while_starting)
    return True


def _second_sigterm_exits_143(signum: int, frame: Any) -> None:
    """SIGTERM after a SIGTERM stopped the job (its state saved, its line being written, the exit's clean-up): the
    process ends at once with 143, not as an exception inside that clean-up (an atexit traceback) or with -15."""
    os._exit(143)


def _after_sigterm() -> None:
    """The job was stopped by SIGTERM: a second one ends the process at once (:func:`_second_sigterm_exits_143`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _second_sigterm_exits_143)


def _disarm_sigterm() -> None:
    """SIGTERM's default handler again, where :func:`_arm_sigterm` put its own: for a caller's process after a job,
    and for the exit's clean-up (Lightning's fit and test compose theirs with it, where it does nothing)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is (
        _sigterm_while_starting
    ):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _how_it_goes_on(out_dir: str | Path) -> str:
    """How a run stopped before its training goes on: ``resume=`` where its folder holds a saved run, else the same
    command."""
    out_dir = Path(out_dir)
    saved = (out_dir / "config.yaml").is_file() and any((out_dir / "checkpoints").glob("*.ckpt"))
    return f"resume={out_dir} continues the run" if saved else "nothing was trained: the same command starts it"


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    """Run one job; a failure is recorded in ``<run dir>/failed.json`` (sweep summaries mark the row) and
    re-raised (Hydra's multirun goes on with the other jobs)."""
    armed_before = signal.getsignal(signal.SIGTERM) is _sigterm_while_starting  # train.py's own start (below)
    _arm_sigterm()  # SIGTERM while starting: a line and 143 (Lightning's handler takes over inside fit and test)
    locked = False
    try:  # one process trains a folder: the job's lock, before this process writes or logs anything there
        locked = launching_process() and lock_run_folder(cfg.paths.output_dir)
    except RunFolderBusy as e:
        drop_resumed_record(cfg.paths.output_dir)  # Hydra's record of this start: the other process's run stays
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            _detach_job_log(cfg.paths.output_dir)  # the sweep's line on the failed job: not into the other's log
            raise  # this job fails (no failed.json: the folder is the other process's), the sweep goes on
        raise SystemExit(f"Error: {e}") from None
    prepare_ddp_relaunch()  # -m with strategy=ddp: ranks > 0 re-run this job, not the sweep
    log_to_job_log()  # warnings and Lightning's messages into train.log too
    _warn_sweep_without_m()
    try:
        return run(cfg)
    except _TerminatedWhileStarting:
        if armed_before:  # train.py's process (a caller's keeps its handling)
            _after_sigterm()  # a second SIGTERM while this is said ends the process at once
        out_dir = Path(cfg.paths.output_dir)
        if _TRAINED:  # between the fit's end and Lightning's handling of the test, or after the test
            log.warning(
                "stopped by SIGTERM after training (the training is saved): resume=%s tests the run again", out_dir
            )
        else:
            log.warning("stopped by SIGTERM before training (while starting): %s", _how_it_goes_on(out_dir))
        _summarise_stopped_sweep()
        raise SystemExit(143) from None  # 128 + SIGTERM, as a shell reports it; no traceback
    except SIGTERMException as e:  # Lightning stops at a batch end on SIGTERM with a SystemExit of status 0
        if armed_before:  # train.py's process (a caller's keeps its handling)
            _after_sigterm()  # the state is saved: a second SIGTERM while this is said ends the process at once
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        why = "Ctrl-C" if _CTRL_C else "SIGTERM"
        log.warning("stopped by %s; %s holds the state to continue from: resume=%s", why, last, cfg.paths.output_dir)
        _summarise_stopped_sweep()
        raise SystemExit(130 if _CTRL_C else 143) from e  # 128 + the signal, as a shell reports it
    except KeyboardInterrupt:  # Ctrl-C outside the fit and test (their own handlers): while starting, reading data
        log.warning("stopped by Ctrl-C before training (while starting): %s", _how_it_goes_on(cfg.paths.output_dir))
        raise SystemExit(130) from None  # 128 + SIGINT, as a shell reports it; no traceback
    except ResumeRefused as e:
        log_failure(log, e)  # the folder's log says why this start stopped
        drop_resumed_record(cfg.paths.output_dir)  # Hydra's record of this start: the run's own records stay
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN:  # a user's mistake, not a crash:
            raise SystemExit(f"Error: {e}") from None  # its reason alone, as a resume= naming no run
        raise  # the run's folder holds a finished or resumable run: no failed.json there
    except Exception as e:
        retire_ddp_children()  # -m: at once, before Lightning's watcher sees this job's other ranks fail
        if _TRAINER is not None and _TRAINER.received_sigterm:
            # SLURM requeued the job (SIGUSR1: hpc checkpoint written, then SIGTERM to every process of the job);
            # an error while the batch finished (a dead worker or W&B service) is no failure of the job
            log.warning(
                "stopped by SIGTERM after a requeue (%s: %s); the job resumes from its checkpoint", type(e).__name__, e
            )
            raise SystemExit(143) from e
        log_failure(log, e)
        out_dir = Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "failed.json").write_text(
            json.dumps({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}, indent=2)
        )
        import wandb

        if wandb.run is not None:  # never let the next job of a multirun log into this run
            with contextlib.suppress(Exception):  # a lost W&B service must not hide the real error
                wandb.finish(exit_code=1)
        concise = concise_exit(e)  # a user's mistake in a single run: its message, the traceback in the log
        if concise is not None:
            raise concise from None
        raise
    finally:
        end_distributed()  # -m: the next job's DDP needs a fresh process group
        if locked:  # the job's own lock (a sweep's next job trains its own folder); train.py's start keeps its own
            release_run_folder(cfg.paths.output_dir)
        if armed_before:  # train.py's process: SIGTERM between a sweep's jobs ends it with a line too
            _arm_sigterm()
        else:  # a caller's process (main.__wrapped__ in a test): SIGTERM's handling as the call found it
            _disarm_sigterm()


def _detach_job_log(out_dir: str | Path) -> None:
    """Close the root logger's file handlers writing into ``out_dir`` (Hydra's job log there): a job refused a
    folder another process trains logs nothing into that run's log (Hydra sets up the next job's log anew)."""
    folder = Path(out_dir).resolve()
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().parent == folder:
            logging.getLogger().removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def _ctrl_c_stops_at_batch_end(trainer: pl.Trainer) -> Iterator[None]:
    """While fitting: Ctrl-C (SIGINT) stops the run as SIGTERM does, after the batch, with the state saved in
    ``last.ckpt`` (exit status 130 and the command that continues it); a second Ctrl-C stops at once, unsaved
    (Lightning's own handling). Under DDP every process agrees on the stop (:class:`LastCheckpoint`); without that
    callback several processes keep Lightning's handling."""
    global _CTRL_C
    last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
    if threading.current_thread() is not threading.main_thread() or (trainer.world_size > 1 and last is None):
        yield
        return

    def stop_after_batch(signum: int, frame: Any) -> None:
        global _CTRL_C
        if _CTRL_C:  # the second: at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        _CTRL_C = True
        if last is not None:
            last.request_stop(trainer, "Ctrl-C")
        else:
            log.warning("Ctrl-C: the run stops after this batch, saved there")
            trainer._signal_connector.received_sigterm = True  # Lightning's stop at the batch end, as for SIGTERM
        log.warning("Ctrl-C again stops at once, unsaved")

    _CTRL_C = False
    previous = signal.signal(signal.SIGINT, stop_after_batch)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _ctrl_c_exits_130(trainer: pl.Trainer, out_dir: Path, testing: bool) -> Iterator[None]:
    """A Ctrl-C that Lightning handles itself (any during the test, a second one while fitting) ends the process
    with its ``sys.exit(1)`` after "Detected KeyboardInterrupt", saying nothing of the run: it exits 130 (as a
    shell reports Ctrl-C, and as the first Ctrl-C of a fit does) after a line saying how the run goes on."""
    try:
        yield
    except SystemExit as e:
        if e.code != 1 or not trainer.interrupted:
            raise
        if testing:
            log.warning(
                "stopped by Ctrl-C while testing (the training is saved; no metrics.json): resume=%s tests the run "
                "again",
                out_dir,
            )
        else:
            log.warning(
                "stopped at once by a second Ctrl-C (the training since the last save is lost): resume=%s continues "
                "from its newest checkpoint",
                out_dir,
            )
        raise SystemExit(130) from e


def _summarise_stopped_sweep() -> None:
    """A sweep stopped by SIGTERM ends without Hydra's end-of-job callbacks: write its summary here (the stopped job
    without a result, the jobs never started) and say how the sweep continues."""
    # a cluster's job (submitit) is requeued there and summarised on the submitting machine
    sweep_dir = local_sweep_dir(HydraConfig.get() if HydraConfig.initialized() else None)
    if sweep_dir is None:
        return
    log.warning("the sweep continues with its command and hydra.sweep.dir=%s (finished jobs are kept)", sweep_dir)
    write_sweep_summary(sweep_dir)


def _warn_sweep_without_m() -> None:
    """An experiment that defines a sweep (``hydra.sweeper.params``: the ablations) started without ``-m`` runs one
    job with the config's own values: said, with the keys the sweep would vary (it ran silently)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
        return
    params = OmegaConf.select(HydraConfig.get(), "sweeper.params") or {}
    if params and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        log.warning(
            "this config defines a sweep over %s (hydra.sweeper.params); without -m one job runs, with the config's "
            "own values: add -m to run the sweep",
            ", ".join(str(k) for k in params),
        )


def run(cfg: DictConfig) -> float | None:
    """Train + test; returns the test value of the module's monitored metric (mAP@0.5 for detection), the sweep
    objective."""
    global _TRAINER, _TRAINED
    _TRAINED = False
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    if not cfg.get("resume") and HydraConfig.initialized():  # Hydra chose the folder: it must hold this job's run
        hc = HydraConfig.get()
        check_same_job(out_dir, task_overrides(hc), sweep=hc.mode == RunMode.MULTIRUN)
    start_ckpt = resume_checkpoint(cfg, out_dir) if cfg.train else None
    resumed = start_ckpt is not None and Path(start_ckpt).parent in (out_dir, out_dir / "checkpoints")
    if start_ckpt is not None:  # a continuation, or a new run from ckpt_path=: it must have epochs left to train
        check_resume_progress(cfg, start_ckpt)
    if resumed:
        check_resume_config(cfg, out_dir)
        done = finished_result(cfg, out_dir)  # a finished run is not resumed: it says so itself
        if done is not None:
            drop_resumed_record(out_dir)  # nothing was run: the folder stays as this start found it
            return done
        at = saved_at_text(start_ckpt)
        # (after the checks: it does resume)
        log.info("resuming the run in %s from %s%s", out_dir, start_ckpt, f" (saved in {at})" if at else "")
    check_required(cfg)
    build_cfg = cfg
    if start_ckpt is not None:  # the weights come from the checkpoint: the run's starting weights need not exist
        starts: dict[str, Any] = {k: None for k in ("init_ckpt", "backbone_ckpt") if cfg.model.get(k)}
        if cfg.model.net.get("weights"):  # model=darknet's starting .weights
            starts["net"] = {"weights": None}
        build_cfg = OmegaConf.merge(cfg, {"model": starts}) if starts else cfg  # a copy: cfg stays as composed
    check_start_weights(build_cfg)  # before the data is read: a wrong path is said at once
    launch = out_dir / LAUNCH_FILE
    if not resumed and HydraConfig.initialized() and not launch.is_file():  # a fresh run, or one from ckpt_path
        launch.write_text(" ".join(shlex.quote(o) for o in task_overrides(HydraConfig.get())) + "\n")
    built = build(build_cfg)
    datamodule, module = built.datamodule, built.module
    if cfg.train and cfg.test:  # the test split read now: a dataset without one stops before training, not after it
        datamodule.setup("test")
    groups = OmegaConf.to_container(cfg.metric_groups, resolve=True) if cfg.get("metric_groups") else {}
    evaluated = list(getattr(module, "eval_class_names", built.info.class_names))  # a WordTree map's nodes
    groups = check_metric_groups(groups, evaluated)  # type: ignore[arg-type]  # before training
    for ckpt_file in {c for c in (start_ckpt, None if cfg.train else cfg.get("ckpt_path")) if c}:
        check_checkpoint_classes(ckpt_file, list(built.info.class_names), module, cfg.train and ckpt_file == start_ckpt)
    loggers = instantiate_list(cfg.get("logger"))
    callbacks = instantiate_list(cfg.get("callbacks"))
    if not loggers:  # ~logger: Lightning's learning-rate monitor would refuse to start
        kept = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        if len(kept) < len(callbacks):
            log.info("no logger (~logger): the learning rate is not logged (callbacks.lr_monitor left out)")
        callbacks = kept
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    _TRAINER = trainer
    if start_ckpt is not None:  # as many processes as the run: checked before anything is written into the folder
        check_resume_world(start_ckpt, trainer.world_size)
    (out_dir / "failed.json").unlink(missing_ok=True)  # a restarted job starts clean
    if cfg.train and (out_dir / "metrics.json").is_file():  # trained further: the old result is no longer the run's
        (out_dir / "metrics.json").replace(out_dir / "metrics_previous.json")
        log.info("%s: the earlier result moved to metrics_previous.json (training goes on)", out_dir)
    (out_dir / "build.json").write_text(json.dumps(built.info.as_dict(), indent=2))
    record = "config_resumed.yaml" if resumed and (out_dir / "config.yaml").is_file() else "config.yaml"
    write_text(out_dir / record, OmegaConf.to_yaml(cfg, resolve=True))  # the run's config.yaml stays its record
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    # SIGTERM's handler of the start stays armed through the fit's and the test's own start (data setup, restoring
    # the checkpoint: Lightning takes the signal only after them); Lightning composes it into its handler while it
    # runs, where it does nothing (see _sigterm_while_starting), and puts it back when it returns
    if cfg.train:
        with _ctrl_c_stops_at_batch_end(trainer), _ctrl_c_exits_130(trainer, out_dir, testing=False):
            trainer.fit(module, datamodule=datamodule, ckpt_path=start_ckpt)
    _TRAINED = bool(cfg.train)  # a test-only run (train=false) has trained nothing in its folder
    metrics = None
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or cfg.ckpt_path
        if not ckpt:
            log.warning("no best checkpoint (did validation run?): testing the current weights")
        with _ctrl_c_exits_130(trainer, out_dir, testing=True):
            tested = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
        if trainer.is_global_zero:
            log.info("test metrics (%s):\n%s", ckpt or "current weights", format_metric_table(tested), extra=FILE_ONLY)
            extra = {"headline_metric": module.monitor.split("/", 1)[1]}  # the data's benchmark metric (its key)
            extra |= {"provenance": provenance()}  # command, commit, machine
            if HydraConfig.initialized():  # the overrides of the process that wrote the result, the summaries'
                # labels (an extended job's trainer.max_epochs); resume= says where the run lives, not what it is
                extra["overrides"] = [o for o in task_overrides(HydraConfig.get()) if not o.startswith("resume=")]
            extra |= {"checkpoint": ckpt, "seen": int(getattr(module, "seen", 0))}
            extra |= evaluated_on(datamodule, trainer.precision)  # split, img_size, precision, as eval.py's (titles)
            extra |= model_stats(module.model, datamodule.img_size)  # a side, or (height, width)
            if built.info.anchors_avg_iou is not None:
                extra["anchors_avg_iou"] = built.info.anchors_avg_iou
            extra |= group_means(module.test_results.get("per_class", {}), groups)
            for cb in callbacks:
                if isinstance(cb, SpeedMonitor):
                    extra |= cb.summary()
            extra |= datamodule.data_report()  # data_issues (text), data_problems (every file), augmentation
            if groups:  # before metrics.json, which marks the run finished
                table = format_group_table(module.test_results.get("per_class", {}), groups)
                write_text(out_dir / "groups.md", table + "\n")
            metrics = write_metrics(out_dir, module.test_results, evaluated, extra)
            if (out_dir / "per_class.md").is_file():
                log.info("per-class results (test):\n%s", table_for_log(out_dir / "per_class.md"))
            if groups:
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


def _single_run_values(argv: list[str], keys: tuple[str, ...]) -> dict[str, str] | None:
    """The values a single run's command line gives ``keys`` (as Hydra reads them: quotes removed; a sweep or a
    deletion gives none); None for a multirun (``-m``, ``hydra.mode=MULTIRUN``)."""
    if "-m" in argv or "--multirun" in argv:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, values = OverridesParser.create(), dict.fromkeys(keys, "")
    for arg in argv[1:]:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:  # Hydra's reading of the override: quotes removed (a folder with a space), sweeps and deletions known
            override = parser.parse_override(arg)
        except Exception:  # Hydra reports it, with its own message
            continue
        if override.key_or_group == "hydra.mode" and override.value() == "MULTIRUN":
            return None
        if override.key_or_group in values and not override.is_delete():
            value = None if override.is_sweep_override() else override.value()
            values[override.key_or_group] = "" if value is None else str(value)  # resume=null: none
    return {k: v for k, v in values.items() if v}


def _lock_named_run(argv: list[str]) -> None:
    """A single run into an existing folder the command names (``resume=<run>``, ``hydra.run.dir=<folder>``) takes
    the folder's lock before Hydra writes its record of the start (``.hydra_resumed/``) or opens the log there:
    while another process trains it, the command stops with that alone, the folder as it was (a folder worked out
    otherwise is locked when the job starts: :func:`main`). Ranks > 0 of a distributed run take none."""
    values = _single_run_values(argv, ("resume", "hydra.run.dir"))
    if not values or not launching_process():
        return
    folder = values.get("hydra.run.dir")
    if folder is None:  # the run folder resume= names (checked for a run's after this: a run still starting has none)
        folder = str(run_of(Path(values["resume"])))
        if not any((Path(folder) / name).is_file() for name in (LOCK_FILE, "config.yaml")):
            return  # no run's folder: the resume check says so, and nothing is written there
    if "${" in folder or not Path(folder).is_dir():  # Hydra's to resolve, or a new folder: main() locks it
        return
    try:
        lock_run_folder(folder)  # held until the process ends
    except RunFolderBusy as e:
        raise SystemExit(f"Error: {e}") from None


def _check_resume_arg(argv: list[str]) -> None:
    """A single run's ``resume=`` that names no run stops before Hydra creates anything, also when the command gives
    ``hydra.run.dir`` too (repeating the run's overrides): that replaced the folder's resolution, which checks it, so
    Hydra created the folder and wrote a record of the ``resume=`` start into it, after which the run's own command
    was refused there ("holds the run of other overrides") as well as the resume."""
    text = (_single_run_values(argv, ("resume",)) or {}).get("resume", "")
    if text and "${" not in text:  # an interpolation is Hydra's to resolve (and its resolver checks the folder)
        try:
            resume_folder(text)
        except FileNotFoundError as e:
            raise SystemExit(f"Error: {e}") from None


if __name__ == "__main__":
    sys.argv = hydra_flags_first(sys.argv)  # overrides may follow -m
    _lock_named_run(sys.argv)  # before the resume check: a run another process is starting has no config.yaml yet
    _check_resume_arg(sys.argv)
    _arm_sigterm()  # from the config's composition on (main says it in the run's log once it runs)
    try:
        with hint_unknown_overrides("train.yaml"):  # a typo'd key: "did you mean ...?" under Hydra's message
            main()
    except _TerminatedWhileStarting:  # outside a job: composing the config, or between a sweep's jobs
        _after_sigterm()
        print("stopped by SIGTERM outside a job (composing the config, or between a sweep's jobs)", file=sys.stderr)
        raise SystemExit(143) from None
    finally:  # the exit's clean-up (atexit: loggers, torch): SIGTERM's default there, no exception inside it
        _disarm_sigterm()
