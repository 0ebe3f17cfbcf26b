"""Hydra callback: write the sweep summary (summary.md / .csv / .png) into a multirun's sweep folder.

Registered in ``conf/train.yaml`` under ``hydra.callbacks``. It rewrites the summary after every job of a local
(sequential) multirun, so the summary exists even when Hydra stops the sweep because a job failed (Hydra then
skips ``on_multirun_end``), and once more at the end of the multirun. With a remote launcher (submitit) jobs run
elsewhere: only the end-of-sweep summary is written; ``python src/report.py <sweep dir>`` redoes it any time.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger("yolo9000.sweep_summary")


def local_sweep_dir(hydra_cfg: Any) -> str | None:
    """The sweep folder when ``hydra_cfg`` (the ``hydra`` node of a job's config, or ``HydraConfig.get()``) is a job
    of a local (sequential) multirun; None for a single run or a remote launcher's job (submitit: summarised on the
    submitting machine)."""
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    if not str(hydra_cfg.launcher.get("_target_", "")).endswith("BasicLauncher"):
        return None
    return str(hydra_cfg.sweep.dir)


def write_sweep_summary(sweep_dir: str, plot: bool = True) -> None:
    """``report.write_summary`` of ``sweep_dir``; an error is logged, never raised (a summary must never break or
    hide what the sweep is doing)."""
    from yolo9000.report import write_summary

    try:
        write_summary(sweep_dir, plot=plot)
    except Exception:
        log.exception("could not write the sweep summary of %s", sweep_dir)


class SweepSummary(Callback):
    """Summarise ``hydra.sweep.dir`` after each local job and at the end of the multirun.

    Args:
        after_each_job: also rewrite the summary after every job of a local multirun.
        plot: write the bar plot (summary.png).
    """

    def __init__(self, after_each_job: bool = True, plot: bool = True) -> None:
        self.after_each_job = after_each_job
        self.plot = plot

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        sweep_dir = local_sweep_dir(config.get("hydra")) if self.after_each_job else None
        if sweep_dir is not None:
            write_sweep_summary(sweep_dir, plot=self.plot)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_sweep_summary(str(config.hydra.sweep.dir), plot=self.plot)
