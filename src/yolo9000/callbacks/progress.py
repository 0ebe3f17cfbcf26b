"""One progress line per epoch through Python logging, so it reaches the console, ``<run>/train.log`` and a SLURM
log alike (a progress bar draws nothing when the output is a file)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelSummary, RichModelSummary, RichProgressBar

from yolo9000.environment import FILE_ONLY

log = logging.getLogger("yolo9000.train")

__all__ = ["EpochLog", "LoggedRichModelSummary", "format_duration"]


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h02m05s"``; ``65`` -> ``"1m05s"``; ``4.2`` -> ``"4s"``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{sec:02d}s"
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


# the epoch line's names of the joint-training terms: means per image of one kind, where the total is the mean per
# image of the whole batch (so it may be below one of them)
_LABELS = {
    "train/detection/loss": "per detection image",
    "train/classification/loss": "per classification image",
}


class EpochLog(pl.Callback):
    """Logs, at the end of every training epoch (after its validation)::

        epoch 12/80 | loss 4.213 (coord 0.61 obj 1.02 noobj 0.88 cls 1.70) | 27.9 img/s | lr 1.00e-03 |
        val/map_50 0.512 | 1m12s elapsed, ETA 6m40s

    Losses are means over the epoch's batches (of this rank), read from every training step's outputs: the loss,
    and the ``terms`` mapping the modules return beside it (``{"loss": ..., "terms": {"train/coord": ...}}``); a
    term is averaged over the batches that returned it (a joint batch without classification images has no
    ``train/classification/loss``). They are summed where they are (no host sync per step) and read at the epoch's
    end. img/s counts all ranks' images over the training time of the epoch (validation excluded); the ETA
    extrapolates the mean wall time per epoch of this process.

    Args:
        loss_key: the name of the total loss (the step output's ``loss``).
        part_keys: the terms shown in brackets, in this order (missing ones skipped).
        val_keys: validation values shown when the epoch was validated (missing ones skipped).
    """

    def __init__(
        self,
        loss_key: str = "train/loss",
        part_keys: Sequence[str] = (
            "train/coord",
            "train/obj",
            "train/noobj",
            "train/cls",
            "train/top1",
            "train/detection/loss",  # joint training (YOLO9000): mean loss of a detection image
            "train/classification/loss",  # ... and of a classification image
        ),
        val_keys: Sequence[str] = ("val/map_50", "val/map", "val/top1"),
    ) -> None:
        self.loss_key = loss_key
        self.part_keys = list(part_keys)
        self.val_keys = list(val_keys)
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._images = 0
        self._train_time = 0.0
        self._t_batch = 0.0
        self._t_epoch = 0.0
        self._t_start: float | None = None
        self._global_step = 0
        self._epochs_timed = 0
        self._step_at_start = 0
        self._val_values: dict[str, float] = {}  # this epoch's validation values of val_keys (none: no validation)
        self._restored: dict[str, Any] | None = None  # the state of a checkpoint this run resumes from

    def state_dict(self) -> dict[str, Any]:
        """The epoch's sums so far and the run's timing, saved in every checkpoint: a run resumed in the middle of
        an epoch ends that epoch with the line of all its batches, and its elapsed time and ETA go on."""
        return {
            "sums": {k: float(v) for k, v in self._sums.items()},
            "counts": dict(self._counts),
            "images": self._images,
            "train_time": self._train_time,
            "elapsed": time.perf_counter() - self._t_start if self._t_start is not None else 0.0,
            "epochs_timed": self._epochs_timed,
            "steps_done": self._global_step - self._step_at_start,  # by the runs so far
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resume inside an epoch continues it without ``on_train_epoch_start``: its sums go on from here (a new
        epoch starts from zero as always)."""
        self._restored = dict(state_dict)
        self._sums = {k: torch.tensor(v) for k, v in (state_dict.get("sums") or {}).items()}
        self._counts = dict(state_dict.get("counts") or {})
        self._images, self._train_time = int(state_dict.get("images", 0)), float(state_dict.get("train_time", 0.0))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t_start, self._epochs_timed, self._step_at_start = time.perf_counter(), 0, trainer.global_step
        self._global_step = trainer.global_step
        restored, self._restored = self._restored, None
        if restored is not None:  # continue the timing of the run this one resumes
            self._t_start -= float(restored.get("elapsed", 0.0))
            self._epochs_timed = int(restored.get("epochs_timed", 0))
            self._step_at_start -= int(restored.get("steps_done", 0))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sums, self._counts, self._images, self._train_time = {}, {}, 0, 0.0
        self._t_epoch = time.perf_counter()
        self._val_values = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._t_batch = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        self._train_time += time.perf_counter() - self._t_batch
        self._global_step = trainer.global_step
        images = batch["images"] if isinstance(batch, dict) else batch[0]
        self._images += int(images.shape[0]) * trainer.world_size
        if isinstance(outputs, torch.Tensor):
            outputs = {"loss": outputs}
        if not isinstance(outputs, dict):
            return
        values = {self.loss_key: outputs.get("loss"), **(outputs.get("terms") or {})}
        for key, v in values.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.detach().reshape(()).float()  # on its device (float64 is not on every one)
                self._sums[key] = self._sums[key] + v if key in self._sums else v
                self._counts[key] = self._counts.get(key, 0) + 1

    def mean(self, key: str) -> float | None:
        """The epoch's mean of a step value so far (None if no step returned it)."""
        return float(self._sums[key]) / self._counts[key] if key in self._sums else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # read here, on every rank: at the train epoch's end rank 0 alone would ask
            #                               for the epoch's train metrics, and a synced one would wait for the others
            metrics = trainer.callback_metrics
            self._val_values = {k: float(metrics[k]) for k in self.val_keys if k in metrics}

    @staticmethod
    def _lr(trainer: pl.Trainer) -> float | None:
        if not trainer.optimizers:
            return None
        return float(trainer.optimizers[0].param_groups[0]["lr"])

    def line(self, trainer: pl.Trainer) -> str:
        """The epoch's progress line."""
        epoch = trainer.current_epoch + 1
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        parts = [f"epoch {epoch}/{total}" if total else f"epoch {epoch}"]
        if trainer.max_steps > 0:  # the run ends at a step count (maybe before the last epoch): where it stands
            parts[0] += f" (step {trainer.global_step}/{trainer.max_steps})"
        if self.loss_key in self._sums:
            loss = f"loss {self.mean(self.loss_key):.4g}"
            shown = [k for k in self.part_keys if k in self._sums]
            extra = [f"{_LABELS.get(k, k.split('/', 1)[-1])} {self.mean(k):.3g}" for k in shown]
            parts.append(loss + (f" ({' '.join(extra)})" if extra else ""))
        if self._train_time > 0:
            parts.append(f"{self._images / self._train_time:.1f} img/s")
        lr = self._lr(trainer)
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        parts.extend(f"{k} {v:.4f}" for k, v in self._val_values.items())
        if self._t_start is not None:
            elapsed = time.perf_counter() - self._t_start
            self._epochs_timed += 1
            timing = f"{format_duration(elapsed)} elapsed"
            if total:
                remaining = (total - epoch) * elapsed / self._epochs_timed
                done = trainer.global_step - self._step_at_start
                if trainer.max_steps > 0 and done > 0:  # trainer.max_steps may end the run first
                    remaining = min(remaining, max(trainer.max_steps - trainer.global_step, 0) * elapsed / done)
                timing += f", ETA {format_duration(remaining)}"
            parts.append(timing)
        return " | ".join(parts)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info(self.line(trainer))


class EpochProgressBar(RichProgressBar):
    """Lightning's Rich progress bar with the epochs counted as the epoch lines count them: ``Epoch 4/4`` for the
    last of 4 epochs (Lightning shows ``Epoch 3/3``, counting from 0)."""

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_epochs
        text = f"Epoch {current_epoch + 1}" + (f"/{total}" if total is not None and total > 0 else "")
        return f"{text:{len(self.validation_description)}}"  # padded: no flicker beside the "Validation" bar


class LoggedRichModelSummary(RichModelSummary):
    """Lightning's Rich model summary on the console, and the same table as plain text in the job's log file (a
    Rich table reaches the console only)."""

    @staticmethod
    def summarize(*args: Any, **kwargs: Any) -> None:
        RichModelSummary.summarize(*args, **kwargs)
        plain = logging.getLogger(ModelSummary.__module__)  # where the plain summary logs its table
        handler, propagate = _Capture(), plain.propagate
        plain.addHandler(handler)
        plain.propagate = False  # caught here, not printed on the console a second time
        try:
            ModelSummary.summarize(*args, **kwargs)
        finally:
            plain.removeHandler(handler)
            plain.propagate = propagate
        if handler.text:
            log.info("model summary:%s", handler.text, extra=FILE_ONLY)


class _Capture(logging.Handler):
    """The message of the one record Lightning's plain :class:`ModelSummary` logs (kept from its own output)."""

    def __init__(self) -> None:
        super().__init__()
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()
