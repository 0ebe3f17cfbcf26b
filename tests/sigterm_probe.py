"""Test-only callback (``tests`` is on the entry scripts' path under test): the training process sends itself
SIGTERM at a chosen point, as a scheduler would at any moment, so a test can stop a run exactly there.

``+callbacks.sigterm={_target_: sigterm_probe.SigtermAt, epoch: 2, where: validation}``: during the first
validation batch of epoch index 2; ``where: last_train_batch``: during that epoch's last training batch;
``where: after_batch_end, batch: 4``: at the end of its batch 4, after the callbacks listed before this one (the
checkpoint callback's batch-end check has run).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl


class SigtermAt(pl.Callback):
    def __init__(self, epoch: int, where: str, batch: int = 0) -> None:
        if where not in ("validation", "last_train_batch", "after_batch_end"):
            raise ValueError(f"where must be validation, last_train_batch or after_batch_end, got {where!r}")
        self.epoch, self.where, self.batch = epoch, where, batch

    def _send(self, trainer: pl.Trainer) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking and not trainer.received_sigterm:
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
