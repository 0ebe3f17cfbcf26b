"""What the detection and classification LightningModules share: ``seen`` (darknet's image counter), uint8 ->
float batches on the device, the model config saved in checkpoints (so eval / detect / convert rebuild the
network), darknet's optimisation, pretrained weights (:func:`yolo9000.modules.pretrained.load_pretrained`) and the
fast-path switches (``model.fast``, :class:`yolo9000.speed.FastPath`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from yolo9000.modules.schedules import darknet_optimization
from yolo9000.speed import FastPath, apply_fast_path, float_images, optimizer_flags

log = logging.getLogger(__name__)


class DarknetModule(pl.LightningModule):
    """Base of :class:`DetectorModule` and :class:`ClassifierModule`; subclasses set ``self.model`` and keep
    darknet's optimisation keys in ``hparams``. ``model_config`` (the resolved model config, set by
    :func:`yolo9000.build.instantiate_module`) is saved in every checkpoint. ``fast``: the fast-path switches
    (:class:`yolo9000.speed.FastPath`), applied to ``self.model`` in :meth:`setup` (compile: when fitting only)."""

    model: torch.nn.Module
    model_config: dict[str, Any] | None = None

    def __init__(self, fast: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fast = FastPath.of(fast)
        self._fast_compiled = False  # setup() compiled self.model
        # images seen over all ranks (darknet's ``seen``: its prior-matching term stops after 12,800); a buffer, so
        # it is saved in checkpoints and restored on resume
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def count_seen(self, batch_size: int) -> int:
        """Add this step's images of all ranks to ``seen`` (darknet counts before the forward pass); returns it,
        counted on the host too while fitting (reading the buffer back would wait for the GPU every step)."""
        world = self.trainer.world_size if self._trainer is not None else 1
        self.seen += batch_size * world
        host = self.__dict__.get("_seen_host")
        self._seen_host = int(self.seen) if host is None else host + batch_size * world
        return self._seen_host

    @property
    def seen_images(self) -> int:
        """``seen`` as an int: the host's count while fitting, else the buffer's."""
        host = self.__dict__.get("_seen_host")
        return int(self.seen) if host is None else host

    def on_train_start(self) -> None:
        """The host's ``seen`` from the buffer (restored by a resume before this hook)."""
        self._seen_host = int(self.seen)

    def on_train_end(self) -> None:
        self._seen_host = None  # the buffer is the count again (a later load or edit changes it)

    def logs_written_this_step(self) -> bool:
        """Whether the loggers write this training step's on-step values (Lightning's ``log_every_n_steps``): per-step
        diagnostics nobody else reads are logged on those steps only (the same logs; each ``self.log`` costs a
        fraction of a millisecond). True outside a trainer or where Lightning does not say."""
        if self._trainer is None:
            return True
        return bool(getattr(getattr(self._trainer, "_logger_connector", None), "should_update_logs", True))

    def setup(self, stage: str) -> None:
        """The fast path (``model.fast``): channels_last weights; ``torch.compile`` of the network when fitting."""
        compile_now = stage == "fit" and not self._fast_compiled
        apply_fast_path(self.model, self.fast, compile=compile_now)  # channels_last again: a no-op
        self._fast_compiled |= compile_now

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``skip_nonfinite`` (an hparam: N > 0 on, 0 off): a step whose gradients hold inf or NaN is skipped (every
        gradient dropped, so the optimizer leaves the weights and its state alone) and counted
        (``train/skipped_steps``; warnings for the first and then every 100th), instead of writing NaN into the
        weights for good; after N such steps in a row the run has diverged and stops with an error. darknet has
        no such guard: a diverging run trains on as NaN."""
        limit = int(self.hparams.get("skip_nonfinite", 0) or 0)
        if limit <= 0:
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        if bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))):
            self._nonfinite_run = 0
        else:
            for p in self.parameters():
                p.grad = None
            self.skipped_steps = getattr(self, "skipped_steps", 0) + 1
            self._nonfinite_run = getattr(self, "_nonfinite_run", 0) + 1
            if self.skipped_steps <= 10 or self.skipped_steps % 100 == 0:
                log.warning(
                    "step %d: non-finite gradients, step skipped (%d so far)", self.global_step, self.skipped_steps
                )
            if self._nonfinite_run >= limit:
                raise FloatingPointError(
                    f"training diverged: {limit} steps in a row with non-finite gradients (up to step "
                    f"{self.global_step}; {self.skipped_steps} skipped in all); lower model.lr or check the data"
                )
        if self._trainer is not None and (self.logs_written_this_step() or self._nonfinite_run):
            self.log("train/skipped_steps", float(getattr(self, "skipped_steps", 0)), on_step=True, on_epoch=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images (cheap to collate and copy) -> float in [0, 1], on the device (NHWC with
        ``fast.channels_last``)."""
        if isinstance(batch, dict) and isinstance(batch.get("images"), torch.Tensor):
            batch["images"] = float_images(batch["images"], self.fast.channels_last)
        return batch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["yolo9000_model_config"] = self.model_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._seen_host = None
        self.model_config = checkpoint.get("yolo9000_model_config", self.model_config)

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        flags = optimizer_flags(self.fast.fused_optimizer, next(self.model.parameters()).device)
        return darknet_optimization(self.model, self.hparams, total, flags)
