"""Test-only callback (``tests`` is on the entry scripts' path under test): the training process sends itself
SIGTERM at a chosen point, as a scheduler would at any moment, so a test can stop a run exactly there.

``+callbacks.sigterm={_target_: sigterm_probe.SigtermAt, epoch: 2, where: validation}``: during the first
validation batch of epoch index 2; ``where: validation_batch_end``: at the end of that batch, after the callbacks
listed before this one; ``where: last_train_batch``: during that epoch's last training batch;
``where: after_batch_end, batch: 4``: at the end of its batch 4, after the callbacks listed before this one (the
checkpoint callback's batch-end check has run). ``rank: r``: only DDP process ``r`` signals itself (as a ``kill``
of one process; SLURM signals every one); default: every process.

``+callbacks.sigterm_setup={_target_: sigterm_probe.SigtermAtSetup, stage: fit}``: see that class.

``+callbacks.hold={_target_: sigterm_probe.HoldAtStart, ready: <file>}``: the run's start waits (the callbacks are
built after the data and the model, before the fit) once it has written ``ready``, until a signal ends it (at most
``seconds``; with ``release: <file>``, until that file exists, then the run goes on).
``+callbacks.hold_step={_target_: sigterm_probe.HoldAtStep, step: 16, ready: <file>}``: see that class.
``+callbacks.handlers={_target_: sigterm_probe.RecordSigtermHandler, out: <file>}``: writes which
SIGTERM handler is in place when the fit and the test start (a JSON object).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class SigtermAt(pl.Callback):
    def __init__(self, epoch: int, where: str, batch: int = 0, rank: int | None = None) -> None:
        places = ("validation", "validation_batch_end", "last_train_batch", "after_batch_end")
        if where not in places:
            raise ValueError(f"where must be one of {places}, got {where!r}")
        self.epoch, self.where, self.batch, self.rank = epoch, where, batch, rank
        self.sent = False

    def _send(self, trainer: pl.Trainer) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.where == "last_train_batch" and batch_idx == trainer.num_training_batches - 1:
            self._send(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.where == "after_batch_end" and batch_idx == self.batch:
            self._send(trainer)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        if self.where == "validation" and batch_idx == 0:
            self._send(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.where == "validation_batch_end":
            self._send(trainer)


class HoldAtStart(pl.Callback):
    def __init__(self, ready: str, seconds: float = 120.0, release: str | None = None) -> None:
        Path(ready).write_text(str(os.getpid()))
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (release and Path(release).exists()):
            time.sleep(0.05)


class HoldAtStep(pl.Callback):
    """At the end of training step ``step`` (global, from 1) the run writes ``ready`` and waits (at most ``seconds``)
    until a stop reached Lightning (its SIGTERM flag, which train.py's Ctrl-C sets too): a signal sent from outside
    once ``ready`` exists lands in that batch however busy the machine is (polling the run's checkpoints from
    outside sent it batches late, or never)."""

    def __init__(self, step: int, ready: str, seconds: float = 120.0) -> None:
        self.step, self.ready, self.seconds, self.held = step, Path(ready), seconds, False

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if self.held or trainer.global_step != self.step:
            return
        self.held = True
        self.ready.write_text(str(os.getpid()))
        end = time.monotonic() + self.seconds
        while time.monotonic() < end and not trainer.received_sigterm:
            time.sleep(0.01)


class RecordSigtermHandler(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out, self.seen = Path(out), {}

    def _record(self, stage: str) -> None:
        current = signal.getsignal(signal.SIGTERM)
        handlers = getattr(current, "signal_handlers", [])  # Lightning's _HandlersCompose
        self.seen[stage] = {
            "type": type(current).__name__,
            "handlers": [getattr(h, "__qualname__", repr(h)) for h in handlers],
        }
        self.out.write_text(json.dumps(self.seen))

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._record("fit")

    def on_test_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._record("test")


class SigtermAtSetup(pl.Callback):
    """``+callbacks.sigterm_setup={_target_: sigterm_probe.SigtermAtSetup, stage: fit}``: the process sends itself
    SIGTERM in the callbacks' ``setup`` of that stage (``fit`` or ``test``), inside Lightning's fit or test before
    Lightning takes the signal (it registers its handler after the setup and the checkpoint's restore)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if stage == self.stage:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once (the main thread); the default handler ends the process
