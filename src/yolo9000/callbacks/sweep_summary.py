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


class SweepSummary(Callback):
    """Summarise ``hydra.sweep.dir`` after each local job and at the end of the multirun.

    Args:
        after_each_job: also rewrite the summary after every job of a local multirun.
        plot: write the bar plot (summary.png).
    """

    def __init__(self, after_each_job: bool = True, plot: bool = True) -> None:
        self.after_each_job = after_each_job
        self.plot = plot

    def _write(self, sweep_dir: str) -> None:
        from yolo9000.report import write_summary

        try:
            write_summary(sweep_dir, plot=self.plot)
        except Exception:  # a summary must never break the sweep
            log.exception("could not write the sweep summary of %s", sweep_dir)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra")
        if not self.after_each_job or hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
            return
        if not str(hydra_cfg.launcher.get("_target_", "")).endswith("BasicLauncher"):
            return  # remote jobs (submitit): summarised at the end, on the submitting machine
        self._write(str(hydra_cfg.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(str(config.hydra.sweep.dir))
