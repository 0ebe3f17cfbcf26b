"""Checkpoints that resume exactly: ``last.ckpt`` is always the latest state, every random stream is saved, and the
last epoch is always validated (so a best checkpoint exists for any run length).

Exact resume rests on three things: this module's :class:`LastCheckpoint` (written at every epoch end and every N
minutes inside long epochs, atomically) and :class:`RandomState` (Python, NumPy and torch generators), the
training loader's position inside the epoch (:class:`yolo9000.data.resumable.ResumableDataLoader`), and
augmentation seeded per sample by the batch sampler (independent of workers).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger("yolo9000.train")
STOP_IN_VALIDATION = " during validation: it finishes, the run is saved, then it stops"
STOP_IN_TRAINING = ": the run stops after this batch, saved there"

__all__ = ["LastCheckpoint", "RandomState", "RunCheckpoint", "ValidateLastEpoch", "atomic_save_checkpoint"]


def atomic_save_checkpoint(trainer: pl.Trainer, path: str | Path) -> None:
    """``trainer.save_checkpoint(path)`` that never leaves a partial file at ``path``: the checkpoint is written
    to ``<path>.tmp``, flushed to disk and renamed over ``path`` (a kill during the write keeps the previous
    file). Call on every rank (the trainer gathers the state); rank 0 writes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp, weights_only=False)  # the full training state
    if trainer.is_global_zero:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    trainer.strategy.barrier("atomic_save_checkpoint")


class LastCheckpoint(pl.Callback):
    """Writes ``<dirpath>/last.ckpt``: the latest training state, never the best.

    Saved at the end of every training epoch (after its validation, so the best-checkpoint bookkeeping is
    included; SIGTERM during that validation is held back until it ends, see :meth:`on_validation_batch_end`) and,
    inside an epoch, every ``every_n_minutes`` of wall clock and/or every ``every_n_train_steps``
    optimizer steps (full-scale epochs last hours), and after the batch during which the process received SIGTERM
    (Lightning then stops the run). Resuming from it (``ckpt_path=<run>/checkpoints/last.ckpt``
    or ``resume=<run>``) continues at the next batch.

    SIGTERM while fitting is taken by this callback's handler in place of Lightning's, whose handler broadcasts
    inside the signal handler and whose loops stop each process on its own flag: under DDP a SIGTERM during a
    validation stopped the processes at once, unsaved. Here the handler only records the signal; in one process it
    stops the run after the batch, as Lightning's (held back during a validation); with several processes all of
    them agree at the same points (after each training batch, after a validation, at the epoch end: any process's
    signal stops every one) and stop together after the same save, however many of them the signal reached.

    Args:
        dirpath: checkpoint folder.
        filename: file name of the latest checkpoint.
        every_n_minutes: mid-epoch save period in minutes (None: epoch ends only).
        every_n_train_steps: mid-epoch save period in optimizer steps (None: off).
    """

    def __init__(
        self,
        dirpath: str | Path,
        filename: str = "last.ckpt",
        every_n_minutes: float | None = 10.0,
        every_n_train_steps: int | None = None,
    ) -> None:
        self.path = Path(dirpath) / filename
        self.every_n_minutes = every_n_minutes
        self.every_n_train_steps = every_n_train_steps
        self._last_save = time.monotonic()
        self._sigterm_deferred = False  # a SIGTERM held back until the validation in progress ends
        self._sigterm_pending = False  # this process received SIGTERM (its handler), not yet agreed on by all
        self._saved_step = -1  # the global step of this process's last save
        self._group: Any = None  # the host (gloo) group of the agreement's collective (None: the strategy's own)

    def _save(self, trainer: pl.Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_checkpoint(trainer, self.path)
        self._last_save = time.monotonic()
        self._saved_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_save = time.monotonic()
        take_sigterm(trainer, self._on_sigterm)  # after Lightning registered its handlers (at the start of fit)
        self._group = host_group() if trainer.world_size > 1 else None  # every process starts the fit here

    def _on_sigterm(self, trainer: pl.Trainer, signum: int) -> None:
        self.request_stop(trainer, "SIGTERM")

    def request_stop(self, trainer: pl.Trainer, why: str = "SIGTERM") -> None:
        """Stop the fit, saved (a signal handler's call: SIGTERM, train.py's Ctrl-C). One process: Lightning's stop
        after this batch (a validation of the fit holds it back until it ends); several: recorded only, agreed on
        at the next :meth:`_agree` (a flag set in one process alone stops it where the others wait for it)."""
        if not self._sigterm_pending:
            rank = f"[rank {trainer.global_rank}] " if trainer.world_size > 1 else ""
            what = STOP_IN_VALIDATION if _fitting_validation(trainer) else STOP_IN_TRAINING
            log.warning("%s%s%s", rank, why, what)
        self._sigterm_pending = True
        if trainer.world_size == 1 and not _fitting_validation(trainer):
            trainer._signal_connector.received_sigterm = True

    def _agree(self, trainer: pl.Trainer, due: bool = False) -> bool:
        """At a point every process reaches (all call it): rank 0's ``due`` for all; a SIGTERM received by any
        process becomes Lightning's stop flag in every one (Lightning then stops them at the same batch end).

        The flags are host values, reduced over :attr:`_group` (gloo) on the host: over the default group of a GPU
        run (NCCL) the reduce and its barrier waited on the GPU's queue after every training batch, and the host
        queued the next step's work only once the GPU had run dry."""
        pending = self._sigterm_pending
        if trainer.world_size > 1:  # one reduce: (rank 0's due, any process's signal)
            dev = "cpu" if self._group is not None else trainer.strategy.root_device
            flags = torch.tensor([float(due and trainer.is_global_zero), float(pending)], device=dev)
            flags = trainer.strategy.reduce(flags, group=self._group, reduce_op="max")
            due, pending = (bool(v) for v in flags.tolist())
        if pending:
            self._sigterm_pending = False
            trainer._signal_connector.received_sigterm = True
        return due

    def _due(self, trainer: pl.Trainer) -> bool:
        due = bool(self.every_n_train_steps) and trainer.global_step % int(self.every_n_train_steps or 1) == 0
        if self.every_n_minutes is not None:  # the clocks of the ranks differ: rank 0 decides for all (_agree)
            due = due or time.monotonic() - self._last_save >= 60.0 * float(self.every_n_minutes)
        due = self._agree(trainer, due)
        return due or trainer.received_sigterm  # Lightning stops after this batch: its state is saved first

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # the epoch-end save follows right after (after a validation)
            self._agree(trainer)  # a signal of this batch: held through the validation, saved at the epoch end
            return
        if self._due(trainer):
            self._save(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # SIGTERM during a fitting validation (or in the epoch's last training batch): Lightning would stop after this
        # batch, before the epoch-end save, and the epoch's training would be lost (a save made before the validation
        # resumes as a finished epoch whose validation is skipped). The validation finishes first; the signal is
        # handed back when it ends, and Lightning stops after the epoch-end save
        if trainer.received_sigterm and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            if not self._sigterm_deferred:
                log.warning("SIGTERM%s", STOP_IN_VALIDATION)
            trainer._signal_connector.received_sigterm = False
            self._sigterm_deferred = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._sigterm_deferred:
            trainer._signal_connector.received_sigterm = True
            self._sigterm_deferred = False
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._agree(trainer)  # a signal received during the validation: the run stops after it (saved)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._agree(trainer)  # Lightning stops right after this epoch-end save
        self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # SIGTERM that arrived after this batch's on_train_batch_end (later callbacks, logging): Lightning stops at
        # the batch's end without that save; the state is a whole batch, saved unless it is already
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not trainer.validating
        if isinstance(exception, SIGTERMException) and fitting and trainer.global_step != self._saved_step:
            self._save(trainer)


def host_group() -> Any:
    """A gloo process group over every process of the default group, whose collectives run on host tensors (never
    on a GPU's queue); None when torch.distributed is not initialised or has no gloo (the default group then
    serves). A collective: every process calls it at the same point."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:  # a group of its own also under a gloo default: the same path on a CPU as on GPUs
        return dist.new_group(backend="gloo")
    except (RuntimeError, ValueError) as e:  # a build without gloo
        log.debug("no gloo group (%s): the agreement reduces over the default group", e)
        return None


def _fitting_validation(trainer: pl.Trainer) -> bool:
    return trainer.state.fn == TrainerFn.FITTING and trainer.validating and not trainer.sanity_checking


def take_sigterm(trainer: pl.Trainer, on_sigterm: Any) -> bool:
    """Put ``on_sigterm(trainer, signum)`` in place of Lightning's SIGTERM notifier in the handler Lightning
    registered for this fit (the other handlers it composed, such as a SLURM requeue's or one registered before
    Lightning, stay); Lightning restores the original handlers when the fit ends. Returns whether it was replaced
    (False: not the main thread, or no Lightning handler of the known form; Lightning's handling then stays)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    handlers = getattr(current, "signal_handlers", None)  # Lightning's _HandlersCompose
    notifier = trainer._signal_connector._sigterm_notifier_fn
    if not isinstance(handlers, list) or notifier not in handlers:
        log.debug("SIGTERM handler not of Lightning's known form (%r): Lightning's handling stays", current)
        return False

    def ours(signum: int, frame: FrameType | None) -> None:
        on_sigterm(trainer, signum)

    handlers[handlers.index(notifier)] = ours
    return True


class RunCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that keeps its best-checkpoint bookkeeping when the run folder moved.

    Lightning restores the best score and the top-k files only when the saved ``dirpath`` equals the current one;
    otherwise the first validation after the resume becomes the best and the test phase may test a worse
    checkpoint. When every recorded checkpoint is found under the same name in the current folder (the run folder
    was moved or copied, then resumed), the records are mapped to it. A checkpoint continued in a new folder
    (``ckpt_path=``), whose files are elsewhere, keeps Lightning's behaviour (a fresh top-k).
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            here = {p: os.path.join(new, os.path.basename(p)) for p in state_dict.get("best_k_models", {})}
            if here and all(os.path.isfile(p) for p in here.values()):

                def move(path: str | None) -> str | None:
                    return here.get(path, path) if path else path

                state_dict = {
                    **state_dict,
                    "dirpath": new,
                    "best_k_models": {here[p]: v for p, v in state_dict["best_k_models"].items()},
                    "best_model_path": move(state_dict.get("best_model_path")),
                    "kth_best_model_path": move(state_dict.get("kth_best_model_path")),
                    "last_model_path": os.path.join(new, os.path.basename(state_dict["last_model_path"]))
                    if state_dict.get("last_model_path")
                    else state_dict.get("last_model_path"),
                }
                log.info("checkpoint records of %s mapped to the run's folder %s", old, new)
        super().load_state_dict(state_dict)


def _numpy_state() -> dict[str, Any]:
    """NumPy's legacy global generator as tensors and numbers (checkpoints load with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the legacy global generator is what we save)
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(s: dict[str, Any]) -> None:
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["gauss"]))  # noqa: NPY002


class RandomState(pl.Callback):
    """Saves the global random generators (Python, NumPy, torch CPU and CUDA) in every checkpoint and restores
    them when training resumes (at train start, after the data iterators were created, as at the save)."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        random.setstate(state["python"])
        _set_numpy_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ValidateLastEpoch(pl.Callback):
    """Validates the last epoch of every run (``trainer.max_epochs``) and its last step (``trainer.max_steps``
    inside an epoch), whatever ``check_val_every_n_epoch`` says:
    a run shorter than the validation period still gets a validated, best checkpoint. Decided when each epoch
    starts and when training starts: a run resumed inside its last epoch gets no ``on_train_epoch_start`` from
    Lightning (2.x skips it on a mid-epoch restart) and ended unvalidated, its test on the last weights."""

    def __init__(self) -> None:
        self._period: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validate_if_last(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validate_if_last(trainer)

    def _validate_if_last(self, trainer: pl.Trainer) -> None:
        period = trainer.check_val_every_n_epoch
        last = (
            trainer.max_epochs is not None
            and trainer.max_epochs > 0
            and trainer.current_epoch + 1 == trainer.max_epochs
        )
        if last and self._period is None and period and (trainer.current_epoch + 1) % period:
            self._period = period
            trainer.check_val_every_n_epoch = 1
            log.info("validating the last epoch (%d) although the period is %d", trainer.current_epoch + 1, period)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """The run's last optimizer step (``trainer.max_steps``, darknet's ``max_batches``: the full-scale YOLO9000
        run has no epoch limit) inside an epoch: validated too, so that its weights, after the last learning-rate
        drop, can be the best checkpoint the run is tested on (Lightning validates at epoch ends and stops at
        ``max_steps`` without one). Asked of Lightning as a stop request, after which its loop validates."""
        max_steps = trainer.max_steps
        if max_steps is None or max_steps < 0 or trainer.global_step < max_steps:
            return
        period = trainer.check_val_every_n_epoch
        at_end = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if at_end and (not period or (trainer.current_epoch + 1) % period == 0):
            return  # the epoch's end validates it anyway
        if period and self._period is None:
            self._period = period
            trainer.check_val_every_n_epoch = 1
        trainer.should_stop = True
        log.info("validating the last step (%d, trainer.max_steps) in epoch %d", max_steps, trainer.current_epoch + 1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._period is not None:
            trainer.check_val_every_n_epoch, self._period = self._period, None
