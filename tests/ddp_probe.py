"""Test-only Lightning callback (not collected by pytest): records what every DDP rank trains on.

Passed to train.py as ``+callbacks.ddp_probe._target_=ddp_probe.InputSizeProbe +callbacks.ddp_probe.out_dir=<dir>``
with ``tests/`` on PYTHONPATH; rank r appends one JSON line per training batch to ``<out_dir>/rank<r>.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class InputSizeProbe(pl.Callback):
    """Writes {rank, world_size, epoch, step, size, ids} for every training batch of this rank."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rec = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "size": list(batch["images"].shape[-2:]),
            "ids": list(batch["image_ids"]),
        }
        with (self.out_dir / f"rank{trainer.global_rank}.jsonl").open("a") as f:
            f.write(json.dumps(rec) + "\n")


class FailOnStart(pl.Callback):
    """Raises at the first training batch on every rank when ``fail`` (a sweep's failing job)."""

    def __init__(self, fail: bool = True) -> None:
        self.fail = fail

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.fail:
            raise RuntimeError(f"planted failure on rank {trainer.global_rank}")
