"""Hydra callback: write the sweep summary (summary.md / .csv / .png) into a multirun's sweep folder.

Registered in ``conf/train.yaml`` under ``hydra.callbacks``. Every job rewrites the summary when it ends (a local
multirun's jobs in turn; a cluster array's jobs, submitit, on their nodes: the sweep folder is shared), so the
summary exists even when the sweep stops early: Hydra skips ``on_multirun_end`` when a local job fails, and the
submitting process of a cluster sweep raises when one of its jobs failed. Once more at the end of the multirun.
Jobs ending together take turns (a lock file in the sweep folder), so the last summary written has read every
finished job. ``python src/report.py <sweep dir>`` redoes it any time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger("yolo9000.sweep_summary")


def job_sweep_dir(hydra_cfg: Any) -> str | None:
    """The sweep folder when ``hydra_cfg`` (the ``hydra`` node of a job's config, or ``HydraConfig.get()``) is a job
    of a multirun, local or on a cluster; None for a single run."""
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return str(hydra_cfg.sweep.dir)


def local_sweep_dir(hydra_cfg: Any) -> str | None:
    """:func:`job_sweep_dir` of a local (sequential) multirun's job only; None for a remote launcher's job too
    (submitit: a job stopped by SIGTERM is requeued there)."""
    sweep_dir = job_sweep_dir(hydra_cfg)
    if sweep_dir is None or not str(hydra_cfg.launcher.get("_target_", "")).endswith("BasicLauncher"):
        return None
    return sweep_dir


LOCK_NAME = ".summary.lock"  # in the sweep folder: jobs ending together write the summary in turn


@contextlib.contextmanager
def _summary_turn(sweep_dir: str) -> Iterator[None]:
    """Holds the sweep folder's lock file (``fcntl.flock``) while the summary is read and written; no lock where
    there is none to take (no ``fcntl``, a folder not writable, a file system without locks)."""
    try:
        import fcntl

        handle = open(Path(sweep_dir) / LOCK_NAME, "a")  # noqa: SIM115
    except (ImportError, OSError):  # not POSIX, or a folder not writable
        yield
        return
    with handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def write_sweep_summary(sweep_dir: str, plot: bool = True) -> None:
    """``report.write_summary`` of ``sweep_dir``, in turn with the other jobs of the sweep; an error is logged,
    never raised (a summary must never break or hide what the sweep is doing)."""
    from yolo9000.report import write_summary

    try:
        with _summary_turn(sweep_dir):
            write_summary(sweep_dir, plot=plot)
    except Exception:
        log.exception("could not write the sweep summary of %s", sweep_dir)


def say_failed_job(config: DictConfig, job_return: Any) -> None:
    """On the console when a sweep's job fails (Hydra says it only when the whole sweep ends): the job, its
    overrides, the error and its log file, while the other jobs go on."""
    from hydra.core.utils import JobStatus

    if getattr(job_return, "status", None) != JobStatus.FAILED:
        return
    hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else config.get("hydra")
    num, where = "?", ""
    if hydra_cfg is not None:
        num = hydra_cfg.job.num
        where = f" (its log: {Path(str(hydra_cfg.runtime.output_dir)) / f'{job_return.task_name}.log'})"
    error = job_return._return_value
    overrides = " ".join(job_return.overrides or [])
    log.error("job %s (%s) failed: %s: %s%s", num, overrides, type(error).__name__, error, where)


class SweepSummary(Callback):
    """Summarise ``hydra.sweep.dir`` after each job (local or on a cluster) and at the end of the multirun.

    Args:
        after_each_job: also rewrite the summary when each job of the multirun ends.
        plot: write the bar plot (summary.png).
    """

    def __init__(self, after_each_job: bool = True, plot: bool = True) -> None:
        self.after_each_job = after_each_job
        self.plot = plot

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from lightning_fabric.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank == 0:
            say_failed_job(config, job_return)
        sweep_dir = job_sweep_dir(config.get("hydra")) if self.after_each_job else None
        if sweep_dir is not None and rank_zero_only.rank == 0:  # a DDP job's process 0 (it wrote the results)
            write_sweep_summary(sweep_dir, plot=self.plot)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(str(config.hydra.sweep.dir), plot=self.plot)
