"""Throughput numbers for the run summary: training images/s and inference images/s (forward + decode)."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class SpeedMonitor(pl.Callback):
    """Times training and test batches (wall clock, synchronised on CUDA) and logs ``train/img_per_s`` per epoch.

    After the run, ``summary()`` gives ``train_img_per_s`` (all training batches after the first of each process,
    which warms up; a resumed run's totals come back from its checkpoint, so the figure covers every process that
    trained it) and ``inference_fps`` (test batches after the first: forward, loss and decode).
    """

    def __init__(self) -> None:
        self._t0 = 0.0
        self.train_images = 0
        self.train_time = 0.0
        self.epoch_images = 0
        self.epoch_time = 0.0
        self.test_images = 0
        self.test_time = 0.0
        self._first_test: tuple[int, float] | None = None  # (images, seconds) of the first test batch
        self._seen_first = False
        self._stage: str | None = None  # the trainer call in progress ("fit", "test", ...), set before its restore

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_images, self.epoch_time = 0, 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *_: Any) -> None:
        self._t0 = self._now(pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        dt = self._now(pl_module) - self._t0
        n = int(batch["images"].shape[0]) * trainer.world_size
        self.epoch_images += n
        self.epoch_time += dt
        if self._seen_first:
            self.train_images += n
            self.train_time += dt
        self._seen_first = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.epoch_time > 0:
            pl_module.log("train/img_per_s", self.epoch_images / self.epoch_time)

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *_: Any) -> None:
        self._t0 = self._now(pl_module)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        dt, n = self._now(pl_module) - self._t0, int(batch["images"].shape[0])
        if self._first_test is None:  # warms up (allocations, caches): counted only when it is the only batch
            self._first_test = (n, dt)
        else:
            self.test_time += dt
            self.test_images += n

    def state_dict(self) -> dict[str, Any]:
        """The training totals (images, seconds), saved in checkpoints: a resumed run's speed covers all of it."""
        return {"train_images": self.train_images, "train_time": self.train_time}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A checkpoint restored to fit (a resume) holds the totals before this process; one restored to test
        (``trainer.test(ckpt_path=best)``, saved before the training ended) changes nothing: this run's stand."""
        if self._stage not in (None, "fit"):
            return
        self.train_images = int(state_dict.get("train_images", 0))
        self.train_time = float(state_dict.get("train_time", 0.0))

    def summary(self) -> dict[str, float]:
        out = {}
        if self.train_time > 0:
            out["train_img_per_s"] = self.train_images / self.train_time
        images, seconds = self.test_images, self.test_time
        if seconds <= 0 and self._first_test is not None:
            images, seconds = self._first_test
        if seconds > 0:
            out["inference_fps"] = images / seconds
        return out
