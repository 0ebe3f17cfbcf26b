"""Lightning loggers that continue a job's logs when the job restarts in the same run folder.

A SLURM requeue (SIGUSR1: Lightning saves ``hpc_ckpt_<n>.ckpt`` and calls ``scontrol requeue``) or a resume with
``ckpt_path=`` into the same output folder starts a new process that logs into the folder of the first one.
Lightning's own loggers then restart their logs:

- :class:`pytorch_lightning.loggers.CSVLogger` deletes ``metrics.csv`` of its version folder when it opens it
  (``_ExperimentWriter._check_log_dir_exists``), so every row from before the restart is lost.
  :class:`ResumableCSVLogger` keeps them: the new rows are appended, the header is merged when new columns appear,
  and rows a restarted run logs again (the steps after the checkpoint it resumed from) replace the old ones.
- :class:`pytorch_lightning.loggers.WandbLogger` starts a new W&B run per process.
  :class:`ResumableWandbLogger` stores the run id in ``<save_dir>/wandb/run_id`` when the run starts and passes
  ``id=<stored id>, resume="allow"`` on a restart, so the job keeps one run. Offline (``WANDB_MODE=offline``) W&B
  writes one ``offline-run-<time>-<id>`` folder per process, all with that id: ``wandb sync <save_dir>/wandb/
  offline-run-*`` uploads them into one run in order of start time (older wandb: ``wandb sync`` the first and
  ``wandb sync --append`` the later ones).

  When SLURM stops a job (requeue, preemption, time limit) it sends SIGTERM to every process of the job step,
  the W&B service included: it exits while Lightning finishes the current batch. The logger then drops W&B calls
  that fail because the service is gone (one warning) instead of failing the job at its last batch.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

RUN_ID_FILE = "run_id"  # <save_dir>/wandb/run_id
# What a W&B call raises when its service process is gone (SIGTERM to the job step, crash): the socket is closed.
SERVICE_LOST = (ConnectionError, EOFError)

F = TypeVar("F", bound=Callable[..., Any])


def _step_of(row: dict[str, str]) -> int | None:
    """The ``step`` column of a csv row as an int (None when missing or not a number)."""
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


def _test_row(row: dict[str, str]) -> bool:
    """Whether a csv row holds a test's metrics only (``test/...``; ``epoch`` and ``step`` aside)."""
    filled = [k for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")]
    return bool(filled) and all(k.startswith("test/") for k in filled)


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV experiment writer, continuing an existing ``metrics.csv`` instead of deleting it.

    Args:
        log_dir: the folder of ``metrics.csv`` and ``hparams.yaml``.
        rewind: at the first row logged, drop the existing rows whose step is at or after that row's step (a
            restarted run logs those steps again: the rows written after the checkpoint it resumed from would
            otherwise appear twice), but a test's rows (a finished run trained further: its result). Not when that
            first step is 0: a trainer that did not resume (a test-only run in the folder, a restart without
            checkpoint) keeps every previous row.
    """

    def __init__(self, log_dir: str, rewind: bool = True) -> None:
        self._rewind = rewind
        self._rewind_pending = False
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep an existing ``metrics.csv``: its header becomes the known columns (rows are appended to it)."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            header = next(csv.reader(f), None)
        if not header:  # an empty file: start it again
            self._fs.rm_file(self.metrics_file_path)
            return
        self.metrics_keys = list(header)
        self._rewind_pending = self._rewind
        log.info("continuing %s (%d columns)", self.metrics_file_path, len(header))

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        """Record one row; the first row after reopening a file first drops the file's rows from ``step`` on."""
        if self._rewind_pending:
            self._rewind_pending = False
            if step:  # > 0: a resumed trainer
                self._drop_rows_from(step)
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        """Rewrite ``metrics.csv`` without the rows whose step is ``>= step``."""
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))
        # a test's row is the result of a finished run (trained further now), never logged again: it stays
        keep = [r for r in rows if (s := _step_of(r)) is None or s < step or _test_row(r)]
        if len(keep) == len(rows):
            return
        log.info(
            "%s: dropping %d rows from step %d on (logged again)", self.metrics_file_path, len(rows) - len(keep), step
        )
        tmp = self.metrics_file_path + ".tmp"  # written beside and renamed: a kill mid-write keeps every row
        with self._fs.open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(keep)
        self._fs.mv(tmp, self.metrics_file_path)

    def _record_new_keys(self) -> set[str]:
        """Add the new columns (sorted after a change, as Lightning does); keep the file's column order otherwise,
        so appended rows line up with its header."""
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        if new_keys:
            self.metrics_keys = sorted([*self.metrics_keys, *new_keys])
        return new_keys


class ResumableCSVLogger(CSVLogger):
    """:class:`~pytorch_lightning.loggers.CSVLogger` that appends to the ``metrics.csv`` of a previous run in the
    same folder (a requeued or resumed job) instead of restarting it.

    Args:
        save_dir: the run folder.
        name: subfolder (``csv``).
        version: version subfolder; ``""`` writes straight into ``<save_dir>/<name>``.
        prefix: prefix of the metric names.
        flush_logs_every_n_steps: rows logged outside a Trainer are written every this many steps (a Trainer
            saves its loggers after each row it logs: every row reaches the file as it is logged).
        rewind: drop the previous run's rows from the first step this run logs on (see
            :class:`AppendingExperimentWriter`).
    """

    def __init__(
        self,
        save_dir: _PATH,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
        rewind: bool = True,
    ) -> None:
        super().__init__(
            save_dir=save_dir,
            name=name,
            version=version,
            prefix=prefix,
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )
        self._rewind = rewind

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        """The writer of ``metrics.csv`` / ``hparams.yaml`` (created on first use, continuing an existing file)."""
        if self._experiment is not None:
            return self._experiment  # type: ignore[return-value]
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = AppendingExperimentWriter(log_dir=self.log_dir, rewind=self._rewind)
        return self._experiment


def _unless_service_lost(fn: F) -> F:
    """Run a :class:`ResumableWandbLogger` method; once the W&B service is gone, warn once and skip the calls."""

    @functools.wraps(fn)
    def wrapper(self: ResumableWandbLogger, *args: Any, **kwargs: Any) -> Any:
        if self.service_lost:
            return None
        try:
            return fn(self, *args, **kwargs)
        except SERVICE_LOST as e:
            self.service_lost = True
            log.warning("W&B service lost (%s: %s), W&B logging stops (the job is being stopped?)", type(e).__name__, e)
            return None

    return wrapper  # type: ignore[return-value]


class ResumableWandbLogger(WandbLogger):
    """:class:`~pytorch_lightning.loggers.WandbLogger` that keeps one W&B run per run folder across restarts.

    The first start writes the run's id to ``<save_dir>/wandb/run_id``; a later start in the same folder (SLURM
    requeue, resume) reads it and calls ``wandb.init(id=<it>, resume="allow")``. An ``id`` / ``version`` given
    explicitly wins (and is stored). Every other argument is :class:`WandbLogger`'s.

    Metrics, hyperparameters and images whose W&B call fails because the W&B service process is gone (SLURM sends
    SIGTERM to the whole job step when it requeues or stops the job) are dropped with one warning: the job then
    ends at the end of its batch (Lightning's SIGTERM handling) instead of failing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("resume", "allow")
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # wandb >= 0.19 warns about the key even when unset
            self._wandb_init.pop("anonymous", None)
        self.service_lost = False
        stored = self._read_run_id()
        if self._id is None and stored is not None:
            self._id = self._wandb_init["id"] = stored
            log.info("W&B: resuming run %s (%s)", stored, self.run_id_file)

    @property
    def run_id_file(self) -> Path:
        """``<save_dir>/wandb/run_id``: the id of this folder's W&B run."""
        return Path(self._save_dir or os.environ.get("WANDB_DIR") or ".") / "wandb" / RUN_ID_FILE

    def _read_run_id(self) -> str | None:
        try:
            text = self.run_id_file.read_text().strip()
        except OSError:
            return None
        return text or None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The W&B run (started on first use); its id is stored for the next start in this folder."""
        new = self._experiment is None
        run = super().experiment
        if new and run is not None:
            self._store_run_id(run)
        return run

    @rank_zero_only
    def _store_run_id(self, run: Any) -> None:
        run_id = getattr(run, "id", None)
        disabled = getattr(getattr(run, "settings", None), "mode", None) == "disabled" or getattr(
            run, "disabled", False
        )
        if not run_id or disabled or self._read_run_id() == run_id:
            return
        self.run_id_file.parent.mkdir(parents=True, exist_ok=True)
        self.run_id_file.write_text(f"{run_id}\n")

    @_unless_service_lost
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        """:meth:`WandbLogger.log_metrics`, skipped once the W&B service is gone."""
        super().log_metrics(metrics, step)

    @_unless_service_lost
    def log_hyperparams(self, params: Any) -> None:
        """:meth:`WandbLogger.log_hyperparams`, skipped once the W&B service is gone."""
        super().log_hyperparams(params)

    @_unless_service_lost
    def log_image(self, *args: Any, **kwargs: Any) -> None:
        """:meth:`WandbLogger.log_image`, skipped once the W&B service is gone."""
        super().log_image(*args, **kwargs)

    @rank_zero_only
    @_unless_service_lost
    def finish(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
        """Write ``summary`` into the run's summary and finish the run (one finished W&B run per job); skipped once
        the W&B service is gone. For the end of a job (``src/train.py``) instead of ``experiment.finish()``."""
        if self._experiment is None:
            return
        if summary:
            self._experiment.summary.update(summary)
        self._experiment.finish(exit_code=exit_code)
