"""Hydra callback: refuse a sweep re-run into its folder whose grid gives a job number to another configuration,
before Hydra writes anything there.

Each job also checks its own folder (:func:`yolo9000.run_folder.check_same_job`), but by then Hydra's sweeper has
already rewritten the sweep's ``multirun.yaml`` (the plan ``report.py`` reads to list the jobs a sweep never
reached) and every refused job has appended to its ``train.log``. This callback runs first
(``on_multirun_start``): it expands the new sweep as the basic sweeper will and compares every job with the run
already in its folder; any difference stops the launch with all of them named, and the folder is left as it was.
Registered in ``conf/train.yaml`` under ``hydra.callbacks``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from yolo9000.report import sweep_jobs
from yolo9000.run_folder import SWEEP_GRID_HINT, job_differences

_JOB_SUBDIR = "${hydra.job.num}"  # the job folder names this check knows (the default of conf/hydra/default.yaml)


def sweep_conflicts(hydra_cfg: DictConfig) -> list[tuple[Path, list[str]]]:
    """(job folder, differences) of every job of the multirun described by ``hydra_cfg`` (the ``hydra`` node of
    the composed config) whose folder already holds the run of other overrides; [] when none does, or when the
    jobs or their folders are not known beforehand (another sweeper, another ``hydra.sweep.subdir``)."""
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    sweep = OmegaConf.to_container(hydra_cfg.sweep, resolve=False)  # the subdir as written, not resolved
    if not sweep_dir.is_dir() or not isinstance(sweep, dict) or sweep.get("subdir") != _JOB_SUBDIR:
        return []
    plan = sweep_jobs(OmegaConf.to_container(hydra_cfg, resolve=False))  # type: ignore[arg-type]
    if plan is None:
        return []
    found = [
        (sweep_dir / str(num), job_differences(sweep_dir / str(num), overrides)) for num, overrides in enumerate(plan)
    ]
    return [(folder, diff) for folder, diff in found if diff]


class SweepGuard(Callback):
    """Stop a multirun (exit status 1, the reason on stderr) before its sweeper writes into a folder whose jobs
    would each be another configuration than the run already there."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        conflicts = sweep_conflicts(config.hydra)
        if not conflicts:
            return
        lines = [
            f"Error: hydra.sweep.dir={config.hydra.sweep.dir} holds the runs of another grid; nothing was run or "
            f"written. {len(conflicts)} job(s) would be another configuration than the run in their folder:"
        ]
        for folder, diff in conflicts:
            lines.append(f"  {folder} ({folder / '.hydra' / 'overrides.yaml'}):")
            lines += [f"    {d}" for d in diff]
        lines.append(SWEEP_GRID_HINT)
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(1)
